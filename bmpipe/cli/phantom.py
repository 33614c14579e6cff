"""``bmpipe phantom``: synthetic marrow smears and fields with exact ground truth."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bmpipe.cli.options import positive_int

log = logging.getLogger("bmpipe")


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


def register(sub: argparse._SubParsersAction) -> None:
    phantom = sub.add_parser("phantom", help="synthetic marrow smears with exact ground truth")
    psub = phantom.add_subparsers(dest="kind", required=True)
    ps = psub.add_parser("slide", help="a pyramidal TIFF slide and OUT.truth.json")
    ps.add_argument("out", type=Path, help="the slide to write (a .tiff)")
    ps.add_argument("--cells", type=positive_int, default=1500, help="nucleated cells in the readable monolayer")
    ps.add_argument("--blast-pct", type=float, default=5.0, help="blasts, %% of nucleated cells")
    ps.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    ps.set_defaults(func=_phantom_slide)
    pf = psub.add_parser("fields", help="1000× field images with YOLO labels, masks and cell classes")
    pf.add_argument("outdir", type=Path, help="the folder to write the fields into")
    pf.add_argument("--n", type=positive_int, default=20, help="fields to draw")
    pf.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    pf.set_defaults(func=_phantom_fields)
