import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bmpipe.records import Cells
from bmpipe.stages.aggregate import differential
from bmpipe.taxonomy import GROUPS, load_taxonomy

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
    assert d.n_detected == 117 and d.counts["KSC"] == 7 and d.counts["MGK"] == 2
    assert d.blast_pct == pytest.approx(12.0) and d.percent["NGS"] == pytest.approx(50.0)
    assert d.me_ratio == pytest.approx(60 / 20)
    assert d.group_counts["myeloid"] == 60 and d.group_percent["erythroid"] == pytest.approx(20.0)
    assert not d.meets_minimum_count and d.minimum_count == 500
    assert d.findings[0].kind == "count" and d.findings[0].borderline
    assert "smudge cell (KSC)" in d.denominator and "megakaryocyte (MGK)" in d.denominator
    assert set(d.excluded) == {"KSC", "ART", "NIF", "MGK", "PLT"} and not set(d.excluded) & set(d.percent)


def test_intervals_of_a_hand_made_count():
    d = differential(make_cells(["BLA"] * 25 + ["NGS"] * 475), "case")
    assert d.blast_ci95 == pytest.approx((3.26, 7.29), abs=0.01)  # the 500-cell example: 3.3-7.3
    assert d.group_percent_ci95["blasts"] == d.blast_ci95 == d.percent_ci95["BLA"]
    assert d.meets_minimum_count and not d.findings[0].borderline


def test_me_ratio_interval():
    d = differential(make_cells(["NGS"] * 300 + ["EBO"] * 100), "case")
    low, high = d.me_ratio_ci95
    assert d.me_ratio == pytest.approx(3.0) and low < 3.0 < high
    assert (low, high) == pytest.approx((2.385, 3.801), abs=0.005)  # exact CI of p=0.75, n=400 as p/(1-p)
    assert differential(make_cells(["NGS"] * 3), "case").me_ratio_ci95 is None


def test_unidentified_cells_are_shown_but_leave_the_denominator():
    d = differential(make_cells(["NIF", "NGS", "NGS", "NGS"], scores=[0.3, 0.9, 0.9, 0.9]), "case")
    assert d.n_unidentified == 1 and d.counts["NIF"] == 1 and d.n_counted == 3 and d.blast_pct == 0.0


def test_dysplasia_share_per_lineage():
    labels = ["NGS"] * 10 + ["EBO"] * 4
    d = differential(make_cells(labels, dysplasia=[0.9] * 3 + [0.1] * 7 + [0.8] + [0.2] * 3), "case")
    assert d.dysplasia_pct["granulocytic"] == pytest.approx(30.0)
    assert d.dysplasia_pct["erythroid"] == pytest.approx(25.0)
    assert d.dysplasia_counts == {"granulocytic": 3, "erythroid": 1, "megakaryocytic": 0}
    assert d.dysplasia_n["megakaryocytic"] == 0


def test_platelets_are_not_scored_for_megakaryocytic_dysplasia():
    d = differential(make_cells(["MGK"] * 4 + ["PLT"] * 16, dysplasia=[0.9] + [0.1] * 3 + [0.9] * 16), "case")
    assert d.dysplasia_n["megakaryocytic"] == 4 and d.dysplasia_pct["megakaryocytic"] == pytest.approx(25.0)


def test_a_neutrophil_with_granule_grade_2_is_dysplastic_whatever_its_probability():
    cells = make_cells(["NGS"] * 4, dysplasia=[0.1] * 4)
    cells.dysplasia_grade = np.array([0, 1, 2, 3])
    assert differential(cells, "case").dysplasia_pct["granulocytic"] == pytest.approx(50.0)


def test_empty_slide_gives_zero_counts_not_errors():
    d = differential(Cells.empty(), "blank")
    assert d.n_counted == 0 and d.blast_pct == 0.0 and d.blast_ci95 == (0.0, 100.0) and d.me_ratio is None


@pytest.mark.parametrize("labels, seen", [([], "no nucleated cell was detected"),
                                           (["NIF"] * 3 + ["KSC"] * 2, "5 cells were detected but none could be counted")])
