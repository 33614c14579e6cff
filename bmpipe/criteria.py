"""WHO 2016, WHO 2022 and ICC 2022 thresholds (``data/criteria.yaml``) turned into findings.

A finding states where a measured percentage and its 95% interval lie relative to a published threshold,
for a hematologist to confirm; it never names a diagnosis as made. A finding whose interval crosses the
threshold is marked borderline, because a count of a few hundred cells cannot place it on either side.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml


@dataclass(frozen=True)
class Finding:
    kind: str  # "blasts" | "dysplasia" | "plasma_cells" | "count" | "domain" (input unlike validated data)
    text: str
    borderline: bool
    sources: tuple[str, ...]
    system: str | None = None  # "who2016" | "who2022" | "icc2022" for a blast finding, which checks one system
    category: str | None = None  # what that system calls the range the blast percentage lies in, if anything

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@cache
def load_criteria() -> dict[str, Any]:
    return yaml.safe_load(resources.files("bmpipe.data").joinpath("criteria.yaml").read_text("utf-8"))


def fmt_pct(value: float) -> str:
    """One decimal, as every percentage in a finding, a table and a report is written."""
    return f"{value:.1f}"


def fmt_pct_within(pct: float, low: float, high: float | None) -> str:
    """``pct`` with one decimal, or more where rounding would carry it across ``low`` or ``high``: 4.99%
    lies below the 5% threshold and must not read "5.0%"."""
    for decimals in (1, 2, 3):
        text = f"{pct:.{decimals}f}"
        shown = float(text)
        if shown >= low and (high is None or shown < high):
            return text
    return f"{math.floor(pct * 1000) / 1000:.3f}"


def ci_range(ci: tuple[float, float]) -> str:
    """An interval as a table column headed "95% CI" shows it, e.g. "11.2-13.7"; :func:`ci_text` in prose."""
    return f"{fmt_pct(ci[0])}-{fmt_pct(ci[1])}"


def ci_text(ci: tuple[float, float]) -> str:
    return f"95% CI {ci_range(ci)}"


def blast_range(pct: float) -> dict[str, Any]:
    """The half-open blast range ``[low, high)`` that holds ``pct``."""
    for band in load_criteria()["blasts"]:
        if pct >= band["low"] and (band["high"] is None or pct < band["high"]):
            return band
    raise ValueError(f"blast percentage {pct} lies in no range of criteria.yaml")


def lowest_named_range(system: str) -> dict[str, Any]:
    """The lowest blast range ``system`` names a category for: what a percentage below it is "below"."""
    return next(band for band in load_criteria()["blasts"] if band["category"][system])


def _span(band: dict[str, Any]) -> str:
    """How a hematologist writes a range: <5%, 5-9%, 10-19%, ≥20% (thresholds are whole percentages)."""
    if band["high"] is None:
        return f"≥{band['low']}%"
    if band["low"] == 0:
        return f"<{band['high']}%"
    return f"{band['low']}-{band['high'] - 1}%"


def crossed_thresholds(ci: tuple[float, float], band: dict[str, Any]) -> list[float]:
    """The range limits the interval reaches across: the finding cannot be placed on one side of them."""
    crossed = []
    if band["low"] > 0 and ci[0] < band["low"]:
        crossed.append(band["low"])
    if band["high"] is not None and ci[1] >= band["high"]:
        crossed.append(band["high"])
    return crossed


def _borderline_text(thresholds: list[float]) -> str:
    limits = " and ".join(f"{t:g}%" for t in thresholds)
    plural = "s" if len(thresholds) > 1 else ""
    return f" The interval crosses the {limits} threshold{plural}: borderline, a larger count or review is advised."


def blast_findings(pct: float, ci: tuple[float, float]) -> list[Finding]:
    """One finding per classification system, e.g. "Blast percentage 12.4% (95% CI 11.2-13.7) lies in the
    10-19% range of WHO 2022 MDS-IB2."."""
    crit = load_criteria()
    band = blast_range(pct)
    crossed = crossed_thresholds(ci, band)
    measured = f"Blast percentage {fmt_pct_within(pct, band['low'], band['high'])}% ({ci_text(ci)})"
    findings = []
    for system, label in crit["systems"].items():
        category = band["category"][system]
        if category:
            text = f"{measured} lies in the {_span(band)} range of {label} {category}."
        else:
            first = lowest_named_range(system)
            text = (f"{measured} lies in the {_span(band)} range of {label}, below "
                    f"{first['category'][system]} ({_span(first)}).")
        note = (band.get("note") or {}).get(system)
        if note:
            text += " " + note
        if crossed:
            text += _borderline_text(crossed)
        findings.append(Finding("blasts", text, bool(crossed), (system,), system, category))
    return findings


