"""Soft shapes on a micrometre grid: cell outlines, nuclear lobes, strands and discs.

Every shape returns a coverage in [0, 1] with a one-pixel soft edge, so ``coverage >= 0.5`` is the binary
mask and the drawn image has no jagged borders at any resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Samples of an outline's radius function r(theta).
N_THETA = 512
THETA = np.linspace(-np.pi, np.pi, N_THETA, endpoint=False)


def soft(signed_um: np.ndarray, edge_um: float) -> np.ndarray:
    """Coverage from a signed distance (positive inside)."""
    return np.clip(signed_um / edge_um + 0.5, 0.0, 1.0).astype(np.float32)


def periodic_lookup(lut: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """A function sampled at :data:`THETA` (period 2π), linearly interpolated at angles ``theta``.

    Cheaper than summing cosines per pixel or ``np.interp(period=...)`` (which sorts on every call)."""
    n = len(lut)
    pos = (theta + np.pi) * np.float32(n / (2 * np.pi))
    i = np.floor(pos)
    f = (pos - i).astype(np.float32)
    i = i.astype(np.int64) % n
    lut = np.asarray(lut, np.float32)
    return lut[i] * (1 - f) + lut[(i + 1) % n] * f


def wobble(theta: np.ndarray, harmonics: np.ndarray) -> np.ndarray:
    """1 + sum of a_k cos(k theta + phi_k) over rows (k, a_k, phi_k) of ``harmonics``."""
    out = np.ones_like(theta)
    for k, amp, phase in harmonics:
        out = out + amp * np.cos(k * theta + phase)
    return out


def random_harmonics(rng: np.random.Generator, low: float, high: float = 0.0,
                     high_k: tuple[int, int] = (9, 16)) -> np.ndarray:
    """Outline wobble: orders 2-5 with total amplitude ~``low``; optional fine ruffles of order ``high_k``."""
    rows = [(k, low * rng.uniform(0.3, 1.0) / (k - 1), rng.uniform(0, 2 * np.pi)) for k in range(2, 6)]
    if high > 0:
        rows += [(k, high * rng.uniform(0.3, 1.0), rng.uniform(0, 2 * np.pi))
                 for k in rng.choice(np.arange(*high_k), size=3, replace=False)]
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


@dataclass(frozen=True)
class Lobe:
    """Ellipse (semi-axes ``a``, ``b``, rotated by ``angle``) with a wobbly rim: a nucleus or a lobe."""

    cx: float
    cy: float
    a: float
    b: float
    angle: float
    harmonics: np.ndarray

    def coverage(self, x: np.ndarray, y: np.ndarray, edge: float) -> np.ndarray:
        c, s = np.cos(self.angle), np.sin(self.angle)
        dx, dy = x - self.cx, y - self.cy
        u, v = (dx * c + dy * s) / self.a, (-dx * s + dy * c) / self.b
        phi = np.arctan2(v, u)
        rho = np.sqrt(u * u + v * v) / periodic_lookup(wobble(THETA, self.harmonics), phi)
        rim = self.a * self.b / np.sqrt((self.b * np.cos(phi)) ** 2 + (self.a * np.sin(phi)) ** 2)
        return soft((1.0 - rho) * rim, edge)

    def rim_points(self, n: int = 48) -> np.ndarray:
        t = np.linspace(-np.pi, np.pi, n, endpoint=False)
        w = wobble(t, self.harmonics)
        u, v = self.a * np.cos(t) * w, self.b * np.sin(t) * w
        c, s = np.cos(self.angle), np.sin(self.angle)
        return np.stack([self.cx + u * c - v * s, self.cy + u * s + v * c], axis=1)

    def bounds(self) -> tuple[float, float, float, float]:
        reach = max(self.a, self.b) * (1.0 + float(np.abs(self.harmonics[:, 1]).sum()))
        return self.cx - reach, self.cy - reach, self.cx + reach, self.cy + reach

    def scaled(self, f: float) -> Lobe:
        return Lobe(self.cx * f, self.cy * f, self.a * f, self.b * f, self.angle, self.harmonics)


@dataclass(frozen=True)
class Tube:
    """A polyline swept by a disc whose radius varies linearly between vertices: bands and strands."""

    points: np.ndarray  # (n, 2) µm
    radii: np.ndarray  # (n,)

    def coverage(self, x: np.ndarray, y: np.ndarray, edge: float) -> np.ndarray:
        best = np.full(x.shape, -np.inf, dtype=np.float32)
        for (p, q), (r0, r1) in zip(zip(self.points[:-1], self.points[1:]), zip(self.radii[:-1], self.radii[1:])):
            d = q - p
            t = np.clip(((x - p[0]) * d[0] + (y - p[1]) * d[1]) / max(d @ d, 1e-9), 0.0, 1.0)
            dist = np.hypot(x - p[0] - t * d[0], y - p[1] - t * d[1])
            best = np.maximum(best, (r0 + (r1 - r0) * t) - dist)
        return soft(best, edge)

    def rim_points(self) -> np.ndarray:
        ring = np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], axis=1)
        return (self.points[:, None, :] + self.radii[:, None, None] * ring[None]).reshape(-1, 2)

    def bounds(self) -> tuple[float, float, float, float]:
        r = float(self.radii.max())
        (x0, y0), (x1, y1) = self.points.min(axis=0), self.points.max(axis=0)
        return x0 - r, y0 - r, x1 + r, y1 + r

    def scaled(self, f: float) -> Tube:
        return Tube(self.points * f, self.radii * f)


@dataclass(frozen=True)
class Disc:
    """A round patch: nucleolus, vacuole, Golgi zone, or a notch cut out of a nucleus."""

    cx: float
    cy: float
    r: float

    def coverage(self, x: np.ndarray, y: np.ndarray, edge: float) -> np.ndarray:
        return soft(self.r - np.hypot(x - self.cx, y - self.cy), edge)

    def bounds(self) -> tuple[float, float, float, float]:
        return self.cx - self.r, self.cy - self.r, self.cx + self.r, self.cy + self.r

    def scaled(self, f: float) -> Disc:
        return Disc(self.cx * f, self.cy * f, self.r * f)


def window(part, x: np.ndarray, y: np.ndarray, edge: float) -> tuple[slice, slice] | None:
    """Rows/columns of the grid (1-D coordinate vectors ``x`` (1, w), ``y`` (h, 1)) that ``part`` can cover."""
    x0, y0, x1, y1 = part.bounds()
    xs, ys = x[0], y[:, 0]
    c = np.searchsorted(xs, [x0 - 2 * edge, x1 + 2 * edge])
    r = np.searchsorted(ys, [y0 - 2 * edge, y1 + 2 * edge])
    if c[0] >= c[1] or r[0] >= r[1]:
        return None
    return slice(int(r[0]), int(r[1])), slice(int(c[0]), int(c[1]))


def paint_max(target: np.ndarray, part, x: np.ndarray, y: np.ndarray, edge: float) -> None:
    """target = max(target, coverage of part), evaluated only where the part can reach."""
    win = window(part, x, y, edge)
    if win is not None:
        rs, cs = win
        np.maximum(target[rs, cs], part.coverage(x[:, cs], y[rs, :], edge), out=target[rs, cs])


def coverage_in(shape: tuple[int, int], part, x: np.ndarray, y: np.ndarray, edge: float) -> np.ndarray:
    """Full-grid coverage of ``part``, computed only inside its window."""
    out = np.zeros(shape, np.float32)
    paint_max(out, part, x, y, edge)
    return out
