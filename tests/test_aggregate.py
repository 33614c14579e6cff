import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bmpipe.records import Cells
from bmpipe.stages.aggregate import differential
from bmpipe.taxonomy import load_taxonomy

TAX = load_taxonomy()


def make_cells(labels, scores=None, dysplasia=None):
    n = len(labels)
    cells = Cells.from_boxes(np.tile([0, 0, 10, 10], (n, 1)), np.ones(n))
    cells = cells.with_labels(np.array(labels, dtype=object), np.ones(n) if scores is None else np.array(scores))
    if dysplasia is not None:
        cells.dysplasia_score = np.asarray(dysplasia, dtype=float)
    return cells


def test_hand_made_count():
    labels = ["BLA"] * 12 + ["NGS"] * 50 + ["MYB"] * 10 + ["EBO"] * 20 + ["LYT"] * 8
    labels += ["KSC"] * 7 + ["PLT"] * 5 + ["MGK"] * 2 + ["ART"] * 3
    d = differential(make_cells(labels), "case")
    assert d.n_counted == 100  # smudge cells, platelets, megakaryocytes and artefacts are not counted
    assert d.counts["KSC"] == 7 and d.counts["MGK"] == 2
    assert d.blast_pct == pytest.approx(12.0)
    assert d.me_ratio == pytest.approx(60 / 20)
    assert d.group_counts["myeloid"] == 60 and d.group_percent["erythroid"] == pytest.approx(20.0)
    assert not d.meets_minimum_count
    assert d.findings[0].kind == "count" and d.findings[0].borderline
    assert "smudge cell (KSC)" in d.denominator


def test_unidentified_cells_are_shown_but_leave_the_denominator():
    d = differential(make_cells(["NIF", "NGS", "NGS", "NGS"], scores=[0.3, 0.9, 0.9, 0.9]), "case")
    assert d.n_unidentified == 1 and d.counts["NIF"] == 1 and d.n_counted == 3 and d.blast_pct == 0.0


def test_dysplasia_share_per_lineage():
    labels = ["NGS"] * 10 + ["EBO"] * 4
    d = differential(make_cells(labels, dysplasia=[0.9] * 3 + [0.1] * 7 + [0.8] + [0.2] * 3), "case")
    assert d.dysplasia_pct["granulocytic"] == pytest.approx(30.0)
    assert d.dysplasia_pct["erythroid"] == pytest.approx(25.0)
    assert d.dysplasia_n["megakaryocytic"] == 0


def test_a_neutrophil_with_granule_grade_2_is_dysplastic_whatever_its_probability():
    cells = make_cells(["NGS"] * 4, dysplasia=[0.1] * 4)
    cells.dysplasia_grade = np.array([0, 1, 2, 3])
    assert differential(cells, "case").dysplasia_pct["granulocytic"] == pytest.approx(50.0)


def test_empty_slide_gives_zero_counts_not_errors():
    d = differential(Cells.empty(), "blank")
    assert d.n_counted == 0 and d.blast_pct == 0.0 and d.blast_ci95 == (0.0, 100.0) and d.me_ratio is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(list(TAX.codes)), min_size=1, max_size=400))
def test_percentages_sum_to_100_and_intervals_hold_estimates(labels):
    d = differential(make_cells(labels), "case")
    if d.n_counted:
        assert sum(d.percent.values()) == pytest.approx(100.0)
        assert sum(d.group_percent.values()) == pytest.approx(100.0)
    for code, pct in d.percent.items():
        low, high = d.percent_ci95[code]
        assert low - 1e-9 <= pct <= high + 1e-9
    assert d.blast_ci95[0] - 1e-9 <= d.blast_pct <= d.blast_ci95[1] + 1e-9
