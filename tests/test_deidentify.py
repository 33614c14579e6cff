"""``--deidentify``: no slide name in any output file or log line, a stable keyed pseudonym instead."""

from __future__ import annotations

import io
import json
import logging
import stat

import pandas as pd
import pytest
from batch_slides import make_inbox, slide_files

from bmpipe.cli import main
from bmpipe.flows.deidentify import KEY_ENV, KEY_FILE, Pseudonyms, load_key, redacted_logs

PATIENT = "DOE JOHN 4729618"  # its slide id, which the stages log, is DOE_JOHN_4729618
OTHER = "SMITH_JANE_7654321"
# A record number, not a run of digits a page may hold anyway (review.html's hotkeys are "1234567890…").
FORBIDDEN = ("DOE JOHN", "DOE_JOHN", "4729618", "SMITH", "7654321")


@pytest.fixture
def run_log():
    """Every INFO line of bmpipe's and the flows' loggers during a test (Prefect reconfigures the root's)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    loggers = [logging.getLogger(name) for name in ("bmpipe",)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield stream
    for logger, level in zip(loggers, levels):
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.slow
def test_a_deidentified_run_names_no_patient_anywhere(tmp_path_factory, tmp_path, monkeypatch, run_log, capfd):
    monkeypatch.delenv(KEY_ENV, raising=False)
    inbox = make_inbox(tmp_path / "inbox", {"marrow-a": slide_files(tmp_path_factory)["marrow-a"]}, broken=False,
                       names={"marrow-a": f"{PATIENT}.tiff"})
    (inbox / f"{OTHER}.svs").write_text("not a slide")
    out = tmp_path / "out"
    assert main(["run", str(inbox), "--out", str(out), "--deidentify"]) == 1

    key = out / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    pseudonym = Pseudonyms(key.read_bytes().strip()).of(PATIENT)
    folder = out / pseudonym
    assert json.loads((folder / "differential.json").read_text())["slide"] == pseudonym
    assert pseudonym in (folder / "report.html").read_text()
    manifest = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    assert sorted(manifest.status) == ["failed", "ok"] and f"{pseudonym}.tiff" in set(manifest.slide)

    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) >= 6
    for path in files:
        data = path.read_bytes()
        for name in FORBIDDEN:
            assert name not in str(path.relative_to(out)) and name.encode() not in data, (name, path)
    logs = run_log.getvalue() + "".join(capfd.readouterr())
    assert "not a readable slide" in logs and f"{pseudonym}: detected and classified" in logs
    assert not [name for name in FORBIDDEN if name in logs]


@pytest.mark.slow
def test_a_deidentified_single_slide_run_names_no_patient_in_its_logs(tmp_path_factory, tmp_path, monkeypatch,
                                                                     run_log, capfd):
    from bmpipe.flows.slide import RunSettings, analyse_slide

    monkeypatch.setenv(KEY_ENV, "lab-secret")
    inbox = make_inbox(tmp_path / "inbox", {"marrow-a": slide_files(tmp_path_factory)["marrow-a"]}, broken=False,
                       names={"marrow-a": f"{PATIENT}.tiff"})
    folder = analyse_slide(inbox / f"{PATIENT}.tiff", RunSettings(out_dir=tmp_path / "out", deidentify=True))

    pseudonym = Pseudonyms(b"lab-secret").of(PATIENT)
    assert folder == tmp_path / "out" / pseudonym
    logs = run_log.getvalue() + "".join(capfd.readouterr())
    assert f"{pseudonym}: detected and classified" in logs
    assert not [name for name in FORBIDDEN if name in logs]


def test_the_key_comes_from_the_environment_and_the_pseudonym_is_keyed(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "lab-secret")
    assert load_key(tmp_path) == b"lab-secret" and not (tmp_path / KEY_FILE).exists()
    one, same, other = Pseudonyms(b"lab-secret"), Pseudonyms(b"lab-secret"), Pseudonyms(b"another key")
    assert one.of(PATIENT) == same.of(PATIENT) != other.of(PATIENT)
    assert one.of(PATIENT) != one.of(OTHER) and one.of(PATIENT).startswith("s-") and len(one.of(PATIENT)) == 18


def test_a_key_file_is_made_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    first = load_key(tmp_path)
    assert load_key(tmp_path) == first and len(first) == 64


def test_log_lines_and_tracebacks_are_redacted(tmp_path):
    names = Pseudonyms(b"k")
    pseudonym = names.of(PATIENT)
    names.alias(f"/inbox/{PATIENT}.svs", f"{pseudonym}.svs")
    logger = logging.getLogger("test-deidentify")
    stream_path = tmp_path / "log.txt"
    handler = logging.FileHandler(stream_path)
    logger.addHandler(handler)
    try:
        with redacted_logs(names):
            logger.warning("opened %s", f"/inbox/{PATIENT}.svs")
            logger.warning("%s: 3 tiles", PATIENT)
            try:
                raise ValueError(f"cannot read /inbox/{PATIENT}.svs")
            except ValueError:
                logger.exception("failed")
        logger.warning("after: %s", "plain")
    finally:
        logger.removeHandler(handler)
        handler.close()
    text = stream_path.read_text()
    assert PATIENT not in text and text.count(pseudonym) == 3 and "ValueError" in text and "after: plain" in text
