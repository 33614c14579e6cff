"""Random sequential placement of discs that may touch but not overlap (beyond a tolerance).

Marrow films look the way they do because cells and red cells settle side by side: a monolayer is a
random packing, not a lattice. Placing discs one by one with a grid hash gives that packing in linear time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np


class DiscSet:
    """Accepted discs (pixels) with a grid hash; discs larger than a grid cell are checked exhaustively."""

    def __init__(self, cell: float) -> None:
        self.cell = float(cell)
        self.grid: dict[tuple[int, int], list[int]] = defaultdict(list)
        self.x: list[float] = []
        self.y: list[float] = []
        self.r: list[float] = []
        self.big: list[int] = []

    def __len__(self) -> int:
        return len(self.x)

    def fits(self, x: float, y: float, r: float, overlap: float = 0.0) -> bool:
        """True when a disc at (x, y) of radius r overlaps no accepted disc by more than ``overlap`` × the
        sum of radii (0: may only touch)."""
        keep = 1.0 - overlap
        for j in self.big:
            if (x - self.x[j]) ** 2 + (y - self.y[j]) ** 2 < ((r + self.r[j]) * keep) ** 2:
                return False
        reach = int(np.ceil((r + self.cell) / self.cell))
        gx, gy = int(x // self.cell), int(y // self.cell)
        for i in range(gx - reach, gx + reach + 1):
            for k in range(gy - reach, gy + reach + 1):
                for j in self.grid.get((i, k), ()):
                    if (x - self.x[j]) ** 2 + (y - self.y[j]) ** 2 < ((r + self.r[j]) * keep) ** 2:
                        return False
        return True

    def add(self, x: float, y: float, r: float) -> None:
        j = len(self.x)
        self.x.append(x)
        self.y.append(y)
        self.r.append(r)
        if r > self.cell:
            self.big.append(j)
        else:
            self.grid[(int(x // self.cell), int(y // self.cell))].append(j)


def fill(rng: np.random.Generator, sample: Callable, n: int, radius: Callable, obstacles: list[tuple[DiscSet, float]],
         own: DiscSet | None, overlap: float = 0.0, tries: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Place up to ``n`` discs at points from ``sample(k) -> (x, y)`` with radii ``radius(k)``.

    A candidate is kept when it fits in ``own`` (with ``overlap`` tolerance) and in every obstacle set
    (with that set's tolerance). Stops after ``tries × n`` candidates; returns kept x, y, r.
    """
    xs, ys, rs = [], [], []
    budget = tries * n
    while len(xs) < n and budget > 0:
        k = min(budget, max(64, 2 * (n - len(xs))))
        budget -= k
        cx, cy = sample(k)
        cr = radius(k)
        for x, y, r in zip(cx.tolist(), cy.tolist(), cr.tolist()):
            if own is not None and not own.fits(x, y, r, overlap):
                continue
            if not all(s.fits(x, y, r, tol) for s, tol in obstacles):
                continue
            if own is not None:
                own.add(x, y, r)
            xs.append(x)
            ys.append(y)
            rs.append(r)
            if len(xs) >= n:
                break
    return np.array(xs), np.array(ys), np.array(rs)
