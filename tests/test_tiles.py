import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bmpipe.imaging.tiles import tile_grid
from bmpipe.records import Box


def detect_in_tile(tile, centres, radius):
    """A perfect detector: every cell overlapping the tile, its box clipped to the tile (cut at borders)."""
    t0x, t0y = tile.x0, tile.y0
    t1x, t1y = tile.x1, tile.y1
    boxes = np.column_stack([centres - radius, centres + radius])
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], t0x, t1x)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], t0y, t1y)
    seen = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    local = (boxes[seen] - [t0x, t0y, t0x, t0y]) / tile.scale
    return np.flatnonzero(seen), local


def owned_and_whole(tile, centres, radius, slide_width):
    """Indices of the cells ``tile`` owns under the perfect detector; asserts that an owned cell is never cut by
    its tile, unless the slide's own edge cuts it."""
    index, local = detect_in_tile(tile, centres, radius)
    level0 = tile.to_level0(local)
    cx, cy = (level0[:, 0] + level0[:, 2]) / 2, (level0[:, 1] + level0[:, 3]) / 2
    mine = tile.owns(cx, cy)
    owned = index[mine]
    whole = np.isclose(level0[mine, 2] - level0[mine, 0], 2 * radius)
    at_edge = (centres[owned, 0] < radius) | (centres[owned, 0] > slide_width - radius)
    assert np.all(whole | at_edge)
    return owned


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(300, 5000),
    height=st.integers(300, 5000),
    scale=st.sampled_from([1.0, 2.5, 4.0]),
    seed=st.integers(0, 10_000),
)
def test_every_cell_is_owned_by_exactly_one_tile_and_seen_whole(width, height, scale, seed):
    radius = 60.0  # level-0 px; the overlap below (in tile px) exceeds 2 radii
    overlap_px = int(np.ceil(2 * radius / scale)) + 2
    size_px = max(2 * overlap_px + 4, 128)
    rng = np.random.default_rng(seed)
    centres = rng.uniform([0, 0], [width, height], size=(200, 2))
    owners = np.zeros(len(centres), dtype=int)
    for tile in tile_grid(width, height, scale, size_px, overlap_px):
        owners[owned_and_whole(tile, centres, radius, width)] += 1
    assert np.all(owners == 1)


def test_overlap_must_be_under_half_a_tile():
    with pytest.raises(ValueError, match="overlap"):
        list(tile_grid(1000, 1000, 1.0, 100, 50))


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(300, 5000),
    height=st.integers(300, 5000),
    scale=st.sampled_from([1.0, 2.5, 4.0]),
    multiple=st.sampled_from([1, 8, 32]),
    seed=st.integers(0, 10_000),
)
def test_tiles_trimmed_to_an_area_still_see_its_cells_whole_and_once(width, height, scale, multiple, seed):
    """Cells centred in an analysed box are owned once and seen whole by tiles trimmed to the box's part of
    their core grown by half the overlap."""
    radius = 60.0
    overlap_px = int(np.ceil(2 * radius / scale)) + 2
    size_px = max(2 * overlap_px + 4, 128)
    margin = overlap_px * scale / 2
    rng = np.random.default_rng(seed)
    ax0, ax1 = np.sort(rng.uniform(0, width, 2))
    ay0, ay1 = np.sort(rng.uniform(0, height, 2))
    centres = rng.uniform([ax0, ay0], [ax1, ay1], size=(200, 2))
    owners = np.zeros(len(centres), dtype=int)
    for full in tile_grid(width, height, scale, size_px, overlap_px):
        cx0, cy0, cx1, cy1 = full.core
        box = max(cx0, ax0), max(cy0, ay0), min(cx1, ax1), min(cy1, ay1)
        if box[0] >= box[2] or box[1] >= box[3]:
            continue
        tile = full.trimmed(Box(*box).grown(margin), multiple)
        assert tile.core == full.core
        assert full.x0 <= tile.x0 and tile.x1 <= full.x1 + 1e-9 and full.y0 <= tile.y0 and tile.y1 <= full.y1 + 1e-9
        for side in (tile.width_px, tile.height_px):
            assert side % multiple == 0 or side == size_px
        owners[owned_and_whole(tile, centres, radius, width)] += 1
    assert np.all(owners == 1)


def test_trimming_to_a_box_outside_the_tile_is_refused():
    tile = next(tile_grid(2000, 1000, 1.0, 512, 64))
    with pytest.raises(ValueError, match="outside the tile"):
        tile.trimmed(Box(600.0, 10.0, 700.0, 20.0))


def test_a_trimmed_tile_is_rounded_up_within_the_tile():
    tile = next(tile_grid(2000, 1000, 2.0, 512, 64))  # 1024 level-0 px a side
    trimmed = tile.trimmed(Box(1000.0, 100.0, 1030.0, 181.0), multiple=32)
    # x: 12 tile px from px 500, rounded up to 32 and moved back inside the tile; y: 41 px from px 50 -> 64
    assert (trimmed.width_px, trimmed.height_px) == (32, 64)
    assert (trimmed.x0, trimmed.y0, trimmed.x1) == (960.0, 100.0, 1024.0)


def test_a_border_cell_seen_a_pixel_apart_by_two_tiles_is_counted_once():
    """Two tiles' views of one cell on their shared border differ by a pixel, each centre on its own side."""
    from bmpipe.records import Cells
    from bmpipe.stages.detect import BorderLedger

    left, right = list(tile_grid(1000, 400, 1.0, 512, 64))[:2]
    border = left.core[2]
    ledger = BorderLedger(slack_px=4.0)
    # the same cell, seen centred 1 px left of the border by the left tile and 1 px right of it by the right
    # one; and two distinct neighbours on the border, 30 px apart, that must both stay
    in_left = Cells.from_boxes(np.array([[border - 21, 100, border + 19, 140], [border - 22, 300, border + 18, 340]]),
                               np.ones(2))
    in_right = Cells.from_boxes(np.array([[border - 19, 101, border + 21, 141], [border - 19, 330, border + 21, 370]]),
                                np.ones(2))
    kept_left = ledger.admit(left, in_left.take(left.owns(in_left.x, in_left.y)))
    kept_right = ledger.admit(right, in_right.take(right.owns(in_right.x, in_right.y)))
    assert len(kept_left) == 2
    assert len(kept_right) == 1 and kept_right.y[0] == 350  # the duplicate dropped, the neighbour kept
