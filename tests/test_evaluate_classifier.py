"""``bmpipe evaluate classifier``: strict and tolerated per-class scores, PBC groups, confusion matrix files."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bmpipe.evaluation import classifier as ev
from bmpipe.nn.cell_classifier import CellNet, default_config
from bmpipe.nn.weights import save_model
from bmpipe.resolution import Mpp

torch.set_num_threads(2)


def test_tolerated_confusions_count_only_in_tolerant_scores() -> None:
    truth = ["NGB", "NGB", "NGS", "NGS", "BLA", "BLA"]
    pred = ["NGS", "NGB", "NGS", "NGS", "EBO", "BLA"]
    r = ev.class_report(truth, pred)
    # NGB: 1 of 2 right strictly; the NGB→NGS miss is one of Matek's tolerated confusions.
    assert r["rows"]["NGB"]["strict"] == pytest.approx((1.0, 0.5, 2 / 3))
    assert r["rows"]["NGB"]["tolerant"] == pytest.approx((1.0, 1.0, 1.0))
    # NGS: the NGB cell called NGS is a strict false positive, tolerated in the tolerant score.
    assert r["rows"]["NGS"]["strict"] == pytest.approx((2 / 3, 1.0, 0.8))
    assert r["rows"]["NGS"]["tolerant"] == pytest.approx((1.0, 1.0, 1.0))
    # BLA→EBO is never tolerated.
    assert r["rows"]["BLA"]["tolerant"] == pytest.approx((1.0, 0.5, 2 / 3))
    assert list(r["rows"]) == ["BLA", "NGB", "NGS"]  # taxonomy order
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["macro_f1"]["strict"] == pytest.approx(np.mean([2 / 3, 2 / 3, 0.8]))


def _csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_confusion_counts_truth_by_row(tmp_path: Path) -> None:
    rows, cols, m = ev.confusion(["LYT", "LYT", "BLA"], ["LYT", "NIF", "LYT"])
    assert rows == ["BLA", "LYT"] and cols == ["BLA", "LYT", "NIF"]
    assert m.tolist() == [[0, 1, 0], [0, 1, 1]]
    csv_path, png_path = ev.write_confusion(["LYT", "LYT", "BLA"], ["LYT", "NIF", "LYT"], tmp_path, "t")
    assert _csv(csv_path) == [["truth \\ predicted", "BLA", "LYT", "NIF"],
                                                ["BLA", "0", "1", "0"], ["LYT", "0", "1", "1"]]
    assert cv2.imread(str(png_path)) is not None


def _biased_models(tmp_path: Path, codes: tuple[str, ...], winner: str) -> Path:
    config = default_config(codes)
    config.update(stem=8, widths=[8, 16], depths=[1, 1])
    model = CellNet(config)
    with torch.no_grad():
        model.class_head.weight.zero_()
        model.class_head.bias.fill_(-9.0)
        model.class_head.bias[codes.index(winner)] = 9.0
    save_model(model, tmp_path / "models", "classifier", "t", config)
    return tmp_path / "models"


def _images(root: Path, rel_paths: list[str]) -> None:
    image = np.full((100, 100, 3), 220, np.uint8)
    cv2.circle(image, (50, 50), 20, (120, 60, 150), -1)
    for rel in rel_paths:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), image)


def test_matek_layout_folder_is_scored_with_confusion_files(tmp_path: Path, capsys) -> None:
    data = tmp_path / "matek"
    _images(data, ["LYT/0001-1000/LYT_00001.jpg", "LYT/0001-1000/LYT_00002.jpg", "LYI/LYI_1.png",
                   "BLA/0001-1000/BLA_00001.jpg", "README_dir/x.png"])
    models = _biased_models(tmp_path, ("BLA", "LYT", "LYI"), "LYT")
    out = tmp_path / "eval"
    assert ev.main(["--data", str(data), "--mpp", "0.1", "--models", str(models), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "accuracy 0.500" in text  # 2 of 4: the folder that is no class is skipped
    lyi = next(line for line in text.splitlines() if line.strip().startswith("LYI"))
    assert lyi.split()[1:5] == ["1", "0.000", "0.000", "0.000"] and lyi.split()[-1] == "1.000"  # LYI↔LYT tolerated
    rows = _csv(out / "confusion.csv")
    assert rows[0][1:] == ["BLA", "LYT", "LYI"] and rows[2] == ["LYT", "0", "2", "0"]
    assert (out / "confusion.png").stat().st_size > 0


def test_pbc_group_folders_get_the_eight_group_score(tmp_path: Path, capsys) -> None:
    data = tmp_path / "pbc"
    _images(data, ["basophil/BA_1.jpg", "basophil/BA_2.jpg", "lymphocyte/LY_1.jpg", "lymphocyte/LY_2.jpg"])
    models = _biased_models(tmp_path, ("BAS", "LYT"), "BAS")
    assert ev.main(["--data", str(data), "--mpp", "0.1", "--models", str(models), "--out", str(tmp_path / "o")]) == 0
    text = capsys.readouterr().out
    # basophil: P 0.5, R 1 → F1 2/3; lymphocyte F1 0 → macro 1/3
    assert "PBC 8-group macro-F1 0.333" in text
    if ev.reference_scorer_path().exists():
        assert "macroF1=0.333" in text  # the project's reference scorer agrees
    assert _csv(tmp_path / "o" / "confusion.csv")[0][1:] == ["basophil", "lymphocyte"]


def test_unreadable_images_are_named_and_the_rest_scored(tmp_path: Path, capsys, caplog) -> None:
    data = tmp_path / "d"
    _images(data, ["LYT/a.png"])
    (data / "LYT" / "b.png").write_bytes(b"\x89PNG broken")
    models = _biased_models(tmp_path, ("BLA", "LYT"), "LYT")
    assert ev.main(["--data", str(data), "--mpp", "0.1", "--models", str(models), "--out", str(tmp_path / "o")]) == 1
    assert "b.png: not a readable image" in caplog.text
    assert "n=1  accuracy 1.000" in capsys.readouterr().out


def test_a_folder_scored_at_a_wrong_mpp_says_so_under_its_scores(tmp_path: Path, capsys, cell_photographs) -> None:
    data = tmp_path / "lab"
    cell_photographs(data / "LYT", 8, Mpp(0.1))
    models = _biased_models(tmp_path, ("BLA", "LYT"), "LYT")
    for mpp, warned in (("0.1", False), ("0.05", True)):
        assert ev.main(["--data", str(data), "--mpp", mpp, "--models", str(models), "--out", str(tmp_path / "o")]) == 0
        last = capsys.readouterr().out.strip().splitlines()[-1]
        assert last.startswith(f"WARNING: The resolution used, {mpp} µm/px (--mpp), is") == warned, last
        assert not warned or ("finer than the red cells measure" in last
                              and last.endswith("check the resolution, or rerun with the right --mpp."))
