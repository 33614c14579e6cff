"""A slide's output folder, written all or nothing.

``report.html`` and ``report.pdf`` (people), ``differential.json``, ``cells.parquet`` and ``cells.geojson``
(machines and QuPath, see ``bmpipe.report.cell_files``), ``review.csv`` with ``crops/`` (the hematologist's
review), ``review.html`` with ``review/sheets/`` (every cell, to verify in a browser) and ``figures/`` (the overview images and the gallery, kept so that ``bmpipe review import`` can
render the report again without the slide).

Everything is written into a hidden temporary folder beside the final one and renamed into place at the end,
so a run killed half-way never leaves a folder that looks finished.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bmpipe import __version__
from bmpipe.nn.weights import ModelRecord
from bmpipe.records import Cells
from bmpipe.report.cell_files import write_cell_files
from bmpipe.report.content import GalleryItem, ReportContent, SlideSummary, tile_counts
from bmpipe.report.figures import (
    cell_density,
    decode_rgb,
    density_heatmap,
    jpeg_bytes,
    overview_with_zones,
    png_bytes,
)
from bmpipe.report.html import image_suffix, render_html
from bmpipe.report.pdf import write_pdf
from bmpipe.report.review_files import pick_per_class, write_review_files
from bmpipe.report.review_page import ThumbReader, write_review_page
from bmpipe.report.staging import replacing
from bmpipe.resolution import Mpp
from bmpipe.slide import Slide
from bmpipe.stages.aggregate import Differential
from bmpipe.stages.detect import TileStats
from bmpipe.stages.regions import SmearMap

__all__ = [
    "SlideResult",
    "SlideSummary",
    "fill_slide_folder",
    "gallery_crops",
    "overlay_gallery",
    "write_slide_outputs",
]

#: Gallery crops: a fixed physical field (24 µm) at a resolution fine enough to see granules.
GALLERY_MPP = Mpp(0.2)
GALLERY_PX = 120
GALLERY_PER_CLASS = 8
OVERVIEW_FILE = "figures/overview.jpg"
DENSITY_FILE = "figures/density.png"
#: The gallery as written at analysis time (``<code>-<n>.jpg``; Grad-CAM overlays ``<code>-<n>.cam.png``).
GALLERY_DIR = "figures/gallery"


@dataclass
class SlideResult:
    """Everything a slide's (or a case of fields') outputs are made from."""

    slide: SlideSummary
    smear: SmearMap | None  # None for a case of field photographs: there is no overview
    cells: Cells
    differential: Differential
    tiles: TileStats
    models: list[ModelRecord]
    gallery: dict[str, list[bytes]]
    cell_fields: np.ndarray | None = None  # per cell, the photograph it was found on
    #: Review crops (``review_files.review_crops``) by cell id; without them review.csv names no crop files.
    crops: dict[int, bytes] = field(default_factory=dict)
    #: Grad-CAM overlays aligned with ``gallery`` (same classes, same order), shown beside each crop.
    gallery_overlays: dict[str, list[bytes]] = field(default_factory=dict)
    #: Every cell's thumbnail for ``review.html`` (``review_page.slide_thumbnails``); None: the page has none.
    thumbnails: ThumbReader | None = None

    @property
    def regions_mode(self) -> str:
        return self.smear.mode if self.smear else "fields"


def gallery_crops(slide: Slide, cells: Cells, per_class: int = GALLERY_PER_CLASS, seed: int = 0) -> dict[str, list[bytes]]:
    """Up to ``per_class`` JPEG crops of each predicted class, the most confident first then a random few
    (JPEG: photographs, and a report of ~20 classes stays a few hundred kB)."""
    most_sure = lambda idx: idx[np.argsort(-cells.label_score[idx])]
    out: dict[str, list[bytes]] = {}
    for code, top, sample in pick_per_class(cells, per_class, seed, most_sure):
        pick = np.concatenate([top, sample])
        crops = slide.read_centred(cells.x[pick], cells.y[pick], GALLERY_PX, GALLERY_MPP)
        out[code] = [jpeg_bytes(crop, quality=90) for crop in crops]
    return out


def overlay_gallery(
    gallery: dict[str, list[bytes]],
    overlay: Callable[[np.ndarray, list[str]], np.ndarray],
    input_px: int | None = None,
) -> dict[str, list[bytes]]:
    """Grad-CAM (or any) overlays for the gallery: ``overlay(crops (N,H,W,3) uint8, labels) -> (N,H,W,3)``,
    e.g. ``lambda crops, labels: gradcam_overlays(classifier, crops, labels)``; the result is
    ``SlideResult.gallery_overlays``. Gallery crops show the classifier's 24 µm field at 0.2 µm/px;
    ``input_px`` (the classifier's ``CROP_PX``) resamples them to its own scale first, and back after."""
    out = {}
    for code, images in gallery.items():
        if not images:
            continue
        crops = np.stack([decode_rgb(b) for b in images])
        size = crops.shape[1:3]
        if input_px is not None:
            crops = np.stack([cv2.resize(c, (input_px, input_px), interpolation=cv2.INTER_AREA) for c in crops])
        overlays = overlay(crops, [code] * len(images))
        if input_px is not None:
            overlays = [cv2.resize(o, size[::-1], interpolation=cv2.INTER_LINEAR) for o in overlays]
        out[code] = [png_bytes(o) for o in overlays]
    return out


def _gallery_items(result: SlideResult) -> dict[str, list[GalleryItem]]:
    items = {}
    for code, images in result.gallery.items():
        overlays = result.gallery_overlays.get(code, [])
        items[code] = [GalleryItem(img, overlays[i] if i < len(overlays) else None) for i, img in enumerate(images)]
    return items


def utc_stamp() -> str:
    """The time of an analysis or a review as its report shows it, to the minute in UTC."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def report_content(result: SlideResult) -> ReportContent:
    smear = result.smear
    overview = density = None
    if smear is not None:
        overview = overview_with_zones(smear.overview, smear.zones)
        xy = np.stack([result.cells.x, result.cells.y], axis=1)
        density = density_heatmap(smear.overview, cell_density(smear.zones.shape, xy, smear.scale, smear.mpp))
    return ReportContent(
        slide=result.slide,
        generated=utc_stamp(),
        software=f"bmpipe {__version__}",
        models=[m.as_citation() for m in result.models],
        regions_mode=result.regions_mode,
        diff=result.differential,
        tiles=tile_counts(result.tiles),
        overview_jpg=overview,
        density_png=density,
        zone_fractions=smear.zone_fractions() if smear else {},
        gallery=_gallery_items(result),
    )


def differential_json(content: ReportContent) -> dict[str, Any]:
    data = content.diff.as_dict()
    data["models"] = content.models
    data["resolution_um_per_px"] = content.slide.mpp
    data["regions"] = content.regions_mode
    data["n_fields"] = content.slide.n_fields
    data["tiles_read"] = content.tiles.get("tiles_read", 0)
    data["tiles"] = content.tiles
    data["software"] = content.software
    data["generated"] = content.generated
    data["zone_fractions"] = content.zone_fractions
    data["slide_summary"] = asdict(content.slide)
    if content.review_note:
        data["review_note"] = content.review_note
    return data


def write_reports(folder: Path, content: ReportContent) -> None:
    (folder / "differential.json").write_text(
        json.dumps(differential_json(content), indent=2, ensure_ascii=False) + "\n", "utf-8"
    )
    (folder / "report.html").write_text(render_html(content), "utf-8")
    write_pdf(content, folder / "report.pdf")


def write_slide_outputs(result: SlideResult, out_dir: Path) -> Path:
    """Write ``out_dir/<slide id>/`` all or nothing and return it."""
    final = out_dir / result.slide.id
    with replacing(final) as staging:
        fill_slide_folder(result, staging)
    return final


def fill_slide_folder(result: SlideResult, folder: Path, *, cell_files_written: bool = False) -> None:
    """Write every output of ``result`` into ``folder`` (a staging folder, see ``bmpipe.report.staging``);
    with ``cell_files_written`` its cells are already there, written while they were classified."""
    content = report_content(result)
    if not cell_files_written:  # fields of a case have no common coordinate frame to draw a GeoJSON on
        write_cell_files(folder, result.cells, result.slide.id, geojson=result.smear is not None,
                         fields=result.cell_fields)
    if result.smear is not None:
        (folder / "figures").mkdir()
        (folder / OVERVIEW_FILE).write_bytes(content.overview_jpg)
        (folder / DENSITY_FILE).write_bytes(content.density_png)
    _save_gallery(folder / GALLERY_DIR, content.gallery)
    write_review_files(folder, result.cells, result.crops, result.cell_fields)
    write_reports(folder, content)
    write_review_page(folder, result.cells, differential_json(content), content.diff, set(result.crops),
                      result.thumbnails)


def _save_gallery(folder: Path, gallery: dict[str, list[GalleryItem]]) -> None:
    folder.mkdir(parents=True)
    for code, items in gallery.items():
        for n, item in enumerate(items):
            (folder / f"{code}-{n}.{image_suffix(item.crop)}").write_bytes(item.crop)
            if item.overlay:
                (folder / f"{code}-{n}.cam.{image_suffix(item.overlay)}").write_bytes(item.overlay)
