"""Nucleated-cell detector: a small U-Net that paints cells, then a watershed that separates them.

The network sees RGB tiles at a fixed 0.4 µm/px (a red cell ~19 px, a neutrophil ~30 px: enough to tell a
nucleus from a red cell, at 1/16 of the pixels of the 0.1 µm/px counting scale) and outputs two maps:

* ``foreground``: the whole nucleated cell (nucleus and cytoplasm); red cells, platelets and background are 0;
* ``marker``: each cell's distance to its own edge divided by its largest value (1 at the centre, 0 at the
  edge), so the maps of two touching cells dip between them and thresholding gives one seed per cell.

A foreground blob holding one seed is one cell. A blob holding several (touching cells) is split by a
watershed by immersion on the marker, run on the blob's bounding box only: from the seeds down, level by
level, so the cells part along the marker's valley between their centres. (``scipy.ndimage.watershed_ift``
was tried first: it hands whole rims of one cell to another seed when costs near the top of its range tie,
cf. scipy issues #10069 and #19575.) A box is the bounding box of one region, its score the mean
foreground probability over that region; regions smaller than a small lymphocyte's nucleus are dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import segmentation_models_pytorch as smp
import torch
from scipy import ndimage

from bmpipe.nn.fusion import fuse_batchnorm
from bmpipe.nn.tile_input import pad_to_stride, tile_batch
from bmpipe.nn.weights import ModelRecord, default_models_dir, load_weights
from bmpipe.resolution import Mpp

log = logging.getLogger(__name__)

NAME = "detector-unet"
DETECTOR_MPP = Mpp(0.4)

#: Everything the network and its post-processing need; saved into the weights' metadata by training.
DEFAULT_CONFIG: dict[str, Any] = {
    "arch": "Unet",
    "encoder": "mobilenet_v2",
    "encoder_depth": 4,
    "decoder_channels": [64, 32, 24, 16],
    "channels": ["foreground", "marker"],
    "mpp": DETECTOR_MPP.um_per_px,
    "tile_size": 512,
    # Inputs are scaled to [0, 1] then standardised with these per-channel values (RGB).
    "mean": [0.5, 0.5, 0.5],
    "std": [0.25, 0.25, 0.25],
    "fg_threshold": 0.5,
    "marker_threshold": 0.5,
    "min_seed_um2": 3.0,
    "min_area_um2": 15.0,
}


def build_network(config: dict[str, Any]) -> torch.nn.Module:
    """The untrained network a config describes (never downloads: encoder weights are always None)."""
    arch = getattr(smp, config["arch"])
    return arch(
        encoder_name=config["encoder"],
        encoder_weights=None,
        encoder_depth=int(config["encoder_depth"]),
        decoder_channels=list(config["decoder_channels"]),
        in_channels=3,
        classes=len(config["channels"]),
    )


def stride_of(config: dict[str, Any]) -> int:
    """Inputs must be a multiple of this many pixels (one halving per encoder stage)."""
    return 2 ** int(config["encoder_depth"])


def to_input(tiles: np.ndarray, config: dict[str, Any], device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, H, W, 3) uint8 RGB -> standardised (B, 3, H, W) float tensor in channels-last memory."""
    x = torch.from_numpy(np.ascontiguousarray(tiles)).to(device)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(config["mean"], device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(config["std"], device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


@dataclass(frozen=True)
class PostProcess:
    """Thresholds and sizes (in pixels at the model's resolution) that turn the two maps into boxes."""

    fg_threshold: float
    marker_threshold: float
    min_seed_px: float
    min_area_px: float

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PostProcess:
        px_area = Mpp(config["mpp"]).um_per_px ** 2
        return cls(
            fg_threshold=float(config["fg_threshold"]),
            marker_threshold=float(config["marker_threshold"]),
            min_seed_px=float(config["min_seed_um2"]) / px_area,
            min_area_px=float(config["min_area_um2"]) / px_area,
        )

    def instances(self, fg: np.ndarray, marker: np.ndarray) -> np.ndarray:
        """Instance label map (0 = background) from foreground and marker probabilities of one tile.

        Each foreground blob is one cell unless it holds several seeds; only those blobs (touching cells,
        a few per tile) are flooded, on their own bounding box.
        """
        mask = fg > self.fg_threshold
        blobs, n_blobs = ndimage.label(mask)
        seeds, n_seeds = ndimage.label(mask & (marker > self.marker_threshold))
        if n_seeds == 0:
            return blobs
        seed_area = np.bincount(seeds.ravel(), minlength=n_seeds + 1)
        big = seed_area >= self.min_seed_px
        big[0] = False
        seed_blob = np.zeros(n_seeds + 1, np.int64)
        seed_blob[seeds.ravel()] = blobs.ravel()
        per_blob = np.bincount(seed_blob[big], minlength=n_blobs + 1)
        labels = blobs.copy()
        next_label = n_blobs + 1
        slices = ndimage.find_objects(blobs)
        for b in np.flatnonzero(per_blob >= 2):
            sl = slices[b - 1]
            inside = blobs[sl] == b
            crop_seeds = np.where(inside & big[seeds[sl]], seeds[sl], 0)
            split = flood(crop_seeds, marker[sl], inside)
            ids = np.unique(split[split > 0])
            remap = np.zeros(int(split.max()) + 1, np.int32)
            remap[ids] = np.arange(next_label, next_label + len(ids))
            labels[sl] = np.where(inside, remap[split], labels[sl])
            next_label += len(ids)
        return labels

    def boxes(self, fg: np.ndarray, marker: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (N, 4: x0, y0, x1, y1 with x1/y1 exclusive) and scores of one tile's cells."""
        labels = self.instances(fg, marker)
        n = int(labels.max())
        if n == 0:
            return np.zeros((0, 4)), np.zeros(0)
        flat = labels.ravel()
        area = np.bincount(flat, minlength=n + 1)[1:]
        score = np.bincount(flat, weights=fg.ravel(), minlength=n + 1)[1:] / np.maximum(area, 1)
        slices = ndimage.find_objects(labels, max_label=n)
        keep = [i for i in range(n) if slices[i] is not None and area[i] >= self.min_area_px]
        boxes = np.array(
            [[slices[i][1].start, slices[i][0].start, slices[i][1].stop, slices[i][0].stop] for i in keep],
            dtype=np.float64,
        ).reshape(-1, 4)
        return boxes, score[keep].astype(np.float64)


#: Marker levels of the flooding, from the cell centres down to the cell rims.
FLOOD_LEVELS = np.linspace(0.9, 0.0, 10)
CROSS = ndimage.generate_binary_structure(2, 1)


def flood(seeds: np.ndarray, marker: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Watershed by immersion, quantised to ``FLOOD_LEVELS``: from the seeds, labels grow one pixel at a
    time into ``inside`` pixels whose marker is at or above the current level, level by level downwards,
    so touching cells split along the valley of the marker between their centres. Every ``inside`` pixel
    connected to a seed ends labelled."""
    labels = seeds.astype(np.int32)
    for level in FLOOD_LEVELS:
        allowed = inside & (marker >= level)
        while True:
            grown = ndimage.grey_dilation(labels, footprint=CROSS)
            new = allowed & (labels == 0) & (grown > 0)
            if not new.any():
                break
            labels = np.where(new, grown, labels)
    return labels


class UnetDetector:
    """Loaded, sha256-checked detector; ``detect`` takes tiles at ``mpp`` and returns boxes in tile pixels."""

    def __init__(self, network: torch.nn.Module, config: dict[str, Any], record: ModelRecord, device: str):
        self.config = config
        self.mpp = Mpp(config["mpp"])
        self.tile_size = int(config["tile_size"])
        self.record = record
        self.device = torch.device(device)
        self.post = PostProcess.from_config(config)
        self._stride = stride_of(config)
        self.network = fuse_batchnorm(network.eval()).to(self.device, memory_format=torch.channels_last)

    @classmethod
    def load(cls, models_dir: Path | None = None, device: str | None = None) -> UnetDetector:
        state, config, record = load_weights(models_dir or default_models_dir(), NAME)
        network = build_network(config)
        network.load_state_dict(state)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        log.info("loaded %s %s (%s…) on %s", NAME, record.version, record.sha256[:12], device)
        return cls(network, config, record, device)

    def probabilities(self, tiles: np.ndarray) -> np.ndarray:
        """(B, 2, H, W) float32 foreground and marker probabilities of (B, H, W, 3) uint8 RGB tiles."""
        h, w = tiles.shape[1:3]
        x = to_input(pad_to_stride(tiles, self._stride), self.config, self.device)
        with torch.inference_mode(), torch.autocast(
            "cuda", dtype=torch.float16, enabled=self.device.type == "cuda"
        ):
            prob = torch.sigmoid(self.network(x).float())
        return prob[:, :, :h, :w].cpu().numpy()

    def detect(self, tiles: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """tiles: (B, H, W, 3) uint8 RGB at ``self.mpp``. Per tile: boxes (N, 4) x0, y0, x1, y1 in tile
        pixels and scores (N,)."""
        tiles = tile_batch(tiles)
        if len(tiles) == 0:
            return []
        prob = self.probabilities(tiles)
        return [self.post.boxes(p[0], p[1]) for p in prob]

