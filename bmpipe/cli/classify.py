"""``bmpipe classify IMAGES... --out preds.csv``: classify single-cell images (files or folders) into a CSV.

Each image is resampled from its µm/px to the classifier's and cut (or mirror-padded) to the model's fixed
physical crop around its centre, so a cell photographed at any magnification is seen at the size the network
learned. That µm/px is checked against the red cells around the cells (where the crops hold whole ones), or
measured on them with ``--mpp auto``. Images are read and classified a batch at a time (GPU with mixed
precision when present); an image that cannot be used gets one error line naming it, and the others are still
classified.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from bmpipe.cli.options import add_batch_size, add_device, add_models, add_mpp, add_out, exit_status
from bmpipe.errors import InputError
from bmpipe.resolution import Mpp

if TYPE_CHECKING:
    from bmpipe.nn.cell_classifier import CellClassifier

log = logging.getLogger(__name__)


def _inputs(items: list[Path]) -> tuple[list[Path], int]:
    """Image files named or found under the given folders, and how many arguments could not be used."""
    from bmpipe.datasets.cell_data import image_files

    files, bad = [], 0
    for item in items:
        try:
            found = image_files(item)
        except InputError as exc:
            log.error("%s", exc)
            bad += 1
            continue
        if not found:
            log.error("%s", InputError(item, "folder holds no images (.jpg, .png, .tif, .bmp)"))
            bad += 1
        files += found
    return files, bad


def classify_files(clf: CellClassifier, files: list[Path], mpp: Mpp | None, out: Path, batch_size: int) -> int:
    """Write ``image,label,score,p_<code>...`` for every usable file; returns how many could not be used."""
    from bmpipe.report.spreadsheet import SafeWriter

    failed = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = SafeWriter(f)
        writer.writerow(["image", "label", "score", *(f"p_{c}" for c in clf.codes)])
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            crops, kept = clf.crops_from_files(chunk, mpp)
            failed += len(chunk) - len(kept)
            if not kept:
                continue
            pred = clf.predict(crops, batch_size=batch_size, grade_neutrophils=False)
            for j, i in enumerate(kept):
                writer.writerow([str(chunk[i]), pred.label[j], f"{pred.label_score[j]:.4f}",
                                 *(f"{p:.4f}" for p in pred.probs[j])])
    return failed


def images_mpp(where: Path, files: list[Path], mpp: float | str | None) -> Mpp | None:
    """The µm/px to classify ``files`` at: ``mpp`` checked against their red cells (a warning where they
    disagree), measured on them for ``auto``, or None (each image's own metadata)."""
    from bmpipe.stages.calibrate import AUTO, cell_images_red_cells, check_cell_images_mpp, measured_mpp

    if mpp is None or not files:
        return None
    if mpp == AUTO:
        return measured_mpp(where, cell_images_red_cells(files), InputError).mpp
    check_cell_images_mpp(where, files, Mpp(mpp), auto=True)
    return Mpp(mpp)


def _classify(args: argparse.Namespace) -> int:
    from bmpipe.nn.cell_classifier import CellClassifier
    from bmpipe.nn.weights import default_models_dir

    files, bad = _inputs(args.images)
    try:
        where = args.images[0] if len(args.images) == 1 else Path(os.path.commonpath([p.absolute() for p in args.images]))
        mpp = images_mpp(where, files, args.mpp)
    except InputError as exc:
        log.error("%s", exc)
        return exit_status(0, len(files) + bad)
    clf = CellClassifier.load(args.models or default_models_dir(), device=args.device)
    failed = classify_files(clf, files, mpp, args.out, args.batch_size)
    log.info("classified %d of %d images with classifier %s → %s", len(files) - failed, len(files),
             clf.record.version, args.out)
    return exit_status(len(files) - failed, failed + bad)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="classify single-cell images into a CSV of labels and probabilities")
    p.add_argument("images", nargs="+", type=Path, help="image files or folders of them (searched recursively)")
    add_out(p, "CSV to write: image,label,score,p_<code>...")
    add_mpp(p, "µm per pixel of the images, or 'auto' to measure it on the red cells around their cells "
               "(required unless each is a TIFF that carries it). A number is checked against the red cells, "
               "and a disagreement over 25%% is warned of", auto=True)
    add_models(p)
    add_device(p)
    add_batch_size(p, 256)
    p.set_defaults(func=_classify)
