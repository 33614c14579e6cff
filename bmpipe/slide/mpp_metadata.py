"""Where a slide's resolution comes from: the user, or metadata (OpenSlide, OME-XML, TIFF resolution tags).

Every measurement the pipeline reports (cell sizes, areas, counts per field) scales with µm/px, so a missing
or implausible value is refused with a message saying how to give it, never guessed from magnification.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import tifffile

from bmpipe.errors import SlideError
from bmpipe.resolution import MAX_MPP, MIN_MPP, Mpp

log = logging.getLogger(__name__)

NO_MPP_PROBLEM = "no resolution in its metadata; give it with --mpp (µm per pixel, e.g. --mpp 0.1)"
#: Pixels whose x and y sizes differ by more than this are refused: cells would be measured stretched.
MAX_ANISOTROPY = 0.05

#: Micrometres per unit of TIFF ResolutionUnit (2 = inch, 3 = centimetre); 1 (none) carries no scale.
_TIFF_UNIT_UM = {2: 25400.0, 3: 10000.0}
#: Micrometres per OME-XML length unit (PhysicalSizeXUnit; the OME default is µm).
_OME_UNIT_UM = {"pm": 1e-6, "nm": 1e-3, "µm": 1.0, "um": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6}


@dataclass(frozen=True)
class MppReading:
    """Resolution found in a file's metadata, before it is checked: x and y µm/px and where they came from."""

    x: float
    y: float
    source: str


def resolve_mpp(path: Path, user: Mpp | float | None, metadata: MppReading | None) -> tuple[Mpp, str]:
    """The level-0 resolution and its source: the user's value wins over metadata; neither is an error."""
    if user is not None:
        try:
            mpp = user if isinstance(user, Mpp) else Mpp(float(user))
        except (TypeError, ValueError) as err:
            raise SlideError(
                path, f"the given resolution {user!r} is not a positive number of µm/px"
            ) from err
        if metadata is not None:
            log.info(
                "%s: using the given %s instead of %g µm/px from %s", path, mpp, metadata.x, metadata.source
            )
        _check_range(path, mpp, "given with --mpp")
        return mpp, "user"
    if metadata is None:
        raise SlideError(path, NO_MPP_PROBLEM)
    if abs(metadata.x - metadata.y) > MAX_ANISOTROPY * min(metadata.x, metadata.y):
        raise SlideError(
            path,
            f"non-square pixels in its metadata ({metadata.x:g} × {metadata.y:g} µm/px from {metadata.source}); "
            "the pipeline needs square pixels",
        )
    mpp = Mpp(metadata.x)
    _check_range(path, mpp, f"from {metadata.source}; give the right one with --mpp")
    return mpp, f"metadata:{metadata.source}"


def _check_range(path: Path, mpp: Mpp, where: str) -> None:
    if not mpp.in_accepted_range():
        raise SlideError(
            path,
            f"resolution {mpp.um_per_px:g} µm/px ({where}) is outside the accepted range "
            f"{MIN_MPP:g}-{MAX_MPP:g} µm/px",
        )


def openslide_mpp(properties) -> MppReading | None:
    """``openslide.mpp-x``/``-y`` when OpenSlide found both and they are positive numbers."""
    try:
        x = float(properties["openslide.mpp-x"])
        y = float(properties["openslide.mpp-y"])
    except (KeyError, ValueError):
        return None
    return MppReading(x, y, "openslide.mpp-x") if x > 0 and y > 0 else None


def tiff_mpp(tif: tifffile.TiffFile) -> MppReading | None:
    """Resolution of a TIFF's first image: OME-XML PhysicalSizeX/Y, else the XResolution/YResolution tags."""
    if tif.is_ome and tif.ome_metadata:
        reading = _ome_mpp(tif.ome_metadata)
        if reading is not None:
            return reading
    page = tif.pages.first
    unit_um = _TIFF_UNIT_UM.get(int(page.tags.valueof("ResolutionUnit", 2)))
    x_px_per_unit = _rational(page.tags.valueof("XResolution"))
    y_px_per_unit = _rational(page.tags.valueof("YResolution")) or x_px_per_unit
    if unit_um is None or not x_px_per_unit or not y_px_per_unit:
        return None
    return MppReading(unit_um / x_px_per_unit, unit_um / y_px_per_unit, "tiff.XResolution")


def read_tiff_mpp(path: Path) -> MppReading | None:
    """:func:`tiff_mpp` of a file, or None when it is not a TIFF that tifffile can parse."""
    try:
        with tifffile.TiffFile(path) as tif:
            return tiff_mpp(tif)
    except Exception as err:  # noqa: BLE001 - what tifffile cannot parse has no TIFF metadata
        log.debug("%s: no TIFF resolution metadata (%s)", path, err)
        return None


def _ome_mpp(xml: str) -> MppReading | None:
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None or pixels.get("PhysicalSizeX") is None:
        return None
    try:
        x = float(pixels.get("PhysicalSizeX")) * _OME_UNIT_UM[pixels.get("PhysicalSizeXUnit", "µm")]
        y = (
            float(pixels.get("PhysicalSizeY", pixels.get("PhysicalSizeX")))
            * _OME_UNIT_UM[pixels.get("PhysicalSizeYUnit", pixels.get("PhysicalSizeXUnit", "µm"))]
        )
    except (KeyError, ValueError):
        return None
    return MppReading(x, y, "ome.PhysicalSizeX") if x > 0 and y > 0 else None


def _rational(value) -> float | None:
    """A TIFF RATIONAL tag value (numerator, denominator) as a float; None when absent or degenerate."""
    if value is None:
        return None
    if isinstance(value, tuple):
        if len(value) != 2:  # a corrupt tag: a resolution that cannot be read is no resolution
            return None
        numerator, denominator = value
        return numerator / denominator if numerator and denominator else None
    return float(value) or None
