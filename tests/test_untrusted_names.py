"""Untrusted slide names end to end: outputs stay inside --out, and the report escapes the name."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from batch_slides import make_inbox, slide_files

from bmpipe.cli import main
from bmpipe.flows.deidentify import Pseudonyms
from bmpipe.flows.slide import RunSettings, output_place

#: A file name cannot hold "/", so the classic ``<script>alert(1)</script>`` becomes its slash-free twin.
MARKUP = "<img src=x onerror=alert(1)>"


@pytest.mark.slow
def test_a_markup_name_reached_by_a_climbing_path_stays_inside_out_and_is_escaped(tmp_path_factory, tmp_path,
                                                                                   monkeypatch):
    inbox = make_inbox(tmp_path / "inbox", {"marrow-a": slide_files(tmp_path_factory)["marrow-a"]}, broken=False,
                       names={"marrow-a": f"{MARKUP}.svs"})
    work = tmp_path / "lab" / "deep"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)  # so that ../../inbox/<name> is the slide in tmp_path/inbox
    out = tmp_path / "out"
    assert main(["run", f"../../inbox/{MARKUP}.svs", "--out", str(out)]) == 0

    manifest = pd.read_csv(out / "manifest.csv")
    assert list(manifest.status) == ["ok"]
    folder = Path(manifest.output.item()).resolve()
    assert folder.parent == out.resolve()
    assert [p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")] == [folder.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inbox", "lab", "out"] and list(inbox.iterdir()) == [
        inbox / f"{MARKUP}.svs"]
    assert not set("<>=/ ") & set(folder.name)
    html = (folder / "report.html").read_text()
    assert MARKUP not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert json.loads((folder / "differential.json").read_text())["slide"] == folder.name


@pytest.mark.parametrize("subfolder", ["<script>alert(1)<", "..", "../..", ".hidden", "a/../../b", "~root"])
@pytest.mark.parametrize("pseudonyms", [None, Pseudonyms(b"k")])
def test_inbox_sub_folders_never_lead_outside_out(tmp_path, subfolder, pseudonyms):
    settings = RunSettings(out_dir=tmp_path / "out")
    name, folder = output_place(Path(f"{subfolder}/../<script>.svs"), settings, pseudonyms, Path(subfolder))
    assert folder.name == name and "<" not in str(folder)
    assert ".." not in folder.relative_to(settings.out_dir).parts
    assert not any(part.startswith(".") for part in folder.relative_to(settings.out_dir).parts)
