"""Training crops that stay on disk until a batch asks for them: memory flat in the number of images.

Matek 2021's 171,374 marrow cells would take 8.4 GB as stored crops, so class folders given to the trainer
are kept as file paths and read (and resampled to the classifier's µm/px) a batch at a time, while the small
sets the recipe renders or cuts from fields (phantom cells, SegPC plasma cells) stay in memory beside them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bmpipe.errors import InputError
from bmpipe.imaging.image_files import read_rgb
from bmpipe.nn.cell_classifier import crop_centred, resample
from bmpipe.resolution import Mpp

log = logging.getLogger(__name__)


def stored_crop(path: str, mpp: Mpp, size: int) -> np.ndarray:
    """The ``size``-px square at the centre of a single-cell image brought to the classifier's µm/px."""
    image = resample(read_rgb(path), mpp)
    return crop_centred(image, (image.shape[1] - 1) / 2, (image.shape[0] - 1) / 2, size)


@dataclass(frozen=True)
class ImageFiles:
    """Single-cell image files and each one's µm/px, read only when :meth:`read` is called."""

    paths: np.ndarray  # object: str
    mpps: np.ndarray  # float64 µm/px
    size: int

    def read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Crops of ``rows`` and which of them could be read (an unreadable file is logged and skipped)."""
        out = np.zeros((len(rows), self.size, self.size, 3), np.uint8)
        ok = np.ones(len(rows), bool)
        for i, r in enumerate(rows):
            try:
                out[i] = stored_crop(self.paths[r], Mpp(float(self.mpps[r])), self.size)
            except InputError as exc:
                log.error("%s; skipped", exc)
                ok[i] = False
        return out, ok


@dataclass(frozen=True)
class LazyCrops:
    """The stored crops of a crop set whose rows live in several places: in-memory arrays and image files.

    Row ``i`` is row ``row[i]`` of ``parts[part[i]]``. Taking a subset or joining sets moves only these two
    index arrays; pixels are read by :meth:`read`.
    """

    parts: tuple[np.ndarray | ImageFiles, ...]
    part: np.ndarray  # int32
    row: np.ndarray  # int64

    @staticmethod
    def of(source: np.ndarray | ImageFiles, n: int | None = None) -> LazyCrops:
        n = len(source) if isinstance(source, np.ndarray) else len(source.paths) if n is None else n
        return LazyCrops((source,), np.zeros(n, np.int32), np.arange(n, dtype=np.int64))

    @staticmethod
    def join(items: Sequence[np.ndarray | LazyCrops]) -> LazyCrops:
        lazy = [item if isinstance(item, LazyCrops) else LazyCrops.of(item) for item in items]
        parts, part, row = [], [], []
        for item in lazy:
            part.append(item.part + len(parts))
            row.append(item.row)
            parts.extend(item.parts)
        return LazyCrops(tuple(parts), np.concatenate(part), np.concatenate(row))

    def __len__(self) -> int:
        return len(self.part)

    def __getitem__(self, index: np.ndarray | slice) -> LazyCrops:
        return LazyCrops(self.parts, self.part[index], self.row[index])

    @property
    def in_memory(self) -> bool:
        return all(isinstance(p, np.ndarray) for p in self.parts)

    def read(self, index: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Crops of ``index`` (default all) and which could be read; unreadable rows are zeros."""
        index = np.arange(len(self)) if index is None else np.asarray(index)
        part, row = self.part[index], self.row[index]
        first = self.parts[0]
        size = first.shape[1] if isinstance(first, np.ndarray) else first.size
        out = np.zeros((len(index), size, size, 3), np.uint8)
        ok = np.ones(len(index), bool)
        for k in np.unique(part):
            mine = np.flatnonzero(part == k)
            source = self.parts[k]
            if isinstance(source, np.ndarray):
                out[mine] = source[row[mine]]
            else:
                out[mine], ok[mine] = source.read(row[mine])
        return out, ok
