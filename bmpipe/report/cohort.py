"""A folder's cohort summary: one row per slide, from each ``out_dir/<slide>/differential.json``.

``cohort.csv`` for spreadsheets and ``cohort.html`` (self-contained) for people: cells counted, blast
percentage with its interval and the range each system puts it in, M:E ratio, plasma cells, dysplasia per
lineage, and flags for what needs a hematologist's eye (borderline findings, counts below the ICSH minimum).
"""

from __future__ import annotations

import io
import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from bmpipe.criteria import load_criteria, lowest_named_range
from bmpipe.report.content import NOTICE
from bmpipe.report.spreadsheet import SafeDictWriter
from bmpipe.report.staging import write_text_atomic

log = logging.getLogger(__name__)

COHORT_CSV = "cohort.csv"
COHORT_HTML = "cohort.html"


def _round(value: float | None, digits: int = 2) -> float | str:
    return "" if value is None else round(float(value), digits)


def _blast_ranges(findings: list[dict[str, Any]], systems: dict[str, str]) -> dict[str, str]:
    """Per system, the category the blast finding names, or "<5%" style text where the range has none."""
    out = {}
    for f in findings:
        if f.get("kind") == "blasts" and f.get("system") in systems:
            system = f["system"]
            out[system] = f.get("category") or "below " + lowest_named_range(system)["category"][system]
    return out


def cohort_row(data: dict[str, Any]) -> dict[str, Any]:
    """One slide's row, from its ``differential.json``."""
    crit = load_criteria()
    systems = crit["systems"]
    findings = data.get("findings", [])
    ranges = _blast_ranges(findings, systems)
    threshold = crit["dysplasia"]["threshold_pct"]
    row: dict[str, Any] = {
        "slide": data["slide"],
        "reviewed": bool(data.get("reviewed", False)),
        "cells_counted": data["n_counted"],
        "meets_icsh_minimum": bool(data.get("meets_minimum_count", False)),
        "blast_pct": _round(data["blast_pct"]),
        "blast_ci_low": _round(data["blast_ci95"][0]),
        "blast_ci_high": _round(data["blast_ci95"][1]),
    }
    for system in systems:
        row[f"blasts_{system}"] = ranges.get(system, "")
    row["me_ratio"] = _round(data.get("me_ratio"))
    row["plasma_pct"] = _round(data.get("plasma_pct"))
    row["plasma_ci_low"] = _round(data["plasma_ci95"][0]) if "plasma_ci95" in data else ""
    row["plasma_ci_high"] = _round(data["plasma_ci95"][1]) if "plasma_ci95" in data else ""
    for lineage in crit["dysplasia"]["lineages"]:
        n = data.get("dysplasia_n", {}).get(lineage, 0)
        row[f"dysplasia_{lineage}_pct"] = _round(data.get("dysplasia_pct", {}).get(lineage)) if n else ""
        row[f"dysplasia_{lineage}_n"] = n
    flags = []
    if not row["meets_icsh_minimum"]:
        flags.append("below ICSH minimum")
    # the unrounded value, as the findings compare it: 9.996% shows as 10.0 yet lies below 10%
    flags += [f"{lineage} dysplasia ≥{threshold}%" for lineage in crit["dysplasia"]["lineages"]
              if row[f"dysplasia_{lineage}_n"] and data["dysplasia_pct"][lineage] >= threshold]
    flags += [f"plasma cells ≥{rule['threshold_pct']}%" for rule in crit["plasma_cells"]
              if data.get("plasma_pct", 0) >= rule["threshold_pct"]]
    borderline = sorted({f["kind"] for f in findings if f.get("borderline") and f.get("kind") != "count"})
    flags += [f"borderline {kind.replace('_', ' ')}" for kind in borderline]
    row["flags"] = "; ".join(flags)
    return row


def cohort_rows(out_dir: Path) -> list[tuple[dict[str, Any], str]]:
    """(row, folder relative to ``out_dir``) of every finished slide's ``differential.json`` under ``out_dir``
    (hidden staging folders skipped); one that cannot be read or lacks what a row needs is logged and left
    out, so one broken folder never costs the summary."""
    found = []
    out_dir = Path(out_dir)
    for path in sorted(out_dir.rglob("differential.json")):  # inbox sub-folders give out/<case>/<slide>/
        folder = path.parent.relative_to(out_dir)
        if any(part.startswith(".") for part in folder.parts):
            continue
        try:
            row = cohort_row(json.loads(path.read_text("utf-8")))
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("%s: left out of the cohort summary (%s)", path, exc)
            continue
        found.append((row, folder.as_posix()))
    return found


def write_cohort_summary(out_dir: Path) -> tuple[Path, Path]:
    """Write ``out_dir/cohort.csv`` and ``out_dir/cohort.html``; return their paths."""
    out_dir = Path(out_dir)
    rows = cohort_rows(out_dir)
    columns = list(rows[0][0]) if rows else ["slide"]
    csv_path, html_path = out_dir / COHORT_CSV, out_dir / COHORT_HTML
    buffer = io.StringIO()
    writer = SafeDictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(row for row, _ in rows)
    write_text_atomic(csv_path, buffer.getvalue())

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(
        resources.files("bmpipe.report").joinpath("templates/cohort.html.j2").read_text("utf-8")
    )
    html = template.render(
        rows=rows, notice=NOTICE,
        systems=load_criteria()["systems"], lineages=load_criteria()["dysplasia"]["lineages"],
    )
    write_text_atomic(html_path, html)
    log.info("cohort summary of %d slide(s): %s", len(rows), html_path)
    return csv_path, html_path
