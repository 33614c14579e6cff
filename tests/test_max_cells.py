"""``--max-cells``: a count that stops once it is large enough, from tiles drawn over the whole smear."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bmpipe.cli import main
from bmpipe.imaging.tiles import Tile
from bmpipe.nn.weights import default_models_dir
from bmpipe.stages.detect import sampling_order

needs_models = pytest.mark.skipif(
    not (default_models_dir() / "detector-unet.safetensors").exists(), reason="shipped detector is absent"
)


def _grid(n: int, side: float = 100.0) -> list[Tile]:
    return [Tile(x * side, y * side, 64, 64, 1.0, (x * side, y * side, (x + 1) * side, (y + 1) * side))
            for y in range(n) for x in range(n)]


def test_the_tile_order_is_a_seeded_permutation_spread_over_the_smear():
    tiles = _grid(12)  # 144 tiles in 16 blocks of 3×3
    order = sampling_order(tiles, seed=0)
    assert sorted(order) == list(range(len(tiles)))
    assert order == sampling_order(tiles, seed=0) and order != sampling_order(tiles, seed=1)
    blocks = [(int(tiles[i].core[0] // 300), int(tiles[i].core[1] // 300)) for i in order]
    assert len(set(blocks[:16])) == 16  # the first 16 tiles come from the 16 blocks, one each
    first_half = np.array([tiles[i].core[:2] for i in order[:72]])
    assert first_half[:, 0].mean() == pytest.approx(550, abs=100)  # not one end of the smear


@pytest.fixture(scope="module")
def counts(tmp_path_factory):
    """A 4,000-cell phantom slide counted whole, and stopped at 800 cells with three seeds of the tile order."""
    from bmpipe.models import load_models
    from bmpipe.phantom import make_slide
    from bmpipe.slide import open_slide
    from bmpipe.stages.aggregate import differential
    from bmpipe.stages.detect import TileStats
    from bmpipe.stages.regions import find_smear
    from bmpipe.stages.stream import detect_and_classify

    path = make_slide(tmp_path_factory.mktemp("max-cells") / "s.tiff", cells=4000, blast_pct=10.0, seed=11)
    models = load_models(None, "cpu")
    out = {}
    with open_slide(path) as slide:
        smear = find_smear(slide, "readable")
        for seed in (None, 0, 1, 2):
            stats = TileStats()
            cells = detect_and_classify(slide, smear, models.detector, models.classifier, stats,
                                        max_cells=None if seed is None else 800, sample_seed=seed or 0)
            out[seed] = (differential(cells, "s"), stats)
    return out


@needs_models
@pytest.mark.slow
def test_a_stopped_count_reads_a_part_of_the_tiles_and_reaches_its_cap(counts):
    full, full_stats = counts[None]
    assert full_stats.tiles_read == full_stats.tiles_planned and full.n_counted > 2500
    for seed in (0, 1, 2):
        diff, stats = counts[seed]
        assert 800 <= diff.n_counted < full.n_counted / 2
        assert stats.tiles_read < stats.tiles_planned / 2 and stats.tiles_planned == full_stats.tiles_planned


@needs_models
@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_stopped_counts_blast_percentage_holds_the_full_counts_within_its_interval(counts, seed):
    full, _ = counts[None]
    diff, _ = counts[seed]
    low, high = diff.blast_ci95
    assert low <= full.blast_pct <= high, (seed, diff.blast_pct, diff.blast_ci95, full.blast_pct)


@needs_models
@pytest.mark.slow
def test_the_report_says_how_many_were_counted_of_about_how_many(demo_slide, tmp_path):
    assert main(["run", str(demo_slide), "--max-cells", "300", "--out", str(tmp_path)]) == 0
    folder = tmp_path / demo_slide.stem
    data = json.loads((folder / "differential.json").read_text())
    sample = data["sample"]
    assert sample["max_cells"] == 300 and sample["tiles_read"] < sample["tiles_planned"]
    assert data["n_counted"] >= 300 and sample["estimated_cells_in_area"] > data["n_counted"]
    assert f"{data['n_counted']} counted of about {sample['estimated_cells_in_area']}" in (
        folder / "report.html").read_text()
    assert json.loads((folder / "run.json").read_text())["settings"]["max_cells"] == 300
