"""What a slide's report shows, gathered once and rendered twice (HTML and PDF) so the two cannot disagree.

A ``ReportContent`` is built from a fresh analysis (``outputs.SlideResult``) or, after a hematologist's
review, from the files of a finished output folder (``review``): it holds plain values and encoded images.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

from bmpipe.criteria import ci_range, ci_text, fmt_pct
from bmpipe.report.figures import class_bar_chart
from bmpipe.slide import Slide
from bmpipe.stages.aggregate import Differential
from bmpipe.taxonomy import load_taxonomy

NOTICE = (
    "Research software, not a diagnostic device. Every count and finding below is a proposal for a "
    "hematologist to review and confirm against the smear."
)


def _red_cells(estimate: dict | None) -> str:
    if not estimate:
        return "too few isolated round red cells to tell"
    low, high = estimate["ci95"]
    return (f"{estimate['um_per_px']:.3f} µm/px (95% CI {low:.3f}-{high:.3f}, {estimate['n_red_cells']} red cells "
            f"taken as {estimate['red_cell_um']:g} µm)")


@dataclass
class SlideSummary:
    """The slide facts a report may show: an allow-list, never label text or free-form vendor metadata."""

    id: str
    file: str
    mpp: str
    mpp_source: str
    dimensions: tuple[int, int]
    backend: str
    n_fields: int = 1
    #: Photographs of a case that could not be read, each as "name: problem"; the case was counted without them.
    skipped_fields: tuple[str, ...] = ()
    #: The resolution the red cells measure (``MppEstimate.as_dict``), beside the one used; None: too few.
    mpp_red_cells: dict | None = None

    @classmethod
    def of(cls, slide: Slide, case_id: str | None = None, n_fields: int = 1) -> SlideSummary:
        """Summary of ``slide``, or of a case of ``n_fields`` photographs named ``case_id`` like it."""
        return cls(
            id=case_id or slide.id,
            file=slide.path.parent.name if case_id else slide.path.name,
            mpp=str(slide.mpp),
            mpp_source=slide.mpp_source,
            dimensions=tuple(slide.dimensions),
            backend=slide.backend,
            n_fields=n_fields,
        )


@dataclass
class GalleryItem:
    """One cell of the gallery: its crop, and its Grad-CAM overlay when the classifier provided one."""

    crop: bytes
    overlay: bytes | None = None
    caption: str = ""


def pct_with_ci(pct: float, ci: tuple[float, float]) -> str:
    return f"{fmt_pct(pct)}% ({ci_text(ci)})"


def tile_counts(tiles: Any) -> dict[str, int]:
    """Every counter of a ``TileStats`` (tiles read, empty, blurred... whatever the detector records)."""
    return {f.name: int(getattr(tiles, f.name)) for f in fields(tiles)}


class DifferentialTables:
    """The tables and chart of a differential, as a slide's report and a patient's case report both show them."""

    diff: Differential

    @cached_property
    def bar_png(self) -> bytes:
        return class_bar_chart(self.diff.percent, self.diff.percent_ci95, load_taxonomy())

    def differential_rows(self) -> list[dict[str, Any]]:
        """One row per class with cells or in the denominator; excluded classes show their count only."""
        tax, diff = load_taxonomy(), self.diff
        rows = []
        for code in tax.codes:
            count = diff.counts.get(code, 0)
            counted = code in diff.percent
            if count == 0 and not counted:
                continue
            rows.append({
                "code": code, "group": tax[code].group, "rgb": tax.colour(code),
                "name": tax[code].name + (" †" if code in diff.synthetic_only else ""),
                "count": count,
                "pct": fmt_pct(diff.percent[code]) if counted else "not counted",
                "ci": ci_range(diff.percent_ci95[code]) if counted else "",
            })
        return rows

    def synthetic_note(self) -> str:
        """The footnote of the differential table when it marks classes with †."""
        codes = [c for c in self.diff.synthetic_only if c in self.diff.counts]
        if not codes:
            return ""
        return (f"† Learned from synthetic (phantom) cells, with no real one or too few ({', '.join(codes)}): "
                "unvalidated on real cells; confirm each on the smear.")

    def group_rows(self) -> list[dict[str, Any]]:
        diff = self.diff
        return [
            {"group": g, "count": k, "pct": fmt_pct(diff.group_percent[g]),
             "ci": ci_range(diff.group_percent_ci95[g]) if g in diff.group_percent_ci95 else ""}
            for g, k in diff.group_counts.items()
        ]

    def summary_rows(self) -> list[tuple[str, str]]:
        diff = self.diff
        minimum = diff.minimum_count
        rows = [
            ("Nucleated cells counted",
             f"{diff.n_counted} ({'reaches' if diff.meets_minimum_count else 'below'} the ICSH minimum of {minimum})"),
        ]
        if diff.sample:
            s = diff.sample
            text = (f"{diff.n_counted} counted of about {s['estimated_cells_in_area']} in the analysed area: the "
                    f"count stopped at --max-cells {s['max_cells']} after {s['tiles_read']} of {s['tiles_planned']} "
                    "tiles, drawn at random over the whole smear; the intervals are those of this sample")
            rows.append(("Sample", text))
        if not diff.n_counted:  # the findings say why; no figure of nothing is shown
            return rows
        rows += [
            ("Blasts", pct_with_ci(diff.blast_pct, diff.blast_ci95)),
            ("Plasma cells", pct_with_ci(diff.plasma_pct, diff.plasma_ci95)),
        ]
        if diff.me_ratio is None:
            rows.append(("M:E ratio", "n/a (no erythroid cells)"))
        else:
            ci = diff.me_ratio_ci95
            rows.append(("M:E ratio", f"{diff.me_ratio:.2f}" + (f" (95% CI {ci[0]:.2f}-{ci[1]:.2f})" if ci else "")))
        for lineage, n in diff.dysplasia_n.items():
            if n:
                rows.append((f"Dysplastic {lineage} cells",
                             f"{pct_with_ci(diff.dysplasia_pct[lineage], diff.dysplasia_ci95[lineage])} of {n}"))
        return rows


@dataclass
class ReportContent(DifferentialTables):
    slide: SlideSummary
    generated: str
    software: str
    models: list[list[str]]  # [name, version, sha256]
    regions_mode: str
    diff: Differential
    tiles: dict[str, int]
    overview_jpg: bytes | None = None  # smear mask on the overview
    density_png: bytes | None = None  # cell-density heat map
    zone_fractions: dict[str, float] = field(default_factory=dict)
    gallery: dict[str, list[GalleryItem]] = field(default_factory=dict)
    review_note: str = ""

    def qc_rows(self) -> list[tuple[str, str]]:
        diff, slide = self.diff, self.slide
        rows = [(name.replace("_", " ").capitalize(), str(n)) for name, n in self.tiles.items()]
        rows += [
            ("Nucleated cells detected", str(diff.n_detected)),
            ("Cells left unidentified (below confidence)", str(diff.n_unidentified)),
            ("Cells outside the denominator", ", ".join(f"{c} {diff.counts.get(c, 0)}" for c in diff.excluded)),
            ("Resolution used", f"{slide.mpp} ({slide.mpp_source})"),
            ("Resolution the red cells measure", _red_cells(slide.mpp_red_cells)),
            ("Regions counted", self.regions_mode),
            ("Slide size (level 0)", f"{slide.dimensions[0]} × {slide.dimensions[1]} px"),
        ]
        if slide.n_fields > 1 or slide.skipped_fields:
            rows.append(("Field photographs", str(slide.n_fields)))
        if slide.skipped_fields:
            rows.append(("Photographs skipped (unreadable)", "; ".join(slide.skipped_fields)))
        return rows

    def model_line(self) -> str:
        return "; ".join(f"{name} {version} (sha256 {sha[:12]}…)" for name, version, sha in self.models)

    def zone_line(self) -> str:
        return ", ".join(f"{zone} {100 * share:.0f}%" for zone, share in self.zone_fractions.items())
