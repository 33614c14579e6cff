"""``bmpipe evaluate resolution``: µm/px measured on red cells against the known value of each real set.

Each real set's resolution was measured independently (PBC and BCCD from their red cells at calibration,
SegPC from its burnt-in scale bar, TXL-PBC per field size; ``bmpipe.datasets.catalog``), and each phantom
slide is drawn at a chosen one. The target is every estimate within 10% of the known value.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from bmpipe.cli.options import Parser, positive_int
from bmpipe.datasets.catalog import data_root
from bmpipe.datasets.detector_data import TXL_PBC_MPP, segpc_mpp
from bmpipe.imaging.image_files import read_rgb
from bmpipe.imaging.red_cells import MppEstimate, estimate_mpp, red_cell_diameters
from bmpipe.resolution import Mpp
from bmpipe.slide import open_slide
from bmpipe.stages.calibrate import measure_mpp

TARGET = 0.10

#: Real sets: glob under the data folder, and the known µm/px of one image (None: a field size not listed).
REAL_SETS: dict[str, tuple[str, Callable[[np.ndarray], Mpp | None]]] = {
    "PBC": ("pbc/**/*.jpg", lambda rgb: Mpp(0.104)),
    "BCCD": ("bccd/BCCD/JPEGImages/*.jpg", lambda rgb: Mpp(0.083)),
    "SegPC": ("segpc/train/images/*.*", segpc_mpp),
    "TXL-PBC": ("txl_pbc/images/**/*.*", lambda rgb: TXL_PBC_MPP.get(rgb.shape[:2])),
}


def real_estimates(per_set: int = 300, seed: int = 0) -> Iterator[tuple[str, Mpp, MppEstimate | None]]:
    """(set, known µm/px, estimate) for each group of a set's images that share a known resolution."""
    for name, (pattern, known_of) in REAL_SETS.items():
        files = sorted(data_root().glob(pattern))
        random.Random(seed).shuffle(files)
        groups: dict[Mpp, list[np.ndarray]] = defaultdict(list)
        for path in files[:per_set]:
            rgb = read_rgb(path)
            known = known_of(rgb)
            if known is not None:
                groups[known].append(red_cell_diameters(rgb))
        for known, found in sorted(groups.items()):
            yield name, known, estimate_mpp(np.concatenate(found))


def phantom_estimates(folder: Path, resolutions: tuple[float, ...] = (0.1, 0.25)) -> Iterator[tuple[str, Mpp, MppEstimate | None]]:
    from bmpipe.phantom import make_slide

    for um in resolutions:
        path = make_slide(folder / f"phantom-{um:g}.tiff", cells=300, blast_pct=5.0, seed=3, mpp=Mpp(um))
        with open_slide(path) as slide:
            yield f"phantom slide at {um:g}", Mpp(um), measure_mpp(slide)


def row(name: str, known: Mpp, estimate: MppEstimate | None) -> str:
    if estimate is None:
        return f"{name:28} known {known.um_per_px:.3f}  too few isolated red cells to measure"
    off = estimate.mpp.um_per_px / known.um_per_px - 1
    verdict = "met" if abs(off) <= TARGET else "NOT MET"
    return f"{name:28} known {known.um_per_px:.3f}  {estimate}  {off:+.1%}  {verdict}"


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="bmpipe evaluate resolution", description=__doc__.splitlines()[0])
    p.add_argument("--per-set", type=positive_int, default=300, help="images read per real set")
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    lines = [f"µm/px from red cells against the known value (target: within {TARGET:.0%})"]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [*real_estimates(a.per_set), *phantom_estimates(Path(tmp))]
    lines += [row(*r) for r in rows]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
