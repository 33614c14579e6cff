"""Grad-CAM of the shipped classifier: the evidence for a phantom cell's class lies on its nucleus."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bmpipe.nn.cell_classifier import CellClassifier
from bmpipe.nn.gradcam import gradcam_maps, gradcam_overlays
from bmpipe.nn.weights import default_models_dir
from bmpipe.phantom import render_cell

torch.set_num_threads(2)
SHIPPED = default_models_dir() / "classifier.safetensors"
pytestmark = pytest.mark.skipif(not SHIPPED.exists(), reason="shipped classifier weights absent")


def _on_glass(code: str, seed: int, clf: CellClassifier) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A phantom cell centred on bare glass in a classifier-sized crop: (crop, nucleus mask, cell mask)."""
    rgb, cell, nucleus = render_cell(code, np.random.default_rng(seed), mpp=clf.mpp)
    s = clf.crop_px
    crop = np.empty((s, s, 3), np.uint8)
    crop[:] = rgb[0, 0]
    masks = np.zeros((2, s, s), bool)
    h, w = cell.shape
    y, x = (s - h) // 2, (s - w) // 2
    crop[y : y + h, x : x + w] = rgb
    masks[0, y : y + h, x : x + w] = nucleus
    masks[1, y : y + h, x : x + w] = cell
    return crop, masks[0], masks[1]


@pytest.fixture(scope="module")
def clf() -> CellClassifier:
    return CellClassifier.load(device="cpu")


def test_heat_is_on_the_nucleus_not_the_background(clf: CellClassifier) -> None:
    cells = [_on_glass(code, 3, clf) for code in ("BLA", "LYT", "NGS", "EBO", "PLM")]
    crops = np.stack([c[0] for c in cells])
    maps = gradcam_maps(clf, crops)
    assert maps.shape == crops.shape[:3] and maps.dtype == np.float32
    assert maps.min() >= 0 and np.allclose(maps.max((1, 2)), 1.0)
    for (_, nucleus, cell), m in zip(cells, maps):
        assert m[nucleus].mean() > m[~cell].mean() + 0.1


def test_overlays_and_given_labels(clf: CellClassifier) -> None:
    crop = _on_glass("LYT", 5, clf)[0][None]
    overlay = gradcam_overlays(clf, crop)
    assert overlay.shape == crop.shape and overlay.dtype == np.uint8 and not np.array_equal(overlay, crop)
    assert not np.allclose(gradcam_maps(clf, crop, ["LYT"]), gradcam_maps(clf, crop, ["EOS"]))
    with pytest.raises(ValueError, match="not classes"):
        gradcam_maps(clf, crop, ["XYZ"])
