"""The real flow with the shipped models on phantom slides of known composition, as ``bmpipe run`` runs it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bmpipe.cli import DEMO_SLIDE, main
from bmpipe.evaluation.transfer import WBC_SEG_MPP
from bmpipe.nn.weights import default_models_dir
from bmpipe.phantom import make_slide
from bmpipe.phantom.smear import truth_path

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (default_models_dir() / "detector-unet.safetensors").exists(),
                       reason="shipped detector is absent"),
]

#: The demo slide and two more of other seeds at the blast percentages on either side of the WHO ranges.
SLIDES = {
    "demo": DEMO_SLIDE,
    "low-blasts": {"cells": 1200, "blast_pct": 3.0, "seed": 7},
    "high-blasts": {"cells": 1200, "blast_pct": 25.0, "seed": 11},
}
DIFFERENTIAL_KEYS = {
    "slide", "n_counted", "counts", "percent", "blast_pct", "blast_ci95", "me_ratio", "dysplasia_pct",
    "findings", "models",
}


@pytest.fixture(scope="module")
def batch(tmp_path_factory, demo_slide):
    """Three phantom slides and a file that is not a slide, analysed in one ``bmpipe run``."""
    root = tmp_path_factory.mktemp("e2e")
    inbox = root / "inbox"
    inbox.mkdir()
    for name, spec in SLIDES.items():
        if spec is DEMO_SLIDE:  # made once for the session
            for made in (demo_slide, truth_path(demo_slide)):
                shutil.copy(made, inbox / made.name)
        else:
            make_slide(inbox / f"{name}.tiff", **spec)
    (inbox / "notes.svs").write_text("not a slide")
    out = root / "out"
    code = main(["run", str(inbox), "--out", str(out)])
    return inbox, out, code


def test_each_slide_gets_a_complete_output_folder(batch):
    _, out, code = batch
    assert code == 1  # the text file named .svs failed, and the run says so
    manifest = pd.read_csv(out / "manifest.csv")
    assert dict(zip(manifest.slide.map(lambda p: p.split("/")[-1]), manifest.status)) == {
        "demo.tiff": "ok", "high-blasts.tiff": "ok", "low-blasts.tiff": "ok", "notes.svs": "failed",
    }
    assert "notes.svs" in manifest.loc[manifest.status == "failed", "error"].item()
    assert manifest["warning"].isna().all()  # Giemsa-like phantom smears are not warned about
    for name in SLIDES:
        folder = out / name
        data = json.loads((folder / "differential.json").read_text())
        assert DIFFERENTIAL_KEYS <= set(data)
        assert data["domain_warning"] == "" and data["unlike_stain_share"] < 0.1
        assert all(len(m) == 3 and len(m[2]) == 64 for m in data["models"])
        cells = pd.read_parquet(folder / "cells.parquet")
        assert {"x", "y", "x0", "y0", "x1", "y1", "label", "label_score", "dysplasia_grade"} <= set(cells.columns)
        not_counted = sum(n for code, n in data["counts"].items() if code not in data["percent"])
        assert len(cells) == data["n_counted"] + not_counted  # unidentified (NIF) cells are among the latter
        html = (folder / "report.html").read_text()
        assert "not a diagnostic device" in html and data["findings"][1]["text"].split(" (")[0] in html
        assert (folder / "report.pdf").read_bytes()[:5] == b"%PDF-"
        review = pd.read_csv(folder / "review.csv", keep_default_na=False)
        assert len(review) and set(review["predicted_class"]) <= set(data["counts"])
        assert (review["corrected_class"] == "").all()
        assert_review_page(folder, len(cells))
    assert not list(out.glob(".*partial"))


def assert_review_page(folder, n_cells):
    """review.html with a sheet of thumbnails (read from the slide: not blank) for each page of every cell."""
    from bmpipe.report.figures import decode_rgb
    from bmpipe.report.review_page import PER_SHEET

    sheets = sorted((folder / "review" / "sheets").glob("*.jpg"))
    assert n_cells / PER_SHEET <= len(sheets) <= n_cells / PER_SHEET + 23  # a class's last page may be partial
    assert decode_rgb(sheets[0].read_bytes()).std() > 5
    assert '"pred":[' in (folder / "review.html").read_text() and not (folder / "review" / ".thumbnails.npy").exists()


@pytest.mark.parametrize("name", list(SLIDES))
def test_blast_percentage_within_2_points_of_the_truth(batch, name):
    inbox, out, _ = batch
    truth = json.loads((inbox / f"{name}.truth.json").read_text())["differential_monolayer"]
    reported = json.loads((out / name / "differential.json").read_text())
    assert reported["n_counted"] >= 0.8 * truth["n_counted"]
    assert abs(reported["blast_pct"] - truth["blast_pct"]) <= 2.0, (reported["blast_pct"], truth["blast_pct"])


@pytest.mark.parametrize("name", list(SLIDES))
def test_every_class_percentage_within_2_points_of_the_truth(batch, name):
    """The issue's accuracy bar, class by class: a miss names every class off by more than 2 points."""
    inbox, out, _ = batch
    truth = json.loads((inbox / f"{name}.truth.json").read_text())["differential_monolayer"]["percent"]
    reported = json.loads((out / name / "differential.json").read_text())["percent"]
    assert set(reported) == set(truth)
    misses = {
        code: f"reported {reported[code]:.2f}% vs truth {truth[code]:.2f}% ({reported[code] - truth[code]:+.2f})"
        for code in truth
        if abs(reported[code] - truth[code]) > 2.0
    }
    assert not misses, misses


