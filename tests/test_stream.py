"""The streamed stages give the same cells as reading one tile and one crop at a time, in bounded batches."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
import torch

from bmpipe.models import load_models
from bmpipe.nn.cell_classifier import CLASSIFIER_MPP, CROP_PX, crop_centred
from bmpipe.phantom import make_slide
from bmpipe.records import Cells
from bmpipe.resolution import Mpp
from bmpipe.slide import open_slide
from bmpipe.slide.openslide_backend import OpenSlideSlide
from bmpipe.slide.tiff_backend import TiffSlide
from bmpipe.stages.batching import BatchBuffer
from bmpipe.stages.classify import classify_cells, read_crops
from bmpipe.stages.detect import OVERLAP_UM, TileStats, detect_cells, plan_tiles, read_tile
from bmpipe.stages.reading import SlideReaders
from bmpipe.stages.regions import find_smear
from bmpipe.stages.stream import detect_and_classify


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return make_slide(tmp_path_factory.mktemp("stream") / "smear.tiff", cells=100, seed=1)


@pytest.fixture(scope="module")
def models():
    return load_models(None, "cpu")


def per_cell_reference(slide, smear, models) -> Cells:
    """The unstreamed path: one read and one detector call per tile, one read per cell."""
    detector, classifier = models.detector, models.classifier
    found = []
    for tile in plan_tiles(slide, smear, detector):
        image = read_tile(slide, tile, detector.mpp)
        boxes, scores = detector.detect(image[None])[0]
        if len(boxes):
            cells = Cells.from_boxes(tile.to_level0(boxes), scores)
            found.append(cells.take(tile.owns(cells.x, cells.y) & smear.analysed_at(cells.x, cells.y)))
    cells = Cells.concat(found)
    half = classifier.crop_px / 2 * slide.mpp.factor_to(classifier.mpp)
    crops = np.stack([
        slide.read_region(x - half, y - half, classifier.crop_px, classifier.crop_px, classifier.mpp)
        for x, y in zip(cells.x, cells.y)
    ])
    pred = classifier.predict(crops)
    out = cells.with_labels(pred.label, pred.label_score)
    out.dysplasia_grade, out.dysplasia_score = pred.dysplasia_grade, pred.dysplasia_score
    return out


def assert_same_cells(a: Cells, b: Cells) -> None:
    assert len(a) == len(b)
    for column in ("x0", "y0", "x1", "y1", "score"):
        np.testing.assert_array_equal(getattr(a, column), getattr(b, column), err_msg=column)
    assert list(a.label) == list(b.label)
    np.testing.assert_array_equal(a.dysplasia_grade, b.dysplasia_grade)
    np.testing.assert_allclose(a.label_score, b.label_score, atol=1e-5)
    np.testing.assert_allclose(a.dysplasia_score, b.dysplasia_score, atol=1e-5)


def test_streamed_stages_equal_the_per_cell_path(phantom, models):
    # Batches of 3 tiles and 16 crops: several batches, each mixing cells of different tiles, and a partial last one.
    written: list[Cells] = []
    with open_slide(phantom) as slide:
        smear = find_smear(slide, "all")
        reference = per_cell_reference(slide, smear, models)
        stats = TileStats()
        streamed = detect_and_classify(
            slide, smear, models.detector, models.classifier, stats, detect_batch=3, classify_batch=16,
            write_cells=written.append,
        )
        separate = classify_cells(slide, detect_cells(slide, smear, models.detector), models.classifier, 16)
    assert len(reference) > 50
    assert stats.tiles_read == len(plan_tiles(slide, smear, models.detector)) and stats.tiles_blurred == 0
    assert_same_cells(streamed, reference)
    assert [len(c) for c in written[:-1]] == [16] * (len(written) - 1) and 0 < len(written[-1]) <= 16
    assert_same_cells(Cells.concat(written), streamed)  # each classified batch handed on once, in order
    assert_same_cells(separate, reference)


def test_planned_tiles_cover_the_analysed_area_and_are_trimmed_to_it(phantom, models):
    detector = models.detector
    with open_slide(phantom) as slide:
        smear = find_smear(slide)
        tiles = plan_tiles(slide, smear, detector)
    full_side = detector.tile_size * tiles[0].scale
    # analysed overview pixels, by their centres in level-0 px: each in exactly one tile's core
    iy, ix = np.nonzero(smear.analysed)
    x, y = (ix + 0.5) * smear.scale, (iy + 0.5) * smear.scale
    owners = sum(tile.owns(x, y).astype(int) for tile in tiles)
    assert np.all(owners == 1)
    assert all(smear.analysed_box(*tile.core) is not None for tile in tiles)
    trimmed = [t for t in tiles if (t.width_px, t.height_px) != (detector.tile_size,) * 2]
    assert trimmed and all(t.x1 - t.x0 < full_side or t.y1 - t.y0 < full_side for t in trimmed)
    # a trimmed tile still holds its analysed core grown by half the overlap (the largest cell's radius)
    margin = detector.mpp.px(OVERLAP_UM / 2) * tiles[0].scale
    w, h = slide.dimensions
    for t in trimmed:
        box = smear.analysed_box(*t.core)
        assert t.x0 <= max(box.x0 - margin, 0) and t.y0 <= max(box.y0 - margin, 0)
        assert t.x1 >= min(box.x1 + margin, w) - 1e-6 and t.y1 >= min(box.y1 + margin, h) - 1e-6


@pytest.mark.parametrize("backend", ["openslide", "tifffile"])
def test_read_regions_gives_the_pixels_of_read_region(phantom, backend):
    rng = np.random.default_rng(0)
    resolutions = [(Mpp(0.25), 96), (Mpp(0.1), 48), (Mpp(0.07), 40)]
    if backend == "tifffile":  # OpenSlide may shift a level of fractional downsample (here 3.9994) by < 1 px
        resolutions.append((Mpp(0.4), 64))
    with OpenSlideSlide(phantom, None) if backend == "openslide" else TiffSlide(phantom, None) as slide:
        assert slide.backend == backend
        w, h = slide.dimensions
        # Spread boxes, clusters that share a read, and boxes hanging off every edge of the slide.
        xs = np.concatenate([rng.uniform(-300, w, 40), rng.uniform(1000, 1400, 20), [-50.5, w - 30.25]])
        ys = np.concatenate([rng.uniform(-300, h, 40), rng.uniform(800, 1100, 20), [h - 10.0, -80.75]])
        for mpp, size in resolutions:
            many = slide.read_regions(xs, ys, size, size, mpp)
            one_by_one = np.stack([slide.read_region(x, y, size, size, mpp) for x, y in zip(xs, ys)])
            np.testing.assert_array_equal(many, one_by_one, err_msg=str(mpp))


def test_cells_at_an_image_edge_are_cut_as_the_classifier_was_trained(tmp_path):
    """A photographed field's edge cells: the part of a crop past the image is mirrored, as in training."""
    image = np.random.default_rng(1).integers(0, 255, (150, 200, 3), dtype=np.uint8)
    path = tmp_path / "field.png"
    cv2.imwrite(str(path), image[..., ::-1])
    at = [(5.0, 30.0), (195.0, 140.0), (100.0, 2.0), (100.0, 75.0)]  # left, bottom-right, top edge; inside
    cells = Cells(x=[x for x, _ in at], y=[y for _, y in at], x0=np.zeros(4), y0=np.zeros(4),
                  x1=np.ones(4), y1=np.ones(4), score=np.ones(4))
    with open_slide(path, mpp=CLASSIFIER_MPP) as slide:
        crops = read_crops(slide, cells, CLASSIFIER_MPP, CROP_PX)
    for crop, (x, y) in zip(crops, at):
        np.testing.assert_array_equal(crop, crop_centred(image, x, y, CROP_PX), err_msg=f"cell at {x}, {y}")


