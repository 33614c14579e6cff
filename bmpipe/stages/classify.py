"""Stage 3: each detected cell classified (21 Matek classes + MGK/PLT) and scored for dysplasia."""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

from bmpipe.records import Cells
from bmpipe.resolution import Mpp
from bmpipe.slide import Slide

log = logging.getLogger(__name__)


class Classifier(Protocol):
    mpp: Mpp
    crop_px: int

    def predict(self, crops: np.ndarray, batch_size: int = 256): ...


def read_crops(slide: Slide, cells: Cells, mpp: Mpp, crop_px: int) -> np.ndarray:
    """Crops of ``crop_px`` at ``mpp`` centred on each cell (fixed physical size, whatever the slide)."""
    half = crop_px / 2 * slide.mpp.factor_to(mpp)  # level-0 px from centre to crop edge
    out = np.empty((len(cells), crop_px, crop_px, 3), dtype=np.uint8)
    for i, (x, y) in enumerate(zip(cells.x, cells.y)):
        out[i] = slide.read_region(x - half, y - half, crop_px, crop_px, mpp)
    return out


def classify_cells(slide: Slide, cells: Cells, classifier: Classifier, batch_size: int = 256) -> Cells:
    """``cells`` with ``label``, ``label_score``, ``dysplasia_grade`` and ``dysplasia_score`` filled in."""
    done = []
    for chunk in cells.chunks(batch_size):
        crops = read_crops(slide, chunk, classifier.mpp, classifier.crop_px)
        pred = classifier.predict(crops, batch_size=batch_size)
        chunk = chunk.with_labels(pred.label, pred.label_score)
        chunk.dysplasia_grade = np.asarray(pred.dysplasia_grade, dtype=np.int64)
        chunk.dysplasia_score = np.asarray(pred.dysplasia_score, dtype=np.float64)
        done.append(chunk)
    log.info("%s: classified %d cells", slide.id, len(cells))
    return Cells.concat(done)
