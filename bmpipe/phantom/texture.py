"""Random fields at a physical scale, so textures look the same whatever the pixel size.

A texture is blurred white noise whose correlation length is given in micrometres. When that length is
below a pixel the detail would be averaged away by the sensor, so the field is attenuated instead of
aliased: a granular nucleus rendered at 0.25 µm/px is smoother than at 0.1 µm/px, as in a real scan.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Smallest blur (pixels) a texture keeps: below it the field would be per-pixel noise.
MIN_SIGMA_PX = 0.7


def blur(img: np.ndarray, sigma_px: float | tuple[float, float]) -> np.ndarray:
    """Gaussian blur (float32) with sigma in pixels; a no-op for negligible sigma."""
    sx, sy = (sigma_px, sigma_px) if np.isscalar(sigma_px) else sigma_px
    if max(sx, sy) < 0.3:
        return img
    return cv2.GaussianBlur(img, (0, 0), sigmaX=max(sx, 0.01), sigmaY=max(sy, 0.01),
                            borderType=cv2.BORDER_REFLECT)


def field(rng: np.random.Generator, shape: tuple[int, int], sigma_um: float | tuple[float, float],
          um_per_px: float) -> np.ndarray:
    """Zero-mean, roughly unit-variance noise with correlation length ``sigma_um`` (or (x, y) lengths)."""
    sx, sy = (sigma_um, sigma_um) if np.isscalar(sigma_um) else sigma_um
    px, py = sx / um_per_px, sy / um_per_px
    white = rng.standard_normal(shape, dtype=np.float32)
    kx, ky = max(px, MIN_SIGMA_PX), max(py, MIN_SIGMA_PX)
    out = blur(white, (kx, ky))
    # Blurred unit white noise has std 1 / (2 sqrt(pi) sqrt(kx ky)); restore unit variance, then damp the
    # detail a coarse pixel would have averaged.
    gain = 2.0 * np.sqrt(np.pi * kx * ky) * min(1.0, px / MIN_SIGMA_PX) ** 0.5 * min(1.0, py / MIN_SIGMA_PX) ** 0.5
    return out * np.float32(gain)


def splat(shape: tuple[int, int], ys: np.ndarray, xs: np.ndarray, weights: np.ndarray, size_um: float,
          um_per_px: float) -> np.ndarray:
    """Round blobs of diameter ``size_um`` at sub-pixel points; ``weights`` is each blob's peak density at
    full resolution. The integrated density is kept, so coarse pixels show fainter, wider granules."""
    h, w = shape
    iy = np.clip(np.rint(ys).astype(np.int64), 0, h - 1)
    ix = np.clip(np.rint(xs).astype(np.int64), 0, w - 1)
    acc = np.bincount(iy * w + ix, weights=weights, minlength=h * w).astype(np.float32).reshape(h, w)
    sigma = size_um / 2.5 / um_per_px
    kernel = max(sigma, MIN_SIGMA_PX)
    return blur(acc, kernel) * np.float32(2.0 * np.pi * sigma * sigma)
