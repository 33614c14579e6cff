"""``open_slide``: pick the backend that can read a file, or say in one line why none can."""

from __future__ import annotations

import logging
from pathlib import Path

import openslide

from bmpipe.errors import SlideError
from bmpipe.resolution import Mpp
from bmpipe.slide.base import BackendRefused, Slide
from bmpipe.slide.checks import check_file
from bmpipe.slide.image_backend import ImageSlide
from bmpipe.slide.openslide_backend import OpenSlideSlide
from bmpipe.slide.tiff_backend import TiffSlide, is_ome_tiff

log = logging.getLogger(__name__)

#: Photographs go straight to the image backend; OME and generic tiled TIFFs to tifffile first; everything
#: else (the vendors' formats, whose layout and metadata OpenSlide knows) to OpenSlide first.
PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
#: Single images (cell crops, microscope fields): the photo formats, and flat TIFFs as cameras also save.
IMAGE_SUFFIXES = PHOTO_SUFFIXES | {".tif", ".tiff"}

_LIBRARY = {OpenSlideSlide: "OpenSlide", TiffSlide: "tifffile", ImageSlide: "image"}


def open_slide(path: str | Path, mpp: Mpp | float | None = None) -> Slide:
    """Open a whole-slide file or a photograph; ``mpp`` (µm/px) overrides the file's own resolution.

    Every failure is a :class:`~bmpipe.errors.SlideError` whose message starts with the path.
    """
    path = Path(path)
    check_file(path)
    if path.suffix.lower() in PHOTO_SUFFIXES:
        order: tuple[type[Slide], ...] = (ImageSlide,)
    elif is_ome_tiff(path) or _is_generic_tiff(path):
        order = (TiffSlide, OpenSlideSlide, ImageSlide)
    else:
        order = (OpenSlideSlide, TiffSlide, ImageSlide)
    reasons = []
    for backend in order:
        try:
            slide = backend(path, mpp)
        except BackendRefused as refusal:
            log.debug("%s: %s cannot open it: %s", path, _LIBRARY[backend], refusal)
            reasons.append(f"{_LIBRARY[backend]}: {refusal}")
            continue
        except SlideError:
            raise
        except Exception as err:  # a parser tripping over a corrupt header refuses the file
            log.debug("%s: %s failed on its header", path, _LIBRARY[backend], exc_info=True)
            reasons.append(f"{_LIBRARY[backend]}: cannot parse it ({type(err).__name__}: {err})")
            continue
        log.info(
            "%s: opened with %s, %d×%d px at %s (%s)",
            path,
            slide.backend,
            *slide.dimensions,
            slide.mpp,
            slide.mpp_source,
        )
        return slide
    what = "a TIFF-based slide that no reader can open: corrupt or truncated" if _is_tiff(path) else (
        "not a readable slide or image"
    )
    raise SlideError(path, f"{what} ({'; '.join(reasons)})")


#: First bytes of classic and BigTIFF files, both byte orders (SVS, NDPI, OME-TIFF... are TIFFs).
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _is_tiff(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in _TIFF_MAGIC


def _is_generic_tiff(path: Path) -> bool:
    """Whether OpenSlide takes the file for a plain tiled TIFF, as bmpipe's phantom slides and many converters
    write. tifffile reads those faster and truer: OpenSlide decoded their tiles for 21.6 ms of CPU per
    megapixel against tifffile's 4.6, and at a level whose downsample is not a whole number it resamples
    the tiles by a fraction of a pixel (up to 25 grey levels off the stored ones, on a phantom's level 1)."""
    try:
        return openslide.OpenSlide.detect_format(str(path)) == "generic-tiff"
    except openslide.OpenSlideError:
        return False


def images_in(folder: Path) -> list[Path]:
    """The image files directly inside ``folder`` (``IMAGE_SUFFIXES``), sorted."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
