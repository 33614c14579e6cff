"""``bmpipe bench``: phantom slides of growing area through the stages, against the models alone."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from bmpipe.benchmark import SAMPLE_CELLS
from bmpipe.cli.options import add_device, add_out, add_threads

log = logging.getLogger("bmpipe")


def _bench(args: argparse.Namespace) -> int:
    if args.training:
        return _bench_training(args)
    if args.review:
        return _bench_review(args)
    from bmpipe.benchmark import QUICK_SIZES, SIZES, run_benchmark, table

    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    rows = run_benchmark(args.out, sizes, slides_dir=args.slides, device=args.device, threads=args.threads,
                         sample_cells=args.max_cells)
    sys.stdout.write(table(rows) + "\n")
    log.info("results: %s", args.out / "bench.json")
    return 0


def _bench_training(args: argparse.Namespace) -> int:
    from bmpipe import benchmark_training

    args.out.mkdir(parents=True, exist_ok=True)
    rows = benchmark_training.run(args.training, args.training_steps, batch_size=64, threads=args.threads or 2,
                                  scratch=args.out / "training")
    return _results(args.out / "bench-training.json", rows, benchmark_training.table(rows))


def _bench_review(args: argparse.Namespace) -> int:
    from bmpipe import benchmark_review

    args.out.mkdir(parents=True, exist_ok=True)
    row = benchmark_review.run(args.review, args.slides or args.out / "slides", args.out)
    return _results(args.out / "bench-review.json", row, benchmark_review.table(row))


def _results(path: Path, results: object, table: str) -> int:
    """Write a bench's figures to ``path`` as JSON, and print its table."""
    path.write_text(json.dumps(results, indent=1), "utf-8")
    sys.stdout.write(table + "\n")
    log.info("results: %s", path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="throughput and memory of the slide stages on phantom slides")
    add_out(p, "folder for bench.json (and generated slides)")
    p.add_argument("--quick", action="store_true", help="small slides: a few minutes on 2 cores")
    p.add_argument("--sizes", type=int, nargs="+", help="phantom cell counts to run instead of the defaults")
    p.add_argument("--slides", type=Path, help="folder of phantom slides to reuse (default OUT/slides)")
    add_device(p)
    add_threads(p, None)
    p.add_argument("--max-cells", type=int, default=SAMPLE_CELLS,
                   help="also time the largest slide stopped at this many cells, as --max-cells does "
                        "(default %(default)s; 0: not)")
    p.add_argument("--training", type=int, default=0, metavar="N",
                   help="instead of slides: time `train classifier` streaming generated Matek-layout trees of "
                        "N/10 and N images, and print crops/s and peak memory of each (default: not)")
    p.add_argument("--review", type=int, default=0, metavar="N",
                   help="instead of slides: write review.html with sheets for N cells of the largest phantom, open "
                        "it in headless Chromium and print the time to open it and to turn each page (default: not)")
    p.add_argument("--training-steps", type=int, default=200,
                   help="training steps of each --training run (default %(default)s)")
    p.set_defaults(func=_bench)
