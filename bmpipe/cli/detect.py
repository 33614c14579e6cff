"""``bmpipe detect``: nucleated cells of field images (or folders of them) as a CSV of boxes.

Each image is read whole as one field (no smear zones: a photograph at 1000× is monolayer by choice),
resampled to the detector's µm/px, cut into the detection stage's overlapping tiles when larger than one,
and each cell is kept once, by the tile that owns its centre. Boxes are written in the input image's own
pixels: ``image,x0,y0,x1,y1,score``, the format ``shared/tools/eval_detect.py`` scores. A photograph carries
no µm/px, so ``--mpp`` is needed; an image that cannot be used is reported in one line and skipped.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bmpipe.cli.options import add_detector, add_device, add_models, add_mpp, add_out, exit_status
from bmpipe.errors import InputError
from bmpipe.report.spreadsheet import SafeWriter
from bmpipe.slide.opener import IMAGE_SUFFIXES, images_in

log = logging.getLogger(__name__)


def expand(inputs: list[Path]) -> list[Path]:
    """Images given directly, and the images inside folders given (sorted, not recursive)."""
    out = []
    for p in inputs:
        if p.is_dir():
            found = images_in(p)
            if not found:
                log.error("%s", InputError(p, f"holds no field image ({', '.join(sorted(IMAGE_SUFFIXES))})"))
            out += found
        else:
            out.append(p)
    return out


def _detect(args: argparse.Namespace) -> int:
    from bmpipe.models import load_detector
    from bmpipe.slide import open_slide
    from bmpipe.stages.detect import detect_cells
    from bmpipe.stages.regions import whole_field

    if args.mpp is None:
        raise InputError(args.images[0], "--mpp is needed: field photographs do not carry their µm/px")
    mpp = args.mpp
    detector = load_detector(args.detector, args.models, args.device)
    images = expand(args.images)
    failed = 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        out = SafeWriter(f)
        out.writerow(["image", "x0", "y0", "x1", "y1", "score"])
        for path in images:
            try:
                slide = open_slide(path, mpp)
                cells = detect_cells(slide, whole_field(slide), detector)
            except InputError as exc:  # one line naming the file; the other images go on
                log.error("%s", exc)
                failed += 1
                continue
            w, h = slide.dimensions  # the last tile may reach past the image: clip boxes to it
            for box, score in zip(cells.boxes().clip(0, [w, h, w, h]), cells.score):
                out.writerow([str(path), *(f"{v:.1f}" for v in box), f"{score:.4f}"])
            log.info("%s: %d nucleated cells", path, len(cells))
    log.info("wrote %s (%d images, %d failed) with detector-%s", args.out, len(images) - failed, failed,
             args.detector)
    return exit_status(len(images) - failed, failed)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="detect nucleated cells in field images; write a CSV of boxes")
    p.add_argument("images", nargs="+", type=Path, help="field images, or folders of them")
    add_out(p, "CSV to write: image,x0,y0,x1,y1,score")
    add_mpp(p, "µm per pixel of the images (needed: photographs carry none)")
    add_detector(p)
    add_models(p)
    add_device(p)
    p.set_defaults(func=_detect)
