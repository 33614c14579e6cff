"""``bmpipe classify``: files and folders in, one CSV row per usable image, physical-size resampling, bad
images reported by name while the others are still classified."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch

from bmpipe.cli import main
from bmpipe.nn.cell_classifier import CLASSIFIER_MPP, CellClassifier, CellNet, default_config
from bmpipe.nn.weights import save_model
from bmpipe.resolution import Mpp

torch.set_num_threads(2)
CODES = ("BLA", "LYT", "PLM")


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    """A small classifier that calls every crop PLM with certainty."""
    config = default_config(CODES)
    config.update(stem=8, widths=[8, 16], depths=[1, 1])
    model = CellNet(config)
    with torch.no_grad():
        model.class_head.weight.zero_()
        model.class_head.bias.copy_(torch.tensor([-9.0, -9.0, 9.0]))
    save_model(model, tmp_path / "models", "classifier", "t", config)
    return tmp_path / "models"


def _disc_image(size_px: int, mpp: Mpp, radius_um: float) -> np.ndarray:
    """A dark disc of ``radius_um`` on light glass, centred."""
    image = np.full((size_px, size_px, 3), 235, np.uint8)
    c = (size_px - 1) / 2
    cv2.circle(image, (round(c), round(c)), round(radius_um / mpp.um_per_px), (90, 40, 140), -1, cv2.LINE_AA)
    return image


def _write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_classify_files_and_folders_into_csv(tmp_path: Path, models: Path, caplog) -> None:
    one = _write(tmp_path / "a.png", _disc_image(120, Mpp(0.1), 4.0))
    nested = _write(tmp_path / "folder" / "sub" / "b.jpg", _disc_image(80, Mpp(0.1), 4.0))
    (tmp_path / "folder" / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "preds.csv"
    rc = main(["classify", str(one), str(tmp_path / "folder"), "--out", str(out), "--mpp", "0.1",
               "--models", str(models), "--batch-size", "2"])
    assert rc == 1  # done, but one image could not be used
    assert "broken.jpg: not a readable image" in caplog.text
    rows = _rows(out)
    assert [r["image"] for r in rows] == [str(one), str(nested)]
    assert list(rows[0]) == ["image", "label", "score", "p_BLA", "p_LYT", "p_PLM"]
    for r in rows:
        assert r["label"] == "PLM" and float(r["score"]) > 0.99
        assert sum(float(r[f"p_{c}"]) for c in CODES) == pytest.approx(1.0, abs=1e-3)


def test_resolution_comes_from_mpp_or_tiff_and_is_required(tmp_path: Path, models: Path, caplog) -> None:
    jpg = _write(tmp_path / "c.jpg", _disc_image(60, Mpp(0.2), 4.0))
    tif = tmp_path / "d.tif"
    tifffile.imwrite(tif, _disc_image(60, Mpp(0.2), 4.0), resolution=(1e4 / 0.2, 1e4 / 0.2),
                     resolutionunit="CENTIMETER")
    out = tmp_path / "preds.csv"
    assert main(["classify", str(jpg), str(tif), "--out", str(out), "--models", str(models)]) == 1
    assert f"{jpg}: no resolution in its metadata; give it with --mpp" in caplog.text
    assert [r["image"] for r in _rows(out)] == [str(tif)]
    assert main(["classify", str(jpg), str(tif), "--out", str(out), "--models", str(models), "--mpp", "0.2"]) == 0
    assert len(_rows(out)) == 2


@pytest.mark.parametrize(("mpp", "size_px"), [(0.1, 300), (0.5, 30), (0.25, 96)])
def test_crops_keep_the_physical_size(models: Path, mpp: float, size_px: int) -> None:
    """A 4 µm-radius disc covers π(16 px)² at 0.25 µm/px whatever the image's own resolution and size."""
    clf = CellClassifier.load(models, device="cpu")
    crop = clf.crop_image(_disc_image(size_px, Mpp(mpp), 4.0), Mpp(mpp))
    assert crop.shape == (clf.crop_px, clf.crop_px, 3)
    dark = crop[..., 1] < 140
    radius_px = 4.0 / CLASSIFIER_MPP.um_per_px
    assert dark.sum() == pytest.approx(np.pi * radius_px**2, rel=0.15)  # drawn discs are ~half a pixel wider
    ys, xs = np.nonzero(dark)
    assert abs(ys.mean() - (clf.crop_px - 1) / 2) < 1.5 and abs(xs.mean() - (clf.crop_px - 1) / 2) < 1.5


