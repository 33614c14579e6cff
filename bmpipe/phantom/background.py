"""Everything around the nucleated cells: red cells, the dried plasma film, defocus and sensor noise.

Red cells are the most numerous objects (10^4-10^5 per slide), so they are drawn once into a bank of
variants per resolution (contiguous arrays: pasting a rotated view would be ~10× slower); a slide stores
only each red cell's bank index. Platelets, next in number, likewise come from a small bank of plans. The film and the sensor noise come from periodic textures indexed by absolute position, so a
pixel has the same value whichever tile or field asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from bmpipe.phantom.cell import CellSpec, plan_cell
from bmpipe.phantom.geometry import random_harmonics, soft, wobble
from bmpipe.phantom.palette import OD, compose
from bmpipe.phantom.texture import MIN_SIGMA_PX, blur
from bmpipe.resolution import Mpp

#: Red-cell diameter on a smear (µm): 7.3 µm measured on PBC at 0.1 µm/px (median of isolated cells), the
#: textbook 7-8 µm range.
RBC_DIAMETER_UM = (7.0, 8.2)
#: Bank sizes: ordinary (biconcave, some crenated) and flattened feathered-edge red cells.
N_NORMAL, N_FLAT = 96, 24
#: Platelet plans in the shared bank.
N_PLATELETS = 64
#: Defocus levels the bank is drawn at (Gaussian sigma, µm); a red cell takes the nearest.
BLUR_LEVELS_UM = (0.0, 0.1, 0.2, 0.3)
#: Period of the position-indexed textures (pixels).
PERIOD = 1024


def draw_rbc(rng: np.random.Generator, mpp: Mpp, flat: bool, blur_um: float, half: int) -> np.ndarray:
    """OD of one red cell centred in a (2·half+1)² square: a pale central disc inside a denser rim
    (biconcave), or an even, larger, paler disc when ``flat`` (the feathered edge has no pallor)."""
    u = mpp.um_per_px
    d = rng.uniform(*RBC_DIAMETER_UM) * (rng.uniform(1.08, 1.2) if flat else 1.0)
    crenated = (not flat) and rng.random() < 0.06  # a few echinocytes (drying artefact)
    harmonics = random_harmonics(rng, 0.02, 0.025 if crenated else 0.0, (10, 15))
    aspect = rng.uniform(1.0, 1.1)
    angle = rng.uniform(0, np.pi)
    coords = (np.arange(2 * half + 1, dtype=np.float32) - half) * u
    x, y = coords[None, :], coords[:, None]
    r, th = np.hypot(x, y), np.arctan2(y, x)
    t = th - angle
    ell = 1.0 / np.sqrt((np.cos(t) * np.sqrt(aspect)) ** 2 + (np.sin(t) / np.sqrt(aspect)) ** 2)
    rim = (d / 2) * ell * wobble(th, harmonics)
    rho = r / rim
    pallor = rng.uniform(0.05, 0.15) if flat else rng.uniform(0.3, 0.6)
    size = rng.uniform(0.38, 0.5)
    thickness = 1.0 - pallor * np.exp(-((rho / size) ** 4)) + 0.08 * np.exp(-(((rho - 0.8) / 0.12) ** 2))
    cover = soft(rim - r, max(0.8 * u, 0.2))
    gain = rng.uniform(0.9, 1.1) * (0.8 if flat else 1.0)
    od = (cover * thickness * gain)[..., None] * OD["rbc"]
    return blur(od.astype(np.float32), blur_um / u) if blur_um > 0 else od.astype(np.float32)


@dataclass(frozen=True)
class RbcBank:
    """Red-cell sprites at one resolution: ``sprites[level][variant]``, all (2·half+1)² and centred."""

    half: int
    sprites: tuple[tuple[np.ndarray, ...], ...]

    @property
    def n_variants(self) -> int:
        return len(self.sprites[0])


@lru_cache(maxsize=4)
def rbc_bank(um_per_px: float) -> RbcBank:
    """The bank for ``um_per_px`` (fixed seed: the same everywhere, so slides are reproducible)."""
    mpp = Mpp(um_per_px)
    half = int(np.ceil((RBC_DIAMETER_UM[1] * 1.25 / 2 + 3 * BLUR_LEVELS_UM[-1]) / um_per_px)) + 1
    levels = []
    for blur_um in BLUR_LEVELS_UM:
        rng = np.random.default_rng(20210917)  # same shapes at every blur level
        levels.append(tuple(draw_rbc(rng, mpp, i >= N_NORMAL, blur_um, half) for i in range(N_NORMAL + N_FLAT)))
    return RbcBank(half, tuple(levels))


@lru_cache(maxsize=1)
def platelet_specs() -> tuple[CellSpec, ...]:
    """A fixed bank of platelet plans: thousands of platelets per slide share these drawings."""
    rng = np.random.default_rng(20200414)
    return tuple(plan_cell("PLT", rng) for _ in range(N_PLATELETS))


def blur_level(blur_um: np.ndarray) -> np.ndarray:
    """Index of the nearest bank blur level."""
    return np.abs(np.asarray(blur_um)[..., None] - np.array(BLUR_LEVELS_UM)).argmin(axis=-1)


def _periodic_blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur on a torus (FFT), so the texture tiles seamlessly."""
    fy = np.fft.fftfreq(img.shape[0])[:, None]
    fx = np.fft.rfftfreq(img.shape[1])[None, :]
    kernel = np.exp(-2 * (np.pi * sigma_px) ** 2 * (fx * fx + fy * fy))
    return np.fft.irfft2(np.fft.rfft2(img) * kernel, s=img.shape).astype(np.float32)


