"""A slide's output folder: report.html, differential.json and cells.parquet, written all or nothing.

Everything is written into a hidden temporary folder beside the final one and renamed into place at the end,
so a run killed half-way never leaves a folder that looks finished.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from bmpipe import __version__
from bmpipe.nn.weights import ModelRecord
from bmpipe.records import Cells
from bmpipe.report.figures import class_bar_chart, overview_with_zones, png_bytes
from bmpipe.report.geojson import cells_geojson
from bmpipe.resolution import Mpp
from bmpipe.slide import Slide
from bmpipe.stages.aggregate import Differential
from bmpipe.stages.detect import TileStats
from bmpipe.stages.regions import SmearMap
from bmpipe.taxonomy import load_taxonomy

#: Gallery crops: a fixed physical field (24 µm) at a resolution fine enough to see granules.
GALLERY_MPP = Mpp(0.2)
GALLERY_PX = 120


@dataclass
class SlideSummary:
    """The slide facts a report may show: an allow-list, never label text or free-form vendor metadata."""

    id: str
    file: str
    mpp: str
    mpp_source: str
    dimensions: tuple[int, int]
    backend: str
    n_fields: int = 1

    @classmethod
    def of(cls, slide: Slide, case_id: str | None = None, n_fields: int = 1) -> SlideSummary:
        """Summary of ``slide``, or of a case of ``n_fields`` photographs named ``case_id`` like it."""
        return cls(
            id=case_id or slide.id,
            file=slide.path.parent.name if case_id else slide.path.name,
            mpp=str(slide.mpp),
            mpp_source=slide.mpp_source,
            dimensions=tuple(slide.dimensions),
            backend=slide.backend,
            n_fields=n_fields,
        )


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

    @property
    def regions_mode(self) -> str:
        return self.smear.mode if self.smear else "fields"

    def cells_frame(self):
        frame = self.cells.to_frame()
        if self.cell_fields is not None:
            frame.insert(0, "field", self.cell_fields.astype(str))
        return frame


def gallery_crops(slide: Slide, cells: Cells, per_class: int = 8, seed: int = 0) -> dict[str, list[bytes]]:
    """Up to ``per_class`` PNG crops of each predicted class, the most confident first then a random few."""
    rng = np.random.default_rng(seed)
    half = GALLERY_PX / 2 * slide.mpp.factor_to(GALLERY_MPP)
    out: dict[str, list[bytes]] = {}
    for code in load_taxonomy().codes:
        idx = np.flatnonzero(cells.label == code)
        if len(idx) == 0:
            continue
        top = idx[np.argsort(-cells.label_score[idx])][: per_class // 2]
        rest = np.setdiff1d(idx, top)
        pick = np.concatenate([top, rng.permutation(rest)[: per_class - len(top)]])
        out[code] = [
            png_bytes(slide.read_region(cells.x[i] - half, cells.y[i] - half, GALLERY_PX, GALLERY_PX, GALLERY_MPP))
            for i in pick
        ]
    return out


def differential_json(result: SlideResult) -> dict[str, Any]:
    data = result.differential.as_dict()
    data["models"] = [m.as_citation() for m in result.models]
    data["resolution_um_per_px"] = result.slide.mpp
    data["regions"] = result.regions_mode
    data["n_fields"] = result.slide.n_fields
    data["tiles_read"] = result.tiles.tiles_read
    data["software"] = f"bmpipe {__version__}"
    return data


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def render_html(result: SlideResult) -> str:
    tax = load_taxonomy()
    diff = result.differential
    rows = []
    for code in tax.codes:
        count = diff.counts.get(code, 0)
        counted = code in diff.percent
        if count == 0 and not counted:
            continue
        rows.append(
            {
                "code": code,
                "name": tax[code].name,
                "group": tax[code].group,
                "rgb": tax.colour(code),
                "count": count,
                "pct": f"{diff.percent[code]:.1f}" if counted else "not counted",
                "ci": "{:.1f}-{:.1f}".format(*diff.percent_ci95[code]) if counted else "",
            }
        )
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(
        resources.files("bmpipe.report").joinpath("templates/report.html.j2").read_text("utf-8")
    )
    smear = result.smear
    if smear is not None:
        xy = np.stack([result.cells.x, result.cells.y], axis=1)
        overview_jpg = b64(overview_with_zones(smear.overview, smear.zones, xy, smear.scale))
    else:
        overview_jpg = None
    return template.render(
        slide=result.slide,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        models=[m.as_citation() for m in result.models],
        regions_mode=result.regions_mode,
        diff=diff,
        rows=rows,
        names={c: tax[c].name for c in tax.codes},
        bar_png=b64(class_bar_chart(diff.percent, tax)),
        overview_jpg=overview_jpg,
        zone_fractions=smear.zone_fractions() if smear else {},
        gallery={code: [b64(p) for p in pngs] for code, pngs in result.gallery.items()},
        qc=result.tiles,
    )


def write_slide_outputs(result: SlideResult, out_dir: Path) -> Path:
    """Write ``out_dir/<slide id>/`` atomically and return it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / result.slide.id
    staging = Path(tempfile.mkdtemp(prefix=f".{result.slide.id}.", suffix=".partial", dir=out_dir))
    try:
        (staging / "differential.json").write_text(
            json.dumps(differential_json(result), indent=2, ensure_ascii=False) + "\n", "utf-8"
        )
        result.cells_frame().to_parquet(staging / "cells.parquet", index=False)
        if result.smear is not None:  # fields of a case have no common coordinate frame to draw on
            (staging / "cells.geojson").write_text(
                json.dumps(cells_geojson(result.cells, result.slide.id)), "utf-8"
            )
        (staging / "report.html").write_text(render_html(result), "utf-8")
        os.chmod(staging, 0o755)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final
