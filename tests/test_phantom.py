"""The synthetic smear generator: determinism, exact truth, formats, and colours calibrated on real cells."""

from __future__ import annotations

import csv
import hashlib
import json

import cv2
import numpy as np
import pytest
import yaml

from bmpipe.phantom import cell_crops, make_slide, plan_slide, render_cell, truth_path, write_fields
from bmpipe.phantom.cell import draw_cell, plan_cell
from bmpipe.phantom.composition import NORMAL_DIFFERENTIAL, apportion, check_codes, differential_counts
from bmpipe.phantom.morphology import DYSPLASIA, DYSPLASTIC_GRADE, GRADED, MORPHOLOGY
from bmpipe.phantom.palette import REF_ILLUM
from bmpipe.resolution import Mpp
from bmpipe.taxonomy import load_taxonomy

TAX = load_taxonomy()

#: Median colours of real neutrophils: ``_neutrophil_colours`` run on the first 300 PBC ``SNE_*.jpg`` files
#: (sorted by name) of /work/shared/data/pbc/neutrophil (Acevedo 2020, CellaVision DM96, MGG). Recomputed
#: from the data by ``test_reference_colours_match_pbc`` when the data folder is present.
PBC_NEUTROPHIL_NUCLEUS_RGB = (85.0, 42.0, 138.0)
PBC_NEUTROPHIL_CYTOPLASM_RGB = (208.0, 170.0, 176.0)
COLOUR_TOLERANCE = 12.0  # grey levels per channel


def _neutrophil_colours(bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean RGB of the nucleus (green < 120, blobs near the image centre) and of the cytoplasm (a band of
    ~0.8 µm around the nucleus's convex hull, minus the nucleus) of a centred neutrophil."""
    h, w = bgr.shape[:2]
    g = cv2.GaussianBlur(bgr[..., 1], (3, 3), 0)
    dark = cv2.morphologyEx((g < 120).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, lbl, stats, cen = cv2.connectedComponentsWithStats(dark)
    keep = [i for i in range(1, n) if stats[i, 4] > 150 and np.hypot(cen[i, 0] - w / 2, cen[i, 1] - h / 2) < 90]
    if not keep:
        return None
    nucleus = np.isin(lbl, keep)
    hull = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(cv2.findNonZero(nucleus.astype(np.uint8))), 1)
    ring = cv2.dilate(hull, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (17, 17))).astype(bool)
    cyto = ring & ~cv2.dilate(nucleus.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    rgb = bgr[..., ::-1].astype(float)
    return rgb[nucleus].mean(axis=0), rgb[cyto].mean(axis=0)


def _on_glass(rgb: np.ndarray, size: tuple[int, int] = (363, 360)) -> np.ndarray:
    """A rendered cell centred on a PBC-sized canvas of reference glass (BGR, as cv2 reads PBC files)."""
    canvas = np.empty((*size, 3), np.uint8)
    canvas[:] = np.rint(REF_ILLUM).astype(np.uint8)
    h, w = rgb.shape[:2]
    y, x = (size[0] - h) // 2, (size[1] - w) // 2
    canvas[y:y + h, x:x + w] = rgb
    return canvas[..., ::-1].copy()


# --- single cells ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", list(MORPHOLOGY))
def test_every_class_renders_with_sane_masks(code):
    rgb, mask, nucleus = render_cell(code, np.random.default_rng(1))
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[:2] == mask.shape == nucleus.shape
    assert mask.any() and not (nucleus & ~mask).any()
    assert nucleus.any() == (code != "PLT")
    lo, hi = MORPHOLOGY[code][0][1].diameter_um
    if len(MORPHOLOGY[code]) == 1 and code != "KSC":  # equivalent diameter within the table's range
        d_um = 2 * np.sqrt(mask.sum() / np.pi) * 0.1
        assert 0.85 * lo <= d_um <= 1.15 * hi


@pytest.mark.parametrize("variant", list(DYSPLASIA))
def test_dysplastic_variants_render(variant):
    for code in DYSPLASIA[variant][0]:
        _, mask, nucleus = render_cell(code, np.random.default_rng(2), variant=variant)
        assert nucleus.any() and not (nucleus & ~mask).any()
    micro = plan_cell("MGK", np.random.default_rng(3), variant="micromegakaryocyte")
    assert micro.radius_um < 9 < plan_cell("MGK", np.random.default_rng(3)).radius_um


def test_render_cell_is_deterministic_per_seed():
    a = render_cell("BLA", np.random.default_rng(7))
    b = render_cell("BLA", np.random.default_rng(7))
    c = render_cell("BLA", np.random.default_rng(8))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])


