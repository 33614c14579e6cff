"""Stage 4: a patient's differential from classified cells, with exact intervals and criteria findings.

Every percentage carries a 95% Clopper-Pearson interval; every denominator is stated: class and group
percentages and the blast and plasma-cell percentages are of all nucleated cells (the taxonomy's
``denominator: true`` codes), dysplastic fractions of the scored cells of their lineage.
"""

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
    minimum_count,
    plasma_findings,
    provenance_notes,
)
from bmpipe.nn.stain import UNLIKE_SHARE, unlike_share
from bmpipe.records import Cells
from bmpipe.stats import clopper_pearson, ratio_interval
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
    #: Codes left out of the denominator (smudge cells, artefacts, unidentified, megakaryocytes, platelets).
    excluded: tuple[str, ...] = ()
    group_percent_ci95: dict[str, tuple[float, float]] = field(default_factory=dict)
    me_ratio_ci95: tuple[float, float] | None = None
    dysplasia_counts: dict[str, int] = field(default_factory=dict)
    minimum_count: int = 0
    #: Set by ``bmpipe review import``: how many cells a hematologist relabelled, out of how many reviewed.
    reviewed: bool = False
    n_reviewed: int = 0
    n_corrected: int = 0
    #: Classes the classifier learned from synthetic cells with no or too few real ones, and whether it
    #: learned dysplasia only from synthetic cells: the report marks them and every finding that rests on them.
    synthetic_only: tuple[str, ...] = ()
    dysplasia_synthetic_only: bool = False
    #: Share of the slide's cells whose crops do not look Romanowsky-stained (None: no stain check); over
    #: ``UNLIKE_SHARE`` the input is unlike any validated data and ``domain_warning`` says so (and the manifest).
    unlike_stain_share: float | None = None
    domain_warning: str = ""
    #: Set when the resolution used and the slide's red cells disagree (``bmpipe.stages.calibrate``).
    resolution_warning: str = ""
    #: A count stopped early (``--max-cells``): the cap, tiles visited of those planned, and the cells the
    #: whole analysed area would give at the sample's density. None: every tile was counted.
    sample: dict[str, int] | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["findings"] = [f.as_dict() for f in self.findings]
        return out


def _pct(k: int, n: int) -> float:
    return 100.0 * k / n if n else 0.0


def count_labels(labels: np.ndarray, tax: Taxonomy) -> dict[str, int]:
    """Cells per taxonomy code (every code present, zeros included); an unknown code is a programming error."""
    counts = {code: 0 for code in tax.codes}
    if len(labels):
        codes, n_of = np.unique(labels.astype(str), return_counts=True)
        for code, n in zip(codes, n_of):
            tax[code]  # raises, naming the known codes
            counts[str(code)] = int(n)
    return counts


