"""``bmpipe bench``: how fast the slide stages run against the models alone, and how much memory they need.

For each size a phantom slide is generated (or reused) and measured in a fresh Python process, so each
peak resident memory belongs to that size alone. In the child the models are loaded and warmed up, then the
stages run as plain functions (smear regions → streamed detection and classification, each classified batch
written to the cell files as the flow does, in a scratch folder beside ``bench.json`` → differential) and
every batch handed to a model is also spilled to a scratch file, in memory (``/dev/shm``) when there is room.
The spilling time is taken out of the wall time; spilled to disk, gigabytes of dirty pages would also be
written back by the kernel while the stages run, on the same cores, and that is not. Then the same tiles and
crops are read back and given to the models in the same batches: the sum of those model calls alone is
``models_alone_s``, the floor a streaming pipeline can approach (and the tiles/s and crops/s each model
reaches). Last, the stream's reads (each tile read and judged, the crops of the cells each tile owns) are
done again alone on one thread: ``reads_alone_s``. The CPU seconds of the run, less those of the models alone and of the reads alone, are
what the rest costs: Python between the calls, and the models slowed by sharing the cores with the readers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bmpipe.process_memory import peak_rss

log = logging.getLogger(__name__)

#: ``cells`` of the phantom slides (its nucleated cells; the slide's area grows with it), full and quick runs.
#: About 70% of a phantom's nucleated cells lie in the readable monolayer and are counted (98,839 of 140,000),
#: so the largest full size gives a slide with over 100,000 counted cells.
SIZES = (2_000, 6_000, 20_000, 150_000)
QUICK_SIZES = (250, 500, 1_000, 2_000)
#: The count timed beside the full one on the largest slide (``--max-cells``): 3,000 cells settle most questions.
SAMPLE_CELLS = 3000
SEED = 0
#: A memory-backed folder for the spilled batches (Linux's), used when it and the machine have room.
MEMORY_SCRATCH = Path("/dev/shm")
#: Spilled bytes per level-0 pixel, with margin: tiles over the analysed area and cell crops came to 6.0 GB
#: for a 15,574-Mpx phantom (0.39 bytes/px).
SPILL_BYTES_PER_PX = 0.6


def slide_for(cells: int, slides_dir: Path) -> Path:
    """The phantom slide of ``cells`` cells in ``slides_dir``, generated on first use."""
    from bmpipe.phantom import make_slide

    path = slides_dir / f"phantom-{cells}.tiff"
    if not path.exists():
        slides_dir.mkdir(parents=True, exist_ok=True)
        log.info("generating %s", path)
        make_slide(path, cells=cells, seed=SEED)
    return path


def run_benchmark(
    out_dir: Path,
    sizes: Sequence[int] = SIZES,
    slides_dir: Path | None = None,
    device: str | None = None,
    threads: int | None = None,
    sample_cells: int | None = SAMPLE_CELLS,
) -> list[dict[str, Any]]:
    """Measure every size in its own process, then the largest again stopped at ``sample_cells`` (what
    ``--max-cells`` saves: the row has ``max_cells``); write ``out_dir/bench.json`` and return its rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    slides_dir = slides_dir or out_dir / "slides"
    rows = []
    for cells in sizes:
        path = slide_for(cells, slides_dir)
        log.info("measuring %s", path)
        row = measure_in_subprocess(path, out_dir, device, threads)
        row["phantom_cells"] = cells
        rows.append(row)
        (out_dir / "bench.json").write_text(json.dumps(rows, indent=1))
    if sample_cells and sizes:
        largest = max(sizes)
        log.info("measuring %s stopped at %d cells", slide_for(largest, slides_dir), sample_cells)
        row = measure_in_subprocess(slide_for(largest, slides_dir), out_dir, device, threads, sample_cells)
        row["phantom_cells"] = largest
        rows.append(row)
        (out_dir / "bench.json").write_text(json.dumps(rows, indent=1))
    return rows


