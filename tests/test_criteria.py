import pytest
from hypothesis import given
from hypothesis import strategies as st

from bmpipe.criteria import blast_findings, blast_range, dysplasia_findings, plasma_findings
from bmpipe.stats import clopper_pearson


@pytest.mark.parametrize(
    "pct, who2016, who2022, icc2022",
    [
        (0.0, None, None, None),
        (4.99, None, None, None),
        (5.0, "MDS-EB-1", "MDS-IB1", "MDS-EB"),
        (9.99, "MDS-EB-1", "MDS-IB1", "MDS-EB"),
        (10.0, "MDS-EB-2", "MDS-IB2", "MDS/AML"),
        (19.99, "MDS-EB-2", "MDS-IB2", "MDS/AML"),
        (20.0, "AML", "AML", "AML"),
        (100.0, "AML", "AML", "AML"),
    ],
)
def test_blast_ranges_at_their_edges(pct, who2016, who2022, icc2022):
    assert blast_range(pct)["category"] == {"who2016": who2016, "who2022": who2022, "icc2022": icc2022}


def test_blast_finding_is_worded_for_confirmation_and_names_all_systems():
    (finding,) = blast_findings(12.4, (11.2, 13.7))
    assert "12.4%" in finding.text and "95% CI 11.2-13.7" in finding.text
    assert "WHO 2022 MDS-IB2" in finding.text and "ICC 2022 MDS/AML" in finding.text
    assert "genetics" in finding.text  # ICC's >=10% AML with recurrent genetic abnormalities
    assert not finding.borderline
    assert "diagnos" not in finding.text.lower()


def test_a_500_cell_count_at_5_percent_is_borderline():
    ci = clopper_pearson(25, 500)
    assert ci[0] == pytest.approx(3.3, abs=0.1) and ci[1] == pytest.approx(7.3, abs=0.1)
    (finding,) = blast_findings(5.0, ci)
    assert finding.borderline and "borderline" in finding.text


def test_dysplasia_threshold_is_ten_percent_per_lineage():
    found = dysplasia_findings(
        {"granulocytic": 10.0, "erythroid": 9.0, "megakaryocytic": 0.0},
        {"granulocytic": (9.0, 11.0), "erythroid": (8.0, 9.9), "megakaryocytic": (0.0, 100.0)},
        {"granulocytic": 3000, "erythroid": 1000, "megakaryocytic": 0},
    )
    assert [f.text.split()[1] for f in found] == ["granulocytic", "erythroid"]
    assert "reaches" in found[0].text and "is below" in found[1].text
    assert found[0].borderline and not found[1].borderline


def test_plasma_cell_thresholds():
    assert plasma_findings(2.0, (1.5, 2.6)) == []
    (ten,) = plasma_findings(12.0, (11.0, 13.0))
    assert "10%" in ten.text and "clonality" in ten.text
    assert len(plasma_findings(65.0, (62.0, 68.0))) == 2


@given(st.integers(0, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_clopper_pearson_holds_its_estimate(kn):
    k, n = kn
    low, high = clopper_pearson(k, n)
    estimate = 100.0 * k / n if n else 50.0
    assert 0.0 <= low <= estimate <= high <= 100.0
