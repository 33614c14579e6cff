"""Slide I/O: open whole-slide files and photographs, read them at any resolution, write pyramidal TIFFs.

``open_slide`` picks a backend (OpenSlide, tifffile, or OpenCV for photographs) and returns a ``Slide`` whose
reads take a resolution in µm/px rather than a pyramid level. ``write_pyramidal_tiff`` streams a generated
slide to a tiled TIFF pyramid that OpenSlide and ``open_slide`` read back with its resolution.
"""

from bmpipe.slide.base import Slide
from bmpipe.slide.checks import MAX_LEVEL0_PIXELS, MAX_SIDE, slide_id
from bmpipe.slide.opener import IMAGE_SUFFIXES, PHOTO_SUFFIXES, images_in, open_slide
from bmpipe.slide.writer import write_pyramidal_tiff

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_LEVEL0_PIXELS",
    "MAX_SIDE",
    "PHOTO_SUFFIXES",
    "Slide",
    "images_in",
    "open_slide",
    "slide_id",
    "write_pyramidal_tiff",
]
