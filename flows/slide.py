"""The per-slide flow: the five steps a hematologist's count follows, each a Prefect task over a plain stage.

Tasks take and return in-process objects (slide handles, cell batches), so nothing is cached or persisted
between them (``NO_CACHE``) and a slide handle never leaves the process that opened it. Resuming is done
per slide, from the finished output folder's ``run.json`` (``bmpipe.flows.resume``).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from bmpipe.flows import progress
from bmpipe.flows.deidentify import Pseudonyms, deidentified
from bmpipe.flows.gpu import gpu_slot, set_gpu_slots
from bmpipe.flows.resume import file_sha256, finished, models_fingerprint, run_record, source_id
from bmpipe.imaging.red_cells import MppEstimate
from bmpipe.models import Models, load_models
from bmpipe.nn.cell_classifier import CROP_PX, CellClassifier
from bmpipe.nn.gradcam import gradcam_overlays
from bmpipe.records import Cells
from bmpipe.report.cell_files import CellFiles
from bmpipe.report.outputs import (
    SlideResult,
    SlideSummary,
    fill_slide_folder,
    gallery_crops,
    overlay_gallery,
)
from bmpipe.report.review_files import review_crops
from bmpipe.report.review_page import slide_thumbnails
from bmpipe.slide import Slide, slide_id
from bmpipe.stages.aggregate import Differential, differential
from bmpipe.stages.calibrate import opened, resolution_record, resolution_warning
from bmpipe.stages.detect import TileStats
from bmpipe.stages.regions import RegionsMode, SmearMap, find_smear
from bmpipe.stages.stream import detect_and_classify
from bmpipe.taxonomy import load_taxonomy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSettings:
    """What a user chooses for a run; the same settings give the same outputs."""

    out_dir: Path
    mpp: float | str | None = None  # µm/px, "auto" (measured on the red cells) or None (the slide's own)
    regions: RegionsMode = "readable"
    models_dir: Path | None = None
    device: str | None = None
    detector: str = "unet"
    deidentify: bool = False
    #: Slides allowed in the model stages at once (``bmpipe.flows.gpu``); more only pays with GPU memory to spare.
    gpu_slots: int = 1
    #: Stop a slide's count once this many cells are counted, from tiles drawn over the whole smear.
    max_cells: int | None = None

    def result_settings(self) -> dict[str, Any]:
        """The settings that change a slide's outputs (where they go and on which device do not)."""
        return {"mpp": self.mpp, "regions": self.regions, "detector": self.detector, "deidentify": self.deidentify,
                "max_cells": self.max_cells}


@dataclass(frozen=True)
class SlidePlan:
    """Where one slide's (or case's) outputs go, under which name, and the ``run.json`` record that finishes
    them; ``source`` tells whose folder it is when two inputs share a name (``bmpipe.flows.resume.source_id``)."""

    path: Path
    name: str  # the slide id, or its pseudonym with --deidentify
    folder: Path
    record: dict[str, Any]
    source: str = ""


def _folder_id(name: str) -> str:
    return slide_id(Path(f"{name}.folder"))  # slide_id drops a suffix; a folder's dot starts none


def output_place(path: Path, settings: RunSettings, pseudonyms: Pseudonyms | None = None,
                 subfolder: Path = Path(), tag: str = "", case: bool = False) -> tuple[str, Path]:
    """The name ``path``'s outputs go by, and their folder ``out_dir/subfolder/<name>``, always inside ``out_dir``;
    ``tag`` is added to the name when another input of the batch has the same one, ``case`` names a folder of
    field photographs rather than a slide file.

    File and folder names are untrusted: each part is made safe as slide ids are (or pseudonymised), so no
    name can climb out of ``out_dir`` or carry markup into a folder name.
    """
    if pseudonyms is not None:  # the manifest's label of the slide, less the suffix
        parts = [pseudonyms.of(p) for p in subfolder.parts]
        name = pseudonyms.of(path.name) if case else pseudonyms.path(Path(path.name)).with_suffix("").name
    else:
        parts = [_folder_id(part) for part in subfolder.parts]
        name = _folder_id(path.name) if case else slide_id(path)
    name = f"{name}-{tag}" if tag else name
    return name, settings.out_dir.joinpath(*parts, name)


def plan_slide(path: Path, settings: RunSettings, pseudonyms: Pseudonyms | None = None,
               subfolder: Path = Path(), tag: str = "") -> SlidePlan:
    """The plan for ``path``, its outputs in ``output_place``; hashes the slide's bytes."""
    name, folder = output_place(path, settings, pseudonyms, subfolder, tag)
    models = load_models(settings.models_dir, settings.device, detector=settings.detector)  # once per process
    record = run_record(file_sha256(path), models_fingerprint(models.records), settings.result_settings())
    return SlidePlan(path, name, folder, record, source_id(path, pseudonyms))


@task(name="smear regions", cache_policy=NO_CACHE)
def smear_regions(slide: Slide, mode: RegionsMode) -> SmearMap:
    return find_smear(slide, mode)


@task(name="detect and classify cells", cache_policy=NO_CACHE)
def detect_classify(slide: Slide, smear: SmearMap, models: Models, tiles: TileStats,
                    cell_files: CellFiles | None = None, max_cells: int | None = None) -> Cells:
    """Nucleated cells found on streamed tiles and classified from crops of the same reads (one pass), each
    classified batch written to ``cell_files`` as it comes; ``max_cells`` stops the count early."""
    with gpu_slot():
        return detect_and_classify(slide, smear, models.detector, models.classifier, tiles,
                                   write_cells=cell_files.write if cell_files else None, max_cells=max_cells)


