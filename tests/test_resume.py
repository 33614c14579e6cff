"""Resume records and the all-or-nothing finish of a slide folder, without Prefect or models."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from bmpipe.errors import InputError
from bmpipe.flows.resume import (
    RUN_RECORD,
    batch_lock,
    file_sha256,
    finished,
    is_finished,
    models_fingerprint,
    run_record,
    sweep_staging,
)
from bmpipe.flows.slide import RunSettings
from bmpipe.nn.weights import ModelRecord
from bmpipe.report.staging import staging_dir

RECORD = run_record("ab" * 32, {"classifier": "cd" * 32}, {"mpp": None, "regions": "readable"})


def test_the_content_hash_is_the_sha256_of_the_bytes_whatever_the_name(tmp_path):
    data = os.urandom(9 << 20)  # more than two read chunks
    (tmp_path / "a.svs").write_bytes(data)
    (tmp_path / "b.svs").write_bytes(data)
    assert file_sha256(tmp_path / "a.svs") == file_sha256(tmp_path / "b.svs") == hashlib.sha256(data).hexdigest()


def test_a_mirax_slide_hashes_its_companion_folder_too(tmp_path):
    (tmp_path / "s.mrxs").write_bytes(b"index")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "Data0000.dat").write_bytes(b"pixels")
    before = file_sha256(tmp_path / "s.mrxs")
    (tmp_path / "s" / "Data0000.dat").write_bytes(b"other pixels")
    assert file_sha256(tmp_path / "s.mrxs") != before


def test_models_fingerprint_names_each_model_used_with_its_sha256():
    records = [ModelRecord("detector-unet", "1.0.0", "ab" * 32, "d.safetensors"),
               ModelRecord("classifier", "1.1.0", "cd" * 32, "c.safetensors")]
    assert models_fingerprint(records) == {"classifier": "cd" * 32, "detector-unet": "ab" * 32}
    assert list(models_fingerprint(records)) == ["classifier", "detector-unet"]


def test_only_a_folder_finished_from_the_same_record_counts_as_done(tmp_path):
    final = tmp_path / "slide"
    assert not is_finished(final, RECORD)
    with finished(final, RECORD) as staged:
        (staged / "report.html").write_text("new")
        assert not is_finished(final, RECORD)  # nothing is in place until the block ends
    assert final.is_dir() and not staged.exists()
    assert is_finished(final, RECORD)
    for key, value in [("input_sha256", "ef" * 32), ("models", {}), ("settings", {"regions": "all"})]:
        assert not is_finished(final, {**RECORD, key: value})
    (final / RUN_RECORD).write_text("{truncated")
    assert not is_finished(final, RECORD)


def test_finishing_replaces_an_old_folder_whole(tmp_path):
    final = tmp_path / "slide"
    final.mkdir()
    (final / "stale.png").write_text("old")
    with finished(final, RECORD) as staged:
        (staged / "report.html").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["report.html", RUN_RECORD]
    assert [p.name for p in tmp_path.iterdir()] == ["slide"]
    assert json.loads((final / RUN_RECORD).read_text())["input_sha256"] == RECORD["input_sha256"]


def test_staging_left_by_a_killed_run_is_swept_and_finished_folders_kept(tmp_path):
    (tmp_path / "done").mkdir()
    for stale in (staging_dir(tmp_path / "x"), staging_dir(tmp_path / "case" / "y")):
        (stale / "report.html").write_text("half")
    assert sweep_staging(tmp_path) == 2
    assert {p.name for p in tmp_path.rglob("*")} == {"done", "case"}


def test_one_batch_at_a_time_per_output_folder(tmp_path):
    with batch_lock(tmp_path), pytest.raises(InputError, match="another bmpipe run"), batch_lock(tmp_path):
        pass
    with batch_lock(tmp_path):  # released when the first ended
        pass


def test_where_outputs_go_and_on_which_device_do_not_change_the_record(tmp_path):
    a = RunSettings(out_dir=tmp_path / "a", device="cpu", gpu_slots=1)
    b = RunSettings(out_dir=tmp_path / "b", device="cuda", gpu_slots=4)
    assert a.result_settings() == b.result_settings()
    assert a.result_settings() != RunSettings(out_dir=tmp_path, detector="yolo").result_settings()


def test_a_failure_inside_leaves_the_old_folder_and_no_staging(tmp_path):
    final = tmp_path / "slide"
    with finished(final, RECORD) as staged:
        (staged / "report.html").write_text("first")
    with pytest.raises(RuntimeError), finished(final, RECORD) as staged:
        (staged / "report.html").write_text("half")
        raise RuntimeError("killed")
    assert (final / "report.html").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["slide"]
