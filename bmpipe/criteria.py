"""WHO 2016, WHO 2022 and ICC 2022 thresholds (``data/criteria.yaml``) turned into findings.

A finding states where a measured percentage and its 95% interval lie relative to a published threshold,
for a hematologist to confirm; it never names a diagnosis as made. A finding whose interval crosses the
threshold is marked borderline, because a count of a few hundred cells cannot place it on either side.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml


@dataclass(frozen=True)
class Finding:
    kind: str  # "blasts" | "dysplasia" | "plasma_cells" | "count"
    text: str
    borderline: bool
    sources: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@cache
def load_criteria() -> dict[str, Any]:
    return yaml.safe_load(resources.files("bmpipe.data").joinpath("criteria.yaml").read_text("utf-8"))


def _fmt(value: float) -> str:
    return f"{value:.1f}"


def _ci_text(ci: tuple[float, float]) -> str:
    return f"95% CI {_fmt(ci[0])}-{_fmt(ci[1])}"


def blast_range(pct: float) -> dict[str, Any]:
    """The half-open blast range ``[low, high)`` that holds ``pct``."""
    for band in load_criteria()["blasts"]:
        if pct >= band["low"] and (band["high"] is None or pct < band["high"]):
            return band
    raise ValueError(f"blast percentage {pct} lies in no range of criteria.yaml")


def _crosses(ci: tuple[float, float], band: dict[str, Any]) -> bool:
    """True when the interval reaches into a neighbouring range."""
    below = ci[0] < band["low"] and band["low"] > 0
    above = band["high"] is not None and ci[1] >= band["high"]
    return below or above


def blast_findings(pct: float, ci: tuple[float, float]) -> list[Finding]:
    crit = load_criteria()
    band = blast_range(pct)
    borderline = _crosses(ci, band)
    span = f"{band['low']}-{band['high'] - 1}%" if band["high"] is not None else f"≥{band['low']}%"
    named = [f"{crit['systems'][s]} {cat}" for s, cat in band["category"].items() if cat]
    measured = f"Blast percentage {_fmt(pct)}% ({_ci_text(ci)})"
    if named:
        text = f"{measured} lies in the {span} range of " + ", ".join(named) + "."
    else:
        text = f"{measured} is below the 5% marrow-blast threshold of WHO 2016, WHO 2022 and ICC 2022."
    if band.get("note"):
        text += " " + band["note"]
    if borderline:
        text += " The interval crosses a threshold: borderline, a larger count or review is advised."
    return [Finding("blasts", text, borderline, tuple(crit["systems"]))]


def dysplasia_findings(
    pct_by_lineage: dict[str, float], ci_by_lineage: dict[str, tuple[float, float]], n_by_lineage: dict[str, int]
) -> list[Finding]:
    spec = load_criteria()["dysplasia"]
    threshold = spec["threshold_pct"]
    findings = []
    for lineage in spec["lineages"]:
        n = n_by_lineage.get(lineage, 0)
        if n == 0:
            continue
        pct, ci = pct_by_lineage[lineage], ci_by_lineage[lineage]
        above = pct >= threshold
        borderline = ci[0] < threshold <= ci[1]
        relation = "reaches" if above else "is below"
        text = (
            f"Dysplastic {lineage} cells {_fmt(pct)}% of {n} ({_ci_text(ci)}) {relation} the {threshold}% "
            f"threshold for significant {lineage} dysplasia (WHO 2016, WHO 2022, ICC 2022)."
        )
        if borderline:
            text += " The interval crosses the threshold: borderline."
        findings.append(Finding("dysplasia", text, borderline, tuple(spec["sources"])))
    return findings


def plasma_findings(pct: float, ci: tuple[float, float]) -> list[Finding]:
    findings = []
    for rule in load_criteria()["plasma_cells"]:
        threshold = rule["threshold_pct"]
        borderline = ci[0] < threshold <= ci[1]
        if pct >= threshold or borderline:
            relation = "reaches" if pct >= threshold else "is just below"
            text = (
                f"Plasma cells {_fmt(pct)}% ({_ci_text(ci)}) {relation} {rule['meaning']}; "
                "clonality needs flow cytometry or immunohistochemistry."
            )
            findings.append(Finding("plasma_cells", text, borderline, (rule["source"],)))
    return findings


def count_findings(n_counted: int) -> list[Finding]:
    minimum = load_criteria()["minimum_count"]
    if n_counted >= minimum["cells"]:
        text = f"{n_counted} nucleated cells counted (ICSH minimum {minimum['cells']})."
        return [Finding("count", text, False, (minimum["source"],))]
    text = (
        f"Only {n_counted} nucleated cells counted, below the ICSH minimum of {minimum['cells']}: "
        "percentages are imprecise, see their intervals."
    )
    return [Finding("count", text, True, (minimum["source"],))]