def sample_of(tiles: TileStats, n_counted: int, max_cells: int | None) -> dict[str, int] | None:
    """What a count stopped at ``max_cells`` was a sample of (None when every planned tile was read)."""
    if not max_cells or tiles.tiles_read >= tiles.tiles_planned or not tiles.tiles_read:
        return None
    return {"max_cells": max_cells, "tiles_read": tiles.tiles_read, "tiles_planned": tiles.tiles_planned,
            "estimated_cells_in_area": round(n_counted * tiles.tiles_planned / tiles.tiles_read)}


@task(name="aggregate", cache_policy=NO_CACHE)
def aggregate(cells: Cells, slide_id: str, classifier: CellClassifier, resolution_warning: str = "") -> Differential:
    """The differential, told what ``classifier`` never saw real (so that its findings can say so) and
    whether the resolution it was counted at is in doubt."""
    return differential(cells, slide_id, synthetic_only=classifier.synthetic_only,
                        dysplasia_synthetic_only=classifier.dysplasia_synthetic_only,
                        resolution_warning=resolution_warning)


def gradcam_of(models: Models):
    """Grad-CAM overlays of the gallery's crops for the class each is shown under; the unidentified bucket,
    when the classifier has no class of its own for it, shows the map of each cell's top class."""

    def overlay(crops: np.ndarray, labels: list[str]) -> np.ndarray:
        known = set(labels) <= set(models.classifier.codes)
        return gradcam_overlays(models.classifier, crops, labels if known else None)

    return overlay


@task(name="report", cache_policy=NO_CACHE)
def report(slide: Slide, smear: SmearMap, cells: Cells, diff: Differential, tiles: TileStats, models: Models,
           name: str, folder: Path, red_cells: MppEstimate | None = None) -> None:
    """Write the outputs into ``folder`` (the slide's staging folder, which has the cell files already); the
    slide's own name is shown only when ``name`` is it."""
    summary = SlideSummary.of(slide)
    summary.mpp_red_cells = red_cells.as_dict() if red_cells else None
    if name != summary.id:  # a pseudonym: the file name would give the patient away
        summary = dataclasses.replace(summary, id=name, file=name + slide.path.suffix.lower())
    gallery = gallery_crops(slide, cells)
    result = SlideResult(
        slide=summary,
        smear=smear,
        cells=cells,
        differential=diff,
        tiles=tiles,
        models=models.records,
        gallery=gallery,
        crops=review_crops(slide, cells),
        gallery_overlays=overlay_gallery(gallery, gradcam_of(models), input_px=CROP_PX),
        thumbnails=slide_thumbnails(slide, cells),
    )
    fill_slide_folder(result, folder, cell_files_written=True)


def differential_markdown(diff: Differential) -> str:
    """The differential as a markdown table, for the Prefect UI."""
    tax = load_taxonomy()
    lines = [
        (f"### {diff.slide}: {diff.n_counted} cells counted, blasts {diff.blast_pct:.1f}% "
         f"(95% CI {diff.blast_ci95[0]:.1f}-{diff.blast_ci95[1]:.1f})"),
        "",
        "| class | count | % | 95% CI |",
        "| --- | ---: | ---: | --- |",
    ]
    for code in tax.codes:
        if code in diff.percent:
            lo, hi = diff.percent_ci95[code]
            lines.append(f"| {tax[code].name} | {diff.counts.get(code, 0)} | {diff.percent[code]:.1f} | "
                         f"{lo:.1f}-{hi:.1f} |")
    lines += ["", *(f"- {f.as_dict().get('text', '')}" for f in diff.findings)]
    return "\n".join(lines)


def artifact_key(name: str) -> str:
    """Prefect artifact keys allow only lowercase letters, digits and dashes."""
    return "differential-" + (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60] or "slide")


def run_slide(plan: SlidePlan, settings: RunSettings) -> Path:
    """The stages on one slide, finished atomically into ``plan.folder`` with its ``run.json``; the cell files
    are written into the staging folder while the cells are classified.

    The slide is opened here, from its path, by whichever worker runs this: handles are never pickled.
    """
    show = progress.reporter.stage
    show(plan.name, "open")
    models = load_models(settings.models_dir, settings.device, detector=settings.detector)
    tiles = TileStats()
    resolution: dict[str, Any] = {}
    with (opened(plan.path, settings.mpp) as (slide, red_cells),
          finished(plan.folder, plan.record, plan.source, resolution) as staging):
        resolution.update(resolution_record(slide.mpp, slide.mpp_source, red_cells))
        show(plan.name, "smear regions")
        smear = smear_regions(slide, settings.regions)
        show(plan.name, "detect and classify")
        with CellFiles(staging, plan.name) as cell_files:
            cells = detect_classify(slide, smear, models, tiles, cell_files, settings.max_cells)
        show(plan.name, "aggregate")
        diff = aggregate(cells, plan.name, models.classifier, resolution_warning(slide.mpp, slide.mpp_source, red_cells))
        diff.sample = sample_of(tiles, diff.n_counted, settings.max_cells)
        show(plan.name, "report")
        report(slide, smear, cells, diff, tiles, models, plan.name, staging, red_cells)
    create_markdown_artifact(markdown=differential_markdown(diff), key=artifact_key(plan.name),
                             description=f"Differential of {plan.name}")
    return plan.folder


@flow(name="analyse-slide", log_prints=False)
def analyse_slide(path: Path, settings: RunSettings) -> Path:
    """Smear regions → nucleated-cell detection → classification → differential → report, for one slide."""
    set_gpu_slots(settings.gpu_slots)
    with deidentified(settings) as pseudonyms:
        if pseudonyms is not None:
            pseudonyms.slide(path)
        return run_slide(plan_slide(path, settings, pseudonyms), settings)
