"""A whole synthetic smear: layout, cell placement, exact truth, and streaming to a pyramidal TIFF.

The smear runs left to right as on a real wedge film: a dense **thick zone** where the drop was laid
(overlapping red cells, piled nucleated cells, darker film), the readable **monolayer**, and a thin
**feathered edge** ending in fingers (sparse, flattened, torn and smudged cells). It sits on blank glass.
Level 0 is never held in memory: objects are placed first and each tile is drawn from those overlapping it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bmpipe.phantom.background import N_NORMAL, RBC_DIAMETER_UM, Textures
from bmpipe.phantom.cell import SLIDE_MPP, plan_cell
from bmpipe.phantom.composition import (
    check_codes,
    differential_counts,
    dysplasia_for,
    extra_counts,
    shuffled_codes,
)
from bmpipe.phantom.fields import add_platelets, add_red_cells
from bmpipe.phantom.palette import Stain
from bmpipe.phantom.placement import DiscSet
from bmpipe.phantom.scene import PlacedCell, Scene
from bmpipe.resolution import Mpp
from bmpipe.taxonomy import load_taxonomy

log = logging.getLogger(__name__)

VERSION = "1.0"
ZONES = ("thick", "monolayer", "edge")
#: Share of the counted cells in each zone (the monolayer holds most, as a reader would want).
ZONE_SHARE = {"thick": 0.2, "monolayer": 0.7, "edge": 0.1}
#: Where smudge cells and megakaryocytes lie: smudging happens mostly where the film is thinnest.
EXTRA_ZONE_SHARE = {"KSC": {"thick": 0.15, "monolayer": 0.35, "edge": 0.5},
                    "MGK": {"thick": 0.4, "monolayer": 0.3, "edge": 0.3}}
#: Smear area per nucleated cell in each zone (µm²): sets the slide size from the cell count. ~800 µm² in
#: the monolayer matches a cellular marrow (SegPC fields: 10-15 nucleated cells per ~11,000 µm²).
AREA_PER_CELL_UM2 = {"thick": 600.0, "monolayer": 800.0, "edge": 2500.0}
#: Red-cell area coverage (start → end of each zone): >1 means overlapping layers. The film thins
#: continuously, so each zone starts near where the previous one ended.
RBC_COVERAGE = {"thick": (2.6, 1.1), "monolayer": (0.85, 0.65), "edge": (0.55, 0.03)}
#: Relative thickness of the dried plasma film (start → end of each zone).
FILM = {"thick": (1.8, 1.2), "monolayer": (1.1, 0.8), "edge": (0.7, 0.1)}
#: Platelets per µm² of each zone.
PLATELETS_PER_UM2 = {"thick": 0.006, "monolayer": 0.0025, "edge": 0.0015}
SMEAR_ASPECT = 3.0  # length / height of the smear
GLASS_MARGIN_UM = 60.0
EDGE_FILL = 0.75  # fraction of the edge zone's box that the tongue and its fingers cover
DEFAULT_DYSPLASIA_RATE = 0.05


@dataclass(frozen=True)
class Layout:
    """Geometry of the smear on the slide, in level-0 pixels."""

    width: int
    height: int
    x_start: float  # leftmost point of the smear
    x_thick: float  # thick zone | monolayer
    x_mono: float  # monolayer | feathered edge
    x_end: float  # farthest finger tip
    y_top: float
    y_bottom: float
    start_bulge: float  # how far the rounded start recedes at the top and bottom
    tip_recess: float  # how far the tongue recedes at the top and bottom
    fingers: tuple[tuple[float, float, float], ...]  # (depth px, wavelength px, phase) of the fingers
    side_wave: tuple[float, float, float]  # (amplitude px, wavelength px, phase) of the long sides
    edge_soft: float  # width of the film's soft border (px)
    film_strength: float  # how visible the dried plasma is on this slide (thin serum to heavy protein)

    @property
    def yc(self) -> float:
        return (self.y_top + self.y_bottom) / 2

    def boundaries(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Signed distance-like margin (px) to the smear border: > 0 inside. Each border term depends on
        x or on y only, so a window costs a few 1-D evaluations and broadcast minima (in ``x``'s dtype)."""
        dtype = np.result_type(x, np.float32)
        v = ((y - self.yc) / ((self.y_bottom - self.y_top) / 2)) ** 2
        amp, lam, ph = self.side_wave
        wave = amp * 0.5 * (1 + np.sin(2 * np.pi * x / lam + ph))
        tip_at = self.x_end - self.tip_recess * v
        for depth, flam, fph in self.fingers:
            tip_at = tip_at - depth * 0.5 * (1 + np.sin(2 * np.pi * y / flam + fph))
        top, bottom = (self.y_top + wave).astype(dtype), (self.y_bottom - wave).astype(dtype)
        start, tip = (self.x_start + self.start_bulge * v).astype(dtype), tip_at.astype(dtype)
        x, y = np.asarray(x, dtype), np.asarray(y, dtype)
        return np.minimum(np.minimum(y - top, bottom - y), np.minimum(x - start, tip - x))

    def inside(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.boundaries(np.asarray(x, float), np.asarray(y, float)) > 0

    def profile(self, table: dict[str, tuple[float, float]], x: np.ndarray) -> np.ndarray:
        """Piecewise-linear profile along the smear from a per-zone (start, end) table."""
        xs = [self.x_start, self.x_thick, self.x_thick + 1, self.x_mono, self.x_mono + 1, self.x_end]
        vs = [table["thick"][0], table["thick"][1], table["monolayer"][0], table["monolayer"][1],
              table["edge"][0], table["edge"][1]]
        return np.interp(x, xs, vs)

    def zone_boxes(self) -> dict[str, list[int]]:
        y0, y1 = int(self.y_top), int(np.ceil(self.y_bottom))
        return {"thick": [int(self.x_start), y0, int(self.x_thick), y1],
                "monolayer": [int(self.x_thick), y0, int(self.x_mono), y1],
                "edge": [int(self.x_mono), y0, int(np.ceil(self.x_end)), y1],
                "smear": [int(self.x_start), y0, int(np.ceil(self.x_end)), y1]}

    def film(self, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        x = np.arange(x0, x0 + w, dtype=np.float32)[None, :]
        y = np.arange(y0, y0 + h, dtype=np.float32)[:, None]
        cover = np.clip(self.boundaries(x, y) / np.float32(self.edge_soft) + 0.5, 0.0, 1.0)
        return cover * (self.film_strength * self.profile(FILM, x[0])).astype(np.float32)[None, :]


def _layout(rng: np.random.Generator, zone_cells: dict[str, int], mpp: Mpp) -> Layout:
    area = {z: zone_cells[z] * AREA_PER_CELL_UM2[z] for z in ZONES}
    area["edge"] /= EDGE_FILL
    height_um = np.sqrt(sum(area.values()) / SMEAR_ASPECT)
    length = {z: area[z] / height_um for z in ZONES}
    px = mpp.px
    margin = px(GLASS_MARGIN_UM)
    start_bulge = px(rng.uniform(0.05, 0.12) * height_um)
    x_start = margin
    x_thick = x_start + px(length["thick"]) + start_bulge / 3
    x_mono = x_thick + px(length["monolayer"])
    x_end = x_mono + px(length["edge"])
    edge_len = x_end - x_mono
    fingers = tuple((edge_len * rng.uniform(0.04, 0.12), px(rng.uniform(30, 120)), rng.uniform(0, 2 * np.pi))
                    for _ in range(3))
    return Layout(
        width=int(np.ceil(x_end + margin)), height=int(np.ceil(px(height_um) + 2 * margin)),
        x_start=x_start, x_thick=x_thick, x_mono=x_mono, x_end=x_end,
        y_top=margin, y_bottom=margin + px(height_um), start_bulge=start_bulge,
        tip_recess=edge_len * rng.uniform(0.3, 0.45), fingers=fingers,
        side_wave=(px(rng.uniform(4, 12)), px(rng.uniform(150, 400)), rng.uniform(0, 2 * np.pi)),
        edge_soft=px(3.0), film_strength=rng.uniform(0.6, 2.0),
    )


@dataclass
class SmearPlan:
    """A planned slide: its scene (render with ``scene.render``), layout and truth."""

    name: str
    seed: int
    mpp: Mpp
    layout: Layout
    scene: Scene
    params: dict

    @property
    def width(self) -> int:
        return self.layout.width

    @property
    def height(self) -> int:
        return self.layout.height

    def truth(self) -> dict:
        tax = load_taxonomy()
        cells = []
        for i, c in enumerate(self.scene.cells, start=1):
            cells.append({"id": i, "x": c.x, "y": c.y, "box": list(c.box(self.mpp)), "code": c.spec.code,
                          "lineage": tax[c.spec.code].lineage, "zone": c.zone,
                          "dysplasia_grade": c.spec.grade, "dysplastic": bool(c.spec.variant),
                          "variant": c.spec.variant})
        return {
            "slide": self.name, "seed": self.seed, "mpp": self.mpp.um_per_px,
            "width": self.width, "height": self.height,
            "generator": {"version": VERSION, "params": self.params},
            "zones": self.layout.zone_boxes(),
            "cells": cells,
            "differential": differential([c["code"] for c in cells]),
            "differential_monolayer": differential([c["code"] for c in cells if c["zone"] == "monolayer"]),
        }


def differential(codes: list[str]) -> dict:
    """Counts of every code, and percentages of the taxonomy's denominator ("all nucleated cells")."""
    tax = load_taxonomy()
    counts = {c: 0 for c in tax.codes}
    for c in codes:
        counts[c] += 1
    n = sum(counts[c] for c in tax.denominator_codes())
    return {
        "n_counted": n,
        "counts": counts,
        "percent": {c: (100.0 * counts[c] / n if n else 0.0) for c in tax.denominator_codes()},
        "blast_pct": 100.0 * counts["BLA"] / n if n else 0.0,
        "denominator": "all nucleated cells excluding " + ", ".join(tax.excluded_codes()),
    }


def _focus(rng: np.random.Generator, mpp: Mpp):
    """Defocus (Gaussian sigma, µm) varying smoothly over the slide, as a scanner's focus map does."""
    base, amp = rng.uniform(0.0, 0.1), rng.uniform(0.05, 0.2)
    lx, ly = mpp.px(rng.uniform(300, 900)), mpp.px(rng.uniform(200, 600))
    px_, py_ = rng.uniform(0, 2 * np.pi, 2)

    def at(x: float, y: float) -> float:
        wave = 0.5 + 0.25 * np.sin(2 * np.pi * x / lx + px_) + 0.25 * np.sin(2 * np.pi * y / ly + py_)
        return float(np.clip(base + amp * wave, 0.0, 0.3))
    return at


def plan_slide(cells: int, blast_pct: float, seed: int, mpp: Mpp = SLIDE_MPP, name: str = "phantom",
               dysplasia_rate: float = DEFAULT_DYSPLASIA_RATE) -> SmearPlan:
    """Place everything on a slide holding ``cells`` counted (denominator) nucleated cells, ``blast_pct`` %
    of them blasts, plus smudge cells, megakaryocytes, platelets and red cells. Nothing is drawn yet."""
    if cells < 1:
        raise ValueError(f"a slide needs at least one counted cell, got {cells}")
    check_codes()
    rng = np.random.default_rng([seed, 1])
    u = mpp.um_per_px
    counted = shuffled_codes(differential_counts(cells, blast_pct), rng)
    n_zone = {z: round(cells * ZONE_SHARE[z]) for z in ("thick", "edge")}
    n_zone["monolayer"] = cells - n_zone["thick"] - n_zone["edge"]
    by_zone: dict[str, list[str]] = {"thick": counted[:n_zone["thick"]],
                                     "monolayer": counted[n_zone["thick"]:n_zone["thick"] + n_zone["monolayer"]],
                                     "edge": counted[n_zone["thick"] + n_zone["monolayer"]:]}
    for code, k in extra_counts(cells).items():
        zones = list(EXTRA_ZONE_SHARE[code])
        p = np.array([EXTRA_ZONE_SHARE[code][z] for z in zones])
        for z in rng.choice(len(zones), size=k, p=p / p.sum()):
            by_zone[zones[z]].append(code)
    layout = _layout(rng, {z: len(v) for z, v in by_zone.items()}, mpp)
    stain = Stain.sample(rng)
    focus = _focus(rng, mpp)
    scene = Scene(layout.width, layout.height, mpp, stain, Textures.make(seed, mpp), layout.film)
    boxes = layout.zone_boxes()
    nucleated = DiscSet(cell=20.0 / u)
    for zone in ZONES:
        x0, y0, x1, y1 = boxes[zone]
        codes = sorted(by_zone[zone], key=lambda c: c != "MGK")  # the largest first, while there is room
        for code in codes:
            _place_cell(rng, scene, nucleated, layout, zone, code, (x0, y0, x1, y1), focus, dysplasia_rate)
    _add_background(rng, scene, nucleated, layout, focus)
    params = {"cells": cells, "blast_pct": blast_pct, "dysplasia_rate": dysplasia_rate,
              "zone_share": ZONE_SHARE, "area_per_cell_um2": AREA_PER_CELL_UM2,
              "stain": {"matrix": np.round(stain.matrix, 4).tolist(), "illum": np.round(stain.illum, 1).tolist(),
                        "noise": round(stain.noise, 3)},
              "red_cells": scene.n_rbc}
    log.info("planned %s: %d×%d px (%.0f Mpx), %d cells, %d red cells", name, layout.width, layout.height,
             layout.width * layout.height / 1e6, len(scene.cells), scene.n_rbc)
    return SmearPlan(name, seed, mpp, layout, scene, params)


def _place_cell(rng: np.random.Generator, scene: Scene, nucleated: DiscSet, layout: Layout, zone: str, code: str,
                box: tuple[int, int, int, int], focus, dysplasia_rate: float) -> None:
    """Plan one cell for ``zone`` and put it where it fits: piled in the thick zone, side by side in the
    monolayer, flattened and sometimes torn at the edge. A crowded zone relaxes the overlap rule rather
    than drop the cell, so the slide always holds exactly the requested cells."""
    u = scene.mpp.um_per_px
    grade, _, variant = dysplasia_for(code, rng, dysplasia_rate)
    spread, torn = 1.0, 0.0
    if zone == "thick":
        spread = rng.uniform(0.85, 0.95)  # less spread where the film is thick: smaller, denser
    elif zone == "edge":
        spread = rng.uniform(1.1, 1.35)
        torn = rng.uniform(0.2, 0.5) if rng.random() < 0.35 and code != "KSC" else 0.0
    spec = plan_cell(code, rng, variant=variant or None, grade=grade, spread=spread, torn=torn)
    r = float(spec.radius_lut.max()) / u
    x0, y0, x1, y1 = box
    overlap = 0.35 if zone == "thick" else 0.0
    for attempt in range(400):
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        if not layout.boundaries(np.array(x), np.array(y)) > r * 0.5:
            continue
        if nucleated.fits(x, y, r, overlap + 0.5 * (attempt >= 200)):
            break
    nucleated.add(x, y, r)
    scene.add_cell(PlacedCell(spec, int(x), int(y), focus(x, y), zone))


def _add_background(rng: np.random.Generator, scene: Scene, nucleated: DiscSet, layout: Layout, focus) -> None:
    """Red cells and platelets, zone by zone, in strips along the smear (coverage follows the profile)."""
    u = scene.mpp.um_per_px
    r = np.mean(RBC_DIAMETER_UM) / 2 / u
    boxes = layout.zone_boxes()
    strip = max(int(50.0 / u), 1)  # profiles are applied per 50 µm strip
    for zone in ZONES:
        x0, y0, x1, y1 = boxes[zone]
        for sx in range(x0, x1, strip):
            sx1 = min(sx + strip, x1)
            mid = (sx + sx1) / 2
            coverage = float(layout.profile(RBC_COVERAGE, np.array(mid)))
            blur_um = focus(mid, layout.yc)
            if zone == "thick":  # piled layers: no packing, red cells overlap freely
                n = int(coverage * (sx1 - sx) * (y1 - y0) / (np.pi * r * r))
                xs, ys = rng.uniform(sx, sx1, n), rng.uniform(y0, y1, n)
                keep = layout.inside(xs, ys)
                xs, ys = xs[keep], ys[keep]
                scene.add_rbcs(np.rint(xs), np.rint(ys), rng.integers(0, N_NORMAL, len(xs)),
                               np.full(len(xs), blur_um))
            else:
                add_red_cells(rng, scene, nucleated, (sx, y0, sx1, y1), coverage, blur_um, flat=zone == "edge",
                              inside=layout.inside)
            add_platelets(rng, scene, nucleated, (sx, y0, sx1, y1), PLATELETS_PER_UM2[zone], blur_um, zone,
                          inside=layout.inside)


def truth_path(out_path: str | Path) -> Path:
    """Where :func:`make_slide` writes the truth of ``out_path``: ``NAME.truth.json`` beside it."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.stem + ".truth.json")


def make_slide(out_path: str | Path, cells: int = 1500, blast_pct: float = 5.0, seed: int = 0,
               mpp: Mpp = SLIDE_MPP, dysplasia_rate: float = DEFAULT_DYSPLASIA_RATE) -> Path:
    """Generate a phantom smear as a pyramidal tiled TIFF at ``out_path`` and its truth beside it."""
    from bmpipe.slide import write_pyramidal_tiff

    out_path = Path(out_path)
    t0 = time.perf_counter()
    plan = plan_slide(cells, blast_pct, seed, mpp, name=out_path.stem, dysplasia_rate=dysplasia_rate)
    description = f"bmpipe phantom {VERSION} seed={seed} cells={cells} blast_pct={blast_pct}"
    write_pyramidal_tiff(out_path, plan.width, plan.height, mpp, plan.scene.render, tile=512, downsample=4,
                         description=description)
    truth_path(out_path).write_text(json.dumps(plan.truth(), indent=1))
    log.info("phantom slide %s (%d×%d px) in %.1f s", out_path, plan.width, plan.height, time.perf_counter() - t0)
    return out_path
