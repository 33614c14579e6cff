"""Reading a slide ahead of the models, on worker threads that each hold their own slide handle.

Decoding (JPEG, in C) and resampling (OpenCV) release the GIL, so a couple of threads keep tiles and crops
ready while the models run in the calling thread. A handle is never shared between threads nor pickled: each
worker reopens the file once (``Slide.reopen``) and all handles are closed with the pool.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

from bmpipe.slide import Slide

if TYPE_CHECKING:
    from typing_extensions import Self

T = TypeVar("T")
R = TypeVar("R")

#: Reader threads by default: enough to hide decoding behind the models on a 2-core machine.
DEFAULT_WORKERS = 2
#: Niceness added to reader threads (Linux schedules threads separately): the models' threads, whose
#: parallel regions all wait for the slowest one, then never queue behind a decode; readers use idle time.
READER_NICENESS = 5


def _lower_priority() -> None:
    try:
        niceness = os.getpriority(os.PRIO_PROCESS, 0) + READER_NICENESS
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError):  # not Linux, or not allowed: readers keep the process's priority
        pass


class SlideReaders:
    """A pool of reader threads for one slide; use as a context manager."""

    def __init__(self, slide: Slide, workers: int = DEFAULT_WORKERS) -> None:
        if workers < 1:
            raise ValueError(f"need at least one reader thread, got {workers}")
        self._slide = slide
        self._local = threading.local()
        self._handles: list[Slide] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(
            workers, thread_name_prefix=f"read-{slide.id}", initializer=_lower_priority
        )

    def _handle(self) -> Slide:
        handle = getattr(self._local, "slide", None)
        if handle is None:
            handle = self._slide.reopen()
            self._local.slide = handle
            with self._lock:
                self._handles.append(handle)
        return handle

    def submit(self, fn: Callable[..., R], *args: object) -> Future[R]:
        """Run ``fn(slide_handle, *args)`` on a reader thread."""
        return self._pool.submit(lambda: fn(self._handle(), *args))

    def map_ahead(self, fn: Callable[[Slide, T], R], items: Iterable[T], depth: int) -> Iterator[R]:
        """``fn(handle, item)`` for each item, in order, with at most ``depth`` reads in flight or waiting."""
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(self.submit(fn, item))
            if len(pending) >= depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for handle in self._handles:
                handle.close()
            self._handles.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
