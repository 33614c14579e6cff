"""What a nucleated-cell detector offers the stages, whichever network it is (U-Net or YOLO)."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from bmpipe.resolution import Mpp


class Detector(Protocol):
    """A detector's resolution, its tile size, and batched detection: (boxes, scores) per tile."""

    mpp: Mpp
    tile_size: int

    def detect(self, tiles: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]: ...
