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

from bmpipe.flows.batch import find_jobs


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return reference_run(tmp_path_factory)


@pytest.mark.slow
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


@pytest.mark.slow
def test_run_json_records_the_slide_bytes_models_and_settings(reference):
    inbox, out, _ = reference
    models = json.loads((Path(__file__).parents[1] / "models" / "manifest.json").read_text())
    for name in ("marrow-a", "marrow-b"):
        record = json.loads((out / name / "run.json").read_text())
        assert record["input_sha256"] == hashlib.sha256((inbox / f"{name}.tiff").read_bytes()).hexdigest()
        used = ("classifier", "detector-unet")  # the default detector; another one in models/ does not count
        assert record["models"] == {k: models[k]["sha256"] for k in used}
        assert record["settings"] == {"mpp": None, "regions": "readable", "detector": "unet", "deidentify": False,
                                      "max_cells": None}


@pytest.mark.slow
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
    from bmpipe.flows.gpu import gpu_slot, set_gpu_slots

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

    from bmpipe.flows.progress import STAGES, RichProgress

    shown = RichProgress(console=Console(file=io.StringIO(), force_terminal=True))
    with shown:
        shown.stage("marrow-a", "detect and classify")
        assert shown.bars.tasks[0].completed == STAGES.index("detect and classify")
        shown.finished("marrow-a", "done")
    assert shown.bars.tasks[0].completed == len(STAGES) and "marrow-a · done" in shown.bars.tasks[0].description


def test_a_slide_failing_in_a_stage_finishes_the_progress_bar_its_stages_opened(tmp_path_factory, tmp_path,
                                                                             monkeypatch):
    from bmpipe.flows import progress, slide
    from bmpipe.flows.batch import SlideJob, analyse_one
    from bmpipe.flows.slide import RunSettings

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


@pytest.mark.slow
def test_the_slide_flow_runs_on_its_own_with_the_batch_results(reference, tmp_path_factory, tmp_path):
    from bmpipe.flows.slide import RunSettings, analyse_slide

    _, out, _ = reference
    folder = analyse_slide(slide_files(tmp_path_factory)["marrow-b"], RunSettings(out_dir=tmp_path))
    alone, batched = (json.loads((f / "run.json").read_text()) for f in (folder, out / "marrow-b"))
    assert alone.pop("source") != batched.pop("source")  # the batch analysed a link to it in its inbox
    assert folder == tmp_path / "marrow-b" and alone == batched
    assert_same_results(folder, out / "marrow-b")


def test_a_slot_left_held_by_a_killed_run_is_freed_when_the_next_local_run_starts():
    """The local server keeps slot counts in its database and leases in memory: a run killed inside the
    model stages leaves its slot counted, and without ``free_orphaned_slots`` the next run would wait forever."""
    from prefect.client.orchestration import get_client

    from bmpipe.flows.gpu import GPU_LIMIT, free_orphaned_slots, gpu_slot, set_gpu_slots

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


def _record(folder: Path, source: str, input_sha256: str) -> None:
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"source": source, "input_sha256": input_sha256}))


def test_every_slide_gets_its_own_folder_and_a_finished_one_is_not_taken_over(tmp_path):
    from bmpipe.flows.batch import place_jobs
    from bmpipe.flows.resume import file_sha256, source_id
    from bmpipe.flows.slide import RunSettings, output_place

    for rel in ("a/s.tiff", "b/s.tiff", "c/s.tiff", "骨髄.tiff", "血液.tiff", "moved/s.tiff"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(rel.encode())
    (tmp_path / "moved" / "s.tiff").write_bytes(b"c/s.tiff")  # c/s.tiff moved elsewhere
    settings = RunSettings(out_dir=tmp_path / "out")

    def folders(names):
        jobs = place_jobs(find_jobs([tmp_path / n for n in names]), settings, None)
        return [output_place(j.path, settings, None, j.subfolder, j.tag)[1].name for j in jobs]

    a, b = folders(["a/s.tiff", "b/s.tiff"])
    assert a != b and {a, b} == {f"s-{source_id(tmp_path / p)[:8]}" for p in ("a/s.tiff", "b/s.tiff")}
    assert folders(["a/s.tiff", "b/s.tiff"]) == [a, b]  # the same names in every run
    assert len(set(folders(["骨髄.tiff", "血液.tiff"]))) == 2
    assert folders(["c/s.tiff"]) == ["s"]  # alone, a slide keeps its plain name
    _record(settings.out_dir / "s", source_id(tmp_path / "c/s.tiff"), file_sha256(tmp_path / "c/s.tiff"))
    assert folders(["a/s.tiff"]) == [a]  # the plain folder holds c's results: a gets its own
    assert folders(["c/s.tiff", "a/s.tiff"])[0] == "s"  # c owns it, even beside a namesake
    assert folders(["moved/s.tiff"]) == ["s"]  # the same bytes from a new place: c's folder, skipped as done
    assert find_jobs([tmp_path / "a/s.tiff", tmp_path / "a"]) == find_jobs([tmp_path / "a"])  # named twice, run once


@pytest.mark.parametrize("files, recursive, says", [
    ((), False, "folder is empty"),
    (("notes.txt", "scan.xlsx"), False, "holds no slide file (.bif, .dcm,"),
    (("notes.txt",), False, "skipped 1 other file(s): notes.txt"),
    (("f1.jpg", "f2.jpg"), False, "its photographs are fields of a case: use --fields"),
    (("case-7/a.svs",), False, "sub-folders hold slides (case-7): use --recursive"),
])
def test_a_folder_with_no_slide_fails_saying_what_it_holds(tmp_path, files, recursive, says):
    folder = tmp_path / "inbox"
    folder.mkdir()
    for rel in files:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text("x")
    jobs = find_jobs([folder], recursive)
    assert len(jobs) == 1 and jobs[0].path == folder and says in jobs[0].problem


def test_the_manifest_warns_of_a_slide_that_counted_nothing_and_of_skipped_photographs(tmp_path):
    from bmpipe.flows.batch import slide_warning
    from bmpipe.records import Cells
    from bmpipe.stages.aggregate import differential

    data = differential(Cells.empty(), "wrong-mpp").as_dict()
    data["slide_summary"] = {"skipped_fields": ["f9.jpg: not a readable slide or image"]}
    (tmp_path / "differential.json").write_text(json.dumps(data))
    warning = slide_warning(tmp_path)
    assert warning.startswith("1 photograph(s) skipped: f9.jpg: not a readable") and "No nucleated cells counted" in warning
    assert slide_warning(tmp_path / "missing") == ""
