"""The Slide every backend presents, and the resolution-aware reading built on it.

A backend only knows how to open its file and decode an in-bounds box of one pyramid level (and, where its
codec can, of a level decoded smaller). Everything about resolution (which level to read, resampling, white
outside the slide, bounded memory per read) lives here once, so OpenSlide, tifffile and plain images cannot
disagree about geometry.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, NamedTuple

import cv2
import numpy as np

from bmpipe.errors import SlideError
from bmpipe.resolution import Mpp
from bmpipe.slide.checks import check_dimensions, slide_id
from bmpipe.slide.mpp_metadata import MppReading, resolve_mpp
from bmpipe.slide.resample import best_level, best_reduction, resample, source_box

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger(__name__)

#: Side, in source pixels, of the blocks a large read is split into: bounds one read's working memory to
#: ~50 MB even for an overview of a slide that has no pyramid.
CHUNK_SOURCE_SIDE = 4096
#: Side of the box decoded when a slide is opened, to find corrupt pixel data before any work starts.
PROBE_SIDE = 256
#: Side, in source pixels, of the blocks ``read_regions`` groups boxes by: each group is one read of ~5 MB.
GROUP_SOURCE_SIDE = 1024


def _aligned(scale: float, level_x: float, level_y: float) -> bool:
    """Whether a read is a plain copy of level pixels (no resampling)."""
    return abs(scale - 1) < 1e-9 and float(level_x).is_integer() and float(level_y).is_integer()


def _margin(scale: float) -> int:
    """Source pixels read beyond a box: bilinear enlarging needs the neighbours of edge pixels."""
    return 0 if scale > 1 else 1


class _Source(NamedTuple):
    """The pixels a read decodes: pyramid level ``level`` at 1/``reduction`` of its resolution."""

    level: int
    reduction: int


class BackendRefused(Exception):
    """This backend's library cannot open the file; the opener tries the next backend and reports all."""


