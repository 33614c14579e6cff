"""Phantom classes beyond the common marrow cells: faggot cells (FGC), other cells (OTH), artefacts (ART)
and defocused not-identifiable cells (NIF), so the classifier's head can hold every taxonomy code."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
from scipy import ndimage as ndi

from bmpipe.datasets.cell_data import phantom_codes
from bmpipe.phantom import cell_crops, render_cell
from bmpipe.phantom.cell import draw_cell, plan_cell
from bmpipe.phantom.crops import NIF_CODE
from bmpipe.resolution import Mpp
from bmpipe.taxonomy import load_taxonomy

MPP = Mpp(0.1)


def test_faggot_cells_carry_bundles_of_auer_rods() -> None:
    for seed in range(4):
        spec = plan_cell("FGC", np.random.default_rng(seed))
        assert len(spec.rods) >= 3
        with_rods = draw_cell(spec, MPP).od.sum(-1)
        without = draw_cell(replace(spec, rods=()), MPP).od.sum(-1)
        extra = with_rods - without
        # thin needles: a small part of the cell, markedly denser where they lie
        assert 0.005 < np.mean(extra > 0.1) < 0.15 and extra.max() > 0.3
    assert all(not plan_cell(c, np.random.default_rng(0)).rods for c in ("PMO", "BLA", "NGS"))


def test_artefacts_are_torn_with_fragmented_nuclei() -> None:
    fragments, ratios = [], []
    for seed in range(6):
        nucleus = render_cell("ART", np.random.default_rng(seed))[2]
        fragments.append(ndi.label(nucleus)[1])
        r = plan_cell("ART", np.random.default_rng(seed)).radius_lut
        ratios.append(r.min() / r.max())
    assert np.median(fragments) >= 2
    assert np.median(ratios) < np.median([plan_cell("LYT", np.random.default_rng(s)).radius_lut.min()
                                          / plan_cell("LYT", np.random.default_rng(s)).radius_lut.max()
                                          for s in range(6)])


def test_other_cells_are_mast_cells_and_macrophages() -> None:
    mast = plan_cell("OTH", np.random.default_rng(1), stage=0)
    macro = plan_cell("OTH", np.random.default_rng(1), stage=1)
    assert mast.morph.granules and not mast.morph.granules[0].over_nucleus
    assert len(macro.vacuoles) >= 6 and macro.radius_um > mast.radius_um


def test_nif_crops_are_defocused_cells() -> None:
    images, codes, grades, dysplastic = cell_crops({NIF_CODE: 8, "LYT": 8}, seed=2)
    assert codes == [NIF_CODE] * 8 + ["LYT"] * 8
    assert (grades[:8] == -1).all() and not dysplastic[:8].any()
    sharpness = [np.abs(cv2.Laplacian(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), cv2.CV_32F)).mean() for im in images]
    assert max(sharpness[:8]) < min(sharpness[8:])


def test_phantom_and_real_data_cover_every_taxonomy_code() -> None:
    """Phantom draws every code except PLT, whose examples are real (PBC platelets)."""
    assert set(phantom_codes()) | {"PLT"} == set(load_taxonomy().codes)


def test_cells_as_scanned_are_what_the_slide_reader_gives_for_the_same_scan(tmp_path):
    """The classifier's "as scanned" phantom cells and the reader's crops of the same cell, scanned at
    0.1 µm/px into a JPEG TIFF of the same quality, are the same pixels (the reader decodes the JPEG at 1/2
    and area-resamples; decoding whole and averaging, as before classifier 1.2.3, differs by ~1 grey level)."""
    import tifffile

    from bmpipe.datasets.cell_data import SCAN_JPEG_QUALITY, as_scanned
    from bmpipe.slide import open_slide

    scans = cell_crops(1, 5, mpp=Mpp(0.1), size_px=320, codes=["NGS", "BLA"])[0]
    for i, scan in enumerate(scans):
        path = tmp_path / f"cell{i}.tif"
        tifffile.imwrite(path, scan, tile=(64, 64), compression="jpeg",
                         compressionargs={"level": SCAN_JPEG_QUALITY}, photometric="rgb")  # fmt: skip
        with open_slide(path, mpp=0.1) as slide:
            read = slide.read_region(0, 0, 128, 128, Mpp(0.25))
        np.testing.assert_array_equal(as_scanned(scan[None], 128)[0], read)
