"""Hostile and careless input outside the slides themselves: output folders, model manifests, spreadsheets."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from bmpipe.cli import main
from bmpipe.errors import InputError, ModelError
from bmpipe.flows.resume import batch_lock
from bmpipe.nn.weights import default_models_dir, load_weights
from bmpipe.report.spreadsheet import SafeDictWriter, SafeWriter, read_cell, text_cell


@pytest.mark.parametrize("value", ["=HYPERLINK(\"http://x\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx"])
def test_a_cell_that_starts_like_a_formula_is_written_as_text_and_read_back_unchanged(value):
    buffer = io.StringIO()
    SafeWriter(buffer).writerow([value, 1.5])
    written = next(csv.reader(io.StringIO(buffer.getvalue())))
    assert written[0] == "'" + value and written[1] == "1.5"
    assert read_cell(written[0]) == value


@pytest.mark.parametrize("value", ["-1.5", "good.tiff", "", "O'Brien.tiff", 3, None])
def test_numbers_and_plain_text_are_left_alone(value):
    assert text_cell(value) == value
    buffer = io.StringIO()
    SafeDictWriter(buffer, fieldnames=["a"]).writerow({"a": value})
    assert next(csv.reader(io.StringIO(buffer.getvalue()))) == ["" if value is None else str(value)]


def _models_copy(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(default_models_dir() / "manifest.json", models / "manifest.json")
    return models


@pytest.mark.parametrize("manifest, problem", [
    ([], "must be an object of model name → entry, not a list"),
    ({"classifier": {"file": "classifier.safetensors", "version": "2"}}, "entry 'classifier' has no sha256"),
    ({"classifier": "classifier.safetensors"}, "entry 'classifier' has no file, version, sha256"),
    ({"classifier": {"file": "../../etc/passwd", "version": "2", "sha256": "0" * 64}}, "a model file lies in this folder"),
])
def test_a_manifest_of_the_wrong_shape_is_one_line_naming_it(tmp_path, manifest, problem):
    models = _models_copy(tmp_path)
    (models / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError) as err:
        load_weights(models, "classifier")
    assert str(err.value).startswith(str(models / "manifest.json")) and problem in str(err.value)


def test_an_out_path_that_is_a_file_or_under_one_is_one_line(tmp_path):
    a_file = tmp_path / "report.txt"
    a_file.write_text("x")
    for out, problem in ((a_file, "is a file, not a folder"), (a_file / "out", "lies under a file")):
        with pytest.raises(InputError, match=problem) as err, batch_lock(out):
            pass
        assert str(err.value).startswith(str(out))
        assert main(["run", str(tmp_path / "none.tiff"), "--out", str(out)]) == 2


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_folder_is_one_line(tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        with pytest.raises(InputError, match="cannot be written") as err, batch_lock(out):
            pass
        assert str(err.value).startswith(str(out))
    finally:
        out.chmod(0o700)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_photographs_exif_orientation_is_applied_as_viewers_show_it(tmp_path, orientation):
    import numpy as np
    from PIL import Image, ImageOps

    from bmpipe.imaging.image_files import read_rgb
    from bmpipe.slide import open_slide

    rng = np.random.default_rng(orientation)
    stored = np.kron(rng.integers(0, 255, (6, 10, 3), dtype=np.uint8), np.ones((16, 16, 1), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"field-{orientation}.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())
    with Image.open(path) as image:
        shown = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    with open_slide(path, mpp=0.1) as field:
        assert field.dimensions == (shown.shape[1], shown.shape[0])
        pixels = field.read_region(0, 0, *field.dimensions, field.mpp)
    assert np.abs(pixels.astype(int) - shown).mean() < 2
    assert np.abs(read_rgb(path).astype(int) - shown).mean() < 2  # single-cell images agree with slides