class Slide(ABC):
    """An open slide or image: level-0 geometry and resolution, and reads at any resolution.

    Use as a context manager (or call :meth:`close`). ``properties`` holds only allow-listed technical
    metadata; label, macro and free-text fields (which can carry patient names) are never copied.
    """

    backend: ClassVar[str]
    #: Exceptions the backend's library raises for undecodable pixel data; turned into SlideError.
    _read_errors: ClassVar[tuple[type[Exception], ...]] = ()

    def __init__(
        self,
        path: Path,
        *,
        level_dimensions: Sequence[tuple[int, int]],
        level_downsamples: Sequence[float],
        properties: Mapping[str, str],
        metadata_mpp: MppReading | None,
        user_mpp: Mpp | float | None,
    ) -> None:
        self.path = path
        self.id = slide_id(path)
        self._closed = False
        check_dimensions(path, *level_dimensions[0])
        self.level_dimensions = tuple((int(w), int(h)) for w, h in level_dimensions)
        self.level_downsamples = tuple(float(d) for d in level_downsamples)
        self.dimensions = self.level_dimensions[0]
        coarsest = len(self.level_dimensions) - 1
        width, height = self.level_dimensions[coarsest]
        self._read_checked(_Source(coarsest, 1), 0, 0, min(PROBE_SIDE, width), min(PROBE_SIDE, height))
        self.mpp, self.mpp_source = resolve_mpp(path, user_mpp, metadata_mpp)
        self.properties = {
            **properties,
            "backend": self.backend,
            "width": str(self.dimensions[0]),
            "height": str(self.dimensions[1]),
            "level-count": str(len(self.level_dimensions)),
            "mpp": f"{self.mpp.um_per_px:g}",
            "mpp-source": self.mpp_source,
        }
        log.debug("opened %s with %s: %s", path, self.backend, self.properties)

    def set_mpp(self, mpp: Mpp, source: str) -> None:
        """Use ``mpp`` as level-0 resolution from now on, found by ``source`` (e.g. measured on the pixels
        themselves, which needs the slide open first: ``bmpipe.stages.calibrate``)."""
        self.mpp, self.mpp_source = mpp, source
        self.properties = {**self.properties, "mpp": f"{mpp.um_per_px:g}", "mpp-source": source}

    @abstractmethod
    def _read_level(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """(height, width, 3) uint8 RGB of an in-bounds box of ``level``, in that level's pixels."""

    @abstractmethod
    def _close_handle(self) -> None:
        """Release the backend's file handle."""

    def _reductions(self, level: int) -> tuple[int, ...]:
        """Factors by which the backend can decode ``level`` directly at a lower resolution; (1,) by default.

        A JPEG decoder scales in the DCT domain and skips most of its inverse transform: 0.25 µm/px cell crops
        from a 0.1 µm/px level then decode a quarter of the pixels instead of all of them.
        """
        return (1,)

    def _read_reduced(self, level: int, reduction: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """Like :meth:`_read_level`, of ``level`` decoded at 1/``reduction`` (one of :meth:`_reductions`)."""
        raise NotImplementedError(f"{self.backend} decodes no level smaller")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close_handle()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def reopen(self) -> Self:
        """Another handle on the same file, backend and resolution, for a reader on another thread.

        Handles are never shared between threads: a backend's decoder state (file position) is not
        guaranteed thread-safe, and a handle of one's own costs only the file's header parse. A backend may
        share what is thread-safe between them, such as decoded tiles.
        """
        if self.mpp_source.startswith("metadata"):
            return self._open_again(None)
        again = self._open_again(self.mpp)  # given by the user, or measured (set_mpp): not in the file
        again.set_mpp(self.mpp, self.mpp_source)
        return again

    def _open_again(self, user_mpp: Mpp | None) -> Self:
        """A new handle on this file with ``user_mpp``, the user's resolution if one was given."""
        return type(self)(self.path, user_mpp)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, {self.dimensions[0]}×{self.dimensions[1]}, {self.mpp})"

    def read_region(self, x: float, y: float, width: int, height: int, mpp: Mpp) -> np.ndarray:
        """(height, width, 3) uint8 RGB at ``mpp`` whose top-left corner is level-0 point (x, y).

        Reads the coarsest level not coarser than ``mpp``, area-averages when reducing and interpolates
        bilinearly when enlarging. Outside the slide, and where the file is transparent, pixels are white.
        """
        return self._read_region(x, y, width, height, *self._geometry(mpp))

    def _read_region(
        self, x: float, y: float, width: int, height: int, source: _Source, downsample: float, scale: float
    ) -> np.ndarray:
        width, height = int(width), int(height)
        if width < 1 or height < 1:
            raise ValueError(f"region size must be positive, got {width}×{height}")
        level_x, level_y = x / downsample, y / downsample
        if _aligned(scale, level_x, level_y):
            return self._read_padded(source, int(level_x), int(level_y), width, height)
        margin = _margin(scale)
        step = max(1, int(CHUNK_SOURCE_SIDE / max(scale, 1.0)))
        out = np.empty((height, width, 3), np.uint8)
        for out_y in range(0, height, step):
            for out_x in range(0, width, step):
                out_w, out_h = min(step, width - out_x), min(step, height - out_y)
                start_x, start_y = level_x + out_x * scale, level_y + out_y * scale
                x0, x1 = source_box(start_x, out_w, scale, margin)
                y0, y1 = source_box(start_y, out_h, scale, margin)
                src = self._read_padded(source, x0, y0, x1 - x0, y1 - y0)
                out[out_y : out_y + out_h, out_x : out_x + out_w] = resample(
                    src, start_x - x0, start_y - y0, scale, out_w, out_h
                )
        return out

    def read_centred(self, xs: Sequence[float], ys: Sequence[float], size: int, mpp: Mpp,
                     mirror_outside: bool = False) -> np.ndarray:
        """(N, size, size, 3) uint8: squares of ``size`` px at ``mpp`` centred on level-0 points (xs, ys), as
        :meth:`read_regions` reads them: white outside the slide, or with ``mirror_outside`` that part mirrored
        from the part inside (the pixels wholly within the slide), as a network's training crops are."""
        px = self.mpp.factor_to(mpp)  # level-0 px per output px
        x0, y0 = np.asarray(xs, np.float64) - size / 2 * px, np.asarray(ys, np.float64) - size / 2 * px
        out = self.read_regions(x0, y0, size, size, mpp)
        if not mirror_outside:
            return out
        width, height = self.dimensions
        lo_x, lo_y = np.ceil(-x0 / px).clip(0, size), np.ceil(-y0 / px).clip(0, size)
        hi_x, hi_y = np.floor((width - x0) / px).clip(0, size), np.floor((height - y0) / px).clip(0, size)
        partial = (lo_x > 0) | (lo_y > 0) | (hi_x < size) | (hi_y < size)
        for i in np.flatnonzero(partial & (hi_x > lo_x) & (hi_y > lo_y)):  # a centre off the slide: left white
            top, bottom, left, right = int(lo_y[i]), int(hi_y[i]), int(lo_x[i]), int(hi_x[i])
            out[i] = cv2.copyMakeBorder(np.ascontiguousarray(out[i, top:bottom, left:right]), top, size - bottom,
                                        left, size - right, cv2.BORDER_REFLECT_101)
        return out

    def read_regions(
        self, xs: Sequence[float], ys: Sequence[float], width: int, height: int, mpp: Mpp
    ) -> np.ndarray:
        """(N, height, width, 3) uint8: ``read_region(xs[i], ys[i], width, height, mpp)`` for each i.

        Nearby boxes (e.g. the crops of neighbouring cells) share one read of the file: boxes are grouped by
        blocks of ``GROUP_SOURCE_SIDE`` source pixels, each group's source pixels are read once, and each box
        is resampled from its own part of them just as ``read_region`` would, so the pixels are the same
        (OpenSlide alone may place a level with a fractional downsample up to half a level-0 pixel apart).
        Boxes too large to be read in one piece are read one by one.
        """
        source, downsample, scale = self._geometry(mpp)
        width, height = int(width), int(height)
        xs = np.asarray(xs, dtype=np.float64).reshape(-1)
        ys = np.asarray(ys, dtype=np.float64).reshape(-1)
        if width < 1 or height < 1:
            raise ValueError(f"region size must be positive, got {width}×{height}")
        out = np.empty((len(xs), height, width, 3), np.uint8)
        if len(xs) == 0:
            return out
        if max(width, height) > max(1, int(CHUNK_SOURCE_SIDE / max(scale, 1.0))):
            for i, (x, y) in enumerate(zip(xs, ys)):
                out[i] = self.read_region(x, y, width, height, mpp)
            return out
        margin = _margin(scale)
        level_x, level_y = xs / downsample, ys / downsample
        boxes = np.array(
            [(*source_box(lx, width, scale, margin), *source_box(ly, height, scale, margin))
             for lx, ly in zip(level_x, level_y)],
            dtype=np.int64,
        )  # x0, x1, y0, y1 per box
        group = np.unique(boxes[:, [0, 2]] // GROUP_SOURCE_SIDE, axis=0, return_inverse=True)[1].ravel()
        for members in np.split(np.argsort(group, kind="stable"), np.cumsum(np.bincount(group))[:-1]):
            gx0, gy0 = boxes[members, 0].min(), boxes[members, 2].min()
            gx1, gy1 = boxes[members, 1].max(), boxes[members, 3].max()
            src = self._read_padded(source, int(gx0), int(gy0), int(gx1 - gx0), int(gy1 - gy0))
            for i in members:
                x0, x1, y0, y1 = boxes[i]
                if _aligned(scale, level_x[i], level_y[i]):
                    top, left = int(level_y[i]) - gy0, int(level_x[i]) - gx0
                    out[i] = src[top : top + height, left : left + width]
                else:
                    part = src[y0 - gy0 : y1 - gy0, x0 - gx0 : x1 - gx0]
                    out[i] = resample(part, level_x[i] - x0, level_y[i] - y0, scale, width, height)
        return out

    def _geometry(self, mpp: Mpp | float, decode_smaller: bool = True) -> tuple[_Source, float, float]:
        """The pixels decoded for ``mpp``, their downsample from level 0, and their pixels per output pixel.

        The coarsest level not coarser than ``mpp``, decoded as small as the backend can without becoming
        coarser either, unless ``decode_smaller`` is False (a coarser level is always cheaper than a finer one
        decoded smaller: both decode every compressed byte of their area, and the finer level has more).
        """
        if self._closed:
            raise ValueError(f"{self.path}: slide is closed")
        target = mpp if isinstance(mpp, Mpp) else Mpp(mpp)
        level = best_level(self.level_downsamples, self.mpp.um_per_px, target.um_per_px)
        downsample = self.level_downsamples[level]
        scale = target.um_per_px / (self.mpp.um_per_px * downsample)
        reduction = best_reduction(self._reductions(level), scale) if decode_smaller else 1
        return _Source(level, reduction), downsample * reduction, scale / reduction

    def overview(self, max_side: int = 2048) -> tuple[np.ndarray, Mpp]:
        """The whole slide at the finest resolution whose longest side fits ``max_side``, and that resolution.

        Read from the smallest pyramid level that is at least that large; never enlarged beyond level 0. Its
        tiles are decoded whole and area-averaged, whatever the backend could do: the smear map's thresholds
        were set on such overviews (a DCT-scaled decode is a little sharper, and moved 0.4 % of a phantom's
        analysed area), and an overview is too small for decoding smaller to save time.
        """
        if max_side < 1:
            raise ValueError(f"max_side must be positive, got {max_side}")
        width, height = self.dimensions
        factor = max(1.0, max(width, height) / max_side)
        mpp = Mpp(self.mpp.um_per_px * factor)
        out_w = min(max_side, max(1, round(width / factor)))
        out_h = min(max_side, max(1, round(height / factor)))
        return self._read_region(0, 0, out_w, out_h, *self._geometry(mpp, decode_smaller=False)), mpp

    def _read_padded(self, source: _Source, x: int, y: int, width: int, height: int) -> np.ndarray:
        """Like :meth:`_read_level` for any box of ``source``: the part outside the level is white.

        A level decoded at 1/r is ``floor(side / r)`` pixels: a last pixel that would blend the level's edge
        with the file's padding beyond it is left out.
        """
        level_w, level_h = (max(1, side // source.reduction) for side in self.level_dimensions[source.level])
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + width, level_w), min(y + height, level_h)
        if (x0, y0, x1, y1) == (x, y, x + width, y + height):
            return self._read_checked(source, x, y, width, height)
        out = np.full((height, width, 3), 255, np.uint8)
        if x0 < x1 and y0 < y1:
            out[y0 - y : y1 - y, x0 - x : x1 - x] = self._read_checked(source, x0, y0, x1 - x0, y1 - y0)
        return out

    def _read_checked(self, source: _Source, x: int, y: int, width: int, height: int) -> np.ndarray:
        level, reduction = source
        try:
            if reduction == 1:
                return self._read_level(level, x, y, width, height)
            return self._read_reduced(level, reduction, x, y, width, height)
        except self._read_errors as err:
            at = f"level {level}" if reduction == 1 else f"level {level} decoded at 1/{reduction}"
            raise SlideError(
                self.path,
                f"cannot decode its pixels at {at} ({x}, {y}, {width}×{height}): {err}; "
                "the file is corrupt, truncated or uses an unsupported compression",
            ) from err
