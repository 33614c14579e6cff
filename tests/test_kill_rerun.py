"""``bmpipe run`` killed with SIGKILL mid-slide and after its first slide, then rerun: the final outputs equal
an uninterrupted run's, the finished slide is not redone, and no folder ever holds a half-written report."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from batch_slides import (
    BROKEN,
    assert_same_results,
    bmpipe_command,
    cli_env,
    make_inbox,
    reference_run,
    slide_files,
)

from bmpipe.cli import main

#: End-to-end runs of the real flow (minutes): `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.slow

OUTPUTS = {"report.html", "differential.json", "cells.parquet", "cells.geojson", "run.json"}
POLL_S = 0.1
PATIENCE_S = 600  # two cores shared by a whole test suite: a slide can take minutes


def start_run(inbox: Path, out: Path) -> subprocess.Popen:
    """``bmpipe run`` in its own process group, so that a kill takes its Prefect server with it."""
    return subprocess.Popen(bmpipe_command("run", str(inbox), "--out", str(out)), env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def wait_for(proc: subprocess.Popen, ready) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not ready():
        assert proc.poll() is None, f"bmpipe run ended (exit {proc.returncode}) before the kill point"
        assert time.monotonic() < deadline, "the kill point was never reached"
        time.sleep(POLL_S)


def kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def visible_folders(out: Path) -> dict[str, set[str]]:
    """Each slide folder a user would open, with the files it holds."""
    return {p.name: {f.name for f in p.iterdir()} for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")}


#: When, within half a second of the first outputs appearing, the run is killed: seeded, so every run of the
#: test kills at the same moments.
KILL_DELAY = random.Random(20261205)


@pytest.fixture(scope="module")
def killed_mid_slide(tmp_path_factory):
    """A run killed at a random moment while its first slide's outputs are being written (its cell files from
    the start of detection, then the report): (inbox, out, folders).

    That is when a non-atomic writer would leave a folder with some files and not others.
    """
    root = tmp_path_factory.mktemp("killed")
    inbox, out = make_inbox(root / "inbox", slide_files(tmp_path_factory)), root / "out"
    proc = start_run(inbox, out)
    wait_for(proc, lambda: any(out.glob(".marrow-a.*.partial/*")))  # the first slide's outputs are being written
    time.sleep(KILL_DELAY.uniform(0.0, 0.5))
    kill(proc)
    return inbox, out, visible_folders(out)


def test_a_run_killed_mid_slide_leaves_no_half_written_folder(killed_mid_slide):
    _, _, folders = killed_mid_slide
    for name, files in folders.items():
        assert OUTPUTS <= files, f"{name} is half-written: {sorted(files)}"


def test_killed_after_the_first_slide_the_rerun_finishes_the_rest_without_redoing_it(killed_mid_slide,
                                                                                      tmp_path_factory):
    inbox, out, _ = killed_mid_slide
    proc = start_run(inbox, out)  # resumes the run killed mid-slide, and is killed in turn
    wait_for(proc, lambda: (out / "marrow-a" / "run.json").exists())
    kill(proc)
    assert not (out / "marrow-b").exists() or OUTPUTS <= {f.name for f in (out / "marrow-b").iterdir()}
    first = (out / "marrow-a" / "run.json").stat().st_mtime_ns

    assert main(["run", str(inbox), "--out", str(out)]) == 1  # the broken file still fails
    manifest = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    status = dict(zip(manifest.slide.map(lambda p: Path(p).name), manifest.status))
    assert status == {"marrow-a.tiff": "skipped", "marrow-b.tiff": "ok", BROKEN: "failed"}
    assert (out / "marrow-a" / "run.json").stat().st_mtime_ns == first
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.is_dir()]  # staging swept

    _, reference, _ = reference_run(tmp_path_factory)
    assert set(visible_folders(out)) == set(visible_folders(reference)) == {"marrow-a", "marrow-b"}
    for name in ("marrow-a", "marrow-b"):
        assert_same_results(out / name, reference / name)
