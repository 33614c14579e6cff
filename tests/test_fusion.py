"""BatchNorm folded into convolutions: same outputs as the unfolded network, for both shipped architectures."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from bmpipe.nn.cell_classifier import CellNet, default_config
from bmpipe.nn.fusion import fuse_batchnorm
from bmpipe.nn.unet_detector import DEFAULT_CONFIG, build_network


def with_running_statistics(network: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters, as a trained network has."""
    generator = torch.Generator().manual_seed(seed)
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.randn(n, generator=generator))
            module.bias.data.copy_(torch.randn(n, generator=generator))
    return network.eval()


def batchnorms(network: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in network.modules())


@pytest.mark.parametrize(
    "build, size",
    [
        (lambda: build_network(DEFAULT_CONFIG), 64),
        (lambda: CellNet(default_config(["BLA", "LYT", "NGS"])), 48),
    ],
    ids=["unet", "cellnet"],
)
def test_folded_network_gives_the_same_outputs(build, size):
    torch.manual_seed(0)
    network = with_running_statistics(build())
    before = batchnorms(network)
    fused = fuse_batchnorm(copy.deepcopy(network))
    assert before > 0 and batchnorms(fused) < before / 4  # nearly all follow a conv
    x = torch.rand(2, 3, size, size)
    with torch.inference_mode():
        expected, got = network(x), fused(x)
    for e, g in zip(expected if isinstance(expected, tuple) else (expected,), got if isinstance(got, tuple) else (got,)):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4)


def test_folding_a_network_in_training_mode_is_refused():
    network = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="eval mode"):
        fuse_batchnorm(network)
