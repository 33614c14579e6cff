import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bmpipe.criteria import (
    blast_findings,
    blast_range,
    crossed_thresholds,
    dysplasia_findings,
    fmt_pct_within,
    load_criteria,
    plasma_findings,
)
from bmpipe.stats import clopper_pearson

#: (pct, WHO 2016, WHO 2022, ICC 2022, range as written) at and beside every threshold.
EDGES = [
    (0.0, None, None, None, "<5%"),
    (4.99, None, None, None, "<5%"),
    (5.0, "MDS-EB-1", "MDS-IB1", "MDS-EB", "5-9%"),
    (9.99, "MDS-EB-1", "MDS-IB1", "MDS-EB", "5-9%"),
    (10.0, "MDS-EB-2", "MDS-IB2", "MDS/AML", "10-19%"),
    (19.99, "MDS-EB-2", "MDS-IB2", "MDS/AML", "10-19%"),
    (20.0, "AML", "AML", "AML", "≥20%"),
    (100.0, "AML", "AML", "AML", "≥20%"),
]
SYSTEMS = {"who2016": "WHO 2016", "who2022": "WHO 2022", "icc2022": "ICC 2022"}


@pytest.mark.parametrize("pct, who2016, who2022, icc2022, span", EDGES)
def test_blast_ranges_at_their_edges(pct, who2016, who2022, icc2022, span):
    assert blast_range(pct)["category"] == {"who2016": who2016, "who2022": who2022, "icc2022": icc2022}


@pytest.mark.parametrize("pct, who2016, who2022, icc2022, span", EDGES)
def test_one_finding_per_system_at_every_edge(pct, who2016, who2022, icc2022, span):
    findings = blast_findings(pct, (pct, pct))
    expected = {"who2016": who2016, "who2022": who2022, "icc2022": icc2022}
    assert [f.system for f in findings] == list(SYSTEMS)
    for f in findings:
        assert f.kind == "blasts" and f.category == expected[f.system] and f.sources == (f.system,)
        assert f"lies in the {span} range of {SYSTEMS[f.system]}" in f.text
        if f.category:
            assert f"{span} range of {SYSTEMS[f.system]} {f.category}." in f.text
        else:
            assert "below" in f.text  # names the first range the system defines instead
        shown = float(re.search(r"Blast percentage ([\d.]+)%", f.text).group(1))
        assert blast_range(shown) is blast_range(pct)  # 4.99 never reads "5.0%"
        assert "diagnos" not in f.text.lower() and not f.borderline


def test_blast_finding_is_worded_as_the_issue_asks():
    findings = {f.system: f for f in blast_findings(12.4, (11.2, 13.7))}
    assert findings["who2022"].text == (
        "Blast percentage 12.4% (95% CI 11.2-13.7) lies in the 10-19% range of WHO 2022 MDS-IB2."
    )
    assert findings["who2016"].text.endswith("10-19% range of WHO 2016 MDS-EB-2.")
    assert "ICC 2022 MDS/AML" in findings["icc2022"].text and "genetics" in findings["icc2022"].text
    assert "genetics" not in findings["who2022"].text  # ICC's >=10% AML note belongs to ICC's finding only


def test_a_500_cell_count_at_5_percent_is_borderline():
    ci = clopper_pearson(25, 500)
    assert ci[0] == pytest.approx(3.3, abs=0.1) and ci[1] == pytest.approx(7.3, abs=0.1)
    findings = blast_findings(5.0, ci)
    assert all(f.borderline and "crosses the 5% threshold" in f.text for f in findings)


def test_thousands_of_cells_place_5_percent_clear_of_the_threshold_only_when_the_interval_allows():
    assert not blast_findings(7.5, clopper_pearson(750, 10_000))[0].borderline
    assert blast_findings(5.2, clopper_pearson(520, 10_000))[0].borderline  # 4.8-5.6 still crosses 5


