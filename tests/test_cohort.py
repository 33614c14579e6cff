"""The cohort summary of a run folder: one row per slide, from each differential.json."""

import json

import numpy as np
import pandas as pd

from bmpipe.records import Cells
from bmpipe.report.cohort import write_cohort_summary
from bmpipe.stages.aggregate import differential


def write_slide(out, name, labels, dysplasia=None):
    n = len(labels)
    cells = Cells.from_boxes(np.tile([0, 0, 10, 10], (n, 1)), np.ones(n))
    cells = cells.with_labels(np.array(labels, dtype=object), np.ones(n))
    if dysplasia is not None:
        cells.dysplasia_score = np.asarray(dysplasia, float)
    folder = out / name
    folder.mkdir(parents=True)
    (folder / "differential.json").write_text(json.dumps(differential(cells, name).as_dict()))


def test_one_row_per_slide_with_the_numbers_and_flags(tmp_path):
    write_slide(tmp_path, "a-low", ["BLA"] * 30 + ["NGS"] * 900 + ["EBO"] * 300 + ["PLM"] * 20)
    write_slide(tmp_path, "b-high", ["BLA"] * 150 + ["NGS"] * 700 + ["EBO"] * 100 + ["PLM"] * 150,
                dysplasia=[0.0] * 150 + [0.9] * 100 + [0.0] * 600 + [0.0] * 250)
    write_slide(tmp_path, "c-small", ["BLA"] * 5 + ["NGS"] * 95)
    csv_path, html_path = write_cohort_summary(tmp_path)
    assert (csv_path, html_path) == (tmp_path / "cohort.csv", tmp_path / "cohort.html")
    table = pd.read_csv(csv_path).set_index("slide")
    assert list(table.index) == ["a-low", "b-high", "c-small"]
    assert table.loc["a-low", "cells_counted"] == 1250 and table.loc["a-low", "blast_pct"] == 2.4
    assert table.loc["a-low", "me_ratio"] == 3.0 and table.loc["a-low", "blasts_who2022"] == "below MDS-IB1"
    high = table.loc["b-high"]
    assert high["blast_pct"] == 13.64 and high["blast_ci_low"] < 13.64 < high["blast_ci_high"]
    assert (high["blasts_who2016"], high["blasts_who2022"], high["blasts_icc2022"]) == ("MDS-EB-2", "MDS-IB2", "MDS/AML")
    assert high["dysplasia_granulocytic_pct"] == 14.29 and "granulocytic dysplasia ≥10%" in high["flags"]
    assert "plasma cells ≥10%" in high["flags"] and "plasma cells ≥60%" not in high["flags"]
    assert "below ICSH minimum" in table.loc["c-small", "flags"]
    assert "borderline blasts" in table.loc["c-small", "flags"]  # 5% of 100 cells: 1.6-11.3
    html = html_path.read_text()
    assert html.count("<tr>") == 4 and 'href="b-high/report.html"' in html and "not a diagnostic device" in html


def test_staging_and_broken_folders_are_left_out_without_failing(tmp_path):
    write_slide(tmp_path, "good", ["BLA"] * 10 + ["NGS"] * 490)
    write_slide(tmp_path, ".good.x.partial", ["BLA"] * 10 + ["NGS"] * 490)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "differential.json").write_text("{not json")
    csv_path, _ = write_cohort_summary(tmp_path)
    assert list(pd.read_csv(csv_path)["slide"]) == ["good"]


def test_an_empty_folder_gives_an_empty_summary(tmp_path):
    csv_path, html_path = write_cohort_summary(tmp_path)
    assert csv_path.read_text().strip() == "slide" and "0 slides" in html_path.read_text()


def test_a_dysplasia_just_below_the_threshold_is_not_flagged(tmp_path):
    write_slide(tmp_path, "edge", ["BLA"] * 10 + ["NGS"] * 490, dysplasia=[0.0] * 10 + [0.9] * 49 + [0.0] * 441)
    path = tmp_path / "edge" / "differential.json"
    data = json.loads(path.read_text())
    data["dysplasia_pct"]["granulocytic"] = 9.996  # rounds to 10.0 in the table, yet lies below 10%
    path.write_text(json.dumps(data))
    csv_path, _ = write_cohort_summary(tmp_path)
    row = pd.read_csv(csv_path, keep_default_na=False).set_index("slide").loc["edge"]
    assert row["dysplasia_granulocytic_pct"] == 10.0 and "dysplasia ≥" not in row["flags"]
