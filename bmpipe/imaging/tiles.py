"""Overlapping tile grids in slide coordinates, and the ownership rule that counts a border cell once.

Tiles overlap by more than the largest cell a detector must see whole. Each tile *owns* the core of its
area (half the overlap trimmed on inner sides), the cores partition the slide, and a detection is kept only
by the tile that owns its centre; as a cell whose centre lies in a core is never cut by that tile's edge
(overlap/2 > cell radius), every cell is counted once and whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    """A tile: its level-0 origin, its size at the model's resolution, and the level-0 core it owns."""

    x0: float
    y0: float
    size_px: int
    scale: float  # level-0 pixels per tile pixel
    core: tuple[float, float, float, float]  # level-0 x0, y0, x1, y1 (x1/y1 exclusive)

    def to_level0(self, boxes: np.ndarray) -> np.ndarray:
        """Tile-pixel boxes (N, 4) to level-0 pixels."""
        out = np.asarray(boxes, dtype=np.float64) * self.scale
        out[:, [0, 2]] += self.x0
        out[:, [1, 3]] += self.y0
        return out

    def owns(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        cx0, cy0, cx1, cy1 = self.core
        return (x >= cx0) & (x < cx1) & (y >= cy0) & (y < cy1)


def _starts(length: float, tile: float, step: float) -> list[float]:
    if length <= tile:
        return [0.0]
    starts = list(np.arange(0.0, length - tile, step))
    starts.append(length - tile)  # last tile flush with the far edge, so nothing is left unread
    return starts


def tile_grid(
    width: int,
    height: int,
    scale: float,
    size_px: int,
    overlap_px: int,
    keep: callable | None = None,
) -> Iterator[Tile]:
    """Tiles of ``size_px`` (at a resolution ``scale`` level-0 px per px) covering a ``width``×``height`` slide.

    ``keep(x0, y0, x1, y1)`` (level-0 box) filters tiles, e.g. to those touching the readable smear.
    """
    if overlap_px * 2 >= size_px:
        raise ValueError(f"overlap {overlap_px} px must be under half the tile size {size_px} px")
    tile = size_px * scale
    step = (size_px - overlap_px) * scale
    xs, ys = _starts(width, tile, step), _starts(height, tile, step)
    for j, y0 in enumerate(ys):
        cy0 = 0.0 if j == 0 else (ys[j - 1] + tile + y0) / 2
        cy1 = float(height) if j == len(ys) - 1 else (y0 + tile + ys[j + 1]) / 2
        for i, x0 in enumerate(xs):
            cx0 = 0.0 if i == 0 else (xs[i - 1] + tile + x0) / 2
            cx1 = float(width) if i == len(xs) - 1 else (x0 + tile + xs[i + 1]) / 2
            if keep is None or keep(x0, y0, x0 + tile, y0 + tile):
                yield Tile(x0=x0, y0=y0, size_px=size_px, scale=scale, core=(cx0, cy0, cx1, cy1))
