"""Slide I/O on real public slide files and on files made here: resolution, reads, errors, the writer."""

from __future__ import annotations

import re
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import cv2
import imagecodecs
import numpy as np
import openslide
import pytest
import tifffile

from bmpipe.datasets.catalog import data_root
from bmpipe.errors import SlideError
from bmpipe.resolution import Mpp
from bmpipe.slide import open_slide, slide_id, tiff_backend, write_pyramidal_tiff
from bmpipe.slide.openslide_backend import OpenSlideSlide
from bmpipe.slide.resample import best_level, best_reduction, resample
from bmpipe.slide.tiff_backend import TiffSlide

ALLOWED_PROPERTIES = {
    "vendor", "objective-power", "mpp-x", "mpp-y", "format", "backend",
    "width", "height", "level-count", "mpp", "mpp-source",
}  # fmt: skip


@pytest.fixture(scope="module")
def wsi() -> Path:
    path = data_root() / "wsi"
    if not path.is_dir():
        pytest.skip(f"whole-slide test files {path} are absent (set BMPIPE_DATA)")
    return path


def gradient(x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """A smooth synthetic slide: red follows x, green follows y, blue both (JPEG keeps it within a few levels)."""
    ys, xs = np.mgrid[y0 : y0 + h, x0 : x0 + w]
    return np.stack([xs * 255 // 3000, ys * 255 // 2000, (xs + ys) * 255 // 5000], axis=-1).astype(np.uint8)


# --- resolution -------------------------------------------------------------------------------------------


def test_resolution_from_openslide_metadata(wsi):
    with open_slide(wsi / "cmu-1-small-region.svs") as slide:
        assert slide.backend == "openslide"
        assert slide.mpp == Mpp(0.499)
        assert slide.mpp_source == "metadata:openslide.mpp-x"
        assert slide.dimensions == (2220, 2967)
        assert slide.level_dimensions == ((2220, 2967),)
        assert slide.id == "cmu-1-small-region"


def test_properties_are_allow_listed(wsi):
    with open_slide(wsi / "cmu-1-small-region.svs") as slide:
        assert set(slide.properties) <= ALLOWED_PROPERTIES
        assert slide.properties["vendor"] == "aperio"
        assert slide.properties["objective-power"] == "20"
        # The Aperio comment names a user and a file; none of it may travel.
        assert not any("User" in value or "Filename" in value for value in slide.properties.values())


def test_associated_images_are_never_read(wsi, monkeypatch):
    def forbidden(self):
        raise AssertionError("associated_images (label/macro) must never be read")

    monkeypatch.setattr(openslide.OpenSlide, "associated_images", property(forbidden))
    with open_slide(wsi / "cmu-1-small-region.svs") as slide:
        slide.overview(256)
        slide.read_region(0, 0, 64, 64, slide.mpp)


def test_user_resolution_overrides_metadata(wsi):
    with open_slide(wsi / "cmu-1-small-region.svs", mpp=0.25) as slide:
        assert slide.mpp == Mpp(0.25)
        assert slide.mpp_source == "user"
    with open_slide(wsi / "cmu-1-small-region.svs", mpp=Mpp(0.3)) as slide:
        assert slide.mpp == Mpp(0.3)


def test_slide_without_resolution_needs_mpp(wsi):
    path = wsi / "tcga-cr-7395-01a-01-ts1.svs"
    with pytest.raises(SlideError) as caught:
        open_slide(path)
    assert str(caught.value).startswith(str(path))
    assert "--mpp" in str(caught.value)
    with open_slide(path, mpp=0.5) as slide:  # JPEG 2000 tiles, two levels
        assert slide.level_dimensions == ((4443, 3567), (2221, 1783))
        assert slide.read_region(0, 0, 64, 64, Mpp(1.0)).shape == (64, 64, 3)


def test_implausible_metadata_resolution_is_refused_with_range(wsi):
    path = wsi / "small_HE_levels.tiff"  # 72 dpi placeholder tags: 352.9 µm/px
    with pytest.raises(SlideError, match=r"352\.858 µm/px.*0\.05-20 µm/px") as caught:
        open_slide(path)
    assert str(caught.value).startswith(str(path))
    with pytest.raises(SlideError, match="outside the accepted range"):
        open_slide(path, mpp=50)
    with pytest.raises(SlideError, match="not a positive number"):
        open_slide(path, mpp=-1)


def test_tiff_resolution_tags_and_non_square_pixels(tmp_path):
    inch = tmp_path / "inch.tif"
    tifffile.imwrite(inch, gradient(0, 0, 64, 48), photometric="rgb", resolution=(25400 / 0.5, 25400 / 0.5),
                     resolutionunit="INCH", metadata=None)  # fmt: skip
    with open_slide(inch) as slide:
        assert slide.backend == "image"
        assert slide.mpp.um_per_px == pytest.approx(0.5)
        assert slide.mpp_source == "metadata:tiff.XResolution"
    skewed = tmp_path / "skewed.tif"
    tifffile.imwrite(skewed, gradient(0, 0, 64, 48), photometric="rgb", resolution=(1e4 / 0.25, 1e4 / 0.5),
                     resolutionunit="CENTIMETER", metadata=None)  # fmt: skip
    with pytest.raises(SlideError, match="non-square pixels"):
        open_slide(skewed)


# --- reading ----------------------------------------------------------------------------------------------


def test_read_at_level0_resolution_equals_openslide(wsi):
    path = wsi / "cmu-1-small-region.svs"
    with open_slide(path) as slide, openslide.OpenSlide(str(path)) as reference:
        ours = slide.read_region(100, 200, 300, 250, slide.mpp)
        theirs = np.asarray(reference.read_region((100, 200), 0, (300, 250)))[..., :3]
    assert ours.dtype == np.uint8 and ours.shape == (250, 300, 3)
    np.testing.assert_array_equal(ours, theirs)


def test_read_at_coarser_resolution_is_an_area_average(wsi):
    with open_slide(wsi / "cmu-1-small-region.svs") as slide:
        full = slide.read_region(400, 800, 800, 600, slide.mpp)
        coarse = slide.read_region(400, 800, 200, 150, Mpp(slide.mpp.um_per_px * 4))
        shifted = slide.read_region(401.5, 800, 200, 150, Mpp(slide.mpp.um_per_px * 4))
    assert coarse.shape == (150, 200, 3)
    expected = cv2.resize(full, (200, 150), interpolation=cv2.INTER_AREA)
    assert np.abs(coarse.astype(int) - expected).mean() < 1.0
    # A sub-pixel shift moves the content, not the grid: still close, but not identical.
    assert 0 < np.abs(shifted.astype(int) - expected).mean() < 8


def test_outside_the_slide_is_white(wsi):
    with open_slide(wsi / "cmu-1-small-region.svs") as slide:
        width = slide.dimensions[0]
        corner = slide.read_region(-100, -50, 200, 100, slide.mpp)
        beyond = slide.read_region(width + 10, 0, 32, 32, Mpp(1.0))
        inside = slide.read_region(0, 0, 100, 50, slide.mpp)
    assert (corner[:50] == 255).all() and (corner[:, :100] == 255).all()
    np.testing.assert_array_equal(corner[50:, 100:], inside)
    assert (beyond == 255).all()


def test_overview_reads_the_smallest_fitting_level(wsi):
    with open_slide(wsi / "small_HE_levels.tiff", mpp=0.25) as slide:
        levels_read = []
        read_level = slide._read_level

        def spy(level, *box):
            levels_read.append(level)
            return read_level(level, *box)

        slide._read_level = spy
        image, mpp = slide.overview(max_side=100)
    assert image.shape == (83, 100, 3)
    assert mpp.um_per_px == pytest.approx(0.75)
    assert set(levels_read) == {1}  # 300 px wide / 3: level 1 (150 px) fits, level 2 (75 px) is too small


def test_best_level_and_resample_geometry():
    downsamples = (1.0, 4.0, 16.0)
    assert best_level(downsamples, 0.25, 0.25) == 0
    assert best_level(downsamples, 0.25, 0.995) == 1  # within 1 % of level 1's 1.0 µm/px
    assert best_level(downsamples, 0.25, 3.0) == 1
    assert best_level(downsamples, 0.25, 100.0) == 2
    assert best_level(downsamples, 0.25, 0.1) == 0
    ramp = np.repeat(np.repeat(np.arange(0, 200, 2, dtype=np.uint8)[None, :, None], 4, axis=0), 3, axis=2)
    half = resample(ramp, 10.5, 0, 1.0, 20, 4)  # half a pixel right: halfway between neighbours
    assert np.abs(half[0, :, 0].astype(int) - np.arange(21, 61, 2)).max() <= 1
    pairs = resample(ramp, 10, 0, 2.0, 20, 2)  # each output pixel averages two source pixels
    assert np.abs(pairs[0, :, 0].astype(int) - np.arange(21, 101, 4)).max() <= 1


def test_best_reduction_never_decodes_coarser_than_asked():
    assert best_reduction((1, 2, 4, 8), 2.5) == 2
    assert best_reduction((1, 2, 4, 8), 3.99) == 4  # within 1 %, as for levels
    assert best_reduction((1, 2, 4, 8), 100.0) == 8
    assert best_reduction((1, 2, 4, 8), 1.5) == 1
    assert best_reduction((1,), 16.0) == 1


def textured(width: int, height: int) -> np.ndarray:
    """Blurred noise, grains of about 0.6 µm at 0.1 µm/px with a smear's contrast (standard deviation ~55)."""
    noise = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(noise, (0, 0), 6).astype(np.float64)
    return np.clip((blurred - blurred.mean()) * 16 + 128, 0, 255).astype(np.uint8)


def test_jpeg_tiles_are_decoded_smaller_for_coarser_reads(tmp_path):
    """A read 2.5× coarser than the level decodes its JPEG tiles at 1/2, one 4× coarser at 1/4: the same
    picture as decoding them whole and averaging, to within 2.5 grey levels on average (reading one level-0
    pixel to the side differs by more than 4)."""
    path = tmp_path / "field.tif"
    tifffile.imwrite(path, textured(1300, 1000), tile=(256, 256), compression="jpeg", photometric="rgb")
    with open_slide(path, mpp=0.1) as slide, open_slide(path, mpp=0.1) as whole_tiles:
        assert slide.backend == "tifffile" and slide._reductions(0) == (1, 2, 4, 8)
        whole_tiles._reductions = lambda level: (1,)
        reductions = []
        read_reduced = slide._read_reduced

        def spy(level, reduction, *box):
            reductions.append(reduction)
            return read_reduced(level, reduction, *box)

        slide._read_reduced = spy
        for mpp, x, y, side, reduction in [(0.25, 123.4, 77.7, 300, 2), (0.4, 10, 20, 200, 4), (0.4, 1000, 0, 100, 4)]:
            reductions.clear()
            ours = slide.read_region(x, y, side, side, Mpp(mpp))
            reference = whole_tiles.read_region(x, y, side, side, Mpp(mpp))
            assert set(reductions) == {reduction}
            assert np.abs(ours.astype(int) - reference).mean() < 2.5
            xs, ys = [x, x + 37, x + 401], [y, y + 250, y + 3]
            np.testing.assert_array_equal(
                slide.read_regions(xs, ys, side, side, Mpp(mpp)),
                np.stack([slide.read_region(bx, by, side, side, Mpp(mpp)) for bx, by in zip(xs, ys)]),
            )
        beyond = slide.read_region(1000, 0, 100, 100, Mpp(0.4))  # level 0 ends at x = 1300: 75 px at 0.4 µm/px
        assert (beyond[:, 75:] == 255).all() and (beyond[:, :75] != 255).any()
        reductions.clear()
        slide.read_region(0, 0, 100, 100, Mpp(0.15))
        assert reductions == []  # 1.5× coarser: whole tiles, as 1/2 would be coarser than asked
        image, _ = slide.overview(max_side=300)  # 4.3× coarser, yet whole tiles: the smear map was tuned so
        assert reductions == [] and image.shape == (231, 300, 3)


def abbreviated(jpeg: bytes) -> tuple[bytes, bytes]:
    """(tables, tile): a JPEG's quantisation and Huffman tables moved out of it, as libtiff stores a page."""
    tables, tile, pos = [b"\xff\xd8"], [b"\xff\xd8"], 2
    while jpeg[pos : pos + 2] != b"\xff\xda":  # up to the start of scan, segment by segment
        end = pos + 2 + int.from_bytes(jpeg[pos + 2 : pos + 4], "big")
        (tables if jpeg[pos : pos + 2] in (b"\xff\xdb", b"\xff\xc4") else tile).append(jpeg[pos:end])
        pos = end
    return b"".join(tables) + b"\xff\xd9", b"".join(tile) + jpeg[pos:]


def test_jpeg_tables_shared_by_a_page_are_spliced_into_each_tile(wsi):
    """libtiff writes one table set per page and abbreviated tiles: a tile decoded smaller gets the tables."""
    jpeg = bytes(imagecodecs.jpeg8_encode(textured(256, 256), level=90))
    tables, tile = abbreviated(jpeg)
    assert len(tile) < len(jpeg) and not tile.count(b"\xff\xdb")
    level = SimpleNamespace(segment_width=256, segment_height=256, page=SimpleNamespace(jpegtables=tables))
    standalone = SimpleNamespace(segment_width=256, segment_height=256, page=SimpleNamespace(jpegtables=None))
    np.testing.assert_array_equal(
        tiff_backend._decode_reduced(level, tile, 2), tiff_backend._decode_reduced(standalone, jpeg, 2)
    )
    # Aperio labels its tiles RGB: libjpeg's own guess of their colour space is not trusted, they decode whole.
    with TiffSlide(wsi / "cmu-1-small-region.svs", 0.25) as slide:
        assert slide._reductions(0) == (1,)


# --- the other backends ----------------------------------------------------------------------------------


def test_ome_pyramid_is_read_tile_by_tile_with_tifffile(tmp_path):
    path = tmp_path / "field.ome.tif"
    level0 = gradient(0, 0, 1200, 1000)
    levels = [level0, level0[::2, ::2], level0[::4, ::4]]
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(levels[0], subifds=2, tile=(256, 256), photometric="rgb", compression="zlib",
                  metadata={"axes": "YXS", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25})  # fmt: skip
        for level in levels[1:]:
            tif.write(level, subfiletype=1, tile=(256, 256), photometric="rgb", compression="zlib")
    with open_slide(path) as slide:
        assert slide.backend == "tifffile"
        assert slide.id == "field"
        assert slide.mpp == Mpp(0.25) and slide.mpp_source == "metadata:ome.PhysicalSizeX"
        assert slide.level_dimensions == ((1200, 1000), (600, 500), (300, 250))
        np.testing.assert_array_equal(
            slide.read_region(250, 300, 300, 200, slide.mpp), level0[300:500, 250:550]
        )
        np.testing.assert_array_equal(
            slide.read_region(512, 256, 100, 80, Mpp(0.5)), levels[1][128:208, 256:356]
        )
        edge = slide.read_region(1100, 900, 200, 200, slide.mpp)
        np.testing.assert_array_equal(edge[:100, :100], level0[900:, 1100:])
        assert (edge[100:] == 255).all() and (edge[:, 100:] == 255).all()


@pytest.mark.parametrize(
    ("name", "level"),
    [("cmu-1-small-region.svs", 0), ("tcga-cr-7395-01a-01-ts1.svs", 1), ("small_HE_levels.tiff", 2)],
)
def test_tifffile_backend_decodes_tiles_as_openslide_does(wsi, name, level):
    """Aperio JPEG with shared tables, JPEG 2000 and generic JPEG tiles, decoded tile by tile.

    Compared from the origin because OpenSlide resamples reads elsewhere on levels whose downsample is not an
    integer (2.0005 and 4.016 here); full width reaches the partial tiles at the right edge.
    """
    path = wsi / name
    with TiffSlide(path, 0.25) as ours, openslide.OpenSlide(str(path)) as reference:
        width, height = ours.level_dimensions[level][0], min(600, ours.level_dimensions[level][1])
        theirs = np.asarray(reference.read_region((0, 0), level, (width, height)))[..., :3]
        np.testing.assert_array_equal(ours._read_level(level, 0, 0, width, height), theirs)


def test_large_flat_tiff_is_read_strip_by_strip(tmp_path, monkeypatch):
    # Above FLAT_TIFF_MAX_PIXELS a flat TIFF is no photograph; lowered here to keep the file small.
    monkeypatch.setattr(tiff_backend, "FLAT_TIFF_MAX_PIXELS", 1000)
    path = tmp_path / "stripped.tif"
    image = gradient(0, 0, 300, 200)
    tifffile.imwrite(path, image, photometric="rgb", rowsperstrip=16, compression="zlib", metadata=None)
    with open_slide(path, mpp=0.5) as slide:
        assert slide.backend == "tifffile"
        np.testing.assert_array_equal(slide.read_region(10, 20, 250, 150, slide.mpp), image[20:170, 10:260])


def test_photograph_needs_mpp_and_keeps_colour_order(tmp_path):
    path = tmp_path / "field.png"
    rgb = gradient(0, 0, 120, 80)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    with pytest.raises(SlideError, match="--mpp") as caught:
        open_slide(path)
    assert str(caught.value).startswith(str(path))
    with open_slide(path, mpp=0.1) as slide:
        assert slide.backend == "image" and slide.mpp_source == "user"
        assert slide.dimensions == (120, 80)
        np.testing.assert_array_equal(slide.read_region(0, 0, 120, 80, slide.mpp), rgb)


def test_flat_tiff_is_read_as_an_image(wsi):
    with open_slide(wsi / "kidney-48-5.tif", mpp=0.5) as slide:
        assert slide.backend == "image"
        assert slide.dimensions == (1493, 901)
        assert slide.read_region(0, 0, 50, 40, slide.mpp).shape == (40, 50, 3)


# --- errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["broken.svs", "openslide-unopenable.tiff", "openslide-unreadable.svs", "small_dicom.dcm"],
)
def test_broken_files_raise_a_slide_error_naming_them(wsi, name):
    path = wsi / name
    with pytest.raises(SlideError) as caught:
        open_slide(path, mpp=0.25)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message


def test_unreadable_inputs_made_here(tmp_path):
    empty = tmp_path / "empty.svs"
    empty.touch()
    text = tmp_path / "x.svs"
    text.write_text("this is not a slide\n")
    with pytest.raises(SlideError, match="empty file"):
        open_slide(empty)
    with pytest.raises(SlideError, match="not a readable slide or image"):
        open_slide(text, mpp=0.25)
    with pytest.raises(SlideError, match="file not found"):
        open_slide(tmp_path / "missing.ndpi")
    with pytest.raises(SlideError, match="folder"):
        open_slide(tmp_path)


def test_absurd_header_is_refused_before_allocating(tmp_path):
    path = tmp_path / "huge.tif"
    tifffile.imwrite(
        path, np.zeros((512, 512, 3), np.uint8), tile=(512, 512), photometric="rgb", metadata=None
    )
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages.first.tags["ImageWidth"].overwrite(10**6)
        tif.pages.first.tags["ImageLength"].overwrite(10**6)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(SlideError, match="1000000×1000000") as caught:
            open_slide(path, mpp=0.25)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 2
    assert peak < 20 * 2**20
    assert str(caught.value).startswith(str(path))


def test_slide_id_is_safe_for_a_folder_name(tmp_path):
    safe = re.compile(r"^[A-Za-z0-9._-]+$")
    assert slide_id(Path("../../etc/x.svs")) == "x"
    for name in ("<script>.svs", "..svs", "...svs", "a..b.ndpi", " .svs", "Müller, Anna.svs", ".hidden.tif"):
        identifier = slide_id(Path(name))
        assert safe.match(identifier) and ".." not in identifier and not identifier.startswith("."), name
    assert "<" not in slide_id(Path("<script>.svs")) and "script" in slide_id(Path("<script>.svs"))
    photo = tmp_path / "<script>.png"
    cv2.imwrite(str(photo), np.zeros((8, 8, 3), np.uint8))
    with open_slide(photo, mpp=0.1) as slide:
        assert slide.id == "_script_"


# --- writing ----------------------------------------------------------------------------------------------


def test_written_pyramid_opens_in_openslide_and_tifffile_with_its_resolution(tmp_path):
    path = tmp_path / "synthetic.tif"
    calls = []

    def render(x0, y0, w, h):
        calls.append((x0, y0, w, h))
        return gradient(x0, y0, w, h)

    write_pyramidal_tiff(path, 3000, 2000, Mpp(0.1), render, description="bmpipe synthetic smear")
    assert not path.with_name(path.name + ".part").exists()
    assert calls == [(x, y, min(512, 3000 - x), min(512, 2000 - y)) for y in range(0, 2000, 512)
                     for x in range(0, 3000, 512)]  # fmt: skip
    with openslide.OpenSlide(str(path)) as direct:
        assert direct.level_count >= 2
        assert direct.level_dimensions[:2] == ((3000, 2000), (750, 500))
        assert float(direct.properties["openslide.mpp-x"]) == pytest.approx(0.1)
    with open_slide(path) as slide, OpenSlideSlide(path, None) as through_openslide:
        assert slide.backend == "tifffile"  # a generic tiled TIFF is read with tifffile first
        assert slide.mpp.um_per_px == pytest.approx(0.1)
        assert slide.mpp_source == "metadata:tiff.XResolution"
        assert through_openslide.mpp_source == "metadata:openslide.mpp-x"
        level0 = slide.read_region(0, 0, 3000, 2000, slide.mpp)
        level1 = slide.read_region(0, 0, 750, 500, Mpp(0.4))
        np.testing.assert_array_equal(level0, through_openslide.read_region(0, 0, 3000, 2000, slide.mpp))
    truth = gradient(0, 0, 3000, 2000)
    error = np.abs(level0.astype(int) - truth)
    assert error.mean() < 1.5 and error.max() <= 12
    truth1 = cv2.resize(truth, (750, 500), interpolation=cv2.INTER_AREA)
    assert np.abs(level1.astype(int) - truth1).mean() < 1.5


def test_writer_failure_leaves_no_file(tmp_path):
    path = tmp_path / "failed.tif"

    def render(x0, y0, w, h):
        if y0 > 0:
            raise RuntimeError("renderer crashed")
        return np.zeros((h, w, 3), np.uint8)

    with pytest.raises(RuntimeError, match="renderer crashed"):
        write_pyramidal_tiff(path, 1024, 1024, Mpp(0.1), render)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="must return"):
        write_pyramidal_tiff(path, 64, 64, Mpp(0.1), lambda x0, y0, w, h: np.zeros((h, w), np.uint8), tile=64)
    assert list(tmp_path.iterdir()) == []


def test_writer_streams_level0(tmp_path):
    """A 48 MB level 0 is never held: peak traced memory is the first reduced level (3 MB) plus a few tiles."""
    side = 4096

    def render(x0, y0, w, h):
        return np.full((h, w, 3), (x0 + y0) // 64 % 256, np.uint8)

    tracemalloc.start()
    try:
        write_pyramidal_tiff(tmp_path / "big.tif", side, side, Mpp(0.1), render)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < side * side * 3 / 6
    with openslide.OpenSlide(str(tmp_path / "big.tif")) as direct:
        assert direct.level_dimensions == ((4096, 4096), (1024, 1024), (256, 256))


def test_truncated_slide_is_refused(wsi, tmp_path):
    path = tmp_path / "cut.svs"
    path.write_bytes((wsi / "cmu-1-small-region.svs").read_bytes()[:1_000_000])
    with pytest.raises(SlideError) as caught, open_slide(path, mpp=0.25) as slide:
        slide.overview(4096)
    assert str(caught.value).startswith(f"{path}: ")


def test_handles_on_one_file_share_its_decoded_tiles(tmp_path):
    """Reader threads each reopen the slide; a tile one of them decoded is not decoded again by another."""
    path = tmp_path / "shared.tif"
    tifffile.imwrite(path, gradient(0, 0, 1024, 768), tile=(256, 256), compression="jpeg", photometric="rgb")
    decoded = []
    with open_slide(path, mpp=0.1) as first, first.reopen() as second:
        for handle in (first, second):
            decode = handle._decode
            handle._decode = lambda level, index, reduction, decode=decode: (
                decoded.append(index) or decode(level, index, reduction)
            )
        a = first.read_region(100, 100, 400, 300, first.mpp)
        assert sorted(decoded) == [1, 4, 5]  # tile 0 was decoded when the first handle opened (its probe)
        b = second.read_region(100, 100, 400, 300, second.mpp)
        assert len(decoded) == 3 and second.mpp_source == "user"
        second.read_region(600, 100, 100, 100, second.mpp)
        assert decoded[3:] == [2]
    np.testing.assert_array_equal(a, b)
