"""A patient's case report: the finished slide folders of one aspirate pooled into ``case-report.html``,
``case-report.pdf`` and ``case-differential.json`` beside them (``bmpipe run CASE_DIR --case``)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bmpipe import __version__
from bmpipe.errors import InputError
from bmpipe.records import Cells
from bmpipe.report.content import DifferentialTables, pct_with_ci
from bmpipe.report.html import render
from bmpipe.report.outputs import utc_stamp
from bmpipe.report.pdf import write_case_pdf
from bmpipe.stages.aggregate import Differential, differential
from bmpipe.stages.pooling import CaseDifferential, pool_case

log = logging.getLogger(__name__)

CASE_JSON = "case-differential.json"
CASE_HTML = "case-report.html"
CASE_PDF = "case-report.pdf"


def slide_counts(folder: Path) -> tuple[str, Cells, Differential, dict[str, Any]]:
    """A finished slide folder's id, classified cells (a hematologist's corrections in place of the model's
    labels where it was reviewed), its differential recomputed from them, and its ``differential.json``."""
    for needed in ("differential.json", "cells.parquet"):
        if not (folder / needed).is_file():
            raise InputError(folder, f"is not a finished bmpipe slide folder (no {needed})")
    data = json.loads((folder / "differential.json").read_text("utf-8"))
    frame = pd.read_parquet(folder / "cells.parquet")
    cells = Cells.from_frame(frame)
    if "corrected_label" in frame:
        corrected = frame["corrected_label"].fillna("").astype(str).to_numpy()
        cells = cells.with_labels(pd.Series(corrected).where(corrected != "", cells.label).to_numpy(object),
                                  cells.label_score)
    diff = differential(cells, data["slide"], synthetic_only=tuple(data.get("synthetic_only", ())),
                        dysplasia_synthetic_only=bool(data.get("dysplasia_synthetic_only", False)))
    return data["slide"], cells, diff, data


@dataclass
class CaseContent(DifferentialTables):
    """What the case report shows: the pooled differential's tables, and each smear's part."""

    case: str
    generated: str
    software: str
    diff: Differential
    pooled: CaseDifferential
    slide_reports: dict[str, str]  # slide id → its report, relative to the case folder
    warnings: list[str]

    def slide_rows(self) -> list[dict[str, Any]]:
        return [{"slide": s.slide, "report": self.slide_reports.get(s.slide, ""), "n": s.n_counted,
                 "blasts": s.blasts,
                 "blast": pct_with_ci(s.blast_pct, s.blast_ci95) if s.n_counted else "nothing counted",
                 "residual": f"{s.residual:+.1f}", "disagrees": s.disagrees} for s in self.pooled.slides]

    def findings(self) -> list[str]:
        """The pooled differential's findings, then whether the smears agree."""
        texts = [f.text for f in self.diff.findings]
        return texts + ([self.pooled.finding()] if self.pooled.finding() else [])


def case_json(content: CaseContent) -> dict[str, Any]:
    data = content.diff.as_dict()
    data.update(case=content.case, software=content.software, generated=content.generated,
                slides=[asdict(s) for s in content.pooled.slides], warnings=content.warnings,
                agreement=content.pooled.finding())
    test = content.pooled.heterogeneity
    data["blast_heterogeneity"] = asdict(test) | {"disagree": test.disagree} if test else None
    return data


def write_case_outputs(case_dir: Path, case: str, folders: list[Path]) -> Path:
    """Pool the finished slide ``folders`` of one patient into the case outputs in ``case_dir``."""
    if not folders:
        raise InputError(case_dir, "no finished slide to pool into a case report")
    read = [slide_counts(f) for f in folders]
    pooled = pool_case(case, [(slide, cells, diff) for slide, cells, diff, _ in read])
    warnings = [f"{slide}: {w}" for slide, _, _, data in read
                for w in (data.get("resolution_warning", ""), data.get("domain_warning", "")) if w]
    reports = {slide: str((f / "report.html").relative_to(case_dir) if f.is_relative_to(case_dir) else f / "report.html")
               for (slide, *_), f in zip(read, folders)}
    content = CaseContent(case=case, generated=utc_stamp(), software=f"bmpipe {__version__}", diff=pooled.pooled,
                          pooled=pooled, slide_reports=reports, warnings=warnings)
    case_dir.mkdir(parents=True, exist_ok=True)
    (case_dir / CASE_JSON).write_text(json.dumps(case_json(content), indent=2, ensure_ascii=False) + "\n", "utf-8")
    (case_dir / CASE_HTML).write_text(render("case-report.html.j2", content), "utf-8")
    write_case_pdf(content, case_dir / CASE_PDF)
    log.info("%s: %d slides pooled, %d cells, blasts %.1f%%; %s", case, len(read), pooled.pooled.n_counted,
             pooled.pooled.blast_pct, pooled.finding() or "one smear with cells")
    return case_dir / CASE_HTML
