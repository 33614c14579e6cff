"""Stage 2: nucleated cells detected on overlapping tiles, each counted once in slide coordinates."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from bmpipe.imaging.tiles import Tile, tile_grid
from bmpipe.records import Cells
from bmpipe.resolution import Mpp
from bmpipe.slide import Slide
from bmpipe.stages.regions import SmearMap

log = logging.getLogger(__name__)


class Detector(Protocol):
    """What the detection stage needs of a model: its resolution and a batched tile detector."""

    mpp: Mpp
    tile_size: int

    def detect(self, tiles: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]: ...


@dataclass
class TileStats:
    tiles_read: int = 0
    tiles_empty: int = 0


#: Overlap between tiles in micrometres: wider than twice the radius of the largest nucleated cell counted
#: whole (a promyelocyte, up to ~25 µm), see bmpipe.imaging.tiles. Megakaryocytes, larger, are not counted.
OVERLAP_UM = 30.0


def plan_tiles(slide: Slide, smear: SmearMap, detector: Detector) -> list[Tile]:
    scale = slide.mpp.factor_to(detector.mpp)
    overlap_px = round(detector.mpp.px(OVERLAP_UM))
    w, h = slide.dimensions
    return list(tile_grid(w, h, scale, detector.tile_size, overlap_px, keep=smear.touches_analysed))


def _batches(tiles: list[Tile], size: int) -> Iterator[list[Tile]]:
    for i in range(0, len(tiles), size):
        yield tiles[i : i + size]


def detect_cells(
    slide: Slide, smear: SmearMap, detector: Detector, batch_size: int = 4, stats: TileStats | None = None
) -> Cells:
    """Nucleated cells whose centres lie in the analysed area, in level-0 pixels."""
    stats = stats if stats is not None else TileStats()
    tiles = plan_tiles(slide, smear, detector)
    log.info("%s: %d tiles of %d px at %s", slide.id, len(tiles), detector.tile_size, detector.mpp)
    found: list[Cells] = []
    for batch in _batches(tiles, batch_size):
        images = np.stack(
            [slide.read_region(t.x0, t.y0, t.size_px, t.size_px, detector.mpp) for t in batch]
        )
        stats.tiles_read += len(batch)
        for tile, (boxes, scores) in zip(batch, detector.detect(images)):
            found.append(_owned(tile, boxes, scores))
    cells = Cells.concat(found)
    return cells.take(smear.analysed_at(cells.x, cells.y))


def _owned(tile: Tile, boxes: np.ndarray, scores: np.ndarray) -> Cells:
    if len(boxes) == 0:
        return Cells.empty()
    cells = Cells.from_boxes(tile.to_level0(boxes), scores)
    return cells.take(tile.owns(cells.x, cells.y))

