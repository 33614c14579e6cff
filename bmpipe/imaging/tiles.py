"""Overlapping tile grids in slide coordinates, and the ownership rule that counts a border cell once.

Tiles overlap by more than the largest cell a detector must see whole. Each tile *owns* the core of its
area (half the overlap trimmed on inner sides), the cores partition the slide, and a detection is kept only
by the tile that owns its centre; as a cell whose centre lies in a core is never cut by that tile's edge
(overlap/2 > cell radius), every cell is counted once and whole.

A tile may be trimmed to the part of it that can hold the cells it is asked for (``Tile.trimmed``): where
the analysed area covers only a strip of a core, the detector need not look at the rest. The core stays.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from bmpipe.records import Box


@dataclass(frozen=True)
class Tile:
    """A tile: its level-0 origin, its size at the model's resolution, and the level-0 core it owns."""

    x0: float
    y0: float
    width_px: int
    height_px: int
    scale: float  # level-0 pixels per tile pixel
    core: tuple[float, float, float, float]  # level-0 x0, y0, x1, y1 (x1/y1 exclusive)

    @property
    def x1(self) -> float:
        return self.x0 + self.width_px * self.scale

    @property
    def y1(self) -> float:
        return self.y0 + self.height_px * self.scale

    def trimmed(self, box: Box, multiple: int = 1) -> Tile:
        """The part of this tile that holds the level-0 ``box``, on the tile's pixel grid, its sides rounded up
        to a multiple of ``multiple`` tile pixels (never past the tile) so that a model with that stride needs no
        padding. The core is kept: the trimmed tile owns the same cells, if ``box`` holds them whole."""
        x0, width = _span(self.x0, self.width_px, self.scale, box.x0, box.x1, multiple)
        y0, height = _span(self.y0, self.height_px, self.scale, box.y0, box.y1, multiple)
        return replace(self, x0=x0, y0=y0, width_px=width, height_px=height)

    def to_level0(self, boxes: np.ndarray) -> np.ndarray:
        """Tile-pixel boxes (N, 4) to level-0 pixels."""
        out = np.asarray(boxes, dtype=np.float64) * self.scale
        out[:, [0, 2]] += self.x0
        out[:, [1, 3]] += self.y0
        return out

    def owns(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        cx0, cy0, cx1, cy1 = self.core
        return (x >= cx0) & (x < cx1) & (y >= cy0) & (y < cy1)


def _span(start: float, size_px: int, scale: float, lo: float, hi: float, multiple: int) -> tuple[float, int]:
    """Origin and length (tile px) of the part of [start, start + size_px·scale) holding [lo, hi), see trimmed."""
    first = max(0, math.floor((lo - start) / scale))
    last = min(size_px, math.ceil((hi - start) / scale))
    if last <= first:
        raise ValueError(f"box [{lo}, {hi}) lies outside the tile [{start}, {start + size_px * scale})")
    length = min(size_px, math.ceil((last - first) / multiple) * multiple)
    first = min(first, size_px - length)
    return start + first * scale, length


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
) -> Iterator[Tile]:
    """Square tiles of ``size_px`` (at a resolution ``scale`` level-0 px per px) covering a ``width``×``height``
    slide, row by row."""
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
            yield Tile(x0=x0, y0=y0, width_px=size_px, height_px=size_px, scale=scale, core=(cx0, cy0, cx1, cy1))
