"""Batches handed to the models, and where a stage's time goes.

A batch is stacked into one reused buffer instead of a fresh array per batch. When CUDA is present the
buffer is page-locked (pinned), so the models' host-to-device copies run by DMA and, with
``non_blocking=True``, overlap the work queued before them; the buffer is refilled only after the model
call returns, by which time its results have been copied back and the transfer is complete.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch


class BatchBuffer:
    """A growing uint8 buffer that batches of same-shaped images are stacked into; batches of another shape
    reuse the same memory, so it is allocated (and pinned) only when a batch outgrows it."""

    def __init__(self, pinned: bool | None = None) -> None:
        self.pinned = torch.cuda.is_available() if pinned is None else pinned
        self._buffer = np.empty(0, np.uint8)

    def stack(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(N, *image shape) uint8 view of the buffer holding ``images`` (a list of arrays or batches of them);
        valid until the next call."""
        parts = [im[None] if im.ndim == 3 else im for im in images]
        if len(parts) == 1 and not self.pinned:  # already one batch, and no pinned copy to make
            return np.ascontiguousarray(parts[0], dtype=np.uint8)
        shape = (sum(len(p) for p in parts), *parts[0].shape[1:])
        size = math.prod(shape)
        if len(self._buffer) < size:
            self._buffer = self._allocate(size)
        out = self._buffer[:size].reshape(shape)
        np.concatenate(parts, axis=0, out=out)
        return out

    def _allocate(self, size: int) -> np.ndarray:
        if self.pinned:
            return torch.empty(size, dtype=torch.uint8, pin_memory=True).numpy()
        return np.empty(size, np.uint8)


class StageClock:
    """Seconds spent per named step, summed over a run (``with clock("detector"): ...``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] += time.perf_counter() - start
