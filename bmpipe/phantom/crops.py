"""Fast single-cell crops for classifier training, including the classes no public image set has.

A crop is a tiny scene drawn straight into an array: the cell in the middle, red cells packed around it,
sometimes a platelet, and bits of neighbouring cells at the border (reused drawings of earlier crops, so
they cost nothing). Each crop has its own stain, focus and film.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from bmpipe.phantom.background import (
    BLUR_LEVELS_UM,
    N_NORMAL,
    PERIOD,
    RBC_DIAMETER_UM,
    Textures,
    blur_level,
    platelet_specs,
    rbc_bank,
)
from bmpipe.phantom.cell import draw_cell, plan_cell
from bmpipe.phantom.composition import dysplasia_for
from bmpipe.phantom.morphology import MORPHOLOGY
from bmpipe.phantom.palette import Stain
from bmpipe.phantom.placement import DiscSet, fill
from bmpipe.phantom.scene import paste
from bmpipe.phantom.texture import blur
from bmpipe.resolution import Mpp

#: The classifier's resolution (0.25 µm/px: a 96 px crop is 24 µm, one large cell and its surroundings).
CROP_MPP = Mpp(0.25)
#: Codes drawn by default: every class with a morphology, except platelets (the detector does not
#: propose them as cells).
DEFAULT_CODES = tuple(c for c in MORPHOLOGY if c != "PLT")
#: Matek's NIF ("not identifiable") has no look of its own: a phantom NIF is a cell of another class drawn so far
#: out of focus (Gaussian sigma, µm, over the whole crop) that no hematologist would name it.
NIF_CODE = "NIF"
NIF_DEFOCUS_UM = (0.9, 1.8)
#: Share of eligible cells made dysplastic in crops (higher than in a marrow, so the classifier sees them).
CROP_DYSPLASIA_RATE = 0.3
#: Neighbour drawings kept for reuse, and how many neighbours a crop gets (0-2).
NEIGHBOUR_POOL = 32


def cell_crops(n_per_code: dict[str, int] | int, seed: int, mpp: Mpp = CROP_MPP, size_px: int = 96,
               codes: tuple[str, ...] | list[str] | None = None,
               dysplasia_rate: float = CROP_DYSPLASIA_RATE) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """``(images uint8 [N, size, size, 3], codes, dysplasia_grades int [N], dysplastic bool [N])``.

    ``n_per_code`` is a count per code, or one count for every code of ``codes`` (default
    :data:`DEFAULT_CODES`; :data:`NIF_CODE` may be asked for too). Crops come in code order, each centred on
    its cell (±2 px).
    """
    if isinstance(n_per_code, int):
        plan = {c: n_per_code for c in (codes or DEFAULT_CODES)}
    else:
        plan = dict(n_per_code)
    rng = np.random.default_rng([seed, 3])
    textures = Textures.make(seed, mpp)
    u = mpp.um_per_px
    bank = rbc_bank(u)
    r_rbc = np.mean(RBC_DIAMETER_UM) / 2 / u
    platelets = platelet_specs()
    pool: deque = deque(maxlen=NEIGHBOUR_POOL)
    platelet_sprites: dict = {}
    total = sum(plan.values())
    images = np.empty((total, size_px, size_px, 3), np.uint8)
    out_codes: list[str] = []
    grades = np.empty(total, np.int64)
    dysplastic = np.empty(total, bool)
    k = 0
    for code, count in plan.items():
        for _ in range(count):
            drawn = DEFAULT_CODES[int(rng.integers(len(DEFAULT_CODES)))] if code == NIF_CODE else code
            grade, flag, variant = dysplasia_for(drawn, rng, dysplasia_rate)
            if code == NIF_CODE:
                grade, flag, variant = -1, False, ""
            spec = plan_cell(drawn, rng, variant=variant or None, grade=grade, spread=rng.uniform(0.95, 1.1))
            blur_um = float(rng.uniform(0.0, 0.25))
            sprite = draw_cell(spec, mpp, blur_um)
            c = size_px // 2 + rng.integers(-2, 3, 2)
            density = np.full((size_px, size_px), rng.uniform(0.3, 2.5), np.float32)
            tx, ty = rng.integers(0, PERIOD - size_px, 2)  # a window of the textures that does not wrap
            od = textures.film_od(density, int(tx), int(ty))
            taken = DiscSet(cell=2 * r_rbc)
            taken.add(float(c[0]), float(c[1]), float(spec.radius_lut.max()) / u)
            for nb in list(pool)[: int(rng.integers(0, 3))] if pool else []:
                t = rng.uniform(0, 2 * np.pi)
                d = taken.r[0] + nb[1] + rng.uniform(0.0, 2.0) / u
                nx, ny = c[0] + d * np.cos(t), c[1] + d * np.sin(t)
                taken.add(nx, ny, nb[1])
                paste(od, nb[0].od, int(nx) + nb[0].ox, int(ny) + nb[0].oy)
            pool.appendleft((sprite, float(spec.radius_lut.max()) / u))
            rng.shuffle(pool)
            xs, ys, _ = fill(rng, lambda n: (rng.uniform(-r_rbc, size_px + r_rbc, n),
                                             rng.uniform(-r_rbc, size_px + r_rbc, n)),
                             int(rng.uniform(0.3, 0.7) * (size_px + 2 * r_rbc) ** 2 / (np.pi * r_rbc ** 2)),
                             lambda n: np.full(n, r_rbc), [(taken, 0.1)], DiscSet(cell=2 * r_rbc), overlap=0.12)
            level = int(blur_level(blur_um))
            for x, y, v in zip(xs, ys, rng.integers(0, N_NORMAL, len(xs))):
                paste(od, bank.sprites[level][v], int(x) - bank.half, int(y) - bank.half)
            if rng.random() < 0.3:
                key = (int(rng.integers(len(platelets))), level)
                if key not in platelet_sprites:
                    platelet_sprites[key] = draw_cell(platelets[key[0]], mpp, BLUR_LEVELS_UM[level])
                p = platelet_sprites[key]
                px, py = rng.uniform(0, size_px, 2)
                if taken.fits(px, py, 2.0 / u):
                    paste(od, p.od, int(px) + p.ox, int(py) + p.oy)
            paste(od, sprite.od, int(c[0]) + sprite.ox, int(c[1]) + sprite.oy)
            if code == NIF_CODE:
                od = blur(od, rng.uniform(*NIF_DEFOCUS_UM) / u)
            noise = Textures.window(textures.noise, int(tx), int(ty), size_px, size_px)
            images[k] = Stain.sample(rng).to_rgb(od, noise)
            out_codes.append(code)
            grades[k], dysplastic[k] = spec.grade, flag
            k += 1
    return images, out_codes, grades, dysplastic
