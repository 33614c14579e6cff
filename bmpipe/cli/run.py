"""``bmpipe run`` and ``bmpipe demo``: the Prefect flow on slides, folders of slides, or cases of field photos."""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import ExitStack
from pathlib import Path

from bmpipe.cli.options import (
    add_detector,
    add_device,
    add_models,
    add_mpp,
    add_out,
    exit_status,
    positive_int,
)

log = logging.getLogger("bmpipe")

#: The embedded default the demo runs on: a phantom slide generated on first use, small enough for a laptop.
DEMO_SLIDE = {"cells": 1500, "blast_pct": 8.0, "seed": 2026}


def settings_from(args: argparse.Namespace):
    """The flows' settings from ``run``'s arguments (``demo`` sets those it has no option for)."""
    from bmpipe.flows.slide import RunSettings

    return RunSettings(
        out_dir=args.out, mpp=args.mpp, regions=args.regions, models_dir=args.models, device=args.device,
        detector=args.detector, deidentify=args.deidentify, gpu_slots=args.gpu_slots,
        max_cells=getattr(args, "max_cells", None),
    )


def show_progress() -> ExitStack:
    """A progress bar per slide while inside, when a person watches a terminal; nothing otherwise."""
    from bmpipe.flows import progress

    stack = ExitStack()
    if sys.stderr.isatty():
        stack.enter_context(progress.showing(stack.enter_context(progress.RichProgress())))
    return stack


def _run(args: argparse.Namespace) -> int:
    from bmpipe.flows.batch import analyse_batch, task_runner
    from bmpipe.flows.gpu import free_orphaned_slots

    settings = settings_from(args)
    free_orphaned_slots()
    batch = analyse_batch.with_options(task_runner=task_runner(args.runner, args.address, args.parallel))
    if args.case:
        return _run_cases(args, settings, batch)
    with show_progress():
        outcomes = batch(list(args.paths), settings, fields=args.fields)
    failed = [o for o in outcomes if o.status == "failed"]
    for o in outcomes:  # failures were logged, one line each, as they happened
        if o.status != "failed":
            log.info("report%s: %s", " (unchanged)" if o.status == "skipped" else "", Path(o.output) / "report.html")
    log.info("%d %s analysed, %d already done, %d failed; manifest: %s", sum(o.status == "ok" for o in outcomes),
             "case(s)" if args.fields else "slide(s)", sum(o.status == "skipped" for o in outcomes), len(failed),
             args.out / "manifest.csv")
    return 1 if failed or not outcomes else 0


def _run_cases(args: argparse.Namespace, settings, batch) -> int:
    from bmpipe.flows.case import analyse_cases

    with show_progress():
        cases = analyse_cases(list(args.paths), settings, batch)
    for case in cases:
        if case.report is not None:
            log.info("case %s: %d slide(s) pooled; case report: %s", case.case,
                     sum(o.status != "failed" for o in case.slides), case.report)
    slides = [o for case in cases for o in case.slides]
    failed = sum(o.status == "failed" for o in slides) + sum(case.report is None for case in cases)
    return exit_status(sum(case.report is not None for case in cases), failed)


def _demo(args: argparse.Namespace) -> int:
    from bmpipe.flows.resume import make_out_dir
    from bmpipe.phantom import make_slide

    make_out_dir(args.out)

    slide = args.out / "input" / "demo-marrow.tiff"
    if not slide.exists():
        log.info("generating the demo slide %s (%d cells, %.0f%% blasts)", slide, DEMO_SLIDE["cells"],
                 DEMO_SLIDE["blast_pct"])
        slide.parent.mkdir(parents=True, exist_ok=True)
        make_slide(slide, **DEMO_SLIDE)
    args.paths, args.mpp, args.regions, args.fields, args.case = [slide], None, "readable", False, False
    return _run(args)


def add_analysis_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``run``, ``demo`` and ``serve``: how slides are analysed (models, device, detector, names, GPU)."""
    add_models(p)
    add_device(p)
    add_detector(p)
    p.add_argument("--deidentify", action="store_true",
                   help="replace slide names by a keyed hash (key: $BMPIPE_DEIDENTIFY_KEY or OUT/"
                        ".bmpipe-deidentify.key) in every output and log line")
    p.add_argument("--gpu-slots", type=positive_int, default=1,
                   help="slides allowed in the model stages at once; the others read and report")


def add_run_options(p: argparse.ArgumentParser, default_out: Path | None) -> None:
    """Options of ``run`` and ``demo``: where outputs go, how slides are analysed and where they run."""
    add_out(p, "output folder: one sub-folder per slide, and manifest.csv", default_out)
    add_analysis_options(p)
    p.add_argument("--runner", choices=("threads", "dask"), default="threads",
                   help="run slides on local threads (default) or a Dask cluster")
    p.add_argument("--address", default=None,
                   help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 (default: a local cluster)")
    p.add_argument("--parallel", type=positive_int, default=1,
                   help="slides analysed at once on local threads or local Dask workers")


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="analyse slides (files or folders) with the Prefect flow")
    run.add_argument("paths", nargs="+", type=Path)
    add_mpp(run, "level-0 resolution in µm per pixel, or 'auto' to measure it on the red cells (default: the "
                 "slide's metadata; photographs need one). Either way the red cells check it, and a disagreement "
                 "over 25%% is warned of", auto=True)
    run.add_argument("--regions", choices=("readable", "all"), default="readable",
                     help="count cells in the readable monolayer only (default) or the whole smear")
    run.add_argument("--max-cells", type=positive_int, default=None, metavar="N",
                     help="stop each slide's count once N cells are counted, visiting tiles in a seeded random "
                          "order spread over the smear (default: count every cell of the analysed area)")
    kind = run.add_mutually_exclusive_group()
    kind.add_argument("--fields", action="store_true",
                      help="each folder is one case: its photographs are fields counted into one differential")
    kind.add_argument("--case", action="store_true",
                      help="each folder holds one patient's slides: each slide is analysed, and all are pooled into "
                           "OUT/<case>/case-report.html with the slides' agreement on blasts tested")
    add_run_options(run, None)
    run.set_defaults(func=_run)
    demo = sub.add_parser("demo", help="generate the sample slide if missing and analyse it")
    add_run_options(demo, Path("out/demo"))
    demo.set_defaults(func=_demo)