def test_nothing_counted_gives_no_finding_but_why(labels, seen):
    d = differential(make_cells(labels), "wrong-mpp")
    assert [f.kind for f in d.findings] == ["count"]
    assert seen in d.findings[0].text and "resolution" in d.findings[0].text and d.findings[0].borderline


def test_an_unknown_code_is_refused_by_name():
    with pytest.raises(KeyError, match="XYZ"):
        differential(make_cells(["NGS", "XYZ"]), "case")


SYSTEMS = ("who2016", "who2022", "icc2022")


@pytest.mark.parametrize("blasts, pct_text, categories", [
    (499, "4.99%", (None, None, None)),
    (500, "5.0%", ("MDS-EB-1", "MDS-IB1", "MDS-EB")),
    (999, "9.99%", ("MDS-EB-1", "MDS-IB1", "MDS-EB")),
    (1000, "10.0%", ("MDS-EB-2", "MDS-IB2", "MDS/AML")),
    (1999, "19.99%", ("MDS-EB-2", "MDS-IB2", "MDS/AML")),
    (2000, "20.0%", ("AML", "AML", "AML")),
])
def test_hand_made_counts_at_every_threshold_in_every_system(blasts, pct_text, categories):
    """10,000 counted cells: the edge values 4.99, 5, 9.99, 10, 19.99 and 20% exactly, through the whole stage."""
    d = differential(make_cells(["BLA"] * blasts + ["NGS"] * (10_000 - blasts)), "case")
    assert d.blast_pct == pytest.approx(blasts / 100)
    found = [f for f in d.findings if f.kind == "blasts"]
    assert [(f.system, f.category) for f in found] == list(zip(SYSTEMS, categories))
    for f in found:
        assert f.text.startswith(f"Blast percentage {pct_text} (95% CI ")
        assert f.borderline  # at a threshold, even 10,000 cells cannot place it on one side


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(list(TAX.codes)), min_size=1, max_size=400))
def test_percentages_sum_to_100_and_intervals_hold_estimates(labels):
    d = differential(make_cells(labels), "case")
    assert d.n_counted + sum(d.counts[c] for c in d.excluded) == d.n_detected == len(labels)
    if d.n_counted:
        assert sum(d.percent.values()) == pytest.approx(100.0)
        assert sum(d.group_percent.values()) == pytest.approx(100.0)
    for code, pct in d.percent.items():
        low, high = d.percent_ci95[code]
        assert 0 <= low <= pct + 1e-9 and pct <= high + 1e-9 and high <= 100
    for group in GROUPS:
        low, high = d.group_percent_ci95[group]
        assert low - 1e-9 <= d.group_percent[group] <= high + 1e-9
        members = [c for c in TAX.codes_of_group(group) if c in d.percent]
        assert d.group_percent[group] == pytest.approx(sum(d.percent[c] for c in members))
    assert d.blast_ci95[0] - 1e-9 <= d.blast_pct <= d.blast_ci95[1] + 1e-9
    assert d.plasma_ci95[0] - 1e-9 <= d.plasma_pct <= d.plasma_ci95[1] + 1e-9
    if d.me_ratio is not None:
        assert d.me_ratio_ci95[0] - 1e-9 <= d.me_ratio <= d.me_ratio_ci95[1] + 1e-9
    assert len([f for f in d.findings if f.kind == "blasts"]) == (3 if d.n_counted else 0)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["NGS", "MYB", "EBO", "PEB", "MGK", "PLT"]), st.floats(0, 1)),
                min_size=1, max_size=200))
def test_dysplastic_fractions_hold_their_intervals(cells):
    labels, scores = zip(*cells)
    d = differential(make_cells(list(labels), dysplasia=list(scores)), "case")
    for lineage, pct in d.dysplasia_pct.items():
        low, high = d.dysplasia_ci95[lineage]
        assert low - 1e-9 <= pct <= high + 1e-9
        assert d.dysplasia_counts[lineage] <= d.dysplasia_n[lineage]
