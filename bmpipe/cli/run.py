"""``bmpipe run`` and ``bmpipe demo``: the Prefect flow on slides, folders of slides, or cases of field photos."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("bmpipe")

#: The embedded default the demo runs on: a phantom slide generated on first use, small enough for a laptop.
DEMO_SLIDE = {"cells": 1500, "blast_pct": 8.0, "seed": 2026}


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


def _run_options(p: argparse.ArgumentParser, default_out: Path | None) -> None:
    p.add_argument("--out", type=Path, required=default_out is None, default=default_out,
                   help="output folder: one sub-folder per slide, and manifest.csv")
    p.add_argument("--models", type=Path, default=None, help="models folder (default: the shipped models/)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="analyse slides (files or folders) with the Prefect flow")
    run.add_argument("paths", nargs="+", type=Path)
    run.add_argument("--mpp", type=float, default=None,
                     help="level-0 resolution in µm per pixel, when the slide's metadata lacks it")
    run.add_argument("--regions", choices=("readable", "all"), default="readable",
                     help="count cells in the readable monolayer only (default) or the whole smear")
    run.add_argument("--fields", action="store_true",
                     help="each folder is one case: its photographs are fields counted into one differential")
    _run_options(run, None)
    run.set_defaults(func=_run)
    demo = sub.add_parser("demo", help="generate the sample slide if missing and analyse it")
    _run_options(demo, Path("out/demo"))
    demo.set_defaults(func=_demo)
