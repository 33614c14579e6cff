"""Scale-out: the batch on a local two-worker Dask cluster gives the default runner's results.

The local cluster uses threads (``processes=False``): worker processes would each load torch and the
models again, too heavy for the test machine's two cores. Slides reach the workers as paths either way.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from batch_slides import BROKEN, assert_same_results, make_inbox, reference_run, slide_files
from prefect_dask import DaskTaskRunner

from bmpipe.cli import main
from bmpipe.flows.batch import task_runner

#: End-to-end runs of the real flow (minutes): `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.slow


def test_a_local_two_worker_dask_cluster_gives_the_same_results(tmp_path_factory, tmp_path):
    _, reference, _ = reference_run(tmp_path_factory)
    inbox = make_inbox(tmp_path / "inbox", slide_files(tmp_path_factory))
    out = tmp_path / "out"
    assert main(["run", str(inbox), "--out", str(out), "--runner", "dask", "--parallel", "2"]) == 1
    manifest = pd.read_csv(out / "manifest.csv")
    assert dict(zip(manifest.slide.map(lambda p: Path(p).name), manifest.status)) == {
        "marrow-a.tiff": "ok", "marrow-b.tiff": "ok", BROKEN: "failed"}
    for name in ("marrow-a", "marrow-b"):
        assert_same_results(out / name, reference / name)


def test_the_runner_options_reach_prefect_dask():
    local = task_runner("dask", None, parallel=2)
    assert isinstance(local, DaskTaskRunner) and local.cluster_kwargs["n_workers"] == 2
    remote = task_runner("dask", "tcp://10.0.0.5:8786")
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://10.0.0.5:8786"