def test_hypogranular_grades_lose_granules():
    """Granule content falls with the Mori grade; only grades >= the project's rule are dysplastic."""
    def granule_density(grade: int) -> float:
        counts = []
        for seed in range(6):
            spec = plan_cell("NGS", np.random.default_rng(seed), grade=grade)
            sprite = draw_cell(spec, Mpp(0.1))
            cyto = sprite.mask & ~cv2.dilate(sprite.nucleus.astype(np.uint8), np.ones((5, 5))).astype(bool)
            counts.append(np.percentile(sprite.od[..., 1][cyto], 95))
        return float(np.mean(counts))

    density = [granule_density(g) for g in range(4)]
    assert density[0] > density[1] > density[2] > density[3]
    assert plan_cell("NGS", np.random.default_rng(0), grade=DYSPLASTIC_GRADE).variant == "hypogranular"
    assert plan_cell("NGS", np.random.default_rng(0), grade=DYSPLASTIC_GRADE - 1).variant == ""


@pytest.mark.parametrize("code", ["NGS", "PLM", "MON", "KSC", "MGK", "EBO"])
def test_planned_box_is_the_mask_box(code):
    """Slides write truth boxes from the plan without drawing; they must be the drawn mask's bounds."""
    for seed in range(3):
        for mpp in (Mpp(0.1), Mpp(0.25)):
            spec = plan_cell(code, np.random.default_rng(seed), torn=0.3 * (seed == 2))
            sprite = draw_cell(spec, mpp)
            ys, xs = np.nonzero(sprite.mask)
            drawn = (xs.min() + sprite.ox, ys.min() + sprite.oy, xs.max() + 1 + sprite.ox, ys.max() + 1 + sprite.oy)
            assert np.abs(np.subtract(drawn, spec.box_px(mpp))).max() <= 1


def test_rendering_at_coarser_mpp_keeps_physical_size():
    spec = plan_cell("MYB", np.random.default_rng(4))
    fine, coarse = draw_cell(spec, Mpp(0.1)), draw_cell(spec, Mpp(0.25))
    assert fine.mask.sum() * 0.01 == pytest.approx(coarse.mask.sum() * 0.0625, rel=0.05)


def test_neutrophil_colours_match_real_pbc_neutrophils():
    nuclei, cytos = [], []
    rng = np.random.default_rng(11)
    for _ in range(24):
        measured = _neutrophil_colours(_on_glass(render_cell("NGS", rng)[0]))
        assert measured is not None
        nuclei.append(measured[0])
        cytos.append(measured[1])
    assert np.abs(np.median(nuclei, axis=0) - PBC_NEUTROPHIL_NUCLEUS_RGB).max() <= COLOUR_TOLERANCE
    assert np.abs(np.median(cytos, axis=0) - PBC_NEUTROPHIL_CYTOPLASM_RGB).max() <= COLOUR_TOLERANCE


def test_reference_colours_match_pbc(data_dir):
    files = sorted((data_dir / "pbc" / "neutrophil").glob("SNE_*.jpg"))[:60]
    if not files:
        pytest.skip("no PBC neutrophil images")
    measured = [m for f in files if (m := _neutrophil_colours(cv2.imread(str(f)))) is not None]
    assert np.abs(np.median([m[0] for m in measured], axis=0) - PBC_NEUTROPHIL_NUCLEUS_RGB).max() <= 4
    assert np.abs(np.median([m[1] for m in measured], axis=0) - PBC_NEUTROPHIL_CYTOPLASM_RGB).max() <= 4


# --- composition -------------------------------------------------------------------------------------------


def test_differential_is_exact_and_taxonomy_consistent():
    check_codes()
    assert sum(NORMAL_DIFFERENTIAL.values()) == pytest.approx(100.0)
    for n, p in [(150, 12.0), (1500, 8.0), (7, 0.0), (333, 100.0)]:
        counts = differential_counts(n, p)
        assert sum(counts.values()) == n and counts["BLA"] == round(n * p / 100)
        assert all(TAX[c].denominator for c in counts)
    assert apportion(10, {"a": 1, "b": 1, "c": 1}) in ({"a": 4, "b": 3, "c": 3},)
    with pytest.raises(ValueError):
        differential_counts(10, 120)


