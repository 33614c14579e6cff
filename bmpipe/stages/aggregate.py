"""Stage 4: a patient's differential from classified cells, with exact intervals and criteria findings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bmpipe.criteria import (
    Finding,
    blast_findings,
    count_findings,
    dysplasia_findings,
    load_criteria,
    plasma_findings,
)
from bmpipe.records import Cells
from bmpipe.stats import clopper_pearson
from bmpipe.taxonomy import GROUPS, Taxonomy, load_taxonomy

#: Cells the classifier could not identify confidently carry this code (its threshold travels with the model);
#: they are shown in the report and left out of the differential, as CellaVision leaves them for the reviewer.
UNIDENTIFIED = "NIF"


@dataclass
class Differential:
    """What a hematologist reports after a manual count, for one slide or case."""

    slide: str
    n_detected: int
    n_unidentified: int
    n_counted: int
    denominator: str
    counts: dict[str, int]
    percent: dict[str, float]
    percent_ci95: dict[str, tuple[float, float]]
    group_counts: dict[str, int]
    group_percent: dict[str, float]
    blast_pct: float
    blast_ci95: tuple[float, float]
    plasma_pct: float
    plasma_ci95: tuple[float, float]
    me_ratio: float | None
    dysplasia_pct: dict[str, float]
    dysplasia_ci95: dict[str, tuple[float, float]]
    dysplasia_n: dict[str, int]
    meets_minimum_count: bool
    findings: list[Finding] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["findings"] = [f.as_dict() for f in self.findings]
        return out


def _pct(k: int, n: int) -> float:
    return 100.0 * k / n if n else 0.0


def differential(
    cells: Cells,
    slide: str,
    taxonomy: Taxonomy | None = None,
    minimum_count: int = 500,
) -> Differential:
    """Count classified ``cells`` into a differential over the taxonomy's nucleated-cell denominator."""
    tax = taxonomy or load_taxonomy()
    unidentified = cells.label == UNIDENTIFIED
    codes, n_of = np.unique(cells.label.astype(str), return_counts=True) if len(cells) else ([], [])
    counts = {code: 0 for code in tax.codes}
    for code, n in zip(codes, n_of):
        tax[code]  # unknown codes are a programming error, not a count
        counts[code] = int(n)

    in_denominator = tax.denominator_codes()
    n_counted = sum(counts[c] for c in in_denominator)
    percent = {c: _pct(counts[c], n_counted) for c in in_denominator}
    percent_ci95 = {c: clopper_pearson(counts[c], n_counted) for c in in_denominator}
    group_counts = {g: sum(counts[c] for c in tax.codes_of_group(g) if c in in_denominator) for g in GROUPS}
    group_percent = {g: _pct(k, n_counted) for g, k in group_counts.items()}

    blasts = sum(counts[c] for c in tax.codes_of_group("blasts"))
    plasma = sum(counts[c] for c in tax.codes_of_group("plasma cells"))
    myeloid = sum(counts[c] for c in tax.me_myeloid)
    erythroid = sum(counts[c] for c in tax.me_erythroid)

    dysplasia_pct, dysplasia_ci95, dysplasia_n = _dysplasia(cells, tax)
    excluded = ", ".join(f"{tax[c].name} ({c})" for c in tax.excluded_codes())
    result = Differential(
        slide=slide,
        n_detected=len(cells),
        n_unidentified=int(unidentified.sum()),
        n_counted=n_counted,
        denominator=f"all nucleated cells, excluding {excluded}",
        counts=counts,
        percent=percent,
        percent_ci95=percent_ci95,
        group_counts=group_counts,
        group_percent=group_percent,
        blast_pct=_pct(blasts, n_counted),
        blast_ci95=clopper_pearson(blasts, n_counted),
        plasma_pct=_pct(plasma, n_counted),
        plasma_ci95=clopper_pearson(plasma, n_counted),
        me_ratio=(myeloid / erythroid) if erythroid else None,
        dysplasia_pct=dysplasia_pct,
        dysplasia_ci95=dysplasia_ci95,
        dysplasia_n=dysplasia_n,
        meets_minimum_count=n_counted >= minimum_count,
    )
    result.findings = (
        count_findings(n_counted)
        + blast_findings(result.blast_pct, result.blast_ci95)
        + dysplasia_findings(dysplasia_pct, dysplasia_ci95, dysplasia_n)
        + plasma_findings(result.plasma_pct, result.plasma_ci95)
    )
    return result


def _dysplasia(
    cells: Cells, tax: Taxonomy
) -> tuple[dict[str, float], dict[str, tuple[float, float]], dict[str, int]]:
    """Share of dysplastic cells per scored lineage (criteria.yaml: granulocytic, erythroid, megakaryocytic)."""
    rule = load_criteria()["dysplasia"]
    is_dysplastic = (cells.dysplasia_score >= rule["cell_probability"]) | (
        cells.dysplasia_grade >= rule["granule_grade"]
    )
    pct, ci, n = {}, {}, {}
    for lineage in rule["lineages"]:
        member = np.isin(cells.label, tax.codes_of_lineage(lineage))
        total = int(member.sum())
        dysplastic = int((member & is_dysplastic).sum())
        pct[lineage] = _pct(dysplastic, total)
        ci[lineage] = clopper_pearson(dysplastic, total)
        n[lineage] = total
    return pct, ci, n
