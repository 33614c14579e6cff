"""The batch flow: every slide in the given files and folders, one failure never stopping the rest.

Each slide (with ``--fields``, each case folder of field photographs) is one task (``slide``) submitted to the flow's task runner: by default a thread pool running
``parallel`` slides at once, or a Dask cluster (``--runner dask``). The task gets the slide's path, never an
open handle, so it can run on any worker. A slide whose output folder already holds a matching
``run.json`` is skipped (``bmpipe.flows.resume``); the others are (re)done and finished all or nothing. The batch
ends with ``manifest.csv``: one row per slide, status ``ok``, ``failed`` or ``skipped``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from bmpipe.errors import BmpipeError, InputError
from bmpipe.flows import progress
from bmpipe.flows.deidentify import Pseudonyms, deidentified
from bmpipe.flows.fields import find_fields, plan_case, run_case
from bmpipe.flows.gpu import set_gpu_slots
from bmpipe.flows.resume import (
    batch_lock,
    file_sha256,
    files_sha256,
    finished_record,
    is_finished,
    source_id,
    sweep_staging,
)
from bmpipe.flows.slide import RunSettings, SlidePlan, output_place, plan_slide, run_slide
from bmpipe.report.cohort import write_cohort_summary
from bmpipe.report.spreadsheet import SafeWriter
from bmpipe.slide import PHOTO_SUFFIXES, open_slide
from bmpipe.stages.calibrate import opening_mpp

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
    """A slide (or, with ``fields``, a folder of field photographs of one case) and where its results go: the
    sub-folder of the output folder (mirroring the inbox), and a ``tag`` added to its name when another input
    of the same name would otherwise share its folder. A job with a ``problem`` fails at once, saying it."""

    path: Path
    subfolder: Path = Path()
    fields: bool = False
    tag: str = ""
    problem: str = ""


def _is_slide(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in SLIDE_SUFFIXES and not path.name.startswith(".")


def find_jobs(paths: list[Path], recursive: bool = False, fields: bool = False) -> list[SlideJob]:
    """Slide files named directly, plus those in named folders, in a stable order, each once; with ``fields``,
    each named folder is one case of field photographs.

    With ``recursive``, slides in sub-folders are found too, and their outputs mirror the sub-folders (a
    lab drops ``case-1234/`` with its slides in the inbox, and finds ``out/case-1234/<slide>/``). A folder
    with nothing to analyse becomes a job that fails, naming what it holds instead.
    """
    jobs: list[SlideJob] = []
    for path in paths:
        if fields:
            problem = "" if path.is_dir() else "--fields needs a folder of field photographs of one case"
            jobs.append(SlideJob(path, fields=True, problem=problem))
        elif not path.is_dir():
            jobs.append(SlideJob(path))
        else:
            found = path.rglob("*") if recursive else path.iterdir()
            slides = sorted(p for p in found if _is_slide(p) and not _hidden_below(p, path))
            jobs += [SlideJob(p, p.parent.relative_to(path)) for p in slides]
            if not slides:
                jobs.append(SlideJob(path, problem=no_slides(path, recursive)))
    seen: set[str] = set()
    unique = []
    for job in jobs:  # a slide named twice (a file and its folder) is analysed once
        where = os.path.abspath(job.path)
        if where not in seen:
            seen.add(where)
            unique.append(job)
    return unique


def no_slides(folder: Path, recursive: bool) -> str:
    """Why a folder gave no slide: what it holds instead, and the option that would find its slides."""
    try:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        return f"folder cannot be read ({exc.strerror or exc})"
    if not entries:
        return "folder is empty: no slide to analyse"
    files = [p.name for p in entries if p.is_file()]
    folders = [p.name for p in entries if p.is_dir()]
    hint = ""
    if any(Path(name).suffix.lower() in PHOTO_SUFFIXES for name in files):
        hint = "; its photographs are fields of a case: use --fields"
    elif not recursive and any(_is_slide(p) for d in entries if d.is_dir() for p in d.rglob("*")):
        hint = f"; sub-folders hold slides ({', '.join(folders[:5])}): use --recursive"
    shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    skipped = f"skipped {len(files)} other file(s): {shown}" if files else "only sub-folders"
    return f"holds no slide file ({', '.join(sorted(SLIDE_SUFFIXES))}); {skipped}{hint}"


def place_jobs(jobs: list[SlideJob], settings: RunSettings, pseudonyms: Pseudonyms | None) -> list[SlideJob]:
    """Give every job its own output folder. Jobs whose names collide (``a/s.tiff`` and ``b/s.tiff``, or
    names made safe alike) are tagged with their :func:`~bmpipe.flows.resume.source_id`, except one that already owns
    the folder; so is a job whose folder an earlier run filled from another input (other path and other bytes:
    the same slide moved, or reached through a link, keeps its folder and is skipped as done)."""
    places = [output_place(j.path, settings, pseudonyms, j.subfolder, case=j.fields)[1] for j in jobs]
    sharing = Counter(place for place, job in zip(places, jobs) if not job.problem)
    placed = []
    for job, place in zip(jobs, places):
        if not job.problem:
            source, done = source_id(job.path, pseudonyms), finished_record(place)
            owner = done.get("source") if done else None
            if owner != source and (sharing[place] > 1 or (owner and not _same_input(job, done))):
                job = dataclasses.replace(job, tag=source[:8])
        placed.append(job)
    return placed


def _same_input(job: SlideJob, done: dict) -> bool:
    """Whether ``job``'s bytes are those a finished folder's ``run.json`` (``done``) was made from."""
    try:
        sha = files_sha256(find_fields(job.path)) if job.fields else file_sha256(job.path)
    except (OSError, BmpipeError):
        return False
    return sha == done.get("input_sha256")


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
    """What the manifest warns of a finished slide folder: its differential's resolution and domain warnings, the photographs
    of a case that were skipped, and why it counted no cell ("" when none of these, or no differential)."""
    try:
        data = json.loads((folder / "differential.json").read_text("utf-8"))
    except (OSError, ValueError):
        return ""
    warnings = [data.get("resolution_warning", ""), data.get("domain_warning", "")]
    skipped = (data.get("slide_summary") or {}).get("skipped_fields") or []
    if skipped:
        warnings.append(f"{len(skipped)} photograph(s) skipped: {'; '.join(skipped)}.")
    if data.get("n_counted") == 0:
        warnings += [f["text"] for f in data.get("findings", []) if f.get("kind") == "count"]
    return " ".join(w for w in warnings if w)


def slide_label(job: SlideJob, pseudonyms: Pseudonyms | None) -> str:
    """How the manifest and logs name a slide or case: its path, or its pseudonymised place in the batch."""
    if pseudonyms is None:
        return str(job.path)
    return pseudonyms.case(job.path) if job.fields else pseudonyms.slide(job.path, job.subfolder)


def _plan(job: SlideJob, settings: RunSettings, pseudonyms: Pseudonyms | None) -> SlidePlan:
    """The job's plan, after the checks that fail bad input in one line before any work."""
    if job.problem:
        raise InputError(job.path, job.problem)
    if job.fields:
        return plan_case(job.path, settings, pseudonyms, job.tag)
    with open_slide(job.path, mpp=opening_mpp(settings.mpp)):
        pass
    return plan_slide(job.path, settings, pseudonyms, job.subfolder, job.tag)