# --- slides ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_plan():
    return plan_slide(150, 12.0, seed=5)


def test_slide_truth_is_consistent(small_plan):
    truth = small_plan.truth()
    json.dumps(truth)  # serialisable as is
    cells, diff = truth["cells"], truth["differential"]
    assert truth["mpp"] == 0.1 and truth["width"] == small_plan.width and truth["height"] == small_plan.height
    assert diff["n_counted"] == 150 and diff["counts"]["BLA"] == 18
    assert diff["blast_pct"] == pytest.approx(100 * 18 / 150) and abs(diff["blast_pct"] - 12.0) <= 50 / 150
    assert sum(diff["percent"].values()) == pytest.approx(100.0)
    codes = [c["code"] for c in cells]
    assert diff["counts"] == {c: codes.count(c) for c in TAX.codes}
    assert diff["denominator"].endswith(", ".join(TAX.excluded_codes()))
    matek = {c for c in codes if TAX[c].source == "matek2021"}
    assert len(matek) >= 12
    zones = truth["zones"]
    for c in cells:
        x0, y0, x1, y1 = zones[c["zone"]]
        assert x0 <= c["x"] < x1 and y0 <= c["y"] < y1
        bx0, by0, bx1, by1 = c["box"]
        assert 0 <= bx0 < c["x"] < bx1 <= truth["width"] and 0 <= by0 < c["y"] < by1 <= truth["height"]
        assert c["dysplastic"] == bool(c["variant"])
        assert (c["dysplasia_grade"] >= 0) == (c["code"] in GRADED)
        if c["code"] in GRADED and c["variant"] == "hypogranular":
            assert c["dysplasia_grade"] >= DYSPLASTIC_GRADE
    mono = [c for c in cells if c["zone"] == "monolayer" and TAX[c["code"]].denominator]
    assert truth["differential_monolayer"]["n_counted"] == len(mono) == 105
    xs = [zones[z][0] for z in ("thick", "monolayer", "edge")]
    assert xs == sorted(xs) and zones["smear"][0] == xs[0] and zones["smear"][2] == zones["edge"][2]


def test_slide_plan_is_deterministic(small_plan):
    again = plan_slide(150, 12.0, seed=5)
    other = plan_slide(150, 12.0, seed=6)
    assert json.dumps(again.truth()) == json.dumps(small_plan.truth())
    assert json.dumps(other.truth()) != json.dumps(small_plan.truth())
    window = (2000, 1000, 256, 256)
    assert np.array_equal(again.scene.render(*window), small_plan.scene.render(*window))
    assert not np.array_equal(other.scene.render(*window), small_plan.scene.render(*window))


def _assemble(render_tile, x0: int, y0: int, w: int, h: int, tile: int) -> np.ndarray:
    """Stand-in for a tiled writer: the window built from ``tile``-sized calls."""
    out = np.zeros((h, w, 3), np.uint8)
    for ty in range(0, h, tile):
        for tx in range(0, w, tile):
            out[ty:ty + tile, tx:tx + tile] = render_tile(x0 + tx, y0 + ty, min(tile, w - tx), min(tile, h - ty))
    return out


def test_tiles_are_seamless(small_plan):
    """Objects crossing tile borders render identically on both sides: any tiling gives the same pixels."""
    x0, y0 = 1900, 900
    whole = small_plan.scene.render(x0, y0, 1000, 800)
    assert np.array_equal(whole, _assemble(small_plan.scene.render, x0, y0, 1000, 800, 512))
    assert np.array_equal(whole, _assemble(small_plan.scene.render, x0, y0, 1000, 800, 160))


