"""Resolution from red cells: the estimate on real sets and phantom slides, ``--mpp auto``, and the warning
when a slide's stated resolution disagrees with its red cells."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bmpipe.cli import build_parser, main
from bmpipe.imaging.red_cells import MIN_RED_CELLS, estimate_mpp
from bmpipe.nn.weights import default_models_dir
from bmpipe.resolution import Mpp
from bmpipe.slide import open_slide, write_pyramidal_tiff
from bmpipe.stages.calibrate import measure_mpp

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "case-fields"
needs_models = pytest.mark.skipif(
    not (default_models_dir() / "detector-unet.safetensors").exists(), reason="shipped detector is absent"
)


def test_the_estimate_is_the_red_cells_median_and_ignores_specks():
    rng = np.random.default_rng(0)
    red = rng.normal(72, 3, 200)  # PBC's red cells: 7.5 µm over 72 px
    specks = rng.normal(15, 2, 600)  # platelets and debris that passed the shape tests
    estimate = estimate_mpp(np.concatenate([red, specks]))
    assert estimate.mpp.um_per_px == pytest.approx(7.5 / 72, rel=0.02)
    assert estimate.low.um_per_px < estimate.mpp.um_per_px < estimate.high.um_per_px
    assert estimate_mpp(red[: MIN_RED_CELLS - 1]) is None


@pytest.mark.parametrize("um", [0.1, 0.25])
def test_phantom_slides_measure_within_10_percent(tmp_path, um):
    from bmpipe.phantom import make_slide

    path = make_slide(tmp_path / "s.tiff", cells=200, blast_pct=5.0, seed=4, mpp=Mpp(um))
    with open_slide(path) as slide:
        estimate = measure_mpp(slide)
    assert estimate.n_cells >= 100 and estimate.mpp.um_per_px == pytest.approx(um, rel=0.10)


def test_real_sets_measure_within_10_percent(data_dir):
    from bmpipe.evaluation.resolution import real_estimates

    found = {name: (known, estimate) for name, known, estimate in real_estimates(per_set=120)
             if name in ("PBC", "BCCD")}
    assert set(found) == {"PBC", "BCCD"}
    for name, (known, estimate) in found.items():
        assert estimate.mpp.um_per_px == pytest.approx(known.um_per_px, rel=0.10), name


def test_mpp_takes_a_number_or_auto(capsys):
    parse = lambda value: build_parser().parse_args(["run", "x", "--out", "o", "--mpp", value]).mpp
    assert parse("auto") == "auto" and parse("0.25") == 0.25
    for bad in ("abc", "-1"):
        with pytest.raises(SystemExit):
            parse(bad)
    assert "'auto'" in capsys.readouterr().err


@needs_models
@pytest.mark.slow
def test_mpp_auto_measures_a_case_of_photographs_and_records_how(tmp_path):
    assert main(["run", str(EXAMPLE), "--fields", "--mpp", "auto", "--out", str(tmp_path)]) == 0
    folder = tmp_path / EXAMPLE.name
    resolution = json.loads((folder / "run.json").read_text())["resolution"]
    assert resolution["source"] == "red cells" and resolution["um_per_px"] == pytest.approx(0.1, rel=0.10)
    data = json.loads((folder / "differential.json").read_text())
    assert data["slide_summary"]["mpp_source"] == "red cells" and data["slide_summary"]["mpp_red_cells"]["n_red_cells"] >= 30
    assert "Resolution the red cells measure" in (folder / "report.html").read_text()


@needs_models
def test_mpp_auto_without_red_cells_is_one_line(tmp_path):
    case = tmp_path / "case"
    case.mkdir()
    import cv2

    cv2.imwrite(str(case / "glass.png"), np.full((600, 800, 3), 235, np.uint8))
    assert main(["run", str(case), "--fields", "--mpp", "auto", "--out", str(tmp_path / "out")]) == 1
    error = pd.read_csv(tmp_path / "out" / "manifest.csv")["error"].item()
    assert error == f"{case}: --mpp auto found 0 isolated round red cells, too few to measure the resolution (needs " \
                    f"{MIN_RED_CELLS}); give it with --mpp"


@needs_models
@pytest.mark.slow
def test_a_slide_whose_metadata_is_wrong_is_analysed_with_a_warning(tmp_path):
    from bmpipe.phantom import make_slide

    drawn = make_slide(tmp_path / "drawn.tiff", cells=200, blast_pct=5.0, seed=4, mpp=Mpp(0.25))
    wrong = tmp_path / "inbox" / "wrong.tiff"
    wrong.parent.mkdir()
    with open_slide(drawn) as slide:  # the same pixels, stated at 0.5 µm/px (a 20× scan labelled 40×'s half)
        write_pyramidal_tiff(wrong, *slide.dimensions, Mpp(0.5),
                             lambda x, y, w, h: slide.read_region(x, y, w, h, slide.mpp))
    assert main(["run", str(wrong), "--out", str(tmp_path / "out")]) == 0
    row = pd.read_csv(tmp_path / "out" / "manifest.csv", keep_default_na=False).iloc[0]
    assert row.status == "ok" and "The resolution used, 0.5 µm/px" in row.warning and "coarser" in row.warning
    data = json.loads((tmp_path / "out" / "wrong" / "differential.json").read_text())
    assert data["findings"][0]["kind"] == "resolution" and data["resolution_warning"]
    assert data["resolution_warning"] in (tmp_path / "out" / "wrong" / "report.html").read_text()


def test_a_training_folder_is_checked_against_its_red_cells(tmp_path, cell_photographs, caplog):
    from bmpipe.datasets.cell_data import load_folder

    cell_photographs(tmp_path / "lab" / "MON", 10, Mpp(0.1))
    load_folder(tmp_path / "lab", Mpp(0.1), stream=True)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    load_folder(tmp_path / "lab", Mpp(0.15), stream=True)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith(f"{tmp_path / 'lab'}: The resolution used, 0.15 µm/px (--mpp), is")
    assert "coarser than the red cells measure" in warning and "--mpp auto" not in warning