def measure_in_subprocess(path: Path, scratch: Path, device: str | None, threads: int | None,
                          max_cells: int | None = None) -> dict[str, Any]:
    command = [sys.executable, "-m", "bmpipe.benchmark", str(path), str(scratch)]
    if max_cells:
        command += ["--max-cells", str(max_cells)]
    if device:
        command += ["--device", device]
    if threads:
        command += ["--threads", str(threads)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def spill_folder(megapixels: float, fallback: Path) -> Path:
    """Where to spill a slide's batches: in memory when the folder and the machine have twice the room they
    need, else ``fallback``."""
    need = SPILL_BYTES_PER_PX * megapixels * 1e6
    if not MEMORY_SCRATCH.is_dir():
        return fallback
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return MEMORY_SCRATCH if min(shutil.disk_usage(MEMORY_SCRATCH).free, available) > 2 * need else fallback


@dataclass
class Spill:
    """Appends each batch a model is given to a raw file, and remembers the batches' shapes."""

    path: Path
    shapes: list[tuple[int, ...]] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def write(self, batch: np.ndarray) -> None:
        start, cpu = time.perf_counter(), time.process_time()
        with self.path.open("ab") as f:
            f.write(np.ascontiguousarray(batch).data)
        self.shapes.append(batch.shape)
        self.seconds += time.perf_counter() - start
        self.cpu_seconds += time.process_time() - cpu

    @property
    def items(self) -> int:
        """Tiles or crops spilled."""
        return sum(shape[0] for shape in self.shapes)

    @property
    def nbytes(self) -> int:
        return sum(int(np.prod(shape)) for shape in self.shapes)  # uint8

    def batches(self):
        offset = 0
        for shape in self.shapes:
            yield np.fromfile(self.path, np.uint8, count=int(np.prod(shape)), offset=offset).reshape(shape)
            offset += int(np.prod(shape))


class SpillingDetector:
    """The detector, with every tile batch it sees spilled first (same protocol: mpp, tile_size, detect)."""

    def __init__(self, detector, spill: Spill) -> None:
        self.inner, self.spill = detector, spill
        self.mpp, self.tile_size = detector.mpp, detector.tile_size

    def detect(self, tiles: np.ndarray):
        self.spill.write(tiles)
        return self.inner.detect(tiles)


class SpillingClassifier:
    """The classifier, with every crop batch it sees spilled first (same protocol: mpp, crop_px, predict)."""

    def __init__(self, classifier, spill: Spill) -> None:
        self.inner, self.spill = classifier, spill
        self.mpp, self.crop_px = classifier.mpp, classifier.crop_px

    def predict(self, crops: np.ndarray, batch_size: int = 256):
        self.spill.write(crops)
        return self.inner.predict(crops, batch_size=batch_size)


def warm_up(models) -> None:
    """One call of each model on a blank full batch, as a process that has analysed a slide would be: one-off
    kernel set-up and the first growth of the heap are not charged to the first slide (with batches of 1 and
    2 instead, the 2,000-cell slide's first pass took 0.8 s longer than with full ones)."""
    from bmpipe.stages.stream import CLASSIFY_BATCH, DETECT_BATCH

    size, crop = models.detector.tile_size, models.classifier.crop_px
    models.detector.detect(np.full((DETECT_BATCH, size, size, 3), 255, np.uint8))
    models.classifier.predict(np.full((CLASSIFY_BATCH, crop, crop, 3), 200, np.uint8))


def measure(path: Path, scratch: Path, device: str | None = None, max_cells: int | None = None) -> dict[str, Any]:
    """Run the stages on one slide (stopped at ``max_cells`` if given), then the models alone on the same
    batches (see module doc)."""
    from bmpipe.models import load_models
    from bmpipe.report.cell_files import CellFiles
    from bmpipe.slide import open_slide
    from bmpipe.stages.aggregate import differential
    from bmpipe.stages.batching import StageClock
    from bmpipe.stages.detect import TileStats
    from bmpipe.stages.regions import find_smear
    from bmpipe.stages.stream import detect_and_classify

    models = load_models(None, device)
    warm_up(models)
    with open_slide(path) as slide:
        megapixels = slide.dimensions[0] * slide.dimensions[1] / 1e6
    spill_dir = spill_folder(megapixels, scratch)
    log.info("spilling batches to %s", spill_dir)
    with (tempfile.TemporaryDirectory(dir=spill_dir, prefix="bmpipe-bench-spill-") as tmp,
          tempfile.TemporaryDirectory(dir=scratch, prefix="bmpipe-bench-cells-") as cells_dir):
        tiles_spill, crops_spill = Spill(Path(tmp) / "tiles.raw"), Spill(Path(tmp) / "crops.raw")
        detector = SpillingDetector(models.detector, tiles_spill)
        classifier = SpillingClassifier(models.classifier, crops_spill)
        stages, clock, tiles = {}, StageClock(), TileStats()
        start, cpu_start = time.perf_counter(), time.process_time()
        with open_slide(path) as slide:
            t = time.perf_counter()
            smear = find_smear(slide)
            stages["regions"] = time.perf_counter() - t
            t = time.perf_counter()
            with CellFiles(Path(cells_dir), slide.id) as cell_files:
                cells = detect_and_classify(slide, smear, detector, classifier, tiles, clock=clock,
                                            write_cells=cell_files.write, max_cells=max_cells)
            stages["detect+classify"] = time.perf_counter() - t - tiles_spill.seconds - crops_spill.seconds
            t = time.perf_counter()
            diff = differential(cells, slide.id)
            stages["aggregate"] = time.perf_counter() - t
        wall = time.perf_counter() - start - tiles_spill.seconds - crops_spill.seconds
        cpu = time.process_time() - cpu_start - tiles_spill.cpu_seconds - crops_spill.cpu_seconds
        clock.seconds["detector"] -= tiles_spill.seconds
        clock.seconds["classifier"] -= crops_spill.seconds
        peak_rss_mb = peak_rss() / 2**20
        detector_alone = _time_calls(models.detector.detect, tiles_spill.batches())
        classifier_alone = _time_calls(models.classifier.predict, crops_spill.batches())
    reads_alone, reads_alone_cpu = _time_reads(path, smear, models, cells)
    alone = {"detector": detector_alone[0], "classifier": classifier_alone[0]}
    models_alone = sum(alone.values())
    models_alone_cpu = detector_alone[1] + classifier_alone[1]
    return {
        "slide": path.name,
        "max_cells": max_cells,
        "device": str(models.detector.device),
        "cells": len(cells),
        # a count stopped early must give the full count's answer within its own interval
        "blast_pct": round(diff.blast_pct, 2),
        "blast_ci95": [round(v, 2) for v in diff.blast_ci95],
        "megapixels": round(megapixels, 1),
        "wall_s": round(wall, 2),
        "cells_per_s": round(len(cells) / wall, 1),
        "ms_per_cell": round(1000 * wall / max(len(cells), 1), 3),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "stages": {k: round(v, 2) for k, v in stages.items()},
        "stream": {k: round(v, 2) for k, v in clock.seconds.items()},
        "tiles": vars(tiles),
        "models_alone_s": round(models_alone, 2),
        "models_alone": {k: round(v, 2) for k, v in alone.items()},
        "tiles_per_s_alone": round(tiles_spill.items / max(alone["detector"], 1e-9), 2),
        "crops_per_s_alone": round(crops_spill.items / max(alone["classifier"], 1e-9), 1),
        "ratio": round(wall / max(models_alone, 1e-9), 3),
        "spill_s": round(tiles_spill.seconds + crops_spill.seconds, 2),
        "spill_mb": round((tiles_spill.nbytes + crops_spill.nbytes) / 1e6, 1),
        "spill_dir": str(spill_dir),
        # CPU seconds of all the process's threads: on a shared machine, less disturbed by other work than wall time.
        "cpu_s": round(cpu, 2),
        "models_alone_cpu_s": round(models_alone_cpu, 2),
        "cpu_ratio": round(cpu / max(models_alone_cpu, 1e-9), 3),
        "reads_alone_s": round(reads_alone, 2),
        "reads_alone_cpu_s": round(reads_alone_cpu, 2),
        "other_cpu_s": round(cpu - models_alone_cpu - reads_alone_cpu, 2),
    }


def _time_calls(model_call, batches) -> tuple[float, float]:
    """Wall and CPU seconds spent in ``model_call`` over ``batches`` (reading them back is not counted)."""
    wall = cpu = 0.0
    for batch in batches:
        start, cpu_start = time.perf_counter(), time.process_time()
        model_call(batch)
        wall += time.perf_counter() - start
        cpu += time.process_time() - cpu_start
    return wall, cpu


def _time_reads(path: Path, smear, models, cells) -> tuple[float, float]:
    """Wall and CPU seconds of the stream's reads, alone on one thread: each planned tile read and judged
    (``read_and_measure``), and the crops of the cells it owns (``read_crops``), as the readers did them."""
    from bmpipe.imaging.quality import QualityThresholds
    from bmpipe.slide import open_slide
    from bmpipe.stages.classify import read_crops
    from bmpipe.stages.detect import plan_tiles, read_and_measure

    detector, classifier, quality = models.detector, models.classifier, QualityThresholds()
    with open_slide(path) as slide:
        tiles = plan_tiles(slide, smear, detector)
        owned = [cells.take(tile.owns(cells.x, cells.y)) for tile in tiles]
        start, cpu_start = time.perf_counter(), time.process_time()
        for tile, own in zip(tiles, owned):
            read_and_measure(slide, tile, detector.mpp, quality)
            if len(own):
                read_crops(slide, own, classifier.mpp, classifier.crop_px)
        return time.perf_counter() - start, time.process_time() - cpu_start


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a plain-text table, one line per size (tiles/s and crops/s: the models alone), and the
    time to a report stopped at ``--max-cells`` beside the full count of the same slide."""
    full = [r for r in rows if not r.get("max_cells")]
    lines = [_size_table(full)]
    for r in rows:
        if r.get("max_cells"):
            whole = next((f for f in full if f["slide"] == r["slide"]), None)
            versus = (f" vs {whole['wall_s']:.1f} s for all {whole['cells']} cells "
                      f"(ratio {r['wall_s'] / max(whole['wall_s'], 1e-9):.2f})") if whole else ""
            lines.append(f"time to a {r['max_cells']:,}-cell report on {r['slide']}: {r['wall_s']:.1f} s for "
                         f"{r['cells']} cells ({r['tiles']['tiles_read']} of {r['tiles']['tiles_planned']} tiles)"
                         f"{versus}")
            if whole and "blast_pct" in r:
                low, high = r["blast_ci95"]
                lines.append(f"  blasts {r['blast_pct']:.1f}% (95% CI {low:.1f}-{high:.1f}) against "
                             f"{whole['blast_pct']:.1f}% in the full count")
    return "\n".join(lines)


def _size_table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'cells':>8} {'Mpx':>8} {'wall s':>8} {'cells/s':>8} {'ms/cell':>8} {'peak MB':>8} "
            f"{'models s':>9} {'ratio':>6} {'cpu ratio':>9} {'reads s':>8} {'tiles/s':>8} {'crops/s':>8}  stages (s)")
    lines = [head]
    for r in rows:
        stages = " ".join(f"{k}={v:g}" for k, v in {**r["stages"], **r["stream"]}.items())
        lines.append(
            f"{r['cells']:>8} {r['megapixels']:>8.0f} {r['wall_s']:>8.1f} {r['cells_per_s']:>8.1f} "
            f"{r['ms_per_cell']:>8.2f} {r['peak_rss_mb']:>8.0f} {r['models_alone_s']:>9.1f} {r['ratio']:>6.2f} "
            f"{r['cpu_ratio']:>9.2f} {r['reads_alone_s']:>8.1f} "
            f"{r['tiles_per_s_alone']:>8.1f} {r['crops_per_s_alone']:>8.0f}  {stages}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Child process entry: measure one slide and print its row as the last line of stdout."""
    parser = argparse.ArgumentParser(prog="python -m bmpipe.benchmark")
    parser.add_argument("slide", type=Path)
    parser.add_argument("scratch", type=Path)
    parser.add_argument("--device")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--max-cells", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    row = measure(args.slide, args.scratch, args.device, args.max_cells)
    sys.stdout.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("YOLO_OFFLINE", "1")
    sys.exit(main())
