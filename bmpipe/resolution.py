"""Resolution as a value with a unit (micrometres per pixel), never a bare float or 'magnification'."""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Accepted range of level-0 resolutions. Below 0.05 µm/px no brightfield optics resolve detail (the
#: diffraction limit of a 1.4 NA oil objective is ~0.2 µm); above 20 µm/px a marrow cell is under one pixel.
MIN_MPP = 0.05
MAX_MPP = 20.0


@dataclass(frozen=True, order=True)
class Mpp:
    """Micrometres per pixel (isotropic). ``Mpp(0.1)`` is the 1000× (100× oil) scale the pipeline counts at."""

    um_per_px: float

    def __post_init__(self) -> None:
        value = float(self.um_per_px)
        if math.isnan(value) or value <= 0:
            raise ValueError(f"resolution must be a positive number of µm/px, got {self.um_per_px!r}")
        object.__setattr__(self, "um_per_px", value)

    def in_accepted_range(self) -> bool:
        return MIN_MPP <= self.um_per_px <= MAX_MPP

    def factor_to(self, target: Mpp) -> float:
        """How many pixels at ``self`` make one pixel at ``target`` (>1 means ``target`` is coarser)."""
        return target.um_per_px / self.um_per_px

    def px(self, microns: float) -> float:
        """Length in pixels at this resolution of ``microns`` micrometres."""
        return microns / self.um_per_px

    def __str__(self) -> str:
        return f"{self.um_per_px:g} µm/px"