def test_a_folder_of_field_photographs_is_one_case(tmp_path):
    case = Path(__file__).resolve().parents[1] / "examples" / "case-fields"
    assert main(["run", str(case), "--fields", "--mpp", "0.1", "--out", str(tmp_path)]) == 0
    folder = tmp_path / "case-fields"
    data = json.loads((folder / "differential.json").read_text())
    assert data["n_fields"] == 4 and data["regions"] == "fields" and data["n_counted"] >= 12
    cells = pd.read_parquet(folder / "cells.parquet")
    assert cells["field"].nunique() == 4
    assert set(pd.read_csv(folder / "review.csv")["field"]) <= set(cells["field"])
    assert "4 field photographs" in (folder / "report.html").read_text()
    assert_review_page(folder, len(cells))


def test_a_tissue_section_and_a_grayscale_photograph_are_warned_about(tmp_path, data_dir):
    """Neither is a Romanowsky-stained smear: both get a report that opens with a warning, not a confident
    differential (the H&E slide is one the stain check never saw)."""
    import cv2

    he = data_dir / "wsi" / "cmu-1-small-region.svs"
    assert main(["run", str(he), "--out", str(tmp_path / "he")]) == 0
    manifest = pd.read_csv(tmp_path / "he" / "manifest.csv")
    assert "do not look stained like a Wright-Giemsa" in manifest["warning"].item()
    data = json.loads((tmp_path / "he" / he.stem / "differential.json").read_text())
    assert data["findings"][0]["kind"] == "domain"
    assert data["domain_warning"] in (tmp_path / "he" / he.stem / "report.html").read_text()

    grey = tmp_path / "grey-case"
    grey.mkdir()
    for photo in sorted((Path(__file__).resolve().parents[1] / "examples" / "case-fields").glob("*.jpg")):
        cv2.imwrite(str(grey / photo.name), cv2.imread(str(photo), cv2.IMREAD_GRAYSCALE))
    assert main(["run", str(grey), "--fields", "--mpp", "0.1", "--out", str(tmp_path / "g")]) == 0
    data = json.loads((tmp_path / "g" / "grey-case" / "differential.json").read_text())
    assert data["unlike_stain_share"] > 0.9 and data["findings"][0]["kind"] == "domain"


def test_photographs_of_a_stain_that_is_neither_romanowsky_nor_h_and_e_are_warned_about(tmp_path, data_dir):
    """wbc_seg Dataset 1's rapid white-cell stain (yellow background) lies outside every training source's
    colours, though a regression fitted against H&E and colourless crops takes it for Romanowsky; the CellaVision
    blog's Romanowsky photographs of Dataset 2 get a differential."""
    for dataset, warned in (("Dataset 1", True), ("Dataset 2", False)):
        mpp = str(WBC_SEG_MPP[dataset].um_per_px)
        case = tmp_path / dataset.replace(" ", "-")
        case.mkdir()
        for i in range(1, 9):
            shutil.copy(data_dir / "wbc_seg" / dataset / f"{i:03d}.bmp", case)
        assert main(["run", str(case), "--fields", "--mpp", mpp, "--out", str(tmp_path / "out")]) == 0
        data = json.loads((tmp_path / "out" / case.name / "differential.json").read_text())
        assert data["n_counted"] >= 6
        assert (data["findings"][0]["kind"] == "domain") is warned, (dataset, data["unlike_stain_share"])
