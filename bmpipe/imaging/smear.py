"""Where the smear is on a low-resolution overview, and which parts of it are readable monolayer.

A marrow smear runs from a thick, piled-up zone (where the drop was) through the monolayer (cells spread,
red cells just touching) to a thin feathered edge (sparse, torn and smudged cells). On an overview the three
differ in how much of each block is stained (coverage) and how dark the stained part is (optical density):
glass is neither, the feathered edge is sparse, the thick zone is covered and dark, the monolayer between.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

GLASS, EDGE, MONOLAYER, THICK = 0, 1, 2, 3
ZONE_NAMES = {GLASS: "glass", EDGE: "edge", MONOLAYER: "monolayer", THICK: "thick"}

#: Optical density (sum over RGB of -log10 transmission) above which a pixel is stained, not glass.
STAINED_OD = 0.12
#: Side of the blocks over which coverage and density are measured, in micrometres (a few cells across).
BLOCK_UM = 40.0
#: A block with less stained area than this is feathered edge (or glass, when outside the smear).
EDGE_COVERAGE = 0.35
#: Mean optical density of a block's stained pixels above which cells are piled up (the thick zone).
THICK_OD = 0.95


@dataclass
class ZoneThresholds:
    stained_od: float = STAINED_OD
    block_um: float = BLOCK_UM
    edge_coverage: float = EDGE_COVERAGE
    thick_od: float = THICK_OD


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """Summed optical density per pixel: 0 for white glass, ~3 for black."""
    lut = -np.log10((np.arange(256, dtype=np.float32) + 1.0) / 256.0)
    return lut[rgb].sum(axis=2)


def zone_map(overview: np.ndarray, overview_mpp_um: float, t: ZoneThresholds | None = None) -> np.ndarray:
    """Per-pixel zone labels (GLASS, EDGE, MONOLAYER, THICK) of an RGB overview at ``overview_mpp_um``."""
    t = t or ZoneThresholds()
    od = optical_density(overview)
    stained = (od > t.stained_od).astype(np.float32)
    smear = _smear_mask(stained, overview_mpp_um)

    block = max(1, round(t.block_um / overview_mpp_um))
    ksize = (block, block)
    coverage = cv2.blur(stained, ksize, borderType=cv2.BORDER_REFLECT)
    od_sum = cv2.blur(od * stained, ksize, borderType=cv2.BORDER_REFLECT)
    stained_od = od_sum / np.maximum(coverage, 1e-6)

    zones = np.full(overview.shape[:2], GLASS, dtype=np.uint8)
    zones[smear] = MONOLAYER
    zones[smear & (coverage < t.edge_coverage)] = EDGE
    zones[smear & (stained_od >= t.thick_od) & (coverage >= t.edge_coverage)] = THICK
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
