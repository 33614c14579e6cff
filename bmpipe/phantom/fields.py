"""Monolayer fields with instance masks and YOLO labels: training and test data for the cell detector.

Labelling rule: every nucleated object is class 0, including smudge cells (KSC) and megakaryocytes,
because they are nucleated-cell remnants or nucleated cells that the detector must find and the
classifier then sorts out (KSC and MGK are outside the differential's denominator, so counting them is the
classifier's decision, not the detector's). Red cells and platelets are never labelled.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import cv2
import numpy as np
import yaml
from scipy import ndimage

from bmpipe.phantom.background import (
    BLUR_LEVELS_UM,
    N_NORMAL,
    RBC_DIAMETER_UM,
    Textures,
    blur_level,
    platelet_specs,
    rbc_bank,
)
from bmpipe.phantom.cell import SLIDE_MPP, plan_cell
from bmpipe.phantom.composition import NORMAL_DIFFERENTIAL, dysplasia_for
from bmpipe.phantom.palette import Stain
from bmpipe.phantom.placement import DiscSet, fill
from bmpipe.phantom.scene import PlacedCell, Scene
from bmpipe.resolution import Mpp
from bmpipe.taxonomy import load_taxonomy

log = logging.getLogger(__name__)

#: Columns of ``cells/field_XXXX.csv``.
CSV_COLUMNS = ("id", "x", "y", "x0", "y0", "x1", "y1", "code", "lineage", "dysplasia_grade", "variant",
               "dysplastic")
#: Nucleated cells per field, and the chance that a cell is put against an earlier one (touching).
CELLS_PER_FIELD = (3, 15)
TOUCHING = 0.3
#: Dysplasia is enriched in fields (vs. a slide) so a detector/classifier sees enough of it.
FIELD_DYSPLASIA_RATE = 0.1


def _field_codes(rng: np.random.Generator, n: int) -> list[str]:
    """Mixed classes: a random blast share (0-40 %) over the normal differential, a few smudge cells and
    sometimes a megakaryocyte."""
    blast = rng.uniform(0.0, 0.4)
    weights = {"BLA": blast * 100 / (1 - blast), **NORMAL_DIFFERENTIAL}
    names = list(weights)
    p = np.array([weights[c] for c in names])
    codes = [names[i] for i in rng.choice(len(names), size=n, p=p / p.sum())]
    codes = ["KSC" if rng.random() < 0.04 else c for c in codes]
    if rng.random() < 0.1:
        codes[0] = "MGK"
    return codes


def monolayer_scene(rng: np.random.Generator, width: int, height: int, mpp: Mpp, textures: Textures,
                    codes: list[str], dysplasia_rate: float) -> tuple[Scene, list[int]]:
    """A monolayer field: the given nucleated cells (not overlapping, some touching), red cells packed
    around them, platelets, one stain and one focus. Returns the scene and the ids of its nucleated cells."""
    u = mpp.um_per_px
    stain = Stain.sample(rng)
    blur_um = float(rng.uniform(0.0, 0.25))
    density = np.float32(rng.uniform(0.4, 2.5))  # plasma film: barely there to SegPC's grey-lilac
    scene = Scene(width, height, mpp, stain, textures, lambda x0, y0, w, h: np.full((h, w), density, np.float32),
                  texture_offset=(int(rng.integers(0, 1 << 20)), int(rng.integers(0, 1 << 20))))
    cells = DiscSet(cell=20.0 / u)
    ids = []
    for code in codes:
        grade, _, variant = dysplasia_for(code, rng, dysplasia_rate)
        spec = plan_cell(code, rng, variant=variant or None, grade=grade)
        r = float(spec.radius_lut.max()) / u
        for _ in range(60):
            if len(cells) and rng.random() < TOUCHING:
                j = int(rng.integers(len(cells)))
                t = rng.uniform(0, 2 * np.pi)
                d = cells.r[j] + r + rng.uniform(0.0, 0.6) / u
                x, y = cells.x[j] + d * np.cos(t), cells.y[j] + d * np.sin(t)
                if not (0 <= x < width and 0 <= y < height):
                    continue
            else:
                x, y = rng.uniform(0, width), rng.uniform(0, height)
            if cells.fits(x, y, r):
                cells.add(x, y, r)
                ids.append(scene.add_cell(PlacedCell(spec, int(x), int(y), blur_um)))
                break
    add_red_cells(rng, scene, cells, (0, 0, width, height), coverage=rng.uniform(0.45, 0.75), blur_um=blur_um)
    add_platelets(rng, scene, cells, (0, 0, width, height), per_um2=rng.uniform(0.002, 0.006), blur_um=blur_um)
    return scene, ids


def add_red_cells(rng: np.random.Generator, scene: Scene, cells: DiscSet, box: tuple[float, float, float, float],
                  coverage: float, blur_um: float, flat: bool = False, inside=None) -> int:
    """Pack red cells into ``box`` at ``coverage`` (area fraction), touching and slightly overlapping each
    other, clear of the nucleated cells; ``flat`` takes the feathered-edge variants; ``inside(x, y)``
    limits them to a region (the smear). Returns how many were placed."""
    u = scene.mpp.um_per_px
    r = np.mean(RBC_DIAMETER_UM) / 2 / u
    x0, y0, x1, y1 = box
    n = int(coverage * (x1 - x0) * (y1 - y0) / (np.pi * r * r))

    def sample(k: int) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = rng.uniform(x0, x1, k), rng.uniform(y0, y1, k)
        if inside is None:
            return xs, ys
        keep = inside(xs, ys)
        return xs[keep], ys[keep]

    xs, ys, _ = fill(rng, sample, n, lambda k: np.full(k, r), [(cells, 0.1)], DiscSet(cell=2 * r), overlap=0.12)
    bank = rbc_bank(u)
    variant = rng.integers(N_NORMAL, bank.n_variants, len(xs)) if flat else rng.integers(0, N_NORMAL, len(xs))
    scene.add_rbcs(np.rint(xs), np.rint(ys), variant, np.full(len(xs), blur_um))
    return len(xs)


def add_platelets(rng: np.random.Generator, scene: Scene, cells: DiscSet, box: tuple[float, float, float, float],
                  per_um2: float, blur_um: float, zone: str = "", inside=None) -> int:
    """Scatter platelets (single, and ~30 % in clumps of 3-8) over ``box``, off the nucleated cells and,
    given ``inside(x, y)``, within a region. Returns how many were placed."""
    u = scene.mpp.um_per_px
    bank = platelet_specs()
    blur_um = BLUR_LEVELS_UM[int(blur_level(blur_um))]  # few focus levels, so drawings are shared
    x0, y0, x1, y1 = box
    n = rng.poisson(per_um2 * (x1 - x0) * (y1 - y0) * u * u)
    tried = placed = 0
    while tried < n:
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        k = int(rng.integers(3, 9)) if rng.random() < 0.3 else 1
        for _ in range(k):
            x, y = cx + rng.normal(0, 2.0 / u) * (k > 1), cy + rng.normal(0, 2.0 / u) * (k > 1)
            spec = bank[int(rng.integers(len(bank)))]
            tried += 1
            if not (x0 <= x < x1 and y0 <= y < y1) or (inside is not None and not inside(x, y)):
                continue
            if cells.fits(x, y, float(spec.radius_lut.max()) / u):
                scene.add_cell(PlacedCell(spec, int(x), int(y), blur_um, zone))
                placed += 1
    return placed


def _boxes(mask: np.ndarray, n: int) -> list[tuple[int, int, int, int] | None]:
    """Bounding box (x0, y0, x1, y1, exclusive) of each instance 1..n (None if it has no pixel)."""
    found = ndimage.find_objects(mask, max_label=n)
    return [None if s is None else (s[1].start, s[0].start, s[1].stop, s[0].stop) for s in found]


def write_fields(outdir: str | Path, n: int, seed: int, size: tuple[int, int] = (1024, 1024),
                 mpp: Mpp = SLIDE_MPP) -> list[Path]:
    """Write ``n`` monolayer fields of ``size`` = (width, height) px at ``mpp`` in the ultralytics layout.

    ``images/field_XXXX.png`` RGB; ``labels/field_XXXX.txt`` YOLO ``0 cx cy w h`` of every nucleated
    object (see module docstring); ``masks/field_XXXX.png`` uint16 instances (k = k-th label line and
    ``id`` k in the CSV); ``cells/field_XXXX.csv`` the truth; ``data.yaml``. Returns the image paths.
    """
    out = Path(outdir)
    for sub in ("images", "labels", "masks", "cells"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    width, height = size
    tax = load_taxonomy()
    textures = Textures.make(seed, mpp)
    paths = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        codes = _field_codes(rng, int(rng.integers(CELLS_PER_FIELD[0], CELLS_PER_FIELD[1] + 1)))
        scene, ids = monolayer_scene(rng, width, height, mpp, textures, codes, FIELD_DYSPLASIA_RATE)
        rgb = scene.render(0, 0, width, height)
        mask = scene.instance_mask(ids)
        name = f"field_{i:04d}"
        rows, labels = [], []
        for k, (cid, box) in enumerate(zip(ids, _boxes(mask, len(ids))), start=1):
            if box is None:  # cannot happen with centres inside the field; kept ids stay aligned
                raise RuntimeError(f"{name}: cell {k} has no visible pixel")
            c = scene.cells[cid]
            x0, y0, x1, y1 = box
            labels.append(f"0 {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} "
                          f"{(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}")
            rows.append((k, c.x, c.y, x0, y0, x1, y1, c.spec.code, tax[c.spec.code].lineage, c.spec.grade,
                         c.spec.variant, int(bool(c.spec.variant))))
        cv2.imwrite(str(out / "images" / f"{name}.png"), rgb[..., ::-1])
        cv2.imwrite(str(out / "masks" / f"{name}.png"), mask)
        (out / "labels" / f"{name}.txt").write_text("".join(line + "\n" for line in labels))
        with open(out / "cells" / f"{name}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_COLUMNS)
            writer.writerows(rows)
        paths.append(out / "images" / f"{name}.png")
        log.debug("%s: %d nucleated cells, %d red cells", name, len(ids), scene.n_rbc)
    data = {"path": str(out.resolve()), "train": "images", "val": "images", "names": {0: "nucleated_cell"}}
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    log.info("wrote %d phantom fields to %s", n, out)
    return paths
