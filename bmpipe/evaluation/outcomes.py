"""Per-cell outcomes of an evaluation, the figures computed from them, and how sure each figure is.

A figure over a few hundred cells moves by a few points between two runs that differ only by chance, so a
change of recipe is worth keeping only where it moves a figure by more than that. Keeping each figure's
per-cell outcomes, not the figure alone, gives both intervals: one on a model's figure, and a paired one on
the change between two models scored on the same cells. The paired interval is much the narrower, because
the cells both models get right, or both get wrong, cancel.

An outcome is JSON as it stands (it is written into ``transfer.json``): strata by name, each a dict of
equally long per-cell lists. One stratum for a set scored as a whole; one per class where a figure averages
per-class recalls, so a resample keeps every class's size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bmpipe.evaluation.classifier import class_report
from bmpipe.stats import clopper_pearson

Outcome = dict[str, dict[str, list[Any]]]
Stat = Callable[[Outcome], float]

#: Bootstrap resamples behind every interval; enough for the 2.5% and 97.5% points to settle to ±0.005.
RESAMPLES = 2000
CONFIDENCE = 0.95


def hits(values: Any) -> Outcome:
    """One stratum of yes/no outcomes (a cell called right, a plasma cell called PLM, ...)."""
    return {"": {"hit": [bool(v) for v in values]}}


def hits_by_stratum(values: dict[str, Any]) -> Outcome:
    """Yes/no outcomes kept apart by class, for figures over per-class recalls."""
    return {name: {"hit": [bool(v) for v in vs]} for name, vs in values.items()}


def calls(truth: list[str], pred: list[str]) -> Outcome:
    """Each cell's true and called label, for figures over a whole confusion (macro-F1)."""
    if len(truth) != len(pred):
        raise ValueError(f"{len(truth)} true labels for {len(pred)} calls")
    return {"": {"truth": [str(t) for t in truth], "pred": [str(p) for p in pred]}}


def share_of_hits(outcome: Outcome) -> float:
    (stratum,) = outcome.values()
    return float(np.mean(stratum["hit"])) if len(stratum["hit"]) else 0.0


def mean_recall(outcome: Outcome) -> float:
    return float(np.mean([np.mean(s["hit"]) for s in outcome.values()]))


def lowest_recall(outcome: Outcome) -> float:
    return float(np.min([np.mean(s["hit"]) for s in outcome.values()]))


def macro_f1(outcome: Outcome) -> float:
    """Strict macro-F1 over the true labels, as :func:`class_report` counts it (the PBC group score)."""
    (stratum,) = outcome.values()
    return class_report(list(stratum["truth"]), list(stratum["pred"]), tolerate=False)["macro_f1"]["strict"]


def _draw(outcome: Outcome, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {name: rng.integers(0, _size(s), _size(s)) for name, s in outcome.items()}


def _size(stratum: dict[str, list[Any]]) -> int:
    (n,) = {len(v) for v in stratum.values()}
    return n


def _arrays(outcome: Outcome) -> Outcome:
    """The outcome's lists as arrays, made once before the resamples index them."""
    return {name: {k: np.asarray(v) for k, v in s.items()} for name, s in outcome.items()}


def _take(outcome: Outcome, draw: dict[str, np.ndarray]) -> Outcome:
    return {name: {k: v[draw[name]] for k, v in s.items()} for name, s in outcome.items()}


def _exact(stratum: dict[str, list[Any]]) -> tuple[float, float]:
    low, high = clopper_pearson(int(np.sum(stratum["hit"])), len(stratum["hit"]), CONFIDENCE)
    return low / 100.0, high / 100.0


def interval(outcome: Outcome, stat: Stat, seed: int = 0) -> tuple[float, float]:
    """95% interval of ``stat`` over these cells: exact (Clopper-Pearson) for a share of one set, where a
    bootstrap would claim certainty at 0 of n, and for the lowest of per-class recalls the lowest of their
    exact bounds (for the same reason); percentile bootstrap over the cells for any other figure."""
    if stat is share_of_hits:
        (stratum,) = outcome.values()
        return _exact(stratum)
    if stat is lowest_recall:
        lows, highs = zip(*(_exact(s) for s in outcome.values()))
        return min(lows), min(highs)
    rng, cells = np.random.default_rng(seed), _arrays(outcome)
    values = [stat(_take(cells, _draw(cells, rng))) for _ in range(RESAMPLES)]
    return _percentiles(values)


def _percentiles(values: list[float]) -> tuple[float, float]:
    tail = 100.0 * (1.0 - CONFIDENCE) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Change:
    """A figure of two models on the same cells, and the 95% paired bootstrap interval of after - before."""

    before: float
    after: float
    low: float
    high: float

    @property
    def verdict(self) -> str:
        """``better`` or ``worse`` when the interval leaves out no change; ``within noise`` otherwise."""
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "within noise"


def same_cells(before: Outcome, after: Outcome) -> bool:
    """Whether two outcomes cover the same strata with as many cells each (and the same true labels)."""
    if before.keys() != after.keys():
        return False
    for name in before:
        if _size(before[name]) != _size(after[name]):
            return False
        if "truth" in before[name] and list(before[name]["truth"]) != list(after[name].get("truth", [])):
            return False
    return True


def paired_change(before: Outcome, after: Outcome, stat: Stat, seed: int = 0) -> Change:
    """``stat`` of two models scored on the same cells, and the interval of its change: each resample draws
    the same cells for both, so what both get right or wrong cancels."""
    if not same_cells(before, after):
        raise ValueError("the two outcomes are not of the same cells")
    rng, b, a = np.random.default_rng(seed), _arrays(before), _arrays(after)
    deltas = []
    for _ in range(RESAMPLES):
        draw = _draw(b, rng)
        deltas.append(stat(_take(a, draw)) - stat(_take(b, draw)))
    low, high = _percentiles(deltas)
    return Change(stat(before), stat(after), low, high)