def test_readers_read_through_their_own_handles_and_close_them(phantom):
    with open_slide(phantom) as slide:
        seen = {}

        def which(handle, i):
            seen.setdefault(threading.get_ident(), set()).add(id(handle))
            return i, handle

        with SlideReaders(slide, workers=2) as readers:
            results = list(readers.map_ahead(which, range(20), depth=4))
        assert [i for i, _ in results] == list(range(20))  # in order
        handles = {id(h): h for _, h in results}
        assert id(slide) not in handles
        assert all(len(ids) == 1 for ids in seen.values())  # one handle per thread, never shared
        assert all(h._closed for h in handles.values()) and not slide._closed


def test_batch_buffer_stacks_images_and_batches_in_order():
    buffer = BatchBuffer(pinned=False)
    a, b = np.full((4, 4, 3), 1, np.uint8), np.full((2, 4, 4, 3), 2, np.uint8)
    out = buffer.stack([a, b])
    assert out.shape == (3, 4, 4, 3) and out[0].max() == 1 and out[1:].min() == 2
    assert buffer.stack([b]).shape == (2, 4, 4, 3)


def test_batch_buffer_reuses_its_memory_for_batches_of_other_shapes():
    buffer = BatchBuffer(pinned=False)
    big = buffer.stack([np.full((4, 8, 8, 3), 1, np.uint8), np.full((8, 8, 3), 2, np.uint8)])
    small = buffer.stack([np.full((3, 4, 6, 3), 3, np.uint8), np.full((4, 6, 3), 4, np.uint8)])
    assert small.shape == (4, 4, 6, 3) and small[:3].min() == small[:3].max() == 3 and small[3].min() == 4
    assert np.shares_memory(big, small)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="page-locked memory needs CUDA, absent here")
def test_batch_buffer_is_page_locked_on_cuda():
    out = BatchBuffer().stack([np.zeros((2, 8, 8, 3), np.uint8)])
    assert torch.from_numpy(out).is_pinned()
