"""Per-cell outcomes: a figure's interval, and the paired interval that says whether a change of model moved
a figure by more than chance."""

from __future__ import annotations

import numpy as np
import pytest

from bmpipe.evaluation import outcomes
from bmpipe.evaluation.classifier import class_report


def _flip(hit: list[bool], wrong_to_right: int, right_to_wrong: int) -> list[bool]:
    out = list(hit)
    wrong, right = [i for i, h in enumerate(hit) if not h], [i for i, h in enumerate(hit) if h]
    for i in wrong[:wrong_to_right]:
        out[i] = True
    for i in right[:right_to_wrong]:
        out[i] = False
    return out


def test_a_change_on_the_same_cells_is_told_from_chance_where_separate_intervals_cannot() -> None:
    hit = (np.random.default_rng(0).random(300) < 0.7).tolist()
    before, after = outcomes.hits(hit), outcomes.hits(_flip(hit, 15, 0))
    high_before = outcomes.interval(before, outcomes.share_of_hits)[1]
    low_after = outcomes.interval(after, outcomes.share_of_hits)[0]
    assert low_after < high_before  # the two models' own intervals overlap ...
    change = outcomes.paired_change(before, after, outcomes.share_of_hits)
    assert change.after - change.before == pytest.approx(15 / 300)
    assert 0 < change.low < 15 / 300 < change.high and change.verdict == "better"  # ... the paired one does not


def test_cells_swapping_right_and_wrong_in_equal_numbers_are_within_noise() -> None:
    hit = (np.random.default_rng(1).random(300) < 0.7).tolist()
    change = outcomes.paired_change(outcomes.hits(hit), outcomes.hits(_flip(hit, 12, 12)), outcomes.share_of_hits)
    assert change.after == change.before and change.low < 0 < change.high and change.verdict == "within noise"
    worse = outcomes.paired_change(outcomes.hits(hit), outcomes.hits(_flip(hit, 0, 20)), outcomes.share_of_hits)
    assert worse.verdict == "worse"


def test_a_share_of_none_has_an_exact_interval_above_zero() -> None:
    low, high = outcomes.interval(outcomes.hits([False] * 100), outcomes.share_of_hits)
    assert low == 0.0 and 0.02 < high < 0.05  # Clopper-Pearson: 3.6% for 0 of 100


def test_macro_f1_is_the_class_report_score_and_its_interval_holds_it() -> None:
    rng = np.random.default_rng(2)
    truth = rng.choice(["lymphocyte", "monocyte", "neutrophil"], 200).tolist()
    pred = [t if rng.random() < 0.8 else "other:NIF" for t in truth]
    o = outcomes.calls(truth, pred)
    f1 = outcomes.macro_f1(o)
    assert f1 == class_report(truth, pred, tolerate=False)["macro_f1"]["strict"]
    low, high = outcomes.interval(o, outcomes.macro_f1)
    assert low < f1 < high and high - low < 0.2


def test_per_class_recalls_are_resampled_within_their_class() -> None:
    o = outcomes.hits_by_stratum({"EBO": [True] * 10, "MON": [False] * 30})
    assert outcomes.mean_recall(o) == 0.5 and outcomes.lowest_recall(o) == 0.0
    assert outcomes.interval(o, outcomes.mean_recall) == (0.5, 0.5)  # each class keeps its size in a resample
    low, high = outcomes.interval(o, outcomes.lowest_recall)
    assert low == 0.0 and 0.08 < high < 0.13  # 0 of 30 is not certainly 0: exact bound 11.6%


def test_outcomes_of_different_cells_are_not_compared() -> None:
    a, b = outcomes.hits([True] * 10), outcomes.hits([True] * 11)
    assert not outcomes.same_cells(a, b)
    with pytest.raises(ValueError, match="not of the same cells"):
        outcomes.paired_change(a, b, outcomes.share_of_hits)
    assert not outcomes.same_cells(outcomes.calls(["a"], ["a"]), outcomes.calls(["b"], ["a"]))
