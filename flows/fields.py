"""The case flow for field photographs: every photo in a folder is one field of the same patient's smear.

A lab that photographs ~20 fields at 1000× per patient (as BMSNet did) counts them together: the fields are
detected and classified one by one, and their cells form one differential and one report.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from prefect import flow

from bmpipe.errors import InputError
from bmpipe.models import load_models
from bmpipe.nn.cell_classifier import CROP_PX
from bmpipe.records import Cells
from bmpipe.report.outputs import (
    GALLERY_PER_CLASS,
    SlideResult,
    SlideSummary,
    gallery_crops,
    overlay_gallery,
    write_slide_outputs,
)
from bmpipe.report.review_files import review_crops
from bmpipe.slide import IMAGE_SUFFIXES, images_in, open_slide, slide_id
from bmpipe.stages.detect import TileStats
from bmpipe.stages.regions import whole_field
from flows.deidentify import Pseudonyms, deidentified
from flows.gpu import set_gpu_slots
from flows.slide import RunSettings, aggregate, detect_classify, gradcam_of

#: Gallery crops taken per class from each field, so that a case's gallery draws on several fields.
GALLERY_PER_FIELD = 2


def find_fields(case_dir: Path) -> list[Path]:
    if not case_dir.is_dir():
        raise InputError(case_dir, "--fields needs a folder of field photographs of one case")
    fields = images_in(case_dir)
    if not fields:
        raise InputError(case_dir, f"holds no field photographs ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return fields


@flow(name="analyse-fields")
def analyse_fields(case_dir: Path, settings: RunSettings) -> Path:
    """Detect and classify the cells of every field of a case, then one differential and report for all."""
    set_gpu_slots(settings.gpu_slots)
    with deidentified(settings) as pseudonyms:
        if pseudonyms is not None:
            pseudonyms.case(case_dir)
        return _analyse_fields(case_dir, settings, pseudonyms)


def _analyse_fields(case_dir: Path, settings: RunSettings, pseudonyms: Pseudonyms | None) -> Path:
    models = load_models(settings.models_dir, settings.device, detector=settings.detector)
    tiles = TileStats()
    per_field: list[Cells] = []
    names: list[np.ndarray] = []
    gallery: dict[str, list[bytes]] = {}
    review: dict[int, bytes] = {}
    fields = find_fields(case_dir)
    for path in fields:
        with open_slide(path, mpp=settings.mpp) as field:
            smear = whole_field(field)
            cells = detect_classify(field, smear, models, tiles)
            review.update(review_crops(field, cells, per_class=8, offset=sum(len(c) for c in per_field)))
            for code, crops in gallery_crops(field, cells, per_class=GALLERY_PER_FIELD).items():
                gallery.setdefault(code, []).extend(crops)
            summary = SlideSummary.of(field, case_id=slide_id(case_dir), n_fields=len(fields))
        per_field.append(cells)
        name = pseudonyms.of(path.stem) + path.suffix.lower() if pseudonyms else path.name
        names.append(np.full(len(cells), name, dtype=object))
    if pseudonyms is not None:  # the case folder's name identifies the patient as much as a slide's
        summary = dataclasses.replace(summary, id=pseudonyms.of(case_dir.name), file=pseudonyms.of(case_dir.name))
    cells = Cells.concat(per_field)
    case_gallery = {code: crops[:GALLERY_PER_CLASS] for code, crops in gallery.items()}
    result = SlideResult(
        slide=summary,
        smear=None,
        cells=cells,
        differential=aggregate(cells, summary.id, models.classifier),
        tiles=tiles,
        models=models.records,
        gallery=case_gallery,
        cell_fields=np.concatenate(names),
        crops=review,
        gallery_overlays=overlay_gallery(case_gallery, gradcam_of(models), input_px=CROP_PX),
    )
    return write_slide_outputs(result, settings.out_dir)
