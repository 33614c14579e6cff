"""Per patient: the smears of one aspirate pooled into one differential, and a test of their agreement."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bmpipe.cli import main
from bmpipe.nn.weights import default_models_dir
from bmpipe.phantom import make_slide, truth_path
from bmpipe.records import Cells
from bmpipe.stages.aggregate import differential
from bmpipe.stages.pooling import blast_heterogeneity, pool_case


def _cells(counts: dict[str, int]) -> Cells:
    labels = [code for code, n in counts.items() for _ in range(n)]
    n = len(labels)
    return Cells(np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n), np.ones(n), np.ones(n), np.ones(n),
                 label=np.array(labels, object), label_score=np.ones(n))


def _slide(name: str, counts: dict[str, int]):
    cells = _cells(counts)
    return name, cells, differential(cells, name)


def test_the_pooled_differential_counts_every_smears_cells() -> None:
    a = _slide("a", {"BLA": 10, "NGS": 90, "EBO": 50})
    b = _slide("b", {"BLA": 12, "NGS": 80, "EBO": 58})
    case = pool_case("patient", [a, b])
    assert case.pooled.counts["BLA"] == 22 and case.pooled.n_counted == a[2].n_counted + b[2].n_counted
    assert case.pooled.blast_pct == pytest.approx(100 * 22 / case.pooled.n_counted)
    assert [s.slide for s in case.slides] == ["a", "b"] and [s.blasts for s in case.slides] == [10, 12]
    assert case.heterogeneity is not None and not case.heterogeneity.disagree
    assert "agree on blasts within chance" in case.finding()


def test_smears_that_disagree_on_blasts_beyond_chance_are_named() -> None:
    case = pool_case("patient", [_slide("a", {"BLA": 5, "NGS": 195}), _slide("b", {"BLA": 6, "NGS": 194}),
                                 _slide("c", {"BLA": 40, "NGS": 160})])
    h = case.heterogeneity
    assert h is not None and h.disagree and h.df == 2 and h.p < 1e-6
    assert [s.disagrees for s in case.slides] == [False, False, True] and case.slides[2].residual > 2
    assert "disagree on blasts beyond chance" in case.finding() and "furthest from the others: c" in case.finding()


def test_the_blast_test_matches_a_hand_computed_chi_square() -> None:
    h, residuals = blast_heterogeneity([10, 30], [100, 100])
    expected = [20, 80, 20, 80]
    observed = [10, 90, 30, 70]
    chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected))
    assert h.chi2 == pytest.approx(chi2) and h.df == 1
    assert residuals[0] == pytest.approx(-residuals[1]) and residuals[0] < -2


@pytest.mark.parametrize("blasts, totals", [([3], [100]), ([0, 0], [50, 60]), ([2, 0], [0, 0])])
def test_no_test_without_two_smears_with_cells_and_blasts(blasts, totals) -> None:
    h, residuals = blast_heterogeneity(blasts, totals)
    assert h is None and residuals == [0.0] * len(blasts)


@pytest.fixture(scope="module")
def two_smear_case(tmp_path_factory):
    """One patient's case folder of two phantom smears whose blast shares differ by far more than chance."""
    root = tmp_path_factory.mktemp("case")
    case = root / "patient-17"
    case.mkdir()
    for name, blast_pct, seed in (("smear-a", 4.0, 11), ("smear-b", 16.0, 12)):
        make_slide(case / f"{name}.tiff", cells=700, blast_pct=blast_pct, seed=seed)
    out = root / "out"
    code = main(["run", str(case), "--case", "--out", str(out)])
    return case, out, code


@pytest.mark.slow
@pytest.mark.skipif(not (default_models_dir() / "detector-unet.safetensors").exists(), reason="shipped detector absent")
def test_a_two_smear_case_is_pooled_within_2_points_of_the_pooled_truth(two_smear_case) -> None:
    case, out, code = two_smear_case
    assert code == 0
    folder = out / "patient-17"
    for name in ("case-report.html", "case-report.pdf", "case-differential.json", "smear-a/report.html",
                 "smear-b/report.html", "manifest.csv"):
        assert (folder / name).is_file(), name
    truths = [json.loads(truth_path(case / f"{n}.tiff").read_text())["differential_monolayer"]
              for n in ("smear-a", "smear-b")]
    pooled_truth = 100 * sum(t["blast_pct"] * t["n_counted"] / 100 for t in truths) / sum(t["n_counted"] for t in truths)
    data = json.loads((folder / "case-differential.json").read_text())
    assert abs(data["blast_pct"] - pooled_truth) <= 2.0, (data["blast_pct"], pooled_truth)
    assert [s["slide"] for s in data["slides"]] == ["smear-a", "smear-b"]
    assert data["n_counted"] == sum(s["n_counted"] for s in data["slides"])
    assert data["blast_heterogeneity"]["disagree"] is True  # 4% against 16% of ~700 cells each
    html = (folder / "case-report.html").read_text()
    assert 'href="smear-a/report.html"' in html and "disagree on blasts beyond chance" in html
    assert (folder / "case-report.pdf").read_bytes()[:5] == b"%PDF-"


def test_two_smears_that_disagree_are_not_told_apart() -> None:
    """Two smears lie equally far from their pool: the finding says they disagree and names neither."""
    case = pool_case("patient", [_slide("a", {"BLA": 5, "NGS": 195}), _slide("b", {"BLA": 40, "NGS": 160})])
    assert case.heterogeneity.disagree and not any(s.disagrees for s in case.slides)
    assert "disagree on blasts beyond chance" in case.finding() and "furthest" not in case.finding()
