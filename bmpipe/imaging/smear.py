"""Where the smear is on a low-resolution overview, and which parts of it are readable monolayer.

A marrow smear runs from a thick, piled-up zone (where the drop was) through the monolayer (cells spread,
red cells just touching) to a thin feathered edge (sparse, torn and smudged cells). On an overview the three
differ in optical density averaged over blocks a few cells wide: the thick zone is dark, the feathered
edge pale, the monolayer between; glass is unstained.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

GLASS, EDGE, MONOLAYER, THICK = 0, 1, 2, 3
ZONE_NAMES = {GLASS: "glass", EDGE: "edge", MONOLAYER: "monolayer", THICK: "thick"}


@dataclass(frozen=True)
class ZoneThresholds:
    """How zones are told apart. Densities are relative to the smear's median block, which is monolayer on
    any smear a lab would scan, so stain intensity differences between slides cancel out."""

    stained_od: float = 0.12  # summed RGB optical density above the glass's at which a pixel is stained
    block_um: float = 40.0  # side of the blocks density is averaged over: a few cells across
    thick_ratio: float = 1.6  # piled-up cells: block density this many times the smear's median or more
    edge_ratio: float = 0.7  # feathered edge: sparse, pale cells, under this share of the median


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """Summed optical density per pixel: 0 for white glass, ~3 for black."""
    lut = -np.log10((np.arange(256, dtype=np.float32) + 1.0) / 256.0)
    return lut[rgb].sum(axis=2)


def zone_map(overview: np.ndarray, overview_mpp_um: float, t: ZoneThresholds | None = None) -> np.ndarray:
    """Per-pixel zone labels (GLASS, EDGE, MONOLAYER, THICK) of an RGB overview at ``overview_mpp_um``."""
    t = t or ZoneThresholds()
    od = optical_density(overview)
    glass = float(np.percentile(od, 1))  # scanners' glass is off-white; the palest pixels are glass
    smear = _smear_mask(od > glass + t.stained_od, overview_mpp_um)
    zones = np.full(overview.shape[:2], GLASS, dtype=np.uint8)
    if not smear.any():
        return zones
    block = max(1, round(t.block_um / overview_mpp_um))
    density = cv2.blur(od, (block, block), borderType=cv2.BORDER_REFLECT)
    median = float(np.median(density[smear]))
    zones[smear] = MONOLAYER
    zones[smear & (density < t.edge_ratio * median)] = EDGE
    thick = (smear & (density >= t.thick_ratio * median)).astype(np.uint8)
    # a lone dark cell (a megakaryocyte) is not a thick zone: keep only areas at least a block wide
    thick = cv2.morphologyEx(thick, cv2.MORPH_OPEN, np.ones((block, block), np.uint8))
    zones[thick.astype(bool)] = THICK
    return zones


def _smear_mask(stained: np.ndarray, mpp_um: float) -> np.ndarray:
    """The smear as the closed, hole-filled union of stained areas larger than a few cells."""
    radius = max(1, round(30.0 / mpp_um))  # bridges the glass between spread cells
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    closed = cv2.morphologyEx((stained > 0).astype(np.uint8), cv2.MORPH_CLOSE, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(closed)
    min_area = (100.0 / mpp_um) ** 2  # smaller specks are dust, not smear
    keep = np.zeros(n, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    return keep[labels]
