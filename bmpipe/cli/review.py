"""``bmpipe review import``: a hematologist's corrections back into a slide's differential and report;
``bmpipe review serve``: a slide's ``review.html`` served on 127.0.0.1, saving each relabel as it is made."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bmpipe.cli.options import add_port

log = logging.getLogger("bmpipe")


def _import(args: argparse.Namespace) -> int:
    from bmpipe.report.review import import_review

    folder = import_review(args.folder, args.review)
    log.info("reviewed report: %s", folder / "report.html")
    log.info("retraining list: %s", folder.parent / "corrections.csv")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from bmpipe.report.review_server import review_server

    server = review_server(args.folder, args.port)
    log.info("reviewing %s at http://127.0.0.1:%d/ (corrections saved to its review.csv; Ctrl-C stops)",
             args.folder, server.server_address[1])
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopped; apply the review with: bmpipe review import %s", args.folder)
    finally:
        server.server_close()
    return 0


def _add_slide_folder(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", type=Path, metavar="OUT_SLIDE_DIR", help="a slide's output folder")


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
    _add_slide_folder(imp)
    imp.add_argument("--review", type=Path, default=None, help="the edited review file (default: its review.csv)")
    imp.set_defaults(func=_import)
    serve = actions.add_parser(
        "serve",
        help="serve a slide's review.html on 127.0.0.1, saving each relabel to its review.csv",
        description="Serves OUT_SLIDE_DIR/review.html (every cell by class, least confident first) on "
                    "127.0.0.1 only. Each relabel (a click, a drag or a class key) is saved at once to "
                    "OUT_SLIDE_DIR/review.csv and the differential, intervals and findings beside the cells "
                    "are recomputed as the report computes them; `bmpipe review import OUT_SLIDE_DIR` then "
                    "rewrites the report as verified.",
    )
    _add_slide_folder(serve)
    add_port(serve)
    serve.set_defaults(func=_serve)
