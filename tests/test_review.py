"""The doctor-in-the-loop: review.csv and crops written with a slide's outputs, and ``bmpipe review import``."""

import csv
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from bmpipe.cli import main
from bmpipe.errors import InputError
from bmpipe.records import Cells
from bmpipe.report.figures import jpeg_bytes
from bmpipe.report.outputs import write_slide_outputs
from bmpipe.report.review import import_review
from bmpipe.report.review_files import REVIEW_COLUMNS, REVIEW_PER_CLASS, select_for_review
from bmpipe.resolution import Mpp
from bmpipe.stages.aggregate import differential
from tests.test_report import result


def slide_result():
    r = result()
    picked = select_for_review(r.cells)
    r.crops = {int(i): jpeg_bytes(np.full((128, 128, 3), 40 + i % 200, np.uint8)) for i in picked}
    return r


def read_rows(path):
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def edit(folder, corrections, path=None):
    """Fill corrected_class for the given cell ids, as a hematologist would in a spreadsheet."""
    path = path or folder / "review.csv"
    rows = read_rows(folder / "review.csv")
    for row in rows:
        row["corrected_class"] = corrections.get(int(row["cell_id"]), "")
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=REVIEW_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def test_selection_takes_the_least_confident_and_a_sample_per_class():
    n = 200
    labels = np.array(["BLA"] * 150 + ["NGS"] * 50, dtype=object)
    scores = np.linspace(0.3, 1.0, n)
    cells = Cells.from_boxes(np.tile([0, 0, 10, 10], (n, 1)), np.ones(n)).with_labels(labels, scores)
    picked = select_for_review(cells)
    blasts = picked[labels[picked] == "BLA"]
    assert len(blasts) == REVIEW_PER_CLASS == len(set(blasts))
    assert set(range(REVIEW_PER_CLASS // 2)) <= set(blasts)  # the lowest-scoring blasts are all offered
    assert (blasts >= REVIEW_PER_CLASS // 2).sum() == REVIEW_PER_CLASS // 2  # and a random half beyond them
    assert (labels[picked] == "NGS").sum() == REVIEW_PER_CLASS
    assert list(picked) == list(select_for_review(cells))  # reproducible


def test_review_file_names_existing_crops_and_leaves_corrections_empty(tmp_path):
    folder = write_slide_outputs(slide_result(), tmp_path)
    rows = read_rows(folder / "review.csv")
    assert tuple(rows[0]) == REVIEW_COLUMNS
    assert len(rows) == 24 + 24 + 24 + 5  # BLA 30, NGS 120, EBO 40 capped at 24 each; all 5 KSC
    frame = pd.read_parquet(folder / "cells.parquet")
    for row in rows:
        assert row["corrected_class"] == ""
        assert (folder / row["crop_path"]).is_file() and row["crop_path"].startswith(f"crops/{row['predicted_class']}/")
        assert frame["label"].iat[int(row["cell_id"])] == row["predicted_class"]


def test_without_crops_the_review_file_still_lists_the_cells(tmp_path):
    folder = write_slide_outputs(result(), tmp_path)
    rows = read_rows(folder / "review.csv")
    assert len(rows) == 77 and all(r["crop_path"] == "" for r in rows) and not (folder / "crops").exists()


def test_a_case_of_fields_names_each_cells_photograph(tmp_path):
    r = result()
    r.smear, r.cell_fields = None, np.array([f"field-{i % 4}.jpg" for i in range(len(r.cells))], dtype=object)
    r.slide = dataclasses.replace(r.slide, n_fields=4)
    folder = write_slide_outputs(r, tmp_path)
    rows = read_rows(folder / "review.csv")
    assert all(row["field"] == f"field-{int(row['cell_id']) % 4}.jpg" for row in rows)
    assert not (folder / "cells.geojson").exists() and not (folder / "figures" / "overview.jpg").exists()
    assert "4 field photographs of one case" in (folder / "report.html").read_text()
    assert pd.read_parquet(folder / "cells.parquet")["field"].nunique() == 4


def test_import_recomputes_the_differential_and_keeps_labels_for_retraining(tmp_path):
    folder = write_slide_outputs(slide_result(), tmp_path)
    before = json.loads((folder / "differential.json").read_text())
    rows = edit(folder, {})
    blasts = [int(r["cell_id"]) for r in rows if r["predicted_class"] == "BLA"][:6]
    ngs = next(int(r["cell_id"]) for r in rows if r["predicted_class"] == "NGS")
    corrections = {i: "lyt" for i in blasts[:5]} | {blasts[5]: "BLA", ngs: "BLA"}  # lower case is accepted
    edit(folder, corrections)
    assert main(["review", "import", str(folder)]) == 0

    data = json.loads((folder / "differential.json").read_text())
    assert data["reviewed"] and data["n_reviewed"] == len(rows) and data["n_corrected"] == 6
    assert data["counts"]["BLA"] == before["counts"]["BLA"] - 5 + 1 and data["counts"]["LYT"] == 5
    assert data["blast_pct"] == pytest.approx(100 * 26 / 190)
    assert data["models"] == before["models"] and data["slide_summary"] == before["slide_summary"]
    frame = pd.read_parquet(folder / "cells.parquet")
    assert (frame["label"] == "BLA").sum() == 30  # the model's labels are kept
    assert dict(frame.loc[frame["corrected_label"] != "", "corrected_label"]) == {
        i: label.upper() for i, label in corrections.items()
    }
    html = (folder / "report.html").read_text()
    assert "Reviewed" in html and "13.7%" in html and "predicted BLA" in html
    assert (folder / "report.pdf").read_bytes()[:5] == b"%PDF-"
    geo = json.loads((folder / "cells.geojson").read_text())
    assert geo["features"][blasts[0]]["properties"]["classification"]["name"] == "LYT"

    retrain = pd.read_csv(tmp_path / "corrections.csv")
    assert list(retrain.columns) == ["path", "label"] and len(retrain) == 7
    assert sorted(retrain["label"]) == ["BLA", "BLA"] + ["LYT"] * 5
    assert all((tmp_path / p).is_file() and p.startswith(f"corrections/{label}/") for p, label in retrain.values)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    # importing again (say, after a second look) replaces the slide's earlier labels instead of adding to them
    edit(folder, {blasts[0]: "LYT"})
    import_review(folder)
    retrain = pd.read_csv(tmp_path / "corrections.csv")
    assert list(retrain["label"]) == ["LYT"] and len(list((tmp_path / "corrections").rglob("*.jpg"))) == 1
    data = json.loads((folder / "differential.json").read_text())
    assert data["counts"]["BLA"] == 29 and data["n_corrected"] == 1


def test_a_review_without_crops_keeps_the_analysis_gallery_and_its_overlays(tmp_path):
    r = result()
    r.gallery_overlays = {"BLA": [jpeg_bytes(np.zeros((24, 24, 3), np.uint8))] * 2}
    folder = write_slide_outputs(r, tmp_path)
    ids = [int(row["cell_id"]) for row in edit(folder, {})]
    edit(folder, {ids[0]: "LYT"})
    import_review(folder)
    html = (folder / "report.html").read_text()
    assert html.count('alt="BLA"') == 2 and html.count('alt="BLA Grad-CAM"') == 2
    assert json.loads((folder / "differential.json").read_text())["n_corrected"] == 1


def test_corrected_crops_are_training_data_for_the_classifier(tmp_path):
    from bmpipe.datasets.cell_data import STORE_PX, load_folder

    folder = write_slide_outputs(slide_result(), tmp_path)
    rows = edit(folder, {})
    edit(folder, {int(r["cell_id"]): "PLM" for r in rows if r["predicted_class"] == "NGS"})
    import_review(folder)
    train, held = load_folder(tmp_path / "corrections", Mpp(0.25))
    assert len(train) + len(held) == 24 and set(train.codes) | set(held.codes) == {"PLM"}
    assert train.images.shape[1:] == (STORE_PX, STORE_PX, 3)


@pytest.mark.parametrize("value, problem", [
    ("XYZ", "line 3: unknown class code 'XYZ' in corrected_class"),
    ("B LA", "line 3: unknown class code 'B LA'"),
])
def test_an_unknown_code_names_the_file_and_line_and_changes_nothing(tmp_path, value, problem):
    folder = write_slide_outputs(slide_result(), tmp_path)
    before = (folder / "differential.json").read_text()
    rows = edit(folder, {})
    edited = tmp_path / "edited.csv"
    edit(folder, {int(rows[1]["cell_id"]): value}, path=edited)
    with pytest.raises(InputError) as err:
        import_review(folder, edited)
    assert str(err.value).startswith(str(edited)) and problem in str(err.value)
    assert main(["review", "import", str(folder), "--review", str(edited)]) == 2
    assert (folder / "differential.json").read_text() == before and not (tmp_path / "corrections.csv").exists()


def test_bad_cell_ids_and_missing_columns_are_refused(tmp_path):
    folder = write_slide_outputs(slide_result(), tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("cell_id,corrected_class\n999999,BLA\n")
    with pytest.raises(InputError, match="line 2: cell_id 999999 is not a cell of this slide"):
        import_review(folder, bad)
    bad.write_text("cell,label\n1,BLA\n")
    with pytest.raises(InputError, match="has no column cell_id, corrected_class"):
        import_review(folder, bad)
    with pytest.raises(InputError, match="not a bmpipe slide output folder"):
        import_review(tmp_path)


def test_recomputed_differential_equals_a_fresh_count_of_the_corrected_labels(tmp_path):
    r = slide_result()
    folder = write_slide_outputs(r, tmp_path)
    ids = [int(row["cell_id"]) for row in edit(folder, {})]
    corrections = {ids[0]: "EBO", ids[1]: "EBO", ids[-1]: "MON"}
    edit(folder, corrections)
    import_review(folder)
    labels = r.cells.label.copy()
    for i, label in corrections.items():
        labels[i] = label
    fresh = differential(r.cells.with_labels(labels, r.cells.label_score), "case-1").as_dict()
    data = json.loads((folder / "differential.json").read_text())
    for key in ("counts", "percent", "blast_pct", "me_ratio", "dysplasia_pct", "n_counted"):
        assert data[key] == json.loads(json.dumps(fresh[key])), key


@pytest.mark.parametrize("crop_path", ["../../../etc/passwd", "/etc/passwd", "crops/NGS/0.jpg"])
def test_a_row_naming_another_file_as_its_crop_is_refused(tmp_path, crop_path):
    folder = write_slide_outputs(slide_result(), tmp_path)
    before = (folder / "differential.json").read_text()
    rows = edit(folder, {})
    victim = next(r for r in rows if r["predicted_class"] == "BLA")
    victim["crop_path"], victim["corrected_class"] = crop_path, "LYT"
    with open(folder / "review.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=REVIEW_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(InputError, match=rf"line \d+: crop_path .* is not cell {victim['cell_id']}'s crop") as err:
        import_review(folder)
    assert "\n" not in str(err.value)
    assert (folder / "differential.json").read_text() == before and not (tmp_path / "corrections").exists()


def test_a_crop_replaced_by_a_link_or_a_non_image_is_not_copied_for_retraining(tmp_path):
    folder = write_slide_outputs(slide_result(), tmp_path)
    rows = edit(folder, {})
    blasts = [r for r in rows if r["predicted_class"] == "BLA"][:3]
    (folder / blasts[0]["crop_path"]).unlink()
    (folder / blasts[0]["crop_path"]).symlink_to("/etc/hostname")
    (folder / blasts[1]["crop_path"]).write_text("root:x:0:0\n")
    edit(folder, {int(r["cell_id"]): "LYT" for r in blasts})
    import_review(folder)
    copied = sorted(p.name for p in (tmp_path / "corrections").rglob("*"))
    assert copied == ["LYT", f"case-1--{blasts[2]['cell_id']}.jpg"]
    assert "root:x" not in (folder / "report.html").read_text()
    assert json.loads((folder / "differential.json").read_text())["n_corrected"] == 3


def test_a_semicolon_separated_review_from_a_spreadsheet_is_read(tmp_path):
    folder = write_slide_outputs(slide_result(), tmp_path)
    rows = edit(folder, {})
    with open(folder / "review.csv", "w", newline="", encoding="utf-8-sig") as f:
        writer = csv.DictWriter(f, fieldnames=REVIEW_COLUMNS, delimiter=";")
        writer.writeheader()
        writer.writerows({**r, "score": r["score"].replace(".", ","),
                          "corrected_class": "LYT" if i < 2 else ""} for i, r in enumerate(rows))
    import_review(folder)
    assert json.loads((folder / "differential.json").read_text())["n_corrected"] == 2


def test_import_rebuilds_the_cohort_summary(tmp_path):
    from bmpipe.report.cohort import write_cohort_summary

    folder = write_slide_outputs(slide_result(), tmp_path)
    write_cohort_summary(tmp_path)
    before = read_rows(tmp_path / "cohort.csv")[0]
    assert before["reviewed"] == "False"
    rows = edit(folder, {})
    edit(folder, {int(r["cell_id"]): "LYT" for r in rows if r["predicted_class"] == "BLA"})
    import_review(folder)
    after = read_rows(tmp_path / "cohort.csv")[0]
    assert after["reviewed"] == "True" and float(after["blast_pct"]) < float(before["blast_pct"])
    assert "(reviewed)" in (tmp_path / "cohort.html").read_text()


def shade_thumbnails(rows):
    """Thumbnails of one flat shade per cell, (cell id × 7) mod 250, to find each cell on its sheet."""
    from bmpipe.report.review_page import THUMB_PX

    return np.stack([np.full((THUMB_PX, THUMB_PX, 3), (7 * i) % 250, np.uint8) for i in rows]).reshape(
        -1, THUMB_PX, THUMB_PX, 3)


def test_every_cell_is_on_the_sheet_of_its_page_least_confident_first(tmp_path):
    from bmpipe.report.figures import decode_rgb
    from bmpipe.report.review_page import SHEET_SIDE, THUMB_PX, page_layout

    r = result()
    r.thumbnails = shade_thumbnails
    folder = write_slide_outputs(r, tmp_path)
    pages = page_layout(r.cells.label, r.cells.label_score)
    assert [code for code, _ in pages] == ["BLA", "NGS", "NGS", "EBO", "KSC"]  # 100 a page, taxonomy order
    assert sorted(np.concatenate([rows for _, rows in pages])) == list(range(len(r.cells)))
    for n, (code, rows) in enumerate(pages):
        assert list(r.cells.label_score[rows]) == sorted(r.cells.label_score[rows])
        sheet = decode_rgb((folder / "review" / "sheets" / f"{n:05d}.jpg").read_bytes())
        for i, cell in enumerate(rows):
            y, x = (i // SHEET_SIDE + 0.5) * THUMB_PX, (i % SHEET_SIDE + 0.5) * THUMB_PX
            assert abs(int(sheet[int(y), int(x), 0]) - (7 * cell) % 250) <= 3
    assert not (folder / "review" / ".thumbnails.npy").exists()
    assert '"sheets":true' in (folder / "review.html").read_text()


def test_a_slide_without_cells_gets_an_empty_review_page(tmp_path):
    r = result()
    r.cells = r.cells.take(np.zeros(0, np.int64))
    r.differential = differential(r.cells, "case-1")
    r.thumbnails = shade_thumbnails
    folder = write_slide_outputs(r, tmp_path)
    assert '"pages":[]' in (folder / "review.html").read_text()
    assert list((folder / "review" / "sheets").iterdir()) == []


def test_a_browser_review_file_lists_every_cell_and_imports_as_verified(tmp_path):
    from bmpipe.report.review import BrowserReviewFile, crops_in

    r = slide_result()
    r.smear, r.cell_fields = None, np.array([f"=field-{i % 2}.jpg" for i in range(len(r.cells))], dtype=object)
    r.slide = dataclasses.replace(r.slide, n_fields=2)
    folder = write_slide_outputs(r, tmp_path)
    frame = pd.read_parquet(folder / "cells.parquet")
    crops = crops_in(folder, frame["label"])
    assert crops == set(r.crops)
    BrowserReviewFile(folder, frame, crops).write({0: "LYT", 40: "BLA"}, "2026-01-02 03:04 UTC")
    rows = read_rows(folder / "review.csv")
    assert len(rows) == 195 and rows[1]["field"] == "'=field-1.jpg"  # a formula-like name stays text
    assert all(row["crop_path"] == (f"crops/{row['predicted_class']}/{row['cell_id']}.jpg"
                                    if int(row["cell_id"]) in crops else "") for row in rows)
    import_review(folder)
    data = json.loads((folder / "differential.json").read_text())
    assert data["n_corrected"] == 2 and data["n_reviewed"] == 195
    assert data["review_note"].startswith("Verified: 2 of 195 cells relabelled, in the browser review of "
                                          "2026-01-02 03:04 UTC")
