"""The tile batches both detectors take: checked as RGB, and edge-padded to the network's stride."""

from __future__ import annotations

import numpy as np


def tile_batch(tiles: np.ndarray) -> np.ndarray:
    """``tiles`` as a (B, H, W, 3) uint8 RGB array, or a ValueError saying what it is instead."""
    tiles = np.asarray(tiles)
    if tiles.ndim != 4 or tiles.shape[-1] != 3 or tiles.dtype != np.uint8:
        raise ValueError(f"tiles must be (B, H, W, 3) uint8 RGB, got {tiles.shape} {tiles.dtype}")
    return tiles


def pad_to_stride(tiles: np.ndarray, stride: int) -> np.ndarray:
    """Tiles padded at the bottom and right to a multiple of ``stride``; edge padding keeps the border looking
    like slide, not like a black frame. Outputs beyond the original height and width are to be cut off."""
    h, w = tiles.shape[1:3]
    ph, pw = -h % stride, -w % stride
    if ph or pw:
        tiles = np.pad(tiles, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    return tiles
