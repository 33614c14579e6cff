"""``bmpipe bench`` on one tiny phantom slide: the JSON a run leaves and its values make sense."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bmpipe import benchmark
from bmpipe.cli import main


@pytest.mark.slow
def test_bench_writes_one_row_per_size_with_sane_values(tmp_path, capsys):
    assert main(["bench", "--out", str(tmp_path), "--sizes", "60", "--threads", "2", "--max-cells", "5"]) == 0
    rows = json.loads((tmp_path / "bench.json").read_text())
    assert len(rows) == 2 and rows[0]["max_cells"] is None and rows[1]["max_cells"] == 5
    assert rows[1]["phantom_cells"] == 60 and rows[1]["slide"] == rows[0]["slide"]
    assert "time to a 5-cell report on phantom-60.tiff" in capsys.readouterr().out.replace(",", "")
    row = rows[0]
    assert {"cells", "megapixels", "wall_s", "models_alone_s", "peak_rss_mb", "stages"} <= row.keys()
    assert row["cells"] > 10 and row["phantom_cells"] == 60
    assert row["blast_ci95"][0] <= row["blast_pct"] <= row["blast_ci95"][1]
    assert 1 < row["megapixels"] < 100
    assert 0 < row["models_alone_s"] and 0 < row["wall_s"]
    # the seconds are written to 0.01 s: the ratio recomputed from them is off by at most that rounding
    rounding = row["ratio"] * (0.005 / row["wall_s"] + 0.005 / row["models_alone_s"]) + 0.0005
    assert abs(row["ratio"] - row["wall_s"] / row["models_alone_s"]) <= rounding
    assert set(row["stages"]) == {"regions", "detect+classify", "aggregate"}
    assert all(v >= 0 for v in row["stages"].values())
    assert sum(row["stages"].values()) <= row["wall_s"] * 1.01
    assert row["peak_rss_mb"] > 0  # its size is the benchmark's figure, not a test's bound
    assert row["tiles"]["tiles_read"] >= 1
    # the reads done again alone, and what is left of the CPU time once they and the models are taken out
    assert 0 < row["reads_alone_s"] and 0 < row["reads_alone_cpu_s"]
    left = row["cpu_s"] - row["models_alone_cpu_s"] - row["reads_alone_cpu_s"]
    assert abs(row["other_cpu_s"] - left) <= 0.02
    assert (tmp_path / "slides" / "phantom-60.tiff").exists()
    assert row["spill_mb"] > 0 and not list(Path(row["spill_dir"]).glob("bmpipe-bench-spill-*"))
    assert row["stream"]["write cells"] >= 0 and not list(tmp_path.glob("bmpipe-bench-cells-*"))


def test_a_measuring_process_reports_its_own_peak_memory_not_its_parents():
    """Linux's ru_maxrss survives exec: a child of a 1.5 GB parent would report 1.5 GB for itself."""
    held = np.ones(1_500_000_000 // 8)  # resident in this (the parent) process
    child = subprocess.run([sys.executable, "-c", "from bmpipe.benchmark import peak_rss; print(peak_rss())"],
                           capture_output=True, text=True, check=True)
    assert held.sum() > 0 and int(child.stdout) < 500 * 2**20


def test_batches_are_spilled_in_memory_only_when_there_is_room(tmp_path, monkeypatch):
    memory, disk = tmp_path / "shm", tmp_path / "out"
    monkeypatch.setattr(benchmark, "MEMORY_SCRATCH", memory)
    assert benchmark.spill_folder(100, disk) == disk  # no memory-backed folder
    memory.mkdir()
    assert benchmark.spill_folder(100, disk) == memory
    free = shutil.disk_usage(memory).free
    assert benchmark.spill_folder(free / benchmark.SPILL_BYTES_PER_PX / 1e6, disk) == disk
