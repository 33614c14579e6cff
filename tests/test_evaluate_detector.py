"""The detector benchmark's scorers: box AP50/recall/precision, mask-centre recall, and target verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from bmpipe.evaluation.detector import box_scores, centre_recall, target_rows

TRUTH = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 0, 50, 10]], np.float64)


def test_perfect_boxes_score_one() -> None:
    s = box_scores([(TRUTH, TRUTH + 0.5, np.array([0.9, 0.8, 0.7]))])
    assert s["AP50"] == pytest.approx(1.0) and s["recall"] == 1.0 and s["precision"] == 1.0


def test_a_duplicate_and_a_miss_cost_precision_and_recall() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float64)  # cell 1 twice, cell 3 missed
    s = box_scores([(TRUTH, boxes, np.array([0.9, 0.6, 0.8]))])
    assert s["recall"] == pytest.approx(2 / 3) and s["precision"] == pytest.approx(2 / 3)
    assert s["AP50"] < 0.7
    shifted = box_scores([(TRUTH, TRUTH + 6, np.ones(3))])  # IoU 16/184 < 0.5: no match
    assert shifted["recall"] == 0.0


def test_centre_recall_counts_blobs_holding_a_centre() -> None:
    mask = np.zeros((100, 100), bool)
    mask[10:30, 10:30] = True  # 400 px: counted
    mask[60:90, 60:90] = True  # 900 px: counted
    mask[0:5, 90:95] = True  # 25 px: too small to count
    boxes = np.array([[12, 12, 28, 28], [0, 50, 10, 60]], np.float64)  # one centre in the first blob only
    assert centre_recall([mask], [boxes]) == {"recall": 0.5, "truth": 2, "found": 1}


def test_targets_say_which_figures_meet_them() -> None:
    metrics = {"txl_pbc": {"AP50": 0.96}, "segpc": {"recall": 0.85},
               "slide": {"double_counts": 1, "recall": 0.99, "precision": 0.98}}
    rows = {figure: verdict for figure, _, _, verdict in target_rows(metrics)}
    assert rows["TXL-PBC held-out AP50"] == "meets"
    assert rows["SegPC plasma-cell recall @IoU0.5"] == "MISSES"
    assert rows["phantom-slide double counts"] == "MISSES"
    assert "phantom-field recall" not in rows  # not measured, not printed
