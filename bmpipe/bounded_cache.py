"""A least-recently-used cache bounded by the bytes its values hold, safe to share between threads."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class BoundedCache(Generic[V]):
    """Values by key, the least recently used dropped once they hold more than ``max_bytes`` (the newest is
    always kept). ``size`` gives a value's bytes."""

    def __init__(self, max_bytes: int, size: Callable[[V], int]) -> None:
        self.max_bytes = max_bytes
        self._size = size
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get_or_make(self, key: Hashable, make: Callable[[], V]) -> V:
        """The value cached under ``key``, or ``make()``'s, kept.

        ``make`` runs outside the lock, so threads never wait on each other's work; two threads missing the
        same key at once both make it, and the first value kept is the one both get back.
        """
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        value = make()
        with self._lock:
            kept = self._items.setdefault(key, value)
            if kept is value:
                self._bytes += self._size(value)
                while self._bytes > self.max_bytes and len(self._items) > 1:
                    self._bytes -= self._size(self._items.popitem(last=False)[1])
            else:
                self._items.move_to_end(key)
        return kept

    def __len__(self) -> int:
        return len(self._items)
