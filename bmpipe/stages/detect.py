"""Stage 2: nucleated cells detected on overlapping tiles, each counted once in slide coordinates.

Tiles are read ahead on reader threads (see ``bmpipe.stages.reading``) and judged there: empty glass and
out-of-focus tiles (``bmpipe.imaging.quality``) are counted and never reach the detector. A slide whose
analysed area is out of focus everywhere is refused with a clear error rather than reported as acellular.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from bmpipe.errors import InputError
from bmpipe.imaging.boxes import iou_matrix
from bmpipe.imaging.quality import FocusGate, QualityThresholds, TileQuality, tile_focus
from bmpipe.imaging.tiles import Tile, tile_grid
from bmpipe.nn.detector import Detector
from bmpipe.records import Cells
from bmpipe.resolution import Mpp
from bmpipe.slide import Slide
from bmpipe.stages.batching import BatchBuffer, StageClock
from bmpipe.stages.reading import DEFAULT_WORKERS, SlideReaders
from bmpipe.stages.regions import SmearMap

log = logging.getLogger(__name__)


@dataclass
class TileStats:
    """Tiles of the analysed area: all read, and those dropped before detection (empty glass, out of focus)."""

    tiles_planned: int = 0
    tiles_read: int = 0
    tiles_empty: int = 0
    tiles_blurred: int = 0


#: Overlap between tiles in micrometres: wider than twice the radius of the largest nucleated cell counted
#: whole (a promyelocyte, up to ~25 µm), see bmpipe.imaging.tiles. Megakaryocytes, larger, are not counted.
OVERLAP_UM = 30.0
#: Two tiles see a cell on their shared core border a pixel or two apart, so each may put its centre on its
#: own side; cells kept within this distance of a core border are remembered so that such a cell counts once.
BORDER_SLACK_UM = 4.0
#: Tiles read spread over the slide before detection starts, to learn what "sharp" is on this slide.
FOCUS_SAMPLE_TILES = 32
#: A count stopped early (``--max-cells``) draws its tiles from blocks of this many tiles a side in turn.
SAMPLE_BLOCK = 3
#: Detector batches read ahead of the one being detected.
READ_AHEAD_BATCHES = 2
#: Trimmed tiles' sides are multiples of this (tile px), a multiple of both detectors' stride (32) so that no
#: tile is padded. Coarse on purpose: each new input shape makes the CPU backend build and keep kernels and
#: buffers for it. On the 20,000-cell phantom, peak memory was 1,724 MB untrimmed, 2,034 MB with 32-px steps
#: (42 shapes) and 1,854 MB with 128-px steps (12 shapes), for 13% against 10% fewer pixels detected.
TRIM_MULTIPLE_PX = 128


@dataclass(frozen=True)
class DetectedTile:
    """A tile's own cells (centre in its core and in the analysed area), in level-0 pixels."""

    tile: Tile
    cells: Cells


def plan_tiles(slide: Slide, smear: SmearMap, detector: Detector) -> list[Tile]:
    """The tiles whose cores hold analysed area, each trimmed to that area plus half the overlap.

    A cell counted by a tile has its centre in the analysed part of the tile's core, and its radius is under
    half the overlap, so the trimmed tile still sees it whole. Along the smear's border, where the analysed
    area crosses a core in a strip, this spares the detector (and the reader) the rest of the tile: on phantom
    slides the detector sees a quarter fewer pixels on a 2,000-cell slide and a tenth fewer on larger ones, so
    its work per counted cell no longer grows as slides get smaller.
    """
    scale = slide.mpp.factor_to(detector.mpp)
    overlap_px = round(detector.mpp.px(OVERLAP_UM))
    margin = overlap_px * scale / 2
    w, h = slide.dimensions
    tiles = []
    for tile in tile_grid(w, h, scale, detector.tile_size, overlap_px):
        box = smear.analysed_box(*tile.core)
        if box is not None:
            tiles.append(tile.trimmed(box.grown(margin), TRIM_MULTIPLE_PX))
    return tiles