@task(name="slide", cache_policy=NO_CACHE)
def analyse_one(job: SlideJob, settings: RunSettings, label: str) -> SlideOutcome:
    """One slide or case, from its path: skipped if finished, else analysed; any error becomes a failed outcome."""
    start = time.perf_counter()
    with deidentified(settings) as pseudonyms:
        slide_label(job, pseudonyms)  # registers this slide's names for redaction on this worker too
        try:
            plan = _plan(job, settings, pseudonyms)
            if is_finished(plan.folder, plan.record):
                log.info("%s: already analysed with the same slide, models and settings; skipped", label)
                progress.reporter.finished(plan.name, "skipped")
                return SlideOutcome(label, "skipped", "", time.perf_counter() - start, str(plan.folder),
                                    slide_warning(plan.folder))
            folder = run_case(plan, settings, pseudonyms) if job.fields else run_slide(plan, settings)
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
        name, _ = output_place(job.path, settings, pseudonyms, job.subfolder, job.tag, job.fields)
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
def analyse_batch(paths: list[Path], settings: RunSettings, recursive: bool = False,
                  fields: bool = False) -> list[SlideOutcome]:
    """Analyse each slide (with ``fields``, each case of field photographs) not already finished;
    ``manifest.csv`` lists every one with its outcome and output folder."""
    with batch_lock(settings.out_dir):
        sweep_staging(settings.out_dir)
        set_gpu_slots(settings.gpu_slots)
        with deidentified(settings) as pseudonyms:
            jobs = place_jobs(find_jobs(paths, recursive, fields), settings, pseudonyms)
            labels = [slide_label(job, pseudonyms) for job in jobs]
            futures = [
                analyse_one.with_options(task_run_name=f"slide {i + 1}/{len(jobs)}").submit(job, settings, label)
                for i, (job, label) in enumerate(zip(jobs, labels))
            ]
            outcomes = [future.result() for future in futures]
            write_manifest(outcomes, settings.out_dir)
            write_cohort_summary(settings.out_dir)
    return outcomes
