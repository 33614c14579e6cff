"""Resolution from the red cells of an image: isolated, round red cells measure about 7.5 µm across.

A normal erythrocyte's diameter is 7.5 µm (range ~6.7-7.7; Bain, *Blood Cells*, 5th ed., 2015), and in the
readable monolayer of a marrow or blood smear many lie alone and round. Their median equivalent diameter in
pixels therefore gives µm/px to a few per cent, from the image alone: the rule bmpipe used to calibrate its
real training sets (``bmpipe.datasets.catalog``), here as a function a run can use (``--mpp auto``) and check
every slide's stated resolution against.

A red cell is a dark (Otsu on green, nuclei left out) connected region that is not purple (no nucleus), does not touch the
image border, is convex and solid once its central pallor is filled (solidity > 0.95), and round (aspect
< 1.2). Touching or overlapping cells fail solidity and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from scipy.stats import binom

from bmpipe.resolution import Mpp

#: Median diameter of a normal red cell, µm (Bain 2015).
RED_CELL_UM = 7.5
#: Fewest isolated red cells an estimate is made from: below this the median's interval is too wide to trust.
MIN_RED_CELLS = 30
#: Smallest region taken for a red cell, px: anything smaller is debris or a platelet at any usable scale.
MIN_AREA_PX = 50
_SOLIDITY = 0.95
_ASPECT = 1.2
_PURPLE_SHARE = 0.05
#: Red cells of one smear lie within this factor of their commonest diameter (a normal range of 6.7-7.7 µm).
_MODE_BAND = 1.25


def red_cell_diameters(rgb: np.ndarray) -> np.ndarray:
    """Equivalent diameters, in pixels, of the isolated round red cells of an RGB uint8 image."""
    green = rgb[..., 1]
    red, blue = rgb[..., 0].astype(np.int16), rgb[..., 2].astype(np.int16)
    purple = ((red + blue) / 2 - green > 30) & (green < 0.7 * np.percentile(green, 90))
    # Otsu between red cells and glass, on the pixels that are not nuclei: in a crowded marrow field the
    # nuclei would otherwise take the threshold, and the red cells fall in with the background.
    rest = green[~purple]
    threshold, _ = cv2.threshold(rest.reshape(1, -1) if rest.size else green, 0, 255,
                                 cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    dark = (green < threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(dark)
    height, width = green.shape
    out = []
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        if area < MIN_AREA_PX or x == 0 or y == 0 or x + w >= width or y + h >= height:
            continue
        if max(w, h) > _ASPECT * min(w, h):
            continue
        mask = (labels[y : y + h, x : x + w] == i).astype(np.uint8)
        if purple[y : y + h, x : x + w][mask > 0].mean() > _PURPLE_SHARE:
            continue
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        filled = np.zeros_like(mask)
        cv2.drawContours(filled, contours, -1, 1, -1)  # the central pallor belongs to the cell
        hull = cv2.contourArea(cv2.convexHull(max(contours, key=len)))
        filled_area = float(filled.sum())
        if hull <= 0 or filled_area / hull < _SOLIDITY:
            continue
        out.append(2.0 * np.sqrt(filled_area / np.pi))
    return np.asarray(out, np.float64)


@dataclass(frozen=True)
class MppEstimate:
    """µm/px from ``n_cells`` red cells, with the 95% interval of their median (order statistics)."""

    mpp: Mpp
    low: Mpp
    high: Mpp
    n_cells: int

    def __str__(self) -> str:
        return (f"{self.mpp.um_per_px:.3f} µm/px (95% CI {self.low.um_per_px:.3f}-{self.high.um_per_px:.3f}) "
                f"from {self.n_cells} isolated red cells taken as {RED_CELL_UM:g} µm")

    def as_dict(self) -> dict[str, Any]:
        return {"um_per_px": round(self.mpp.um_per_px, 4), "ci95": [round(self.low.um_per_px, 4),
                round(self.high.um_per_px, 4)], "n_red_cells": self.n_cells, "red_cell_um": RED_CELL_UM,
                "method": "median equivalent diameter of isolated round red cells"}


def _about_the_mode(d: np.ndarray) -> np.ndarray:
    """The diameters within ±``_MODE_BAND`` of the size that covers most area (a smoothed, area-weighted
    histogram of log diameters): platelets, debris and clumps that pass the shape tests are far from the red
    cells' size and left out, however many."""
    if len(d) < MIN_RED_CELLS:
        return d
    logs = np.log(d)
    bins = np.arange(logs.min(), logs.max() + 0.05, 0.025)
    if len(bins) < 3:
        return d
    counts, edges = np.histogram(logs, bins, weights=d**2)  # by area: many small specks weigh little
    smooth = np.convolve(counts, np.ones(5), mode="same")
    mode = np.exp((edges[np.argmax(smooth)] + edges[np.argmax(smooth) + 1]) / 2)
    return d[(d > mode / _MODE_BAND) & (d < mode * _MODE_BAND)]


def estimate_mpp(diameters_px: np.ndarray) -> MppEstimate | None:
    """µm/px of the native pixels the ``diameters_px`` were measured in, or None from fewer than
    ``MIN_RED_CELLS`` cells. The interval is the distribution-free one of the median: between the order
    statistics whose ranks a Binomial(n, ½) puts 95% between."""
    d = np.sort(_about_the_mode(np.asarray(diameters_px, np.float64)))
    n = len(d)
    if n < MIN_RED_CELLS:
        return None
    lo_rank = max(int(binom.ppf(0.025, n, 0.5)) - 1, 0)
    hi_rank = min(int(binom.ppf(0.975, n, 0.5)), n - 1)
    of = lambda diameter: Mpp(RED_CELL_UM / diameter)
    return MppEstimate(of(float(np.median(d))), of(d[hi_rank]), of(d[lo_rank]), n)
