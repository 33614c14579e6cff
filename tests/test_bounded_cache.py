"""The byte-bounded LRU cache that decoded slide tiles and drawn phantom cells share."""

from __future__ import annotations

import numpy as np

from bmpipe.bounded_cache import BoundedCache


def test_least_recently_used_values_go_first_once_over_the_bound():
    cache: BoundedCache[np.ndarray] = BoundedCache(300, lambda a: a.nbytes)
    made = []

    def make(key: str, nbytes: int = 100):
        return lambda: made.append(key) or np.zeros(nbytes, np.uint8)

    for key in "abc":
        cache.get_or_make(key, make(key))
    cache.get_or_make("a", make("a"))  # a hit: "a" is now the most recently used
    cache.get_or_make("d", make("d"))  # 400 bytes: "b", the least recently used, goes
    assert made == ["a", "b", "c", "d"] and len(cache) == 3
    cache.get_or_make("b", make("b"))
    cache.get_or_make("a", make("a"))
    assert made == ["a", "b", "c", "d", "b"]  # "c" went for "b"; "a" stayed
    cache.get_or_make("huge", make("huge", 1000))  # over the bound alone: kept, everything else goes
    assert len(cache) == 1


def test_a_value_made_twice_at_once_is_kept_once():
    """Two threads missing one key both make it; both get the first one kept, counted once."""
    cache: BoundedCache[np.ndarray] = BoundedCache(250, lambda a: a.nbytes)
    first = np.zeros(100, np.uint8)

    def racing():  # another thread keeps its value while this one is still making
        cache.get_or_make("k", lambda: first)
        return np.ones(100, np.uint8)

    assert cache.get_or_make("k", racing) is first
    cache.get_or_make("x", lambda: np.zeros(100, np.uint8))
    assert len(cache) == 2  # 200 bytes counted, not 300: nothing was dropped
