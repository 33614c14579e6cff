"""``bmpipe review import``: a hematologist's corrections back into a slide's differential and report."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("bmpipe")


def _import(args: argparse.Namespace) -> int:
    from bmpipe.report.review import import_review

    folder = import_review(args.folder, args.review)
    log.info("reviewed report: %s", folder / "report.html")
    log.info("retraining list: %s", folder.parent / "corrections.csv")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    review = sub.add_parser("review", help="import a hematologist's corrections of a slide's cell labels")
    actions = review.add_subparsers(dest="action", required=True)
    imp = actions.add_parser(
        "import",
        help="recompute a slide's differential and report from its edited review.csv",
        description="Reads OUT_SLIDE_DIR/review.csv (or --review FILE) with corrected_class filled in where the "
                    "prediction was wrong, recomputes the differential from cells.parquet, rewrites "
                    "differential.json and the reports marked as reviewed, and adds the corrected crops to "
                    "the run folder's corrections.csv and corrections/<CODE>/ for `bmpipe train classifier "
                    "--data RUN/corrections --mpp 0.25`.",
    )
    imp.add_argument("folder", type=Path, metavar="OUT_SLIDE_DIR", help="a slide's output folder")
    imp.add_argument("--review", type=Path, default=None, help="the edited review file (default: its review.csv)")
    imp.set_defaults(func=_import)
