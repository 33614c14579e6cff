"""The case flow for field photographs: every photo in a folder is one field of the same patient's smear.

A lab that photographs ~20 fields at 1000× per patient (as BMSNet did) counts them together: the fields are
detected and classified one by one, and their cells form one differential and one report. A photograph that
cannot be read is skipped, named in the log, the report and the manifest, and the case is counted from the
rest. Each field's cells also go to ``geojson/<photo>.geojson``, in that photograph's own pixels, for QuPath.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
from prefect import flow

from bmpipe.errors import InputError
from bmpipe.flows import progress
from bmpipe.flows.deidentify import Pseudonyms, deidentified
from bmpipe.flows.gpu import set_gpu_slots
from bmpipe.flows.resume import files_sha256, finished, models_fingerprint, run_record, source_id
from bmpipe.flows.slide import RunSettings, SlidePlan, aggregate, detect_classify, gradcam_of, output_place
from bmpipe.imaging.red_cells import estimate_mpp
from bmpipe.models import Models, load_models
from bmpipe.nn.cell_classifier import CROP_PX
from bmpipe.records import Cells
from bmpipe.report.geojson import write_geojson
from bmpipe.report.outputs import (
    GALLERY_PER_CLASS,
    SlideResult,
    SlideSummary,
    fill_slide_folder,
    gallery_crops,
    overlay_gallery,
)
from bmpipe.report.review_files import review_crops
from bmpipe.report.review_page import THUMB_MPP, THUMB_PX
from bmpipe.slide import IMAGE_SUFFIXES, images_in, open_slide
from bmpipe.stages.calibrate import (
    AUTO,
    case_mpp,
    red_cell_diameters_of,
    resolution_record,
    resolution_warning,
)
from bmpipe.stages.classify import read_crops
from bmpipe.stages.detect import TileStats
from bmpipe.stages.regions import whole_field

log = logging.getLogger(__name__)

#: Gallery crops taken per class from each field, so that a case's gallery draws on several fields.
GALLERY_PER_FIELD = 2
#: Where each field's cells go as QuPath GeoJSON, one file per photograph.
FIELD_GEOJSON_DIR = "geojson"


def find_fields(case_dir: Path) -> list[Path]:
    if not case_dir.is_dir():
        raise InputError(case_dir, "--fields needs a folder of field photographs of one case")
    fields = images_in(case_dir)
    if not fields:
        raise InputError(case_dir, f"holds no field photographs ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return fields


def plan_case(case_dir: Path, settings: RunSettings, pseudonyms: Pseudonyms | None = None, tag: str = "") -> SlidePlan:
    """The plan for a case folder: its outputs in ``output_place``, its record hashing every photograph."""
    fields = find_fields(case_dir)
    name, folder = output_place(case_dir, settings, pseudonyms, tag=tag, case=True)
    models = load_models(settings.models_dir, settings.device, detector=settings.detector)
    record = run_record(files_sha256(fields), models_fingerprint(models.records), settings.result_settings())
    return SlidePlan(case_dir, name, folder, record, source_id(case_dir, pseudonyms))


def run_case(plan: SlidePlan, settings: RunSettings, pseudonyms: Pseudonyms | None = None) -> Path:
    """Detect and classify the cells of every readable field of a case, then one differential and report for
    all, finished atomically into ``plan.folder`` with its ``run.json``."""
    show = progress.reporter.stage
    show(plan.name, "open")
    models = load_models(settings.models_dir, settings.device, detector=settings.detector)
    resolution: dict = {}
    with finished(plan.folder, plan.record, plan.source, resolution) as staging:
        show(plan.name, "detect and classify")
        result = count_fields(plan, settings, models, staging / FIELD_GEOJSON_DIR, pseudonyms, resolution)
        show(plan.name, "report")
        fill_slide_folder(result, staging)
    return plan.folder


def _field_name(path: Path, pseudonyms: Pseudonyms | None) -> str:
    return pseudonyms.of(path.stem) + path.suffix.lower() if pseudonyms else path.name


def count_fields(plan: SlidePlan, settings: RunSettings, models: Models, geojson_dir: Path,
                 pseudonyms: Pseudonyms | None = None, notes: dict | None = None) -> SlideResult:
    """The case's cells, field by field (each field's GeoJSON written to ``geojson_dir``); a photograph that
    cannot be read is logged, skipped and listed in the summary. No readable photograph: an ``InputError``.
    ``notes`` gets the resolution used and measured, for ``run.json``."""
    notes = {} if notes is None else notes
    fields = find_fields(plan.path)
    tiles = TileStats()
    per_field: list[Cells] = []
    names: list[np.ndarray] = []
    skipped: list[str] = []
    gallery: dict[str, list[bytes]] = {}
    review: dict[int, bytes] = {}
    thumbnails: list[np.ndarray] = []  # a case's few thousand cells: held until the case's pages are made
    summary = None
    geojson_dir.mkdir(parents=True)
    measured = case_mpp(fields) if settings.mpp == AUTO else None  # one camera: one resolution for all
    mpp = measured.mpp if measured else settings.mpp
    diameters = []
    for path in fields:
        name = _field_name(path, pseudonyms)
        first_id = sum(len(c) for c in per_field)
        try:
            with open_slide(path, mpp=mpp) as field:
                if measured:
                    field.set_mpp(measured.mpp, "red cells")
                else:
                    diameters.append(red_cell_diameters_of(field))
                used = (field.mpp, field.mpp_source)
                cells = detect_classify(field, whole_field(field), models, tiles)
                review.update(review_crops(field, cells, per_class=8, offset=first_id))
                thumbnails.append(read_crops(field, cells, THUMB_MPP, THUMB_PX))
                for code, crops in gallery_crops(field, cells, per_class=GALLERY_PER_FIELD).items():
                    gallery.setdefault(code, []).extend(crops)
                summary = summary or SlideSummary.of(field, case_id=plan.name)
        except InputError as exc:  # one bad photograph never costs the case its count
            log.error("%s", exc)
            skipped.append(pseudonyms.redact(f"{name}: {exc.problem}") if pseudonyms else f"{name}: {exc.problem}")
            continue
        write_geojson(geojson_dir / f"{name}.geojson", cells, plan.name, first_id=first_id)
        per_field.append(cells)
        names.append(np.full(len(cells), name, dtype=object))
    if summary is None:
        raise InputError(plan.path, f"none of its {len(fields)} photograph(s) could be analysed ({skipped[0]})")
    file = plan.name if pseudonyms else plan.path.name
    red_cells = measured or estimate_mpp(np.concatenate(diameters))
    warning = resolution_warning(*used, red_cells)
    if warning:
        log.warning("%s: %s", plan.path, warning)
    notes.update(resolution_record(*used, red_cells))
    summary = dataclasses.replace(summary, id=plan.name, file=file, n_fields=len(per_field),
                                  skipped_fields=tuple(skipped), mpp_red_cells=red_cells.as_dict() if red_cells else None)
    cells = Cells.concat(per_field)
    case_gallery = {code: crops[:GALLERY_PER_CLASS] for code, crops in gallery.items()}
    return SlideResult(
        slide=summary,
        smear=None,
        cells=cells,
        differential=aggregate(cells, plan.name, models.classifier, warning),
        tiles=tiles,
        models=models.records,
        gallery=case_gallery,
        cell_fields=np.concatenate(names),
        crops=review,
        gallery_overlays=overlay_gallery(case_gallery, gradcam_of(models), input_px=CROP_PX),
        thumbnails=np.concatenate(thumbnails).__getitem__,
    )


@flow(name="analyse-fields")
def analyse_fields(case_dir: Path, settings: RunSettings) -> Path:
    """Detect and classify the cells of every field of a case, then one differential and report for all."""
    set_gpu_slots(settings.gpu_slots)
    with deidentified(settings) as pseudonyms:
        if pseudonyms is not None:
            pseudonyms.case(case_dir)
        return run_case(plan_case(case_dir, settings, pseudonyms), settings, pseudonyms)
