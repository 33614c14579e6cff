"""A patient's case: the slides of one aspirate in one folder, analysed as a batch and pooled into one
differential (``bmpipe run CASE_DIR... --case``).

Each case's slides go to ``OUT/<case>/<slide>/`` with the case's own ``manifest.csv``; the pooled
``case-report.html``, ``case-report.pdf`` and ``case-differential.json`` sit beside them. A case is pooled
from the slides that finished (now or in an earlier run); one that failed is named in the manifest and left
out of the pool.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bmpipe.errors import BmpipeError, InputError
from bmpipe.flows.batch import SlideOutcome
from bmpipe.flows.deidentify import deidentified
from bmpipe.flows.resume import source_id
from bmpipe.flows.slide import RunSettings, output_place
from bmpipe.report.case import write_case_outputs

log = logging.getLogger(__name__)


@dataclass
class CaseOutcome:
    case: str
    folder: Path
    slides: list[SlideOutcome]
    report: Path | None  # the case report; None when nothing could be pooled
    error: str = ""


def case_places(case_dirs: list[Path], settings: RunSettings) -> list[tuple[str, Path]]:
    """Each case folder's name and output folder; cases of the same name get a digest of their path, as
    slides do (``bmpipe.flows.batch.place_jobs``)."""
    with deidentified(settings) as pseudonyms:
        names = [output_place(d, settings, pseudonyms, case=True)[0] for d in case_dirs]
        shared = Counter(names)
        return [output_place(d, settings, pseudonyms, case=True,
                             tag=source_id(d, pseudonyms)[:8] if shared[n] > 1 else "")
                for d, n in zip(case_dirs, names)]


def analyse_cases(case_dirs: list[Path], settings: RunSettings,
                  batch: Callable[[list[Path], RunSettings], list[SlideOutcome]]) -> list[CaseOutcome]:
    """Analyse each case folder's slides with ``batch`` (the batch flow) and pool the finished ones."""
    outcomes = []
    for case_dir, (name, folder) in zip(case_dirs, case_places(case_dirs, settings)):
        if not case_dir.is_dir():
            error = str(InputError(case_dir, "a case is a folder of one patient's slides"))
            log.error("%s", error)
            outcomes.append(CaseOutcome(name, folder, [], None, error))
            continue
        slides = batch([case_dir], dataclasses.replace(settings, out_dir=folder))
        finished = [Path(o.output) for o in slides if o.status in ("ok", "skipped") and o.output]
        try:
            report = write_case_outputs(folder, name, finished)
        except BmpipeError as exc:
            log.error("%s", exc)
            outcomes.append(CaseOutcome(name, folder, slides, None, str(exc)))
            continue
        outcomes.append(CaseOutcome(name, folder, slides, report))
    return outcomes
