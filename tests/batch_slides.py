"""Two tiny phantom slides and a broken file, made once per test session, and one uninterrupted reference run.

The batch, resume, kill-and-rerun, Dask, serve, de-identification and untrusted-name tests all work on these
two slides (~120 cells each, seconds to analyse) and compare against the same reference run, so the session
generates and analyses them once.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pandas as pd

from bmpipe.phantom import make_slide

SLIDES = {"marrow-a": {"cells": 120, "blast_pct": 10.0, "seed": 3}, "marrow-b": {"cells": 120, "blast_pct": 25.0, "seed": 4}}
BROKEN = "broken.svs"
#: differential.json keys that change from one run to the next by design.
VOLATILE = {"generated"}

_made: dict[str, object] = {}


def slide_files(tmp_path_factory) -> dict[str, Path]:
    """The two phantom slides, generated once."""
    if "slides" not in _made:
        folder = tmp_path_factory.mktemp("phantoms")
        _made["slides"] = {name: make_slide(folder / f"{name}.tiff", **spec) for name, spec in SLIDES.items()}
    return _made["slides"]  # type: ignore[return-value]


def make_inbox(folder: Path, slides: dict[str, Path], broken: bool = True,
               names: dict[str, str] | None = None) -> Path:
    """A folder holding (hard links to) the slides, under ``names`` if given, and a text file named .svs."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in slides.items():
        target = folder / (names or {}).get(name, path.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy(path, target)
    if broken:
        (folder / BROKEN).write_text("not a slide")
    return folder


def reference_run(tmp_path_factory) -> tuple[Path, Path, int]:
    """``bmpipe run`` on the two slides and the broken file, uninterrupted: (inbox, out, exit code)."""
    if "reference" not in _made:
        from bmpipe.cli import main

        root = tmp_path_factory.mktemp("reference")
        inbox = make_inbox(root / "inbox", slide_files(tmp_path_factory))
        out = root / "out"
        _made["reference"] = (inbox, out, main(["run", str(inbox), "--out", str(out)]))
    return _made["reference"]  # type: ignore[return-value]


def results(folder: Path) -> tuple[dict, pd.DataFrame]:
    """What must not depend on how a slide was run: differential.json (but its timestamp) and the cells."""
    data = json.loads((folder / "differential.json").read_text("utf-8"))
    return {k: v for k, v in data.items() if k not in VOLATILE}, pd.read_parquet(folder / "cells.parquet")


def assert_same_results(folder: Path, reference: Path) -> None:
    got, cells = results(folder)
    want, ref_cells = results(reference)
    assert got == want
    pd.testing.assert_frame_equal(cells, ref_cells)


def cli_env() -> dict[str, str]:
    """Environment for a ``bmpipe`` subprocess: this Python's packages, offline, its own Prefect home."""
    env = dict(os.environ)
    env.update(YOLO_OFFLINE="1", PREFECT_SERVER_ANALYTICS_ENABLED="false", OMP_NUM_THREADS="1",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120")
    return env


def bmpipe_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "bmpipe.cli", *args]