def test_missing_input_is_named(tmp_path: Path, models: Path, caplog) -> None:
    out = tmp_path / "preds.csv"
    assert main(["classify", str(tmp_path / "nope"), "--out", str(out), "--mpp", "0.1",
                 "--models", str(models)]) == 2
    assert f"{tmp_path / 'nope'}: no such file or folder" in caplog.text
    assert _rows(out) == []



@pytest.fixture()
def photographed(tmp_path: Path, cell_photographs) -> Path:
    """Twelve single-cell photographs at 0.1 µm/px, 48 whole red cells between them."""
    return cell_photographs(tmp_path / "cells", 12, Mpp(0.1))

def test_mpp_auto_measures_the_red_cells_around_the_cells(photographed: Path, models: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    out = photographed.parent / "preds.csv"
    assert main(["classify", str(photographed), "--out", str(out), "--mpp", "auto", "--models", str(models)]) == 0
    assert len(_rows(out)) == 12
    measured = float(caplog.text.split("--mpp auto: ")[1].split(" µm/px")[0])
    assert measured == pytest.approx(0.1, rel=0.05)


def test_a_wrong_mpp_is_warned_of_and_the_cells_still_classified(photographed: Path, models: Path,
                                                                    caplog) -> None:
    caplog.set_level(logging.INFO)
    out = photographed.parent / "preds.csv"
    assert main(["classify", str(photographed), "--out", str(out), "--mpp", "0.1", "--models", str(models)]) == 0
    assert f"{photographed}: --mpp 0.1 µm/px agrees with the red cells around the cells" in caplog.text
    assert "WARNING" not in caplog.text
    assert main(["classify", str(photographed), "--out", str(out), "--mpp", "0.2", "--models", str(models)]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith(f"{photographed}: The resolution used, 0.2 µm/px (--mpp), is")
    assert "coarser than the red cells measure" in warnings[0] and len(_rows(out)) == 12


def test_mpp_auto_on_crops_without_red_cells_is_one_line(tmp_path: Path, models: Path, caplog) -> None:
    for i in range(3):
        _write(tmp_path / "tight" / f"{i}.png", _disc_image(100, Mpp(0.1), 4.0))
    out = tmp_path / "preds.csv"
    assert main(["classify", str(tmp_path / "tight"), "--out", str(out), "--mpp", "auto",
                 "--models", str(models)]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [(f"{tmp_path / 'tight'}: --mpp auto found 0 isolated round red cells, too few to measure "
                       "the resolution (needs 30); give it with --mpp")]
    assert main(["classify", str(tmp_path / "tight"), "--out", str(out), "--mpp", "0.3",
                 "--models", str(models)]) == 0  # too few to check a given resolution: no warning
    assert len(_rows(out)) == 3 and not [r for r in caplog.records if r.levelname == "WARNING"]


def test_mpp_auto_over_relative_and_absolute_paths(photographed: Path, models: Path, monkeypatch) -> None:
    monkeypatch.chdir(photographed.parent)
    out = photographed.parent / "preds.csv"
    assert main(["classify", "cells/00.png", str(photographed / "01.png"), str(photographed), "--out", str(out),
                 "--mpp", "auto", "--models", str(models)]) == 0
    assert len(_rows(out)) == 14