def sampling_order(tiles: list[Tile], seed: int, block: int = SAMPLE_BLOCK) -> list[int]:
    """The tiles' indices in a seeded random order that stays spread over the smear: tiles are grouped in
    blocks of ``block`` × ``block`` grid places, the blocks visited in turn (in a shuffled order) and each
    block's tiles in a shuffled order, so that the first k tiles of any count come from k different blocks
    while there are blocks left. A count stopped early is then a sample of the whole smear, not of one end."""
    rng = np.random.default_rng(seed)
    if not tiles:
        return []
    side = max(t.core[2] - t.core[0] for t in tiles) * block
    strata: dict[tuple[int, int], list[int]] = {}
    for i, t in enumerate(tiles):
        strata.setdefault((int(t.core[0] // side), int(t.core[1] // side)), []).append(i)
    queues = [list(rng.permutation(members)) for members in strata.values()]
    queues = [queues[k] for k in rng.permutation(len(queues))]
    order: list[int] = []
    while queues:
        order += [int(q.pop()) for q in queues]
        queues = [q for q in queues if q]
    return order


def read_tile(slide: Slide, tile: Tile, mpp: Mpp) -> np.ndarray:
    return slide.read_region(tile.x0, tile.y0, tile.width_px, tile.height_px, mpp)


def read_and_measure(
    slide: Slide, tile: Tile, mpp: Mpp, quality: QualityThresholds
) -> tuple[np.ndarray, float | None]:
    """A tile's image and its ``tile_focus`` (on a reader thread: the measure costs as much as a decode)."""
    image = read_tile(slide, tile, mpp)
    return image, tile_focus(image, mpp, quality)


def focus_gate(
    tiles: list[Tile], mpp: Mpp, readers: SlideReaders, quality: QualityThresholds
) -> tuple[FocusGate, dict[int, tuple[np.ndarray, float | None]]]:
    """The slide's focus threshold, from up to ``FOCUS_SAMPLE_TILES`` tiles spread evenly over the plan, and
    those tiles' images and focus by plan index (kept so they are neither read nor measured twice)."""
    picks = np.unique(np.linspace(0, len(tiles) - 1, min(FOCUS_SAMPLE_TILES, len(tiles))).round().astype(int))
    sample = list(
        readers.map_ahead(
            lambda s, t: read_and_measure(s, t, mpp, quality), [tiles[i] for i in picks], len(picks)
        )
    )
    return FocusGate.from_focus([score for _, score in sample], quality), dict(zip(picks.tolist(), sample))


def detected_tiles(
    slide: Slide,
    smear: SmearMap,
    detector: Detector,
    readers: SlideReaders,
    stats: TileStats,
    batch_size: int = 4,
    quality: QualityThresholds | None = None,
    clock: StageClock | None = None,
    sample_seed: int | None = None,
) -> Iterator[DetectedTile]:
    """Each usable tile with the cells it owns, in plan order (or, with ``sample_seed``, in that seed's
    :func:`sampling_order`, for a count that may stop early); ``stats`` counts tiles as they are judged, also
    when the caller stops early.

    Raises InputError once all tiles are read if every non-empty one was out of focus.
    """
    quality = quality or QualityThresholds()
    clock = clock or StageClock()
    tiles = plan_tiles(slide, smear, detector)
    log.info("%s: %d tiles of up to %d px at %s", slide.id, len(tiles), detector.tile_size, detector.mpp)
    stats.tiles_planned += len(tiles)
    if not tiles:
        return
    with clock("focus sample"):
        gate, sampled = focus_gate(tiles, detector.mpp, readers, quality)
    log.debug("%s: focus threshold %.3f (slide reference %s)", slide.id, gate.threshold, gate.reference)

    def read_and_judge(handle: Slide, index: int) -> tuple[Tile, np.ndarray, TileQuality]:
        tile = tiles[index]
        image, score = sampled.pop(index, None) or read_and_measure(handle, tile, detector.mpp, quality)
        return tile, image, gate.verdict(score)

    ledger = BorderLedger(slide.mpp.px(BORDER_SLACK_UM))
    buffer = BatchBuffer()
    order = range(len(tiles)) if sample_seed is None else sampling_order(tiles, sample_seed)
    judged = readers.map_ahead(read_and_judge, order, READ_AHEAD_BATCHES * batch_size + 1)
    counts = TileStats()
    try:
        yield from _detect_in_batches(judged, detector, batch_size, buffer, ledger, smear, counts, clock)
    finally:  # also when the caller stops early: the tiles judged so far are the count's
        stats.tiles_read += counts.tiles_read
        stats.tiles_empty += counts.tiles_empty
        stats.tiles_blurred += counts.tiles_blurred
    log.info(
        "%s: %d tiles read, %d empty, %d out of focus",
        slide.id, counts.tiles_read, counts.tiles_empty, counts.tiles_blurred,
    )
    if counts.tiles_blurred and counts.tiles_blurred == counts.tiles_read - counts.tiles_empty:
        raise InputError(
            slide.path,
            f"out of focus: all {counts.tiles_blurred} tiles of the analysed area are blurred "
            f"(sharpness under {gate.threshold:.2f} at {detector.mpp}; in-focus smears measure 0.3-0.6); "
            "rescan the slide",
        )


def _detect_in_batches(judged: Iterator[tuple[Tile, np.ndarray, TileQuality]], detector: Detector,
                       batch_size: int, buffer: BatchBuffer, ledger: BorderLedger, smear: SmearMap,
                       counts: TileStats, clock: StageClock) -> Iterator[DetectedTile]:
    """The judged tiles' cells, detected ``batch_size`` usable tiles at a time, ``counts`` kept as they come."""
    batch: list[tuple[Tile, np.ndarray]] = []
    while True:
        with clock("wait for tiles"):
            item = next(judged, None)
        if item is not None:
            tile, image, verdict = item
            counts.tiles_read += 1
            counts.tiles_empty += verdict.empty
            counts.tiles_blurred += verdict.blurred
            if verdict.usable:
                batch.append((tile, image))
        if batch and (len(batch) == batch_size or item is None):
            with clock("detector"):
                found = _detect_by_shape(detector, [image for _, image in batch], buffer)
            for (tile, _), (boxes, scores) in zip(batch, found):
                yield DetectedTile(tile, ledger.admit(tile, _owned(tile, boxes, scores, smear)))
            batch = []
        if item is None:
            break


def detect_cells(
    slide: Slide,
    smear: SmearMap,
    detector: Detector,
    batch_size: int = 4,
    stats: TileStats | None = None,
    workers: int = DEFAULT_WORKERS,
) -> Cells:
    """Nucleated cells whose centres lie in the analysed area, in level-0 pixels."""
    stats = stats if stats is not None else TileStats()
    with SlideReaders(slide, workers) as readers:
        found = [d.cells for d in detected_tiles(slide, smear, detector, readers, stats, batch_size)]
    return Cells.concat(found)


def _detect_by_shape(
    detector: Detector, images: list[np.ndarray], buffer: BatchBuffer
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``detector.detect`` on each group of same-shaped images (trimmed tiles differ), results in input order."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for k, image in enumerate(images):
        groups.setdefault(image.shape, []).append(k)
    found: list[tuple[np.ndarray, np.ndarray]] = [None] * len(images)  # type: ignore[list-item]
    for members in groups.values():
        for k, result in zip(members, detector.detect(buffer.stack([images[k] for k in members]))):
            found[k] = result
    return found


def _owned(tile: Tile, boxes: np.ndarray, scores: np.ndarray, smear: SmearMap) -> Cells:
    if len(boxes) == 0:
        return Cells.empty()
    cells = Cells.from_boxes(tile.to_level0(boxes), scores)
    return cells.take(tile.owns(cells.x, cells.y) & smear.analysed_at(cells.x, cells.y))


class BorderLedger:
    """Cells kept near tile-core borders, so that a border cell seen by two tiles is counted once.

    A cell belongs to the tile whose core holds its centre, but two tiles' views of a cell on their shared
    border can differ by a pixel and each put the centre on its own side; a cell near a border that overlaps
    (IoU >= 0.5) one already kept near a border is that cell again. Kept boxes are hashed on a grid of
    ``bucket_px`` so that each look-up reads only its neighbourhood, whatever the size of the slide.
    """

    def __init__(self, slack_px: float, bucket_px: float | None = None) -> None:
        self.slack = slack_px
        self.bucket = bucket_px or 16 * slack_px
        self.kept: dict[tuple[int, int], list[np.ndarray]] = {}

    def _key(self, x: float, y: float) -> tuple[int, int]:
        return int(x // self.bucket), int(y // self.bucket)

    def _seen(self, box: np.ndarray, x: float, y: float) -> bool:
        i, j = self._key(x, y)
        nearby = [b for di in (-1, 0, 1) for dj in (-1, 0, 1) for b in self.kept.get((i + di, j + dj), ())]
        return bool(nearby) and iou_matrix(box[None], np.asarray(nearby)).max() >= 0.5

    def admit(self, tile: Tile, cells: Cells) -> Cells:
        if len(cells) == 0:
            return cells
        cx0, cy0, cx1, cy1 = tile.core
        near = np.minimum.reduce([cells.x - cx0, cx1 - cells.x, cells.y - cy0, cy1 - cells.y]) < self.slack
        keep = np.ones(len(cells), bool)
        boxes = cells.boxes()
        for k in np.flatnonzero(near):
            if self._seen(boxes[k], cells.x[k], cells.y[k]):
                keep[k] = False
            else:
                self.kept.setdefault(self._key(cells.x[k], cells.y[k]), []).append(boxes[k])
        return cells.take(keep)
