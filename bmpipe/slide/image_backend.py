"""Plain photographs of a field (JPEG, PNG, BMP, flat TIFF) as a one-level slide.

A photograph is decoded whole with OpenCV, so its header is checked first (Pillow reads only the header) and
anything too large for memory is refused with advice instead of being allocated. A camera's EXIF orientation
is applied, so that cell coordinates are in the frame the user sees (and that viewers and QuPath show).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from bmpipe.errors import SlideError
from bmpipe.resolution import Mpp
from bmpipe.slide.base import BackendRefused, Slide
from bmpipe.slide.checks import check_dimensions
from bmpipe.slide.mpp_metadata import read_tiff_mpp
from bmpipe.slide.pixels import to_rgb8

_ORIENTATION = 0x0112  # the EXIF tag
#: Largest photograph decoded whole (~400 MB as RGB); larger images belong in a tiled pyramidal TIFF.
MAX_IMAGE_PIXELS = 2**27


class ImageSlide(Slide):
    """A photograph held in memory; its resolution comes from the user or, for a TIFF, its tags."""

    backend = "image"

    def __init__(self, path: Path, user_mpp: Mpp | float | None) -> None:
        (width, height), image_format, orientation = _header(path)
        check_dimensions(path, width, height)
        if width * height > MAX_IMAGE_PIXELS:
            raise SlideError(
                path,
                f"a {width}×{height} image is too large to read as a photograph "
                f"(over {MAX_IMAGE_PIXELS:,} pixels); convert it to a tiled pyramidal TIFF",
            )
        decoded = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if decoded is None:
            raise BackendRefused(f"OpenCV cannot decode this {image_format} file")
        try:
            self._pixels = np.ascontiguousarray(upright(to_rgb8(decoded, bgr=True), orientation))
        except ValueError as err:
            raise BackendRefused(str(err)) from err
        super().__init__(
            path,
            level_dimensions=[(self._pixels.shape[1], self._pixels.shape[0])],
            level_downsamples=[1.0],
            properties={"format": image_format.lower(), "exif_orientation": str(orientation)},
            metadata_mpp=read_tiff_mpp(path) if image_format == "TIFF" else None,
            user_mpp=user_mpp,
        )

    def _read_level(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        return self._pixels[y : y + height, x : x + width].copy()

    def _close_handle(self) -> None:
        self._pixels = np.empty((0, 0, 3), np.uint8)


def upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """``pixels`` as stored, turned to how EXIF ``orientation`` (1-8) says they are shown; as Pillow's
    ``ImageOps.exif_transpose``. Unknown values leave the image as stored."""
    turns = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    return turns[orientation](pixels) if orientation in turns else pixels


def _header(path: Path) -> tuple[tuple[int, int], str, int]:
    """Size, format and EXIF orientation from the image header alone (Pillow decodes nothing until asked)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # size warnings (the caller checks size) and EXIF noise
            with Image.open(path) as image:
                return image.size, image.format or "image", int(image.getexif().get(_ORIENTATION, 1) or 1)
    except Image.DecompressionBombError as err:
        raise SlideError(
            path,
            f"its header claims an image too large to read as a photograph ({err}); "
            "convert it to a tiled pyramidal TIFF",
        ) from err
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise BackendRefused(f"not an image format Pillow recognises ({err})") from err
