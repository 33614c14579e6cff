"""A folder of two phantom slides and a broken file through ``bmpipe run``: isolation, manifest, records."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from batch_slides import BROKEN, assert_same_results, make_inbox, reference_run, slide_files

from flows.batch import find_jobs


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return reference_run(tmp_path_factory)


def test_two_reports_one_failure_and_a_non_zero_exit(reference):
    inbox, out, code = reference
    assert code == 1
    manifest = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    assert list(manifest.columns) == ["slide", "status", "error", "seconds", "output", "warning"]
    status = dict(zip(manifest.slide.map(lambda p: Path(p).name), manifest.status))
    assert status == {"marrow-a.tiff": "ok", "marrow-b.tiff": "ok", BROKEN: "failed"}
    failed = manifest[manifest.status == "failed"].iloc[0]
    assert str(inbox / BROKEN) in failed.error and failed.output == ""
    for row in manifest[manifest.status == "ok"].itertuples():
        folder = Path(row.output)
        assert folder.parent == out and row.seconds > 0
        assert {"report.html", "differential.json", "cells.parquet", "cells.geojson", "run.json"} <= {
            p.name for p in folder.iterdir()}
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.is_dir()]  # no staging left


def test_run_json_records_the_slide_bytes_models_and_settings(reference):
    inbox, out, _ = reference
    models = json.loads((Path(__file__).parents[1] / "models" / "manifest.json").read_text())
    for name in ("marrow-a", "marrow-b"):
        record = json.loads((out / name / "run.json").read_text())
        assert record["input_sha256"] == hashlib.sha256((inbox / f"{name}.tiff").read_bytes()).hexdigest()
        used = ("classifier", "detector-unet")  # the default detector; another one in models/ does not count
        assert record["models"] == {k: models[k]["sha256"] for k in used}
        assert record["settings"] == {"mpp": None, "regions": "readable", "detector": "unet", "deidentify": False}


def test_each_slide_publishes_its_differential_as_a_markdown_artifact(reference):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    _, out, _ = reference
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[
            "differential-marrow-a", "differential-marrow-b"])))
    assert {a.key for a in artifacts} == {"differential-marrow-a", "differential-marrow-b"}
    for artifact in artifacts:
        data = json.loads((out / artifact.key.removeprefix("differential-") / "differential.json").read_text())
        assert artifact.type == "markdown" and f"{data['n_counted']} cells counted" in artifact.data
        assert "| class | count | % | 95% CI |" in artifact.data


def test_folders_are_searched_recursively_only_when_asked(tmp_path):
    for rel in ("a.svs", "notes.txt", ".hidden.svs", "case-7/b.ndpi", "case-7/.partial/c.svs"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    assert [(j.path.name, str(j.subfolder)) for j in find_jobs([tmp_path])] == [("a.svs", ".")]
    assert [(j.path.name, str(j.subfolder)) for j in find_jobs([tmp_path], recursive=True)] == [
        ("a.svs", "."), ("b.ndpi", "case-7")]


@pytest.mark.parametrize("slots", [1, 2])
def test_gpu_slots_bound_how_many_slides_run_model_stages_at_once(slots):
    from flows.gpu import gpu_slot, set_gpu_slots

    set_gpu_slots(slots)
    inside, most, lock = [0], [0], threading.Lock()

    def model_stage():
        with gpu_slot():
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.5)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=model_stage) for _ in range(slots + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert most[0] == slots


def test_progress_bar_advances_per_stage_and_finishes(tmp_path):
    from rich.console import Console

    from flows.progress import STAGES, RichProgress

    shown = RichProgress(console=Console(file=io.StringIO(), force_terminal=True))
    with shown:
        shown.stage("marrow-a", "detect and classify")
        assert shown.bars.tasks[0].completed == STAGES.index("detect and classify")
        shown.finished("marrow-a", "done")
    assert shown.bars.tasks[0].completed == len(STAGES) and "marrow-a · done" in shown.bars.tasks[0].description


def test_a_slide_failing_in_a_stage_finishes_the_progress_bar_its_stages_opened(tmp_path_factory, tmp_path,
                                                                             monkeypatch):
    from flows import progress, slide
    from flows.batch import SlideJob, analyse_one
    from flows.slide import RunSettings

    class Shown(progress.Progress):
        def __init__(self) -> None:
            self.bars: set[str] = set()

        def stage(self, slide: str, stage: str) -> None:
            self.bars.add(slide)

        def finished(self, slide: str, status: str) -> None:
            self.bars.add(slide)

    def bug(*args):
        raise RuntimeError("a bug in a stage")

    monkeypatch.setattr(slide, "smear_regions", bug)
    inbox = make_inbox(tmp_path / "inbox", {"marrow-a": slide_files(tmp_path_factory)["marrow-a"]}, broken=False,
                       names={"marrow-a": "marrow a.tiff"})  # its id, and bar, is marrow_a
    job, shown = SlideJob(inbox / "marrow a.tiff"), Shown()
    with progress.showing(shown):
        outcome = analyse_one.fn(job, RunSettings(out_dir=tmp_path / "out"), str(job.path))
    assert outcome.status == "failed" and shown.bars == {"marrow_a"}


def test_slides_are_generated_once_per_session(tmp_path_factory):
    assert slide_files(tmp_path_factory) is slide_files(tmp_path_factory)


def test_the_slide_flow_runs_on_its_own_with_the_batch_results(reference, tmp_path_factory, tmp_path):
    from flows.slide import RunSettings, analyse_slide

    _, out, _ = reference
    folder = analyse_slide(slide_files(tmp_path_factory)["marrow-b"], RunSettings(out_dir=tmp_path))
    assert folder == tmp_path / "marrow-b" and (folder / "run.json").read_text() == (
        out / "marrow-b" / "run.json").read_text()
    assert_same_results(folder, out / "marrow-b")


def test_a_slot_left_held_by_a_killed_run_is_freed_when_the_next_local_run_starts():
    """The local server keeps slot counts in its database and leases in memory: a run killed inside the
    model stages leaves its slot counted, and without ``free_orphaned_slots`` the next run would wait forever."""
    from prefect.client.orchestration import get_client

    from flows.gpu import GPU_LIMIT, free_orphaned_slots, gpu_slot, set_gpu_slots

    set_gpu_slots(1)
    with get_client(sync_client=True) as client:  # what a killed holder leaves: a slot taken, never released
        client.increment_concurrency_slots_with_lease(names=[GPU_LIMIT], slots=1, mode="concurrency",
                                                      lease_duration=3600)
        assert client.read_global_concurrency_limit_by_name(GPU_LIMIT).active_slots == 1
        assert free_orphaned_slots() == 1
        assert client.read_global_concurrency_limit_by_name(GPU_LIMIT).active_slots == 0
    entered = threading.Event()

    def model_stage():
        with gpu_slot():
            entered.set()

    thread = threading.Thread(target=model_stage, daemon=True)
    thread.start()
    assert entered.wait(timeout=60), "the freed slot could not be taken"
