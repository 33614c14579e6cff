"""The batch flow: every slide in the given files and folders, one at a time, one failure never stopping the rest."""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from prefect import flow

from bmpipe.errors import BmpipeError
from bmpipe.slide import open_slide
from flows.slide import RunSettings, analyse_slide

log = logging.getLogger(__name__)

#: Files a folder is searched for. Plain photographs are analysed as fields of one case (``--fields``).
SLIDE_SUFFIXES = {".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".svslide", ".bif", ".vms", ".vmu", ".dcm"}


@dataclass
class SlideOutcome:
    slide: str
    status: str  # "ok" | "failed"
    error: str
    seconds: float
    output: str


def find_slides(paths: list[Path]) -> list[Path]:
    """Slide files named directly, plus those found (not recursively) in named folders, in a stable order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SLIDE_SUFFIXES)
        else:
            found.append(path)
    return found


def write_manifest(outcomes: list[SlideOutcome], out_dir: Path) -> Path:
    path = out_dir / "manifest.csv"
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["slide", "status", "error", "seconds", "output"])
        for o in outcomes:
            writer.writerow([o.slide, o.status, o.error, f"{o.seconds:.1f}", o.output])
    return path


@flow(name="analyse-batch")
def analyse_batch(paths: list[Path], settings: RunSettings) -> list[SlideOutcome]:
    """Analyse each slide; a slide that fails is recorded in ``manifest.csv`` with its one-line error."""
    outcomes = []
    for path in find_slides(paths):
        start = time.perf_counter()
        try:
            with open_slide(path, mpp=settings.mpp):  # bad input fails here, in one line, before the flow
                pass
            output = analyse_slide(path, settings)
            outcomes.append(SlideOutcome(str(path), "ok", "", time.perf_counter() - start, str(output)))
        except BmpipeError as exc:  # bad input: one clear line, no traceback
            log.error("%s", exc)
            outcomes.append(SlideOutcome(str(path), "failed", str(exc), time.perf_counter() - start, ""))
        except Exception as exc:  # a bug must not cost the other slides their reports
            log.exception("%s: unexpected error", path)
            error = f"{path}: unexpected error ({type(exc).__name__}: {exc})"
            outcomes.append(SlideOutcome(str(path), "failed", error, time.perf_counter() - start, ""))
    write_manifest(outcomes, settings.out_dir)
    return outcomes
