"""Cases of field photographs (``bmpipe run --fields``) as a batch: isolation per case and per photograph,
one folder per case even when two share a name, manifest, resume, and a GeoJSON per photograph for QuPath."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bmpipe.cli import main
from bmpipe.nn.weights import default_models_dir

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (default_models_dir() / "detector-unet.safetensors").exists(),
                       reason="shipped detector is absent"),
]
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "case-fields"


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """Two cases both named ``case`` (one with an unreadable photograph), an empty folder, a stray file."""
    root = tmp_path_factory.mktemp("fields")
    for lab in ("lab-a", "lab-b"):
        shutil.copytree(EXAMPLE, root / lab / "case")
    (root / "lab-b" / "case" / "field_0004.jpg").write_text("not a photograph")
    (root / "empty").mkdir()
    (root / "stray.jpg").write_bytes((EXAMPLE / "field_0000.jpg").read_bytes())
    paths = [root / "lab-a" / "case", root / "empty", root / "stray.jpg", root / "lab-b" / "case"]
    out = root / "out"
    code = main(["run", *map(str, paths), "--fields", "--mpp", "0.1", "--out", str(out)])
    return root, out, code


def _manifest(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "manifest.csv", keep_default_na=False)


def test_a_bad_case_fails_alone_and_the_others_are_counted(cases):
    root, out, code = cases
    assert code == 1
    rows = {Path(r.slide).relative_to(root).as_posix(): r for r in _manifest(out).itertuples()}
    assert {k: r.status for k, r in rows.items()} == {
        "lab-a/case": "ok", "empty": "failed", "stray.jpg": "failed", "lab-b/case": "ok"}
    assert rows["empty"].error == f"{root / 'empty'}: holds no field photographs (.bmp, .jpeg, .jpg, .png, .tif, .tiff)"
    assert rows["stray.jpg"].error.startswith(f"{root / 'stray.jpg'}: --fields needs a folder")


def test_cases_of_the_same_name_get_their_own_folders(cases):
    _, out, _ = cases
    ok = _manifest(out).query("status == 'ok'")
    folders = [Path(p) for p in ok.output]
    assert len(set(folders)) == 2 and all(f.parent == out and f.name.startswith("case-") for f in folders)
    for folder in folders:
        assert {"report.html", "differential.json", "cells.parquet", "run.json"} <= {p.name for p in folder.iterdir()}
    sources = {json.loads((f / "run.json").read_text())["source"] for f in folders}
    assert len(sources) == 2


def test_an_unreadable_photograph_is_skipped_and_listed_and_the_case_counted_from_the_rest(cases):
    root, out, _ = cases
    row = _manifest(out).set_index("slide").loc[str(root / "lab-b" / "case")]
    assert "1 photograph(s) skipped: field_0004.jpg:" in row.warning
    data = json.loads((Path(row.output) / "differential.json").read_text())
    assert data["n_fields"] == 4 and len(data["slide_summary"]["skipped_fields"]) == 1
    assert "field_0004.jpg" in (Path(row.output) / "report.html").read_text()
    same = _manifest(out).set_index("slide").loc[str(root / "lab-a" / "case")]
    other = json.loads((Path(same.output) / "differential.json").read_text())
    assert data["counts"] == other["counts"]  # the same four photographs, counted alike


def test_each_photograph_gets_a_geojson_whose_cell_ids_are_the_tables(cases):
    root, out, _ = cases
    folder = Path(_manifest(out).set_index("slide").loc[str(root / "lab-a" / "case")].output)
    cells = pd.read_parquet(folder / "cells.parquet")
    for photo in sorted(EXAMPLE.glob("*.jpg")):
        features = json.loads((folder / "geojson" / f"{photo.name}.geojson").read_text())["features"]
        ids = [int(f["properties"]["measurements"]["cell id"]) for f in features]
        assert ids == list(cells.loc[cells["field"] == photo.name, "cell_id"])
        for f, (_, row) in zip(features, cells.set_index("cell_id").loc[ids].iterrows()):
            x0, y0 = f["geometry"]["coordinates"][0][0]
            assert (x0, y0) == (round(row.x0, 1), round(row.y0, 1))


def test_a_rerun_skips_finished_cases_and_keeps_their_folders(cases):
    root, out, _ = cases
    before = _manifest(out).query("status == 'ok'")
    code = main(["run", str(root / "lab-a" / "case"), str(root / "lab-b" / "case"), "--fields", "--mpp", "0.1",
                 "--out", str(out)])
    after = _manifest(out)
    assert code == 0 and list(after.status) == ["skipped", "skipped"]
    assert list(after.output) == list(before.output)


def test_photographs_without_a_resolution_fail_their_case_naming_the_photograph(tmp_path):
    assert main(["run", str(EXAMPLE), "--fields", "--out", str(tmp_path)]) == 1
    row = _manifest(tmp_path).iloc[0]
    assert row.status == "failed" and row.error.startswith(f"{EXAMPLE}: none of its 4 photograph(s) could be analysed")
    assert "field_0000.jpg" in row.error and "resolution" in row.error
    assert not (tmp_path / "case-fields").exists()
