"""Slides OpenSlide opens: Aperio, Hamamatsu, MIRAX, Leica, Ventana, DICOM and generic tiled TIFF.

Only the pyramid is read. ``associated_images`` (label and macro photographs, which show the patient's name)
and free-text properties are never touched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide

from bmpipe.resolution import Mpp
from bmpipe.slide.base import BackendRefused, Slide
from bmpipe.slide.mpp_metadata import openslide_mpp, read_tiff_mpp
from bmpipe.slide.pixels import composite_on_white

#: OpenSlide properties copied to ``Slide.properties`` (under the name after the colon).
_ALLOWED_PROPERTIES = {
    "openslide.vendor": "vendor",
    "openslide.objective-power": "objective-power",
    "openslide.mpp-x": "mpp-x",
    "openslide.mpp-y": "mpp-y",
}


class OpenSlideSlide(Slide):
    """A slide read through OpenSlide."""

    backend = "openslide"
    _read_errors = (openslide.OpenSlideError,)

    def __init__(self, path: Path, user_mpp: Mpp | float | None) -> None:
        try:
            self._handle = openslide.OpenSlide(str(path))
        except openslide.OpenSlideError as err:
            raise BackendRefused(str(err) or type(err).__name__) from err
        try:
            properties = self._handle.properties
            # A generic TIFF whose resolution OpenSlide does not report may still carry it in its tags.
            metadata_mpp = openslide_mpp(properties) or read_tiff_mpp(path)
            kept = {name: properties[key] for key, name in _ALLOWED_PROPERTIES.items() if key in properties}
            super().__init__(
                path,
                level_dimensions=self._handle.level_dimensions,
                level_downsamples=self._handle.level_downsamples,
                properties={**kept, "format": properties.get("openslide.vendor", "unknown")},
                metadata_mpp=metadata_mpp,
                user_mpp=user_mpp,
            )
        except BaseException:
            self._handle.close()
            raise

    def _read_level(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        # OpenSlide takes the location in level-0 pixels. At a level whose downsample is not an integer the
        # box then starts a fraction of a level pixel off the grid, and OpenSlide resamples the tiles to it:
        # up to 25 grey levels off the stored pixels on a phantom's level 1 (why generic TIFFs go to tifffile).
        downsample = self.level_downsamples[level]
        location = (round(x * downsample), round(y * downsample))
        rgba = np.asarray(self._handle.read_region(location, level, (width, height)))
        return composite_on_white(rgba)

    def _close_handle(self) -> None:
        self._handle.close()
