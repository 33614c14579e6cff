"""Stage 1: smear regions on a low-resolution overview, and which areas are read."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from bmpipe.errors import InputError
from bmpipe.imaging.smear import EDGE, GLASS, MONOLAYER, THICK, ZONE_NAMES, zone_map
from bmpipe.records import Box, Region
from bmpipe.resolution import Mpp
from bmpipe.slide import Slide

RegionsMode = Literal["readable", "all"]

#: Least stained area taken for a smear: one 100 µm field; less is blank glass, dust or a label's edge.
MIN_SMEAR_MM2 = 0.01
#: Largest side of the overview the zones are computed on; ~2 µm/px on a typical smear scan area.
OVERVIEW_MAX_SIDE = 2048


@dataclass
class SmearMap:
    """Zones of a slide on its overview, and the mask of the area whose cells are counted."""

    overview: np.ndarray
    mpp: Mpp  # of the overview
    zones: np.ndarray  # uint8 per overview pixel, see bmpipe.imaging.smear
    analysed: np.ndarray  # bool per overview pixel
    scale: float  # level-0 pixels per overview pixel
    mode: RegionsMode

    def analysed_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether level-0 points fall in the analysed area (nearest overview pixel)."""
        h, w = self.analysed.shape
        ix = np.clip((np.asarray(x) / self.scale).astype(np.int64), 0, w - 1)
        iy = np.clip((np.asarray(y) / self.scale).astype(np.int64), 0, h - 1)
        return self.analysed[iy, ix]

    def analysed_box(self, x0: float, y0: float, x1: float, y1: float) -> Box | None:
        """The part of a level-0 box that holds its analysed points (see ``analysed_at``), as a box; ``None``
        where it holds none."""
        h, w = self.analysed.shape
        i0, j0 = max(0, int(y0 / self.scale)), max(0, int(x0 / self.scale))
        i1, j1 = min(h, math.ceil(y1 / self.scale)), min(w, math.ceil(x1 / self.scale))
        rows = np.flatnonzero(self.analysed[i0:i1, j0:j1].any(axis=1))
        if len(rows) == 0:
            return None
        cols = np.flatnonzero(self.analysed[i0 + rows[0] : i0 + rows[-1] + 1, j0:j1].any(axis=0))
        return Box(
            max(x0, (j0 + cols[0]) * self.scale),
            max(y0, (i0 + rows[0]) * self.scale),
            min(x1, (j0 + cols[-1] + 1) * self.scale),
            min(y1, (i0 + rows[-1] + 1) * self.scale),
        )

    def zone_fractions(self) -> dict[str, float]:
        """Share of the smear (not glass) in each zone."""
        smear = self.zones != GLASS
        total = max(int(smear.sum()), 1)
        return {ZONE_NAMES[z]: float((self.zones == z).sum()) / total for z in (EDGE, MONOLAYER, THICK)}

    def regions(self) -> list[Region]:
        """Connected areas of each zone as level-0 boxes, scored by their share of the smear."""
        out = []
        total = max(int((self.zones != GLASS).sum()), 1)
        for zone in (MONOLAYER, THICK, EDGE):
            _, _, stats, _ = cv2.connectedComponentsWithStats((self.zones == zone).astype(np.uint8))
            for x, y, w, h, area in stats[1:]:
                box = Box(x * self.scale, y * self.scale, (x + w) * self.scale, (y + h) * self.scale)
                out.append(Region(box=box, kind=ZONE_NAMES[zone], score=float(area) / total))
        return out


def whole_field(slide: Slide) -> SmearMap:
    """A field photographed at 1000× is monolayer by the photographer's choice: all of it is analysed."""
    overview, mpp = slide.overview(max_side=OVERVIEW_MAX_SIDE)
    zones = np.full(overview.shape[:2], MONOLAYER, dtype=np.uint8)
    return SmearMap(
        overview=overview,
        mpp=mpp,
        zones=zones,
        analysed=np.ones(overview.shape[:2], dtype=bool),
        scale=slide.mpp.factor_to(mpp),
        mode="all",
    )


def find_smear(slide: Slide, mode: RegionsMode = "readable") -> SmearMap:
    """Zones of ``slide`` and the area to analyse: the monolayer by default, the whole smear with ``all``."""
    overview, mpp = slide.overview(max_side=OVERVIEW_MAX_SIDE)
    zones = zone_map(overview, mpp.um_per_px)
    smear_mm2 = float((zones != GLASS).sum()) * (mpp.um_per_px / 1000) ** 2
    if smear_mm2 < MIN_SMEAR_MM2:
        raise InputError(slide.path, f"no smear found: the slide looks like blank glass ({smear_mm2:.3f} mm² stained)")
    analysed = zones == MONOLAYER if mode == "readable" else zones != GLASS
    if not analysed.any():
        raise InputError(
            slide.path,
            "no readable monolayer: the smear is all thick zone or feathered edge; "
            "--regions all counts it anyway",
        )
    return SmearMap(
        overview=overview,
        mpp=mpp,
        zones=zones,
        analysed=analysed,
        scale=slide.mpp.factor_to(mpp),
        mode=mode,
    )