@dataclass(frozen=True)
class Textures:
    """Position-indexed periodic textures of one slide/field set: film mottling, protein specks, noise."""

    mottle: np.ndarray  # (P, P) ~N(0, 1), slow variation of film thickness
    specks: np.ndarray  # (P, P) >= 0, small blue specks on the film
    noise: np.ndarray  # (P, P, 3) ~N(0, 1) sensor noise

    @classmethod
    def make(cls, seed: int, mpp: Mpp) -> Textures:
        rng = np.random.default_rng([seed, 7])
        u = mpp.um_per_px
        p = PERIOD
        mottle = _periodic_blur(rng.standard_normal((p, p)), 6.0 / u)
        mottle /= mottle.std() + 1e-9
        acc = np.zeros((p, p))
        n = rng.poisson(0.012 * (p * u) ** 2)  # specks per µm² of film
        np.add.at(acc, (rng.integers(0, p, n), rng.integers(0, p, n)), rng.uniform(0.3, 1.0, n))
        sigma = max(0.25 / u, MIN_SIGMA_PX)
        specks = _periodic_blur(acc, sigma) * (2 * np.pi * (0.25 / u) ** 2)
        noise = rng.standard_normal((p, p, 3), dtype=np.float32)
        return cls(mottle.astype(np.float32), specks.astype(np.float32), noise)

    @staticmethod
    def window(tex: np.ndarray, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        """``tex`` at absolute pixels [y0, y0+h) × [x0, x0+w), wrapping around the period."""
        p = tex.shape[0]
        xs, ys = x0 % p, y0 % p
        if xs + w <= p and ys + h <= p:
            return tex[ys:ys + h, xs:xs + w]
        return tex.take(np.arange(y0, y0 + h), axis=0, mode="wrap").take(np.arange(x0, x0 + w), axis=1, mode="wrap")

    def film_od(self, density: np.ndarray, x0: int, y0: int) -> np.ndarray:
        """OD of the dried plasma film where its relative thickness is ``density`` (h, w)."""
        h, w = density.shape
        if not density.any():  # bare glass
            return np.zeros((h, w, 3), np.float32)
        mottle = 1.0 + 0.25 * self.window(self.mottle, x0, y0, w, h)
        specks = self.window(self.specks, x0, y0, w, h)
        return compose([(density * mottle, OD["plasma_film"]), (density * specks, OD["film_speckle"])])