def differential(
    cells: Cells,
    slide: str,
    taxonomy: Taxonomy | None = None,
    synthetic_only: tuple[str, ...] = (),
    dysplasia_synthetic_only: bool = False,
    resolution_warning: str = "",
) -> Differential:
    """Count classified ``cells`` into a differential over the taxonomy's nucleated-cell denominator;
    ``synthetic_only`` and ``dysplasia_synthetic_only`` say what the classifier never saw real (findings
    resting on them say so). Cells with a ``stain_score`` (a classifier with a stain check) are judged by it."""
    tax = taxonomy or load_taxonomy()
    counts = count_labels(cells.label, tax)

    in_denominator = tax.denominator_codes()
    n_counted = sum(counts[c] for c in in_denominator)
    percent = {c: _pct(counts[c], n_counted) for c in in_denominator}
    percent_ci95 = {c: clopper_pearson(counts[c], n_counted) for c in in_denominator}
    group_counts = {g: sum(counts[c] for c in tax.codes_of_group(g) if c in in_denominator) for g in GROUPS}
    group_percent = {g: _pct(k, n_counted) for g, k in group_counts.items()}
    group_ci95 = {g: clopper_pearson(k, n_counted) for g, k in group_counts.items()}

    blasts = sum(counts[c] for c in tax.codes_of_group("blasts"))
    plasma = sum(counts[c] for c in tax.codes_of_group("plasma cells"))
    myeloid = sum(counts[c] for c in tax.me_myeloid)
    erythroid = sum(counts[c] for c in tax.me_erythroid)

    dysplastic, scored = _dysplasia_counts(cells, tax)
    dysplasia_pct = {lin: _pct(dysplastic[lin], scored[lin]) for lin in scored}
    dysplasia_ci95 = {lin: clopper_pearson(dysplastic[lin], scored[lin]) for lin in scored}
    excluded = tax.excluded_codes()
    minimum = minimum_count()
    result = Differential(
        slide=slide,
        n_detected=len(cells),
        n_unidentified=counts.get(UNIDENTIFIED, 0),
        n_counted=n_counted,
        denominator="all nucleated cells, excluding " + ", ".join(f"{tax[c].name} ({c})" for c in excluded),
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
        dysplasia_n=scored,
        meets_minimum_count=n_counted >= minimum,
        excluded=excluded,
        group_percent_ci95=group_ci95,
        me_ratio_ci95=ratio_interval(myeloid, erythroid),
        dysplasia_counts=dysplastic,
        minimum_count=minimum,
        synthetic_only=tuple(synthetic_only),
        dysplasia_synthetic_only=dysplasia_synthetic_only,
    )
    known = cells.stain_score[np.isfinite(cells.stain_score)]
    if len(known):
        result.unlike_stain_share = unlike_share(known)
        if result.unlike_stain_share > UNLIKE_SHARE:
            result.domain_warning = domain_warning(result.unlike_stain_share)
    result.resolution_warning = resolution_warning
    result.findings = [Finding(kind, text, True, ()) for kind, text in
                       (("resolution", resolution_warning), ("domain", result.domain_warning)) if text]
    if n_counted == 0:  # a percentage of nothing is no finding: say why instead
        result.findings.append(Finding("count", nothing_counted(len(cells), counts.get(UNIDENTIFIED, 0)), True, ()))
        return result
    result.findings += provenance_notes(
        count_findings(n_counted)
        + blast_findings(result.blast_pct, result.blast_ci95)
        + dysplasia_findings(dysplasia_pct, dysplasia_ci95, scored)
        + plasma_findings(result.plasma_pct, result.plasma_ci95),
        result.synthetic_only, tax.codes_of_group("blasts"), tax.codes_of_group("plasma cells"),
        dysplasia_synthetic_only,
    )
    return result


def nothing_counted(n_detected: int, n_unidentified: int) -> str:
    """The one finding of a count with no cell in its denominator, and what usually causes it."""
    seen = ("no nucleated cell was detected" if n_detected == 0 else
            f"{n_detected} cells were detected but none could be counted ({n_unidentified} not identifiable, "
            "the others outside the denominator)")
    return (f"No nucleated cells counted: {seen}, so no percentage, ratio or criterion can be given. A wrong "
            "resolution (µm/px in the slide's metadata or --mpp) is the usual cause, then focus, stain, or a "
            "smear with no readable area: check the slide before repeating the count.")


def domain_warning(share: float) -> str:
    return (f"{100 * share:.0f}% of these cells do not look stained like a Wright-Giemsa or May-Grünwald-Giemsa "
            "smear, the only kind the classifier was validated on (a tissue section, another stain or a grayscale "
            "image?). This differential is not reliable: check the input before using any figure.")


def is_dysplastic(cells: Cells) -> np.ndarray:
    """Per cell, whether it counts as dysplastic (criteria.yaml): its probability or its granule grade; the
    review page needs the flag per cell, because a relabelled cell carries it into its new lineage."""
    rule = load_criteria()["dysplasia"]
    return (cells.dysplasia_score >= rule["cell_probability"]) | (cells.dysplasia_grade >= rule["granule_grade"])


def _dysplasia_counts(cells: Cells, tax: Taxonomy) -> tuple[dict[str, int], dict[str, int]]:
    """(dysplastic, scored) cells per lineage of criteria.yaml (granulocytic, erythroid, megakaryocytic)."""
    rule = load_criteria()["dysplasia"]
    dysplastic_cell = is_dysplastic(cells)
    not_scored = set(rule.get("not_scored", ()))
    dysplastic, scored = {}, {}
    for lineage in rule["lineages"]:
        codes = [c for c in tax.codes_of_lineage(lineage) if c not in not_scored]
        member = np.isin(cells.label.astype(str), codes)
        scored[lineage] = int(member.sum())
        dysplastic[lineage] = int((member & dysplastic_cell).sum())
    return dysplastic, scored
