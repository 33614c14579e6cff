"""Scaling an image between resolutions, by the one rule every stage and data reader uses."""

from __future__ import annotations

import cv2
import numpy as np


def rescale(image: np.ndarray, factor: float, nearest: bool = False) -> np.ndarray:
    """``image`` scaled by ``factor``: area-averaged when shrinking, so that granules and chromatin do not
    alias into false texture; bilinear when enlarging; nearest-neighbour for label images (``nearest``)."""
    mode = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    h, w = image.shape[:2]
    if round(w * factor) < 1 or round(h * factor) < 1:
        return cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=mode)
    return cv2.resize(image, None, fx=factor, fy=factor, interpolation=mode)
