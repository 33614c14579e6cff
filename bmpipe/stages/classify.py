"""Stage 3: each detected cell classified (21 Matek classes + MGK/PLT) and scored for dysplasia.

Crops are not read one by one: ``Slide.read_regions`` reads the file once per block of neighbouring cells
and resamples each crop from it, giving the same pixels as one ``read_region`` per cell.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

from bmpipe.records import Cells
from bmpipe.resolution import Mpp
from bmpipe.slide import Slide
from bmpipe.stages.batching import BatchBuffer

log = logging.getLogger(__name__)


class Classifier(Protocol):
    mpp: Mpp
    crop_px: int

    def predict(self, crops: np.ndarray, batch_size: int = 256): ...


def read_crops(slide: Slide, cells: Cells, mpp: Mpp, crop_px: int) -> np.ndarray:
    """Crops of ``crop_px`` at ``mpp`` centred on each cell (fixed physical size, whatever the slide).

    Where a crop runs past the image's edge (common in a photographed field), the part outside is mirrored
    from the part inside, as in every crop the classifier was trained and evaluated on (``crop_centred``):
    the white a slide reads there is a look no training crop had.
    """
    return slide.read_centred(cells.x, cells.y, crop_px, mpp, mirror_outside=True)


def labelled(cells: Cells, pred) -> Cells:
    """``cells`` with the classifier's predictions for them filled in."""
    out = cells.with_labels(pred.label, pred.label_score)
    out.dysplasia_grade = np.asarray(pred.dysplasia_grade, dtype=np.int64)
    out.dysplasia_score = np.asarray(pred.dysplasia_score, dtype=np.float64)
    stain = getattr(pred, "stain_score", None)
    if stain is not None:
        out.stain_score = np.asarray(stain, dtype=np.float64)
    return out


def classify_cells(slide: Slide, cells: Cells, classifier: Classifier, batch_size: int = 256) -> Cells:
    """``cells`` with ``label``, ``label_score``, ``dysplasia_grade`` and ``dysplasia_score`` filled in."""
    done = []
    buffer = BatchBuffer()
    for chunk in cells.chunks(batch_size):
        crops = buffer.stack([read_crops(slide, chunk, classifier.mpp, classifier.crop_px)])
        done.append(labelled(chunk, classifier.predict(crops, batch_size=batch_size)))
    log.info("%s: classified %d cells", slide.id, len(cells))
    return Cells.concat(done)
