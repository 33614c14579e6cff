"""Pyramidal and OME TIFFs read with tifffile: those OpenSlide cannot open, and OME pyramids it cannot see.

OpenSlide reads an OME-TIFF as a one-level generic TIFF without resolution (its pyramid lives in SubIFDs),
so OME files come here first. Large levels are never decoded whole: a read decodes only the tiles or strips
it overlaps, straight from their byte ranges, and keeps recent ones for neighbouring reads, shared by every
handle on the file (each reader thread has its own). JPEG tiles are decoded at 1/2, 1/4 or 1/8 of their size
when a read needs no more (libjpeg's DCT scaling, through OpenCV).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tifffile

from bmpipe.bounded_cache import BoundedCache
from bmpipe.resolution import Mpp
from bmpipe.slide.base import BackendRefused, Slide
from bmpipe.slide.checks import check_dimensions
from bmpipe.slide.mpp_metadata import tiff_mpp
from bmpipe.slide.pixels import to_rgb8

#: A one-level, untiled, non-OME TIFF up to this size is a photograph: the image backend reads it.
FLAT_TIFF_MAX_PIXELS = 64 * 2**20
#: Memory kept for decoded tiles, per file, so overlapping reads decode each tile once: tiles overlap, and a
#: tile's cell crops reach into its neighbours', often read on the other reader thread. With 64 MB per handle
#: instead, the stream decoded 2,659 segments of a 6,000-cell phantom's 1,495 (44 % twice); now 2,140.
SEGMENT_CACHE_BYTES = 128 * 2**20

_MINISWHITE, _MINISBLACK, _RGB, _YCBCR = 0, 1, 2, 6
_JPEG_COMPRESSIONS = {6, 7, 33007, 34892}
_JPEG = 7
#: OpenCV's reads of a JPEG decoded at 1/r, by r (libjpeg's ``scale_denom``).
_JPEG_READS = {
    1: cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION,
    2: cv2.IMREAD_REDUCED_COLOR_2 | cv2.IMREAD_IGNORE_ORIENTATION,
    4: cv2.IMREAD_REDUCED_COLOR_4 | cv2.IMREAD_IGNORE_ORIENTATION,
    8: cv2.IMREAD_REDUCED_COLOR_8 | cv2.IMREAD_IGNORE_ORIENTATION,
}
#: The factors a JPEG can be decoded smaller by.
JPEG_REDUCTIONS = tuple(_JPEG_READS)


@dataclass(frozen=True)
class _Level:
    """One pyramid level: its page, how its pixels are cut into segments (tiles or strips), and the factors its
    segments can be decoded smaller by."""

    page: tifffile.TiffPage
    width: int
    height: int
    segment_width: int
    segment_height: int
    reductions: tuple[int, ...]

    @property
    def segments_across(self) -> int:
        return math.ceil(self.width / self.segment_width)


class TiffSlide(Slide):
    """A tiled or stripped TIFF pyramid (OME or not) read segment by segment."""

    backend = "tifffile"
    # tifffile and imagecodecs report undecodable data with these (TiffFileError is a ValueError).
    _read_errors = (ValueError, RuntimeError, NotImplementedError, OSError)

    def __init__(
        self, path: Path, user_mpp: Mpp | float | None, segments: BoundedCache[np.ndarray] | None = None
    ) -> None:
        try:
            self._tif = tifffile.TiffFile(path)
        except Exception as err:  # any parse failure means "not a TIFF tifffile can read"
            raise BackendRefused(f"{err}") from err
        self._lock = threading.Lock()
        #: Decoded segments by (level, reduction, index): this file's, shared with the handles ``reopen`` makes.
        self._segments = segments or BoundedCache(SEGMENT_CACHE_BYTES, lambda segment: segment.nbytes)
        try:
            self._levels = self._parse_levels(path)
            width, height = self._levels[0].width, self._levels[0].height
            super().__init__(
                path,
                level_dimensions=[(lv.width, lv.height) for lv in self._levels],
                level_downsamples=[(width / lv.width + height / lv.height) / 2 for lv in self._levels],
                properties={"format": "ome-tiff" if self._tif.is_ome else "tiff"},
                metadata_mpp=tiff_mpp(self._tif),
                user_mpp=user_mpp,
            )
        except BaseException:
            self._tif.close()
            raise

    def _parse_levels(self, path: Path) -> list[_Level]:
        try:
            series = self._tif.series[0]
            levels = list(series.levels)
        except Exception as err:  # a TIFF whose structure tifffile cannot make sense of
            raise BackendRefused(f"no image series ({err})") from err
        first = levels[0]
        if first.axes not in ("YX", "YXS"):
            raise BackendRefused(f"unsupported image layout (axes {first.axes}, shape {first.shape})")
        check_dimensions(path, first.shape[1], first.shape[0])
        if (
            len(levels) == 1
            and not first.keyframe.is_tiled
            and not self._tif.is_ome
            and first.shape[0] * first.shape[1] <= FLAT_TIFF_MAX_PIXELS
        ):
            raise BackendRefused("a flat TIFF, read as an image")
        return [_describe_level(level) for level in levels]

    def _reductions(self, level: int) -> tuple[int, ...]:
        return self._levels[level].reductions

    def _read_level(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        return self._read_segments(level, 1, x, y, width, height)

    def _read_reduced(self, level: int, reduction: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        return self._read_segments(level, reduction, x, y, width, height)

    def _read_segments(self, level: int, reduction: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        lv = self._levels[level]
        segment_w, segment_h = lv.segment_width // reduction, lv.segment_height // reduction
        out = np.empty((height, width, 3), np.uint8)
        for row in range(y // segment_h, (y + height - 1) // segment_h + 1):
            for col in range(x // segment_w, (x + width - 1) // segment_w + 1):
                segment = self._segment(level, row * lv.segments_across + col, reduction)
                top, left = row * segment_h, col * segment_w
                y0, y1 = max(y, top), min(y + height, top + segment.shape[0])
                x0, x1 = max(x, left), min(x + width, left + segment.shape[1])
                out[y0 - y : y1 - y, x0 - x : x1 - x] = segment[y0 - top : y1 - top, x0 - left : x1 - left]
        return out

    def _open_again(self, user_mpp: Mpp | None) -> TiffSlide:
        return TiffSlide(self.path, user_mpp, self._segments)

    def _segment(self, level: int, index: int, reduction: int) -> np.ndarray:
        """Decoded RGB of one tile or strip at 1/``reduction`` (white where the file stores none); never
        written to."""
        return self._segments.get_or_make((level, reduction, index), lambda: self._decode(level, index, reduction))

    def _decode(self, level: int, index: int, reduction: int) -> np.ndarray:
        lv = self._levels[level]
        page = lv.page
        count = page.databytecounts[index]
        if count == 0:  # sparse file: the tile was never written
            rgb = np.full((lv.segment_height // reduction, lv.segment_width // reduction, 3), 255, np.uint8)
        else:
            with self._lock:
                handle = self._tif.filehandle
                handle.seek(page.dataoffsets[index])
                data = handle.read(count)
            if len(data) != count:
                raise ValueError(f"tile {index} is cut short: the file is truncated")
            rgb = _decode_reduced(lv, data, reduction) if reduction > 1 else _decode_whole(page, data, index)
        rgb.flags.writeable = False
        return rgb

    def _close_handle(self) -> None:
        self._tif.close()


def _decode_whole(page: tifffile.TiffPage, data: bytes, index: int) -> np.ndarray:
    decoded, _, _ = page.decode(data, index, jpegtables=page.jpegtables, jpegheader=page.jpegheader)
    samples = decoded.reshape(decoded.shape[-3:])
    if page.photometric == _MINISWHITE:
        samples = np.iinfo(samples.dtype).max - samples
    return to_rgb8(samples)


def decode_jpeg(data: bytes, reduction: int = 1) -> np.ndarray | None:
    """RGB of a JPEG (whose colours libjpeg tells from its markers) decoded at 1/``reduction``, one of
    ``JPEG_REDUCTIONS``; None if it cannot be decoded."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), _JPEG_READS[reduction])
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _decode_reduced(level: _Level, data: bytes, reduction: int) -> np.ndarray:
    """A JPEG tile decoded at 1/``reduction``; tables stored once for the page are spliced in front."""
    tables = level.page.jpegtables
    if tables:  # an abbreviated stream: the tables' SOI...(no EOI) then the tile after its SOI
        data = tables[:-2] + data[2:]
    rgb = decode_jpeg(data, reduction)
    shape = (level.segment_height // reduction, level.segment_width // reduction, 3)
    if rgb is None or rgb.shape != shape:
        raise ValueError(f"a JPEG tile decodes to {None if rgb is None else rgb.shape}, not {shape}")
    return rgb


def _jpeg_reductions(page: tifffile.TiffPage) -> tuple[int, ...]:
    """(1, 2, 4, 8) for tiles libjpeg decodes smaller into whole pixels, with the colours tifffile gives; (1,) else.

    Only 8-bit YCbCr JPEG tiles whose sides are multiples of 8: libjpeg converts YCbCr to RGB itself, and a
    side that 8 divides is divided exactly.
    """
    if (
        page.compression == _JPEG
        and page.photometric == _YCBCR
        and page.is_tiled
        and page.bitspersample == 8
        and page.tilewidth % 8 == 0
        and page.tilelength % 8 == 0
    ):
        return JPEG_REDUCTIONS
    return (1,)


def _describe_level(level: tifffile.TiffPageSeries) -> _Level:
    """Geometry of a level, refusing layouts read segment by segment cannot handle."""
    page = level.pages[0]
    if isinstance(page, tifffile.TiffFrame):  # a frame shares its keyframe's tags; decoding needs a page
        page = page.aspage()
    layout = (
        f"axes {level.axes}, {level.dtype}, photometric {page.photometric}, compression {page.compression}"
    )
    supported_photometric = page.photometric in (_MINISWHITE, _MINISBLACK, _RGB) or (
        page.photometric == _YCBCR and page.compression in _JPEG_COMPRESSIONS
    )
    if (
        level.axes not in ("YX", "YXS")
        or level.dtype not in (np.uint8, np.uint16)
        or not supported_photometric
        or len(level.pages) != 1
    ):
        raise BackendRefused(f"unsupported image layout ({layout})")
    height, width = level.shape[:2]
    if page.is_tiled:
        segment_width, segment_height = page.tilewidth, page.tilelength
    else:
        segment_width, segment_height = width, min(page.rowsperstrip or height, height)
    expected = math.ceil(width / segment_width) * math.ceil(height / segment_height)
    if len(page.dataoffsets) != expected:
        raise BackendRefused(
            f"corrupt TIFF: {len(page.dataoffsets)} tiles or strips where a {width}×{height} image needs {expected}"
        )
    return _Level(page, width, height, segment_width, segment_height, _jpeg_reductions(page))


def is_ome_tiff(path: Path) -> bool:
    """Whether the file is an OME-TIFF (False for anything tifffile cannot parse)."""
    try:
        with tifffile.TiffFile(path) as tif:
            return tif.is_ome
    except Exception:  # noqa: BLE001 - whatever tifffile cannot parse is not an OME-TIFF
        return False
