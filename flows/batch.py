"""The batch flow: every slide in the given files and folders, one failure never stopping the rest.

Each slide is one task (``slide``) submitted to the flow's task runner: by default a thread pool running
``parallel`` slides at once, or a Dask cluster (``--runner dask``). The task gets the slide's path, never an
open handle, so it can run on any worker. A slide whose output folder already holds a matching
``run.json`` is skipped (``flows.resume``); the others are (re)done and finished all or nothing. The batch
ends with ``manifest.csv``: one row per slide, status ``ok``, ``failed`` or ``skipped``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from bmpipe.errors import BmpipeError
from bmpipe.report.cohort import write_cohort_summary
from bmpipe.report.spreadsheet import SafeWriter
from bmpipe.slide import open_slide
from flows import progress
from flows.deidentify import Pseudonyms, deidentified
from flows.gpu import set_gpu_slots
from flows.resume import batch_lock, is_finished, sweep_staging
from flows.slide import RunSettings, output_place, plan_slide, run_slide

log = logging.getLogger(__name__)

#: Files a folder is searched for. Plain photographs are analysed as fields of one case (``--fields``).
SLIDE_SUFFIXES = {".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".svslide", ".bif", ".vms", ".vmu", ".dcm"}


@dataclass
class SlideOutcome:
    slide: str
    status: str  # "ok" | "failed" | "skipped"
    error: str
    seconds: float
    output: str
    warning: str = ""  # the differential's domain warning: its cells look unlike the validated data


@dataclass(frozen=True)
class SlideJob:
    """A slide and the sub-folder of the output folder its results go to (mirroring the inbox)."""

    path: Path
    subfolder: Path = Path()


def _is_slide(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in SLIDE_SUFFIXES and not path.name.startswith(".")


def find_jobs(paths: list[Path], recursive: bool = False) -> list[SlideJob]:
    """Slide files named directly, plus those in named folders, in a stable order.

    With ``recursive``, slides in sub-folders are found too, and their outputs mirror the sub-folders (a
    lab drops ``case-1234/`` with its slides in the inbox, and finds ``out/case-1234/<slide>/``).
    """
    jobs: list[SlideJob] = []
    for path in paths:
        if not path.is_dir():
            jobs.append(SlideJob(path))
            continue
        found = path.rglob("*") if recursive else path.iterdir()
        slides = sorted(p for p in found if _is_slide(p) and not _hidden_below(p, path))
        jobs += [SlideJob(p, p.parent.relative_to(path)) for p in slides]
    return jobs


def _hidden_below(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def write_manifest(outcomes: list[SlideOutcome], out_dir: Path) -> Path:
    path = out_dir / "manifest.csv"
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = SafeWriter(f)
        writer.writerow(["slide", "status", "error", "seconds", "output", "warning"])
        for o in outcomes:
            writer.writerow([o.slide, o.status, o.error, f"{o.seconds:.1f}", o.output, o.warning])
    return path


def slide_warning(folder: Path) -> str:
    """What the manifest warns of a finished slide folder: its differential's domain warning, or why it counted
    no cell ("" when neither, or no differential)."""
    try:
        data = json.loads((folder / "differential.json").read_text("utf-8"))
    except (OSError, ValueError):
        return ""
    warnings = [data.get("domain_warning", "")]
    if data.get("n_counted") == 0:
        warnings += [f["text"] for f in data.get("findings", []) if f.get("kind") == "count"]
    return " ".join(w for w in warnings if w)


def slide_label(job: SlideJob, pseudonyms: Pseudonyms | None) -> str:
    """How the manifest and logs name a slide: its path, or its pseudonymised place in the batch."""
    return str(job.path) if pseudonyms is None else pseudonyms.slide(job.path, job.subfolder)


@task(name="slide", cache_policy=NO_CACHE)
def analyse_one(job: SlideJob, settings: RunSettings, label: str) -> SlideOutcome:
    """One slide, from its path: skipped if finished, else analysed; any error becomes a failed outcome."""
    start = time.perf_counter()
    with deidentified(settings) as pseudonyms:
        slide_label(job, pseudonyms)  # registers this slide's names for redaction on this worker too
        try:
            with open_slide(job.path, mpp=settings.mpp):  # bad input fails here, in one line, before any work
                pass
            plan = plan_slide(job.path, settings, pseudonyms, job.subfolder)
            if is_finished(plan.folder, plan.record):
                log.info("%s: already analysed with the same slide, models and settings; skipped", label)
                progress.reporter.finished(plan.name, "skipped")
                return SlideOutcome(label, "skipped", "", time.perf_counter() - start, str(plan.folder),
                                    slide_warning(plan.folder))
            folder = run_slide(plan, settings)
            progress.reporter.finished(plan.name, "done")
            warning = slide_warning(folder)
            if warning:
                log.warning("%s: %s", label, warning)
            return SlideOutcome(label, "ok", "", time.perf_counter() - start, str(folder), warning)
        except BmpipeError as exc:  # bad input: one clear line, no traceback
            error = pseudonyms.redact(str(exc)) if pseudonyms else str(exc)
            log.error("%s", error)
        except Exception as exc:  # a bug must not cost the other slides their reports
            log.exception("%s: unexpected error", label)
            error = f"{label}: unexpected error ({type(exc).__name__}: {exc})"
            error = pseudonyms.redact(error) if pseudonyms else error
        name, _ = output_place(job.path, settings, pseudonyms, job.subfolder)  # plan.name, with no plan to hand
        progress.reporter.finished(name, "failed")
        return SlideOutcome(label, "failed", error, time.perf_counter() - start, "")


def task_runner(runner: str = "threads", address: str | None = None, parallel: int = 1) -> TaskRunner:
    """The runner slides are submitted to: ``parallel`` local threads, or a Dask cluster.

    ``dask`` without an ``address`` starts a local cluster of ``parallel`` single-threaded workers in this
    process (``processes=False``): worker processes would each import torch and load the models again.
    """
    if runner == "threads":
        return ThreadPoolTaskRunner(max_workers=parallel)
    if runner == "dask":
        from prefect_dask import DaskTaskRunner

        if address:
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": parallel, "threads_per_worker": 1, "processes": False})
    raise ValueError(f"unknown runner {runner!r}; choose threads or dask")


@flow(name="analyse-batch", task_runner=ThreadPoolTaskRunner(max_workers=1))
def analyse_batch(paths: list[Path], settings: RunSettings, recursive: bool = False) -> list[SlideOutcome]:
    """Analyse each slide not already finished; ``manifest.csv`` lists every slide with its outcome."""
    with batch_lock(settings.out_dir):
        sweep_staging(settings.out_dir)
        set_gpu_slots(settings.gpu_slots)
        with deidentified(settings) as pseudonyms:
            jobs = find_jobs(paths, recursive)
            labels = [slide_label(job, pseudonyms) for job in jobs]
            futures = [
                analyse_one.with_options(task_run_name=f"slide {i + 1}/{len(jobs)}").submit(job, settings, label)
                for i, (job, label) in enumerate(zip(jobs, labels))
            ]
            outcomes = [future.result() for future in futures]
            write_manifest(outcomes, settings.out_dir)
            write_cohort_summary(settings.out_dir)
    return outcomes
