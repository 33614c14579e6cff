"""Stages 2 and 3 streamed together: detect on tiles read ahead, crop and classify while detection goes on.

One pass over the slide. Reader threads read and judge the next tiles while the detector runs; each tile's
cells are cropped on a reader thread (one region per block of cells, see ``read_crops``) as soon as they are
found; the crops of successive tiles are pooled and the classifier always gets full batches. Each classified
batch goes to ``write_cells`` as it comes (the flow writes the slide's cell files so). Memory is bounded by
the read-ahead, the crops waiting for a batch, and the columnar cell records themselves (~100 bytes a cell):
never the slide nor all the crops.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from bmpipe.imaging.quality import QualityThresholds
from bmpipe.nn.detector import Detector
from bmpipe.records import Cells
from bmpipe.slide import Slide
from bmpipe.stages.batching import BatchBuffer, StageClock
from bmpipe.stages.classify import Classifier, labelled, read_crops
from bmpipe.stages.detect import TileStats, detected_tiles
from bmpipe.stages.reading import DEFAULT_WORKERS, SlideReaders
from bmpipe.stages.regions import SmearMap
from bmpipe.taxonomy import load_taxonomy

log = logging.getLogger(__name__)

#: Tiles whose crops may be in flight on the readers before the main thread waits for the oldest.
CROPS_IN_FLIGHT = 8
#: Tiles per detector call and crops per classifier call, by default.
DETECT_BATCH = 4
CLASSIFY_BATCH = 256


class _Batches:
    """Crops pooled across tiles, handed to the classifier in full batches, cells kept in arrival order and
    passed on to ``write_cells`` a classified batch at a time."""

    def __init__(self, classifier: Classifier, batch_size: int, clock: StageClock,
                 write_cells: Callable[[Cells], None] | None) -> None:
        self.classifier = classifier
        self.batch_size = batch_size
        self.clock = clock
        self.write_cells = write_cells
        self.buffer = BatchBuffer()
        self.cells: list[Cells] = []
        self.crops: list[np.ndarray] = []
        self.waiting = 0
        self.done: list[Cells] = []
        self.counted = 0  # classified cells in the differential's denominator
        self._denominator = np.array(sorted(load_taxonomy().denominator_codes()), dtype=object)

    def add(self, cells: Cells, crops: np.ndarray) -> None:
        self.cells.append(cells)
        self.crops.append(crops)
        self.waiting += len(cells)
        while self.waiting >= self.batch_size:
            self._classify(self.batch_size)

    def flush(self) -> Cells:
        if self.waiting:
            self._classify(self.waiting)
        return Cells.concat(self.done)

    def _classify(self, n: int) -> None:
        cells = Cells.concat(self.cells)
        crops = self.buffer.stack(self.crops)
        with self.clock("classifier"):
            pred = self.classifier.predict(crops[:n], batch_size=self.batch_size)
        self.done.append(labelled(cells.take(np.arange(n)), pred))
        self.counted += int(np.isin(self.done[-1].label, self._denominator).sum())
        if self.write_cells is not None:
            with self.clock("write cells"):
                self.write_cells(self.done[-1])
        rest = np.arange(n, len(cells))
        self.cells = [cells.take(rest)] if len(rest) else []
        self.crops = [crops[n:].copy()] if len(rest) else []
        self.waiting = len(rest)


def detect_and_classify(
    slide: Slide,
    smear: SmearMap,
    detector: Detector,
    classifier: Classifier,
    stats: TileStats | None = None,
    *,
    detect_batch: int = DETECT_BATCH,
    classify_batch: int = CLASSIFY_BATCH,
    workers: int = DEFAULT_WORKERS,
    quality: QualityThresholds | None = None,
    clock: StageClock | None = None,
    write_cells: Callable[[Cells], None] | None = None,
    max_cells: int | None = None,
    sample_seed: int = 0,
) -> Cells:
    """Classified nucleated cells of the analysed area, in level-0 pixels and tile order.

    The same cells, in the same order, as ``classify_cells(slide, detect_cells(slide, smear, detector), ...)``.
    ``clock`` collects the seconds spent in each model and waiting for reads; ``write_cells`` is called with
    each classified batch, in that order, as soon as it is classified. With ``max_cells``, tiles are visited
    in ``sample_seed``'s spread-out random order (``detect.sampling_order``) and no new tile is started once
    that many counted cells are classified: every cell of each tile visited is kept, so the sample is of
    whole tiles drawn over the whole smear (``stats`` says how many of how many).
    """
    stats = stats if stats is not None else TileStats()
    clock = clock or StageClock()
    batches = _Batches(classifier, classify_batch, clock, write_cells)
    pending: deque[tuple[Cells, Future[np.ndarray]]] = deque()

    def take_oldest() -> None:
        cells, future = pending.popleft()
        with clock("wait for crops"):
            crops = future.result()
        batches.add(cells, crops)

    with SlideReaders(slide, workers) as readers:
        found_tiles = detected_tiles(slide, smear, detector, readers, stats, detect_batch, quality, clock,
                                     sample_seed=sample_seed if max_cells else None)
        for found in found_tiles:
            if len(found.cells):
                crops = readers.submit(read_crops, found.cells, classifier.mpp, classifier.crop_px)
                pending.append((found.cells, crops))
            while pending and (pending[0][1].done() or len(pending) > CROPS_IN_FLIGHT):
                take_oldest()
            if max_cells and batches.counted >= max_cells:
                found_tiles.close()
                log.info("%s: %d cells counted, --max-cells %d reached after %d of %d tiles", slide.id,
                         batches.counted, max_cells, stats.tiles_read, stats.tiles_planned)
                break
        while pending:
            take_oldest()
        cells = batches.flush()
    log.info("%s: detected and classified %d cells", slide.id, len(cells))
    return cells
