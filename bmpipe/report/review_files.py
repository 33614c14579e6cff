"""The review file a hematologist edits: which cells are offered, their crops, and ``review.csv``.

Not every cell is offered: per predicted class, the least confident cells (where the classifier most likely
erred) and a random sample (so that confident errors are found too), ``REVIEW_PER_CLASS`` at most. Crops are
written as ``crops/<predicted class>/<cell id>.jpg``; ``bmpipe.report.review`` reads the edited file back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from bmpipe.nn.cell_classifier import CLASSIFIER_MPP
from bmpipe.records import Cells
from bmpipe.report.figures import jpeg_bytes
from bmpipe.report.spreadsheet import SafeWriter
from bmpipe.slide import Slide
from bmpipe.taxonomy import load_taxonomy

#: Crops offered for review per predicted class: half the least confident, half a random sample.
REVIEW_PER_CLASS = 24
#: Review crops are 32 µm at the classifier's 0.25 µm/px (its stored training crop, ``cell_data.STORE_PX``),
#: so that a corrected crop is training data as it stands: ``bmpipe train classifier --data DIR --mpp 0.25``.
REVIEW_MPP = CLASSIFIER_MPP
REVIEW_PX = 128
REVIEW_COLUMNS = ("cell_id", "crop_path", "predicted_class", "score", "corrected_class", "x", "y")


def pick_per_class(
    cells: Cells, per_class: int, seed: int, ranked: Callable[[np.ndarray], np.ndarray]
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Per predicted class in taxonomy order: its code, the first ``per_class // 2`` of its rows as
    ``ranked`` orders them, and a random sample of its other rows (``per_class`` in all). The review file and
    the gallery both pick so: ranked cells show what matters, the sample what ranking alone would miss. One
    generator draws for every class, so a seed gives one choice for the whole slide."""
    rng = np.random.default_rng(seed)
    labels = cells.label.astype(str)
    for code in load_taxonomy().codes:
        idx = np.flatnonzero(labels == code)
        if len(idx) == 0:
            continue
        head = ranked(idx)[: per_class // 2]
        yield code, head, rng.permutation(np.setdiff1d(idx, head))[: per_class - len(head)]


def select_for_review(cells: Cells, per_class: int = REVIEW_PER_CLASS, seed: int = 0) -> np.ndarray:
    """Rows offered for review, per predicted class the least confident half then a random half."""
    least_sure = lambda idx: idx[np.argsort(cells.label_score[idx], kind="stable")]
    chosen = [part for _, unsure, sample in pick_per_class(cells, per_class, seed, least_sure)
              for part in (unsure, np.sort(sample))]
    return np.concatenate(chosen) if chosen else np.zeros(0, np.int64)


def review_crops(
    slide: Slide, cells: Cells, per_class: int = REVIEW_PER_CLASS, seed: int = 0, offset: int = 0
) -> dict[int, bytes]:
    """JPEG crops of the cells offered for review, keyed by cell id (row in ``cells.parquet``).

    ``offset`` is the id of the first of ``cells`` in the output, for a case whose fields are concatenated."""
    rows = select_for_review(cells, per_class, seed)
    crops = slide.read_centred(cells.x[rows], cells.y[rows], REVIEW_PX, REVIEW_MPP)
    return {offset + int(i): jpeg_bytes(crop, quality=92) for i, crop in zip(rows, crops)}


def write_review_files(
    folder: Path, cells: Cells, crops: dict[int, bytes], cell_fields: np.ndarray | None = None
) -> None:
    """``review.csv`` and its crops: the cells that have crops, or (no crops given) the selection alone.

    For a case of field photographs, a ``field`` column names the photograph each cell's x, y lie on."""
    rows = sorted(crops) if crops else [int(i) for i in select_for_review(cells)]
    with open(folder / "review.csv", "w", newline="", encoding="utf-8") as f:
        writer = SafeWriter(f)
        writer.writerow(REVIEW_COLUMNS + (("field",) if cell_fields is not None else ()))
        for i in rows:
            code = str(cells.label[i])
            path = ""
            if i in crops:
                path = f"crops/{code}/{i}.jpg"
                (folder / path).parent.mkdir(parents=True, exist_ok=True)
                (folder / path).write_bytes(crops[i])
            row = [i, path, code, f"{cells.label_score[i]:.4f}", "", f"{cells.x[i]:.1f}", f"{cells.y[i]:.1f}"]
            writer.writerow(row + ([str(cell_fields[i])] if cell_fields is not None else []))
