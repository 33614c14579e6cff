"""The ``bmpipe`` command: run the flow on slides, make phantom slides, run the demo, train models."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from bmpipe import __version__
from bmpipe.errors import BmpipeError

log = logging.getLogger("bmpipe")

#: The embedded default the demo runs on: a phantom slide generated on first use, small enough for a laptop.
DEMO_SLIDE = {"cells": 1500, "blast_pct": 8.0, "seed": 2026}


def _setup_environment() -> None:
    """Offline, quiet third-party settings, set before prefect or ultralytics are imported."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def _run(args: argparse.Namespace) -> int:
    from flows.batch import analyse_batch
    from flows.slide import RunSettings

    settings = RunSettings(
        out_dir=args.out, mpp=args.mpp, regions=args.regions, models_dir=args.models, device=args.device
    )
    if args.fields:
        from flows.fields import analyse_fields

        for case in args.paths:
            log.info("report: %s", analyse_fields(case, settings) / "report.html")
        return 0
    outcomes = analyse_batch(list(args.paths), settings)
    failed = [o for o in outcomes if o.status != "ok"]
    for o in outcomes:
        if o.status == "ok":
            log.info("report: %s", Path(o.output) / "report.html")
        else:
            log.error("%s", o.error)
    log.info("%d slide(s) analysed, %d failed; manifest: %s", len(outcomes) - len(failed), len(failed),
             args.out / "manifest.csv")
    return 1 if failed or not outcomes else 0


def _demo(args: argparse.Namespace) -> int:
    from bmpipe.phantom import make_slide

    slide = args.out / "input" / "demo-marrow.tiff"
    if not slide.exists():
        log.info("generating the demo slide %s (%d cells, %.0f%% blasts)", slide, DEMO_SLIDE["cells"],
                 DEMO_SLIDE["blast_pct"])
        slide.parent.mkdir(parents=True, exist_ok=True)
        make_slide(slide, **DEMO_SLIDE)
    args.paths, args.mpp, args.regions, args.fields = [slide], None, "readable", False
    return _run(args)


def _phantom_slide(args: argparse.Namespace) -> int:
    from bmpipe.phantom import make_slide

    path = make_slide(args.out, cells=args.cells, blast_pct=args.blast_pct, seed=args.seed)
    log.info("wrote %s and its truth file", path)
    return 0


def _phantom_fields(args: argparse.Namespace) -> int:
    from bmpipe.phantom import write_fields

    written = write_fields(args.outdir, n=args.n, seed=args.seed)
    log.info("wrote %d fields to %s", len(written), args.outdir)
    return 0


def _train(args: argparse.Namespace) -> int:
    if args.what == "segmenter":
        from bmpipe.train.segmenter import main
    else:
        from bmpipe.train.classifier import main
    return main(args.rest) or 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bmpipe", description=__doc__)
    parser.add_argument("--version", action="version", version=f"bmpipe {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True)

    def run_options(p: argparse.ArgumentParser, default_out: Path | None) -> None:
        p.add_argument("--out", type=Path, required=default_out is None, default=default_out,
                       help="output folder: one sub-folder per slide, and manifest.csv")
        p.add_argument("--models", type=Path, default=None, help="models folder (default: the shipped models/)")
        p.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")

    run = sub.add_parser("run", help="analyse slides (files or folders) with the Prefect flow")
    run.add_argument("paths", nargs="+", type=Path)
    run.add_argument("--mpp", type=float, default=None,
                     help="level-0 resolution in µm per pixel, when the slide's metadata lacks it")
    run.add_argument("--regions", choices=("readable", "all"), default="readable",
                     help="count cells in the readable monolayer only (default) or the whole smear")
    run.add_argument("--fields", action="store_true",
                     help="each folder is one case: its photographs are fields counted into one differential")
    demo = sub.add_parser("demo", help="generate the sample slide if missing and analyse it")
    run_options(run, None)
    run_options(demo, Path("out/demo"))
    run.set_defaults(func=_run)
    demo.set_defaults(func=_demo)

    phantom = sub.add_parser("phantom", help="synthetic marrow smears with exact ground truth")
    psub = phantom.add_subparsers(dest="kind", required=True)
    ps = psub.add_parser("slide", help="a pyramidal TIFF slide and OUT.truth.json")
    ps.add_argument("out", type=Path)
    ps.add_argument("--cells", type=int, default=1500)
    ps.add_argument("--blast-pct", type=float, default=5.0)
    ps.add_argument("--seed", type=int, default=0)
    ps.set_defaults(func=_phantom_slide)
    pf = psub.add_parser("fields", help="1000× field images with YOLO labels, masks and cell classes")
    pf.add_argument("outdir", type=Path)
    pf.add_argument("--n", type=int, default=20)
    pf.add_argument("--seed", type=int, default=0)
    pf.set_defaults(func=_phantom_fields)

    train = sub.add_parser("train", help="train a model on real and phantom data")
    train.add_argument("what", choices=("segmenter", "classifier"))
    train.add_argument("rest", nargs=argparse.REMAINDER, help="options of that trainer (see its --help)")
    train.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    _setup_environment()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(levelname)s %(message)s" if not args.debug else "%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if not args.debug:  # the flow's local API server chatters on every request
        for noisy in ("httpx", "httpcore", "prefect", "uvicorn"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return args.func(args)
    except BmpipeError as exc:
        if args.debug:
            raise
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
