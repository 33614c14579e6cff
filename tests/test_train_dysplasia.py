"""``bmpipe train dysplasia --labels CSV``: fine-tunes only the dysplasia heads, writes a new version and card,
and lists every bad row (file, line, problem) before training anything."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
import torch

from bmpipe.errors import InputError
from bmpipe.nn.cell_classifier import CLASSIFIER_MPP, CellNet, default_config
from bmpipe.nn.weights import load_weights, save_model
from bmpipe.phantom import cell_crops
from bmpipe.train import dysplasia

torch.set_num_threads(2)
CODES = ("NGS", "EBO", "LYT", "MGK")


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    config = default_config(CODES)
    config.update(stem=8, widths=[8, 16], depths=[1, 1])
    torch.manual_seed(0)
    save_model(CellNet(config), tmp_path / "models", "classifier", "1.0", config)
    (tmp_path / "models" / "classifier.card.md").write_text("# Model card: `classifier` 1.0\n\nbase card text\n")
    return tmp_path / "models"


def _labels_csv(tmp_path: Path) -> Path:
    """Phantom crops with their true lineage and grade, as a lab would export them."""
    images, codes, grades, dysplastic = cell_crops({"NGS": 10, "EBO": 8, "MGK": 4}, seed=4, mpp=CLASSIFIER_MPP,
                                                   size_px=120, dysplasia_rate=0.5)
    lineage = {"NGS": "granulocytic", "EBO": "erythroid", "MGK": "megakaryocytic"}
    lines = ["path,lineage,grade"]
    for i, (image, code) in enumerate(zip(images, codes)):
        cv2.imwrite(str(tmp_path / f"cell{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        grade = grades[i] if code == "NGS" else int(dysplastic[i])
        lines.append(f"cell{i}.png,{lineage[code]},{grade}")
    path = tmp_path / "labels.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_finetune_changes_only_the_dysplasia_heads(tmp_path: Path, models: Path) -> None:
    labels = _labels_csv(tmp_path)
    out = tmp_path / "new"
    argv = ["--labels", str(labels), "--mpp", "0.25", "--init", str(models), "--models", str(out),
            "--steps", "4", "--batch-size", "8", "--lr", "0.05", "--model-version", "1.0+lab"]
    assert dysplasia.main(argv) == 0
    old, _, _ = load_weights(models, "classifier")
    new, config, record = load_weights(out, "classifier")
    assert record.version == "1.0+lab" and config["dysplasia_finetune"]["steps"] == 4
    assert config["dysplasia_finetune"]["n_train"] + config["dysplasia_finetune"]["n_held_out"] == 22
    for key in old:
        same = torch.equal(old[key], new[key])
        assert same == (not key.startswith(("dysplastic_head", "grade_head"))), key
    card = (out / "classifier.card.md").read_text()
    assert "# Model card: `classifier` 1.0+lab" in card and "| dysplastic accuracy |" in card
    assert "## Card of the base classifier 1.0" in card and "base card text" in card


def test_bad_rows_are_all_listed_before_training(tmp_path: Path, models: Path, caplog) -> None:
    cv2.imwrite(str(tmp_path / "ok.png"), cv2.cvtColor(cell_crops({"NGS": 1}, seed=1)[0][0], cv2.COLOR_RGB2BGR))
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "path,lineage,grade\n"
        "ok.png,granulocytic,1\n"
        "ok.png,lymphoid,0\n"
        "ok.png,granulocytic,4\n"
        "ok.png,erythroid,2\n"
        "missing.png,erythroid,0\n"
    )
    with pytest.raises(InputError, match="4 bad row"):
        dysplasia.main(["--labels", str(labels), "--mpp", "0.25", "--init", str(models), "--steps", "1"])
    for expected in ("line 3: lineage 'lymphoid' is not one of", "line 4: grade '4' must be a hypogranulation grade",
                     "line 5: grade '2' must be 0 (normal) or 1 (dysplastic)", "line 6: image "):
        assert f"{labels}: {expected}" in caplog.text
    assert not (tmp_path / "models" / "classifier.card.md").read_text().startswith("# Model card: `classifier` 1.0+")


def test_missing_columns_are_refused(tmp_path: Path, models: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("file,grade\nx.png,1\n")
    with pytest.raises(InputError, match="line 1: missing column"):
        dysplasia.read_labels(labels)
