"""The whole bad-input corpus in one ``bmpipe run``: one clear line per bad file, and the good slides finished.

This is what a lab server sees on a bad night: files that are not slides, empty and cut uploads, a header
claiming a terapixel image, slides without (or with absurd) resolution, blank glass, an
out-of-focus scan, a smear of red cells with no nucleated cell, a smear too small for a 500-cell count, names that collide once made safe, a name that is
a spreadsheet formula and an empty folder, all beside good slides in one run.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from bmpipe.nn.weights import default_models_dir
from bmpipe.phantom import make_slide
from bmpipe.phantom.smear import plan_slide
from bmpipe.resolution import Mpp
from bmpipe.slide import open_slide, write_pyramidal_tiff

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (default_models_dir() / "detector-unet.safetensors").exists(),
                       reason="shipped detector is absent"),
]

#: Unreadable files of the shared corpus → what their error line must say.
SHARED = {
    "broken.svs": "not a readable slide",
    "openslide-unopenable.tiff": "cannot decode its pixels",
    "openslide-unreadable.svs": "cannot decode its pixels",
    "small_dicom.dcm": "not a readable slide",
    "kidney-48-5.tif": "no resolution in its metadata",
    "openslide-boxes.tiff": "outside the accepted range",
}
#: Files made here → what their error line must say.
MADE = {
    "empty.svs": "empty file",
    "notes.svs": "not a readable slide",
    "cut.svs": "corrupt or truncated",
    "huge.tif": "1000000×1000000",
    "blank.tiff": "no smear",
    "blurred.tiff": "out of focus",
}
GOOD = ("good.tiff", "small.tiff")
#: Good slides whose names are made safe alike (both "__"): each must keep its own report.
COLLIDING = ("骨髄.tiff", "血液.tiff")
#: A slide named like a spreadsheet formula, given by a relative path (so the manifest cell starts with it).
FORMULA = "=HYPERLINK(1).tiff"


def _copy_blurred(source: Path, target: Path, sigma_um: float = 1.5) -> None:
    """``source`` re-written as a scan out of focus (Gaussian blur of ``sigma_um``), same size and resolution."""
    with open_slide(source) as slide:
        width, height = slide.dimensions
        sigma = slide.mpp.px(sigma_um)
        margin = int(4 * sigma)

        def render(x: int, y: int, w: int, h: int) -> np.ndarray:
            region = slide.read_region(x - margin, y - margin, w + 2 * margin, h + 2 * margin, slide.mpp)
            return cv2.GaussianBlur(region, (0, 0), sigma)[margin : margin + h, margin : margin + w]

        write_pyramidal_tiff(target, width, height, slide.mpp, render)


def _blank_glass(target: Path) -> None:
    """A scan of empty glass: near-white with sensor noise, correct resolution metadata."""
    rng = np.random.default_rng(3)

    def render(x: int, y: int, w: int, h: int) -> np.ndarray:
        return np.clip(rng.normal(238, 3, (h, w, 3)), 0, 255).astype(np.uint8)

    write_pyramidal_tiff(target, 6000, 4000, Mpp(0.1), render)


def _red_cells_only(target: Path, seed: int = 2) -> None:
    """A smear with red cells and nothing else: a readable monolayer in which there is nothing to count."""
    plan = plan_slide(300, 5.0, seed)
    plan.scene.cells.clear()
    write_pyramidal_tiff(target, plan.width, plan.height, plan.mpp, plan.scene.render, tile=512, downsample=4)


def _absurd_header(target: Path) -> None:
    tifffile.imwrite(target, np.zeros((512, 512, 3), np.uint8), tile=(512, 512), photometric="rgb", metadata=None)
    with tifffile.TiffFile(target, mode="r+b") as tif:
        tif.pages.first.tags["ImageWidth"].overwrite(10**6)
        tif.pages.first.tags["ImageLength"].overwrite(10**6)


@pytest.fixture(scope="module")
def night(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    inbox = tmp_path_factory.mktemp("bad-night") / "inbox"
    inbox.mkdir()
    wsi = data_dir / "wsi"
    for name in SHARED:
        (inbox / name).symlink_to(wsi / name)
    (inbox / "empty.svs").touch()
    (inbox / "notes.svs").write_text("this is not a slide\n")
    (inbox / "cut.svs").write_bytes((wsi / "cmu-1-small-region.svs").read_bytes()[:1_000_000])
    _absurd_header(inbox / "huge.tif")
    _blank_glass(inbox / "blank.tiff")
    _red_cells_only(inbox / "red-cells-only.tiff")
    make_slide(inbox / "good.tiff", cells=760, blast_pct=12.0, seed=5)
    make_slide(inbox / "small.tiff", cells=150, blast_pct=4.0, seed=6)
    scratch = inbox.parent / "scratch"
    scratch.mkdir()
    make_slide(scratch / "sharp.tiff", cells=300, blast_pct=4.0, seed=8)
    _copy_blurred(scratch / "sharp.tiff", inbox / "blurred.tiff")
    for name in COLLIDING:
        (inbox / name).symlink_to(inbox / "small.tiff")
    (inbox.parent / FORMULA).symlink_to(inbox / "small.tiff")
    (inbox.parent / "empty").mkdir()
    out = inbox.parent / "out"
    run = subprocess.run(
        [sys.executable, "-m", "bmpipe.cli", "run", str(inbox), FORMULA, "empty", "--out", str(out)],
        capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "200"}, check=False,
        cwd=inbox.parent,
    )
    return inbox, out, run


def _manifest(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        return {Path(row["slide"]).name: row for row in csv.DictReader(f)}



def test_exit_code_says_some_slides_failed(night):
    _, _, run = night
    assert run.returncode == 1, run.stderr[-3000:]


def test_every_bad_file_gets_one_clear_line_naming_it(night):
    inbox, out, run = night
    manifest = _manifest(out)
    for name, expected in {**SHARED, **MADE}.items():
        row = manifest[name]
        assert row["status"] == "failed", (name, row)
        assert row["error"].startswith(str(inbox / name)), (name, row["error"])
        assert expected in row["error"], (name, row["error"])
        assert "\n" not in row["error"]
        error_lines = [line for line in run.stderr.splitlines() if str(inbox / name) in line]
        assert error_lines, f"{name}: no error line on the console"
    assert "Traceback" not in run.stderr, run.stderr[-3000:]


def test_good_slides_get_complete_reports(night):
    _, out, _ = night
    manifest = _manifest(out)
    for name in GOOD:
        assert manifest[name]["status"] == "ok", manifest[name]
        folder = Path(manifest[name]["output"])
        assert folder.parent == out
        for output in ("report.html", "differential.json", "cells.parquet", "cells.geojson"):
            assert (folder / output).stat().st_size > 0, (name, output)
        assert "</html>" in (folder / "report.html").read_text(encoding="utf-8")
    assert not [p for p in out.iterdir() if p.is_dir() and p.name.startswith(".")], "a staging folder was left behind"


def test_a_smear_too_small_for_500_cells_is_analysed_but_flagged(night):
    _, out, _ = night
    small = json.loads((Path(_manifest(out)["small.tiff"]["output"]) / "differential.json").read_text())
    assert small["n_counted"] < 500
    count = [f for f in small["findings"] if f["kind"] == "count"]
    assert count and count[0]["borderline"] and "500" in count[0]["text"], small["findings"]
    good = json.loads((Path(_manifest(out)["good.tiff"]["output"]) / "differential.json").read_text())
    assert good["n_counted"] >= 500


def test_a_smear_with_nothing_to_count_gets_no_finding_but_why(night):
    """No percentage, criterion or ratio from zero cells: one finding says why nothing was counted."""
    _, out, _ = night
    row = _manifest(out)["red-cells-only.tiff"]
    assert row["status"] == "ok", row
    assert row["warning"].startswith("No nucleated cells counted"), row
    differential = json.loads((Path(row["output"]) / "differential.json").read_text())
    assert differential["n_counted"] == 0
    assert [f["kind"] for f in differential["findings"]] == ["count"], differential["findings"]
    report = (Path(row["output"]) / "report.html").read_text(encoding="utf-8")
    assert "No nucleated cells counted" in report and "Blast percentage" not in report


def test_slides_whose_names_collide_each_keep_their_own_report(night):
    _, out, _ = night
    manifest = _manifest(out)
    folders = {Path(manifest[name]["output"]) for name in COLLIDING}
    assert all(manifest[name]["status"] == "ok" for name in COLLIDING) and len(folders) == 2
    assert all((f / "report.html").is_file() and f.parent == out for f in folders)


def test_a_name_that_is_a_formula_is_text_in_the_manifest(night):
    _, out, _ = night
    assert f"\n'{FORMULA}," in (out / "manifest.csv").read_text(encoding="utf-8")
    assert _manifest(out)[f"'{FORMULA}"]["status"] == "ok"


def test_an_empty_folder_fails_saying_so(night):
    _, _, run = night
    assert "empty: folder is empty: no slide to analyse" in run.stderr
