"""The per-slide flow: the five steps a hematologist's count follows, each a Prefect task over a plain stage.

Tasks take and return in-process objects (slide handles, cell batches), so nothing is cached or persisted
between them (``NO_CACHE``); resuming is done per slide by the batch flow, from the finished output folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from bmpipe.models import Models, load_models
from bmpipe.records import Cells
from bmpipe.report.outputs import SlideResult, SlideSummary, gallery_crops, write_slide_outputs
from bmpipe.slide import Slide, open_slide
from bmpipe.stages.aggregate import Differential, differential
from bmpipe.stages.classify import classify_cells
from bmpipe.stages.detect import TileStats, detect_cells
from bmpipe.stages.regions import RegionsMode, SmearMap, find_smear


@dataclass(frozen=True)
class RunSettings:
    """What a user chooses for a run; the same settings give the same outputs."""

    out_dir: Path
    mpp: float | None = None
    regions: RegionsMode = "readable"
    models_dir: Path | None = None
    device: str | None = None


@task(name="smear regions", cache_policy=NO_CACHE)
def smear_regions(slide: Slide, mode: RegionsMode) -> SmearMap:
    return find_smear(slide, mode)


@task(name="detect nucleated cells", cache_policy=NO_CACHE)
def detect(slide: Slide, smear: SmearMap, models: Models, tiles: TileStats) -> Cells:
    return detect_cells(slide, smear, models.detector, stats=tiles)


@task(name="classify cells", cache_policy=NO_CACHE)
def classify(slide: Slide, cells: Cells, models: Models) -> Cells:
    return classify_cells(slide, cells, models.classifier)


@task(name="aggregate", cache_policy=NO_CACHE)
def aggregate(cells: Cells, slide_id: str) -> Differential:
    return differential(cells, slide_id)


@task(name="report", cache_policy=NO_CACHE)
def report(slide: Slide, smear: SmearMap, cells: Cells, diff: Differential, tiles: TileStats, models: Models,
           out_dir: Path) -> Path:
    result = SlideResult(
        slide=SlideSummary.of(slide),
        smear=smear,
        cells=cells,
        differential=diff,
        tiles=tiles,
        models=models.records,
        gallery=gallery_crops(slide, cells),
    )
    return write_slide_outputs(result, out_dir)


@flow(name="analyse-slide", log_prints=False)
def analyse_slide(path: Path, settings: RunSettings) -> Path:
    """Smear regions → nucleated-cell detection → classification → differential → report, for one slide."""
    models = load_models(settings.models_dir, settings.device)
    tiles = TileStats()
    with open_slide(path, mpp=settings.mpp) as slide:
        smear = smear_regions(slide, settings.regions)
        cells = detect(slide, smear, models, tiles)
        cells = classify(slide, cells, models)
        diff = aggregate(cells, slide.id)
        return report(slide, smear, cells, diff, tiles, models, settings.out_dir)