def test_an_interval_reaching_both_limits_names_both():
    (finding, *_) = blast_findings(7.0, (4.0, 11.0))
    assert "crosses the 5% and 10% thresholds" in finding.text


@pytest.mark.parametrize("pct, shown", [(4.99, "4.99"), (4.999, "4.999"), (9.96, "9.96"), (10.0, "10.0"),
                                         (19.97, "19.97"), (12.44, "12.4")])
def test_percentages_never_round_across_a_threshold(pct, shown):
    band = blast_range(pct)
    assert fmt_pct_within(pct, band["low"], band["high"]) == shown


def test_dysplasia_threshold_is_ten_percent_per_lineage():
    found = dysplasia_findings(
        {"granulocytic": 10.0, "erythroid": 9.99, "megakaryocytic": 0.0},
        {"granulocytic": (9.0, 11.0), "erythroid": (8.0, 9.995), "megakaryocytic": (0.0, 100.0)},
        {"granulocytic": 3000, "erythroid": 1000, "megakaryocytic": 0},
    )
    assert [f.text.split()[1] for f in found] == ["granulocytic", "erythroid"]  # no megakaryocytes: no finding
    assert "10.0% of 3000" in found[0].text and "reaches" in found[0].text
    assert "9.99% of 1000" in found[1].text and "is below" in found[1].text
    assert found[0].borderline and not found[1].borderline


@pytest.mark.parametrize("pct, ci, n_findings, borderline", [
    (2.0, (1.5, 2.6), 0, []),
    (9.99, (9.0, 11.0), 1, [True]),  # just below 10%, interval reaching it
    (10.0, (10.0, 10.0), 1, [False]),
    (12.0, (11.0, 13.0), 1, [False]),
    (59.99, (59.0, 61.0), 2, [False, True]),
    (60.0, (60.0, 60.0), 2, [False, False]),
])
def test_plasma_cell_thresholds_at_their_edges(pct, ci, n_findings, borderline):
    found = plasma_findings(pct, ci)
    assert len(found) == n_findings and [f.borderline for f in found] == borderline
    assert all("clonality" in f.text for f in found)
    if found:
        assert ("reaches" in found[0].text) == (pct >= 10)


def test_criteria_file_cites_every_source_it_uses():
    crit = load_criteria()
    used = set(crit["systems"]) | {crit["minimum_count"]["source"]} | set(crit["dysplasia"]["sources"])
    used |= {rule["source"] for rule in crit["plasma_cells"]}
    assert used <= set(crit["sources"])


@given(st.integers(0, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_clopper_pearson_holds_its_estimate(kn):
    k, n = kn
    low, high = clopper_pearson(k, n)
    estimate = 100.0 * k / n if n else 50.0
    assert 0.0 <= low <= estimate <= high <= 100.0


@given(st.integers(1, 3000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_intervals_are_monotone_and_nest(kn):
    k, n = kn
    low, high = clopper_pearson(k, n)
    if k < n:  # one more success moves both limits up
        up = clopper_pearson(k + 1, n)
        assert up[0] >= low and up[1] >= high
    wider = clopper_pearson(k, n, confidence=0.99)
    assert wider[0] <= low + 1e-9 and high <= wider[1] + 1e-9  # the 99% interval holds the 95% one
    more = clopper_pearson(4 * k, 4 * n)  # same proportion, four times the cells: a narrower interval
    assert more[1] - more[0] <= high - low + 1e-9


@given(st.floats(0, 100), st.floats(0, 100), st.floats(0, 100))
def test_borderline_exactly_when_the_interval_leaves_the_range(pct, a, b):
    ci = (min(a, b, pct), max(a, b, pct))
    band = blast_range(pct)
    leaves = blast_range(ci[0]) is not band or (band["high"] is not None and ci[1] >= band["high"])
    assert bool(crossed_thresholds(ci, band)) == leaves
    assert all(f.borderline == leaves for f in blast_findings(pct, ci))