def test_slide_zones_look_different(small_plan):
    """Thick zone darker than the monolayer, the feathered edge paler, the glass palest."""
    z = small_plan.truth()["zones"]
    yc = (z["smear"][1] + z["smear"][3]) // 2

    def mean_at(x: int) -> float:
        return float(small_plan.scene.render(x - 128, yc - 128, 256, 256).mean())

    thick = mean_at((z["thick"][0] + z["thick"][2]) // 2)
    mono = mean_at((z["monolayer"][0] + z["monolayer"][2]) // 2)
    edge = mean_at(z["edge"][0] + (z["edge"][2] - z["edge"][0]) // 3)
    glass = mean_at(200)
    assert thick < mono < edge < glass


def test_make_slide_opens_in_openslide(tmp_path):
    openslide = pytest.importorskip("openslide")
    path = make_slide(tmp_path / "small.tiff", cells=40, blast_pct=10.0, seed=1)
    again = make_slide(tmp_path / "again.tiff", cells=40, blast_pct=10.0, seed=1)
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(again.read_bytes()).digest()
    truth = json.loads(truth_path(path).read_text())
    assert truth["slide"] == "small" and truth["differential"]["n_counted"] == 40
    slide = openslide.OpenSlide(str(path))
    try:
        assert slide.dimensions == (truth["width"], truth["height"])
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.1)
        assert slide.level_count >= 2
        cell = next(c for c in truth["cells"] if c["zone"] == "monolayer" and c["code"] != "PLT")
        x0, y0, x1, y1 = cell["box"]
        got = np.asarray(slide.read_region((x0, y0), 0, (x1 - x0, y1 - y0)).convert("RGB"))
    finally:
        slide.close()
    expected = plan_slide(40, 10.0, seed=1, name="small").scene.render(x0, y0, x1 - x0, y1 - y0)
    assert np.abs(got.astype(int) - expected).mean() < 4  # JPEG q90


# --- fields and crops --------------------------------------------------------------------------------------


def test_fields_labels_match_masks(tmp_path):
    paths = write_fields(tmp_path / "a", 2, seed=3, size=(512, 384))
    assert [p.name for p in paths] == ["field_0000.png", "field_0001.png"]
    data = yaml.safe_load((tmp_path / "a" / "data.yaml").read_text())
    assert data["names"] == {0: "nucleated_cell"} and data["train"] == "images"
    for p in paths:
        image = cv2.imread(str(p))
        mask = cv2.imread(str(tmp_path / "a" / "masks" / p.name), cv2.IMREAD_UNCHANGED)
        assert image.shape == (384, 512, 3) and mask.dtype == np.uint16 and mask.shape == (384, 512)
        lines = (tmp_path / "a" / "labels" / f"{p.stem}.txt").read_text().splitlines()
        with open(tmp_path / "a" / "cells" / f"{p.stem}.csv") as f:
            rows = list(csv.DictReader(f))
        assert len(lines) == len(rows) == mask.max() >= 1
        for k, (line, row) in enumerate(zip(lines, rows), start=1):
            ys, xs = np.nonzero(mask == k)
            box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            assert (int(row["x0"]), int(row["y0"]), int(row["x1"]), int(row["y1"])) == box
            cls, cx, cy, w, h = line.split()
            assert cls == "0"
            expected = ((box[0] + box[2]) / 2 / 512, (box[1] + box[3]) / 2 / 384, (box[2] - box[0]) / 512,
                        (box[3] - box[1]) / 384)
            assert np.allclose([float(cx), float(cy), float(w), float(h)], expected, atol=1e-5)
            assert row["code"] != "PLT" and row["lineage"] == TAX[row["code"]].lineage
    again = write_fields(tmp_path / "b", 1, seed=3, size=(512, 384))
    other = write_fields(tmp_path / "c", 1, seed=4, size=(512, 384))
    assert again[0].read_bytes() == paths[0].read_bytes()
    assert other[0].read_bytes() != paths[0].read_bytes()


def test_cell_crops_shapes_labels_and_determinism():
    images, codes, grades, dysplastic = cell_crops({"NGS": 6, "EBO": 4, "BLA": 3}, seed=9, size_px=64)
    assert images.shape == (13, 64, 64, 3) and images.dtype == np.uint8
    assert codes == ["NGS"] * 6 + ["EBO"] * 4 + ["BLA"] * 3
    assert grades.dtype.kind == "i" and dysplastic.dtype == bool
    assert (grades[:6] >= 0).all() and (grades[6:] == -1).all() and not dysplastic[10:].any()
    assert dysplastic[:6][grades[:6] >= DYSPLASTIC_GRADE].all()
    again = cell_crops({"NGS": 6, "EBO": 4, "BLA": 3}, seed=9, size_px=64)
    assert np.array_equal(images, again[0])
    assert not np.array_equal(images, cell_crops({"NGS": 6, "EBO": 4, "BLA": 3}, seed=10, size_px=64)[0])
    # the centre of a crop is cell, not background
    centre = images[:, 28:36, 28:36].reshape(13, -1, 3).mean(axis=1)
    assert (centre.mean(axis=1) < 215).all()
    every, every_codes, _, _ = cell_crops(1, seed=0)
    assert len(every) == len(MORPHOLOGY) - 1 and "PLT" not in every_codes