def dysplasia_findings(
    pct_by_lineage: dict[str, float], ci_by_lineage: dict[str, tuple[float, float]], n_by_lineage: dict[str, int]
) -> list[Finding]:
    spec = load_criteria()["dysplasia"]
    threshold = spec["threshold_pct"]
    systems = ", ".join(load_criteria()["systems"][s] for s in spec["sources"])
    findings = []
    for lineage in spec["lineages"]:
        n = n_by_lineage.get(lineage, 0)
        if n == 0:
            continue
        pct, ci = pct_by_lineage[lineage], ci_by_lineage[lineage]
        above = pct >= threshold
        shown = fmt_pct_within(pct, threshold, None) if above else fmt_pct_within(pct, 0, threshold)
        relation = "reaches" if above else "is below"
        text = (
            f"Dysplastic {lineage} cells {shown}% of {n} ({ci_text(ci)}) {relation} the {threshold}% "
            f"threshold for significant {lineage} dysplasia ({systems})."
        )
        borderline = ci[0] < threshold <= ci[1]
        if borderline:
            text += _borderline_text([threshold])
        findings.append(Finding("dysplasia", text, borderline, tuple(spec["sources"])))
    return findings


def plasma_findings(pct: float, ci: tuple[float, float]) -> list[Finding]:
    """A finding for each plasma-cell threshold the percentage reaches or whose interval reaches it."""
    findings = []
    for rule in load_criteria()["plasma_cells"]:
        threshold = rule["threshold_pct"]
        borderline = ci[0] < threshold <= ci[1]
        if pct >= threshold or borderline:
            above = pct >= threshold
            shown = fmt_pct_within(pct, threshold, None) if above else fmt_pct_within(pct, 0, threshold)
            relation = "reaches" if above else "is just below"
            text = (
                f"Plasma cells {shown}% ({ci_text(ci)}) {relation} {rule['meaning']}; "
                "clonality needs flow cytometry or immunohistochemistry."
            )
            if borderline:
                text += _borderline_text([threshold])
            findings.append(Finding("plasma_cells", text, borderline, (rule["source"],)))
    return findings


def minimum_count() -> int:
    """ICSH's minimum number of nucleated cells in a marrow differential."""
    return int(load_criteria()["minimum_count"]["cells"])


def count_findings(n_counted: int) -> list[Finding]:
    source = load_criteria()["minimum_count"]["source"]
    minimum = minimum_count()
    if n_counted >= minimum:
        text = f"{n_counted} nucleated cells counted (ICSH minimum {minimum})."
        return [Finding("count", text, False, (source,))]
    text = (
        f"Only {n_counted} nucleated cells counted, below the ICSH minimum of {minimum}: "
        "percentages are imprecise, see their intervals."
    )
    return [Finding("count", text, True, (source,))]


def unvalidated_note(codes: list[str]) -> str:
    """The sentence a finding carries when it rests on classes the classifier learned from synthetic cells
    with no or too few real ones: a prompt to count them by eye, not a validated figure."""
    return (f" This percentage rests on {', '.join(codes)}, which the classifier learned from synthetic "
            "(phantom) cells with no or too few real ones and has never been shown to recognise on real cells: "
            "treat it as unvalidated and confirm every such cell on the smear.")


def provenance_notes(findings: list[Finding], synthetic_only: tuple[str, ...], blast_codes: tuple[str, ...],
                     plasma_codes: tuple[str, ...], dysplasia_synthetic: bool) -> list[Finding]:
    """``findings`` with :func:`unvalidated_note` added to each that depends on a synthetic-only class (blasts,
    plasma cells) or on dysplasia learned only from synthetic cells."""
    resting_on = {"blasts": [c for c in blast_codes if c in synthetic_only],
                  "plasma_cells": [c for c in plasma_codes if c in synthetic_only]}
    out = []
    for f in findings:
        text = f.text
        if resting_on.get(f.kind):
            text += unvalidated_note(resting_on[f.kind])
        elif f.kind == "dysplasia" and dysplasia_synthetic:
            text += (" Dysplasia was learned only from synthetic (phantom) cells and is unvalidated on real "
                     "marrow: confirm on the smear.")
        out.append(Finding(f.kind, text, f.borderline, f.sources, f.system, f.category))
    return out
