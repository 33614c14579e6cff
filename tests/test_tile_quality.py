"""Tile QC: empty glass and out-of-focus tiles never reach the detector, and are counted."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bmpipe.errors import InputError
from bmpipe.imaging.quality import FocusGate, QualityThresholds, focus, tile_focus
from bmpipe.phantom import make_slide
from bmpipe.resolution import Mpp
from bmpipe.slide import open_slide, write_pyramidal_tiff
from bmpipe.stages.detect import TileStats, detect_cells, plan_tiles
from bmpipe.stages.regions import find_smear

SIGMA_UM = 0.8  # Gaussian defocus: two pixels at the detector's 0.4 µm/px


class CountingDetector:
    """A stand-in detector that finds nothing and counts the tiles it is given."""

    mpp = Mpp(0.4)
    tile_size = 512

    def __init__(self) -> None:
        self.tiles = 0

    def detect(self, tiles):
        self.tiles += len(tiles)
        return [(np.zeros((0, 4)), np.zeros(0)) for _ in tiles]


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return make_slide(tmp_path_factory.mktemp("qc") / "sharp.tiff", cells=100, seed=3)


def blurred_copy(source, out, blurred_from_x: float = 0.0):
    """``source`` rewritten with a Gaussian defocus right of level-0 x = ``blurred_from_x``."""
    with open_slide(source) as slide:
        w, h = slide.dimensions
        sigma = slide.mpp.px(SIGMA_UM)
        pad = int(4 * sigma) + 1

        def render(x0, y0, tw, th):
            block = slide.read_region(x0 - pad, y0 - pad, tw + 2 * pad, th + 2 * pad, slide.mpp)
            soft = cv2.GaussianBlur(block, (0, 0), sigma)[pad:-pad, pad:-pad]
            sharp = block[pad:-pad, pad:-pad]
            return np.where((np.arange(x0, x0 + tw) >= blurred_from_x)[None, :, None], soft, sharp)

        write_pyramidal_tiff(out, w, h, slide.mpp, render)
    return out


def run_detection(path):
    detector, stats = CountingDetector(), TileStats()
    with open_slide(path) as slide:
        smear = find_smear(slide, "all")
        planned = len(plan_tiles(slide, smear, detector))
        detect_cells(slide, smear, detector, stats=stats)
    return detector, stats, planned


def test_focus_ranks_sharp_above_blurred_whatever_the_contrast():
    rng = np.random.default_rng(0)
    edges = np.kron(rng.integers(0, 2, (32, 32)), np.ones((16, 16))).astype(np.float32)
    for contrast in (40, 160):
        sharp = np.repeat((255 - contrast * edges)[..., None], 3, axis=2).astype(np.uint8)
        soft = cv2.GaussianBlur(sharp, (0, 0), 2.0)
        assert focus(sharp) > 0.3 and focus(soft) < QualityThresholds().min_focus


def test_gate_calls_glass_empty_and_a_defocused_tile_blurred():
    t, mpp = QualityThresholds(), Mpp(0.4)
    rng = np.random.default_rng(1)
    cells = np.full((512, 512, 3), 235, np.uint8)
    for x, y in rng.integers(20, 490, (40, 2)):
        cv2.circle(cells, (int(x), int(y)), 12, (120, 60, 150), -1)
    gate = FocusGate.from_focus([tile_focus(cells, mpp, t)] * 4, t)
    assert gate.verdict(tile_focus(np.full((512, 512, 3), 245, np.uint8), mpp, t)).empty
    assert gate.verdict(tile_focus(cells, mpp, t)).usable
    assert gate.verdict(tile_focus(cv2.GaussianBlur(cells, (0, 0), 3.0), mpp, t)).blurred


def test_sharp_phantom_loses_no_tile(phantom):
    detector, stats, planned = run_detection(phantom)
    assert stats.tiles_read == planned and stats.tiles_blurred == 0
    assert detector.tiles == planned - stats.tiles_empty


def test_slide_blurred_everywhere_is_refused(phantom, tmp_path):
    blurred = blurred_copy(phantom, tmp_path / "blurred.tiff")
    with pytest.raises(InputError, match="out of focus") as err:
        run_detection(blurred)
    assert str(blurred) in str(err.value)


def test_half_blurred_slide_loses_about_half_its_tiles(phantom, tmp_path):
    with open_slide(phantom) as slide:
        half = slide.dimensions[0] / 2
    detector, stats, planned = run_detection(blurred_copy(phantom, tmp_path / "half.tiff", blurred_from_x=half))
    analysed = stats.tiles_read - stats.tiles_empty
    assert stats.tiles_read == planned
    assert 0.3 <= stats.tiles_blurred / analysed <= 0.7
    assert detector.tiles == analysed - stats.tiles_blurred


def test_measures_match_their_numpy_definitions():
    """The OpenCV forms of the per-tile measures compute the quantities the thresholds were set on."""
    from bmpipe.imaging.smear import optical_density

    rng = np.random.default_rng(3)
    rgb = cv2.GaussianBlur(rng.integers(0, 256, (300, 200, 3), dtype=np.uint8), (0, 0), 1.5)
    od = -np.log10((rgb.astype(np.float64) + 1.0) / 256.0).sum(axis=2)
    np.testing.assert_allclose(optical_density(rgb), od, rtol=1e-5, atol=1e-5)
    grey = rgb.astype(np.float64).mean(axis=2)
    lap = cv2.Laplacian(grey, cv2.CV_64F, ksize=1)
    gx, gy = cv2.Sobel(grey, cv2.CV_64F, 1, 0, ksize=1), cv2.Sobel(grey, cv2.CV_64F, 0, 1, ksize=1)
    assert focus(rgb) == pytest.approx(np.mean(lap**2) / (np.mean(gx**2) + np.mean(gy**2)), rel=1e-4)
    assert focus(rgb[:, ::-1]) == pytest.approx(focus(np.ascontiguousarray(rgb[:, ::-1])), rel=1e-6)
