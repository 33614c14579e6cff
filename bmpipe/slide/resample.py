"""Resolution arithmetic: which pyramid level to read, and resampling a level's pixels to the output grid.

Kept free of any file access so the geometry (where an output pixel lands in level-0 coordinates) can be
tested on arrays and is the same for every backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

#: A level this much coarser than asked for is still read (then enlarged by at most 1 %), so a pyramid whose
#: downsamples are 3.99 or 4.016 instead of 4 is not skipped for a level 4× larger.
LEVEL_TOLERANCE = 1.01
_EXACT = 1e-6


def best_level(level_downsamples: Sequence[float], level0_mpp: float, target_mpp: float) -> int:
    """The level with the largest downsample not coarser than ``target_mpp`` (level 0 if all are)."""
    best = 0
    for level, downsample in enumerate(level_downsamples):
        if level0_mpp * downsample <= target_mpp * LEVEL_TOLERANCE and downsample > level_downsamples[best]:
            best = level
    return best


def best_reduction(reductions: Sequence[int], scale: float) -> int:
    """The largest factor a level can be decoded smaller by without becoming coarser than ``scale`` (1 if none)."""
    return max((r for r in reductions if r <= scale * LEVEL_TOLERANCE), default=1)


def source_box(start: float, size_out: int, scale: float, margin: int) -> tuple[int, int]:
    """Integer source span ``[lo, hi)`` covering ``size_out`` output pixels from ``start`` at ``scale``."""
    lo = math.floor(start + _EXACT) - margin
    hi = math.ceil(start + size_out * scale - _EXACT) + margin
    return lo, max(hi, lo + 1)


def resample(
    src: np.ndarray, offset_x: float, offset_y: float, scale: float, out_w: int, out_h: int
) -> np.ndarray:
    """Output (out_h, out_w, 3) whose pixel (i, j) covers src ``[offset + k*scale, offset + (k+1)*scale)``.

    ``scale`` is source pixels per output pixel. Reducing area-averages first (cv2.INTER_AREA, so fine
    detail is averaged rather than aliased), then corrects the sub-pixel remainder with a bilinear warp;
    enlarging is bilinear. An exactly aligned integer case is a pure crop, so reading at a level's own
    resolution returns that level's pixels unchanged.
    """
    if scale > 1 + _EXACT:
        small_w = max(1, round(src.shape[1] / scale))
        small_h = max(1, round(src.shape[0] / scale))
        small = cv2.resize(src, (small_w, small_h), interpolation=cv2.INTER_AREA)
        kx, ky = src.shape[1] / small_w, src.shape[0] / small_h
        return _warp(small, offset_x / kx, offset_y / ky, scale / kx, scale / ky, out_w, out_h)
    return _warp(src, offset_x, offset_y, scale, scale, out_w, out_h)


def _warp(
    src: np.ndarray, offset_x: float, offset_y: float, scale_x: float, scale_y: float, out_w: int, out_h: int
) -> np.ndarray:
    ix, iy = round(offset_x), round(offset_y)
    if (
        abs(scale_x - 1) < _EXACT
        and abs(scale_y - 1) < _EXACT
        and abs(offset_x - ix) < _EXACT
        and abs(offset_y - iy) < _EXACT
        and 0 <= ix
        and 0 <= iy
        and ix + out_w <= src.shape[1]
        and iy + out_h <= src.shape[0]
    ):
        return np.ascontiguousarray(src[iy : iy + out_h, ix : ix + out_w])
    # Map output pixel centres to source pixel centres (OpenCV's pixel k is centred on k).
    matrix = np.array(
        [
            [scale_x, 0.0, offset_x + 0.5 * scale_x - 0.5],
            [0.0, scale_y, offset_y + 0.5 * scale_y - 0.5],
        ]
    )
    return cv2.warpAffine(
        src,
        matrix,
        (out_w, out_h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
