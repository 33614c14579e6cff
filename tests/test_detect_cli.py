"""``bmpipe detect``: a CSV of boxes in the input images' own pixels, and one clear line per bad image."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest

from bmpipe.cli import main
from bmpipe.datasets import detector_data as dd
from bmpipe.evaluation.detector import box_scores
from bmpipe.nn.weights import default_models_dir
from bmpipe.phantom import write_fields
from bmpipe.resolution import Mpp


@pytest.fixture(scope="module")
def fields(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two phantom fields at 0.125 µm/px (not the detector's 0.4), with their YOLO truth labels."""
    folder = tmp_path_factory.mktemp("detect-cli")
    write_fields(folder, 2, seed=21, size=(900, 700), mpp=Mpp(0.125))
    return folder


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


@pytest.mark.parametrize("detector", ["unet", "yolo"])
def test_boxes_are_in_input_pixels(fields: Path, tmp_path: Path, detector: str) -> None:
    if not (default_models_dir() / f"detector-{detector}.safetensors").is_file():
        pytest.skip(f"shipped detector-{detector} weights absent")
    out = tmp_path / "dets.csv"
    assert main(["detect", str(fields / "images"), "--out", str(out), "--mpp", "0.125",
                 "--detector", detector]) == 0
    columns, rows = read_csv(out)
    assert columns == ["image", "x0", "y0", "x1", "y1", "score"]
    images = dd.images_in(fields / "images")
    assert {Path(r["image"]).name for r in rows} == {p.name for p in images}
    pairs = []
    for path in images:
        truth = dd.yolo_boxes(fields / "labels" / f"{path.stem}.txt", 900, 700)
        mine = [r for r in rows if Path(r["image"]).name == path.name]
        boxes = np.array([[float(r[k]) for k in ("x0", "y0", "x1", "y1")] for r in mine]).reshape(-1, 4)
        assert np.all((boxes >= 0) & (boxes <= [900, 700, 900, 700]))
        pairs.append((truth, boxes, np.array([float(r["score"]) for r in mine])))
    scores = box_scores(pairs)  # matched at IoU ≥ 0.5 in the input's pixels: a wrong scale would fail
    assert scores["recall"] >= 0.85 and scores["precision"] >= 0.85, scores


def test_a_bad_image_is_named_and_the_others_go_on(fields: Path, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    good = dd.images_in(fields / "images")[0]
    out = tmp_path / "dets.csv"
    with caplog.at_level(logging.ERROR):
        code = main(["detect", str(bad), str(good), "--out", str(out), "--mpp", "0.125"])
    assert code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and str(bad) in errors[0]
    _, rows = read_csv(out)
    assert rows and {r["image"] for r in rows} == {str(good)}


def test_missing_mpp_is_a_clear_error(fields: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        code = main(["detect", str(fields / "images"), "--out", str(tmp_path / "d.csv")])
    assert code == 2
    assert any("--mpp" in r.getMessage() for r in caplog.records)
