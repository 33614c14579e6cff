"""Outputs of one slide, made from hand-built records (no models): files, content, escaping, atomicity."""

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from bmpipe.imaging.smear import GLASS, MONOLAYER, THICK
from bmpipe.nn.weights import ModelRecord
from bmpipe.records import Cells
from bmpipe.report.figures import cell_density, decode_rgb, png_bytes
from bmpipe.report.outputs import SlideResult, SlideSummary, overlay_gallery, write_slide_outputs
from bmpipe.resolution import Mpp
from bmpipe.stages.aggregate import differential
from bmpipe.stages.detect import TileStats
from bmpipe.stages.regions import SmearMap

CROP = png_bytes(np.full((24, 24, 3), (200, 120, 160), np.uint8))


def result(slide_id="case-1", file="case-1.svs", tiles=None, **extra):
    rng = np.random.default_rng(0)
    labels = np.array(["BLA"] * 30 + ["NGS"] * 120 + ["EBO"] * 40 + ["KSC"] * 5, dtype=object)
    xy = rng.uniform(100, 1900, size=(len(labels), 2))
    cells = Cells.from_boxes(np.hstack([xy - 60, xy + 60]), np.full(len(labels), 0.9))
    cells = cells.with_labels(labels, rng.uniform(0.4, 1.0, len(labels)))
    zones = np.full((50, 50), MONOLAYER, np.uint8)
    zones[:, :10] = THICK
    zones[:3] = GLASS
    smear = SmearMap(
        overview=np.full((50, 50, 3), 230, np.uint8), mpp=Mpp(4.0), zones=zones,
        analysed=zones == MONOLAYER, scale=40.0, mode="readable",
    )
    summary = SlideSummary(id=slide_id, file=file, mpp="0.1 µm/px", mpp_source="metadata:test",
                           dimensions=(2000, 2000), backend="openslide")
    return SlideResult(
        slide=summary, smear=smear, cells=cells, differential=differential(cells, slide_id),
        tiles=tiles or TileStats(tiles_read=4), models=[ModelRecord("detector-unet", "1", "a" * 64, "d.safetensors")],
        gallery={"BLA": [CROP, CROP]}, **extra,
    )


def test_outputs_are_complete_and_consistent(tmp_path):
    folder = write_slide_outputs(result(), tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == [
        "cells.geojson", "cells.parquet", "differential.json", "figures", "report.html", "report.pdf", "review.csv",
        "review.html",
    ]
    data = json.loads((folder / "differential.json").read_text())
    assert data["slide"] == "case-1" and data["n_counted"] == 190
    assert data["blast_pct"] == 100 * 30 / 190
    assert data["models"] == [["detector-unet", "1", "a" * 64]]
    assert data["excluded"] == ["KSC", "ART", "NIF", "MGK", "PLT"]
    assert data["slide_summary"]["id"] == "case-1" and data["tiles"]["tiles_read"] == 4
    frame = pd.read_parquet(folder / "cells.parquet")
    assert len(frame) == 195 and list(frame["cell_id"]) == list(range(195))
    html = (folder / "report.html").read_text()
    assert "not a diagnostic device" in html and "15.8%" in html and "data:image/png;base64," in html
    assert (folder / "report.pdf").read_bytes()[:5] == b"%PDF-"
    assert {p.name for p in (folder / "figures").iterdir()} == {"overview.jpg", "density.png", "gallery"}
    assert sorted(p.name for p in (folder / "figures" / "gallery").iterdir()) == ["BLA-0.png", "BLA-1.png"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_report_states_every_part_the_issue_asks_for(tmp_path):
    html = (write_slide_outputs(result(), tmp_path) / "report.html").read_text()
    for part in ("analysed", "bmpipe 0.", "detector-unet 1", "Findings", "Differential", "BMSNet groups",
                 "Quality control", "Cells per class", "Smear mask", "cells per mm²", "Resolution used",
                 "0.1 µm/px", "Tiles read", "Cells left unidentified", "M:E ratio", "Denominator"):
        assert part in html, part
    assert "lies in the 10-19% range of WHO 2022 MDS-IB2" in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")  # nothing fetched
    assert "@media print" in html and "@media (max-width" in html and 'name="viewport"' in html


def test_qc_lists_every_tile_counter_the_detector_records(tmp_path):
    @dataclass
    class MoreStats:  # the detector's TileStats grows counters; the report must list them without changes
        tiles_read: int = 10
        tiles_empty: int = 3
        tiles_blurred: int = 2

    html = (write_slide_outputs(result(tiles=MoreStats()), tmp_path) / "report.html").read_text()
    assert "Tiles blurred</th><td class=\"num\">2<" in html and "Tiles empty</th><td class=\"num\">3<" in html


def test_gradcam_overlays_are_shown_beside_their_crops(tmp_path):
    gallery = {"BLA": [CROP, CROP]}
    seen = {}

    def overlay(crops, labels):
        seen["shape"], seen["labels"] = crops.shape, labels
        return 255 - crops

    overlays = overlay_gallery(gallery, overlay)
    assert seen == {"shape": (2, 24, 24, 3), "labels": ["BLA", "BLA"]}
    assert (decode_rgb(overlays["BLA"][0]) == 255 - decode_rgb(CROP)).all()
    resized = overlay_gallery(gallery, overlay, input_px=12)  # the classifier's own input size, and back
    assert seen["shape"] == (2, 12, 12, 3) and decode_rgb(resized["BLA"][0]).shape == (24, 24, 3)
    plain = (write_slide_outputs(result(), tmp_path / "a") / "report.html").read_text()
    html = (write_slide_outputs(result(gallery_overlays=overlays), tmp_path / "b") / "report.html").read_text()
    assert html.count('alt="BLA Grad-CAM"') == 2 and 'alt="BLA Grad-CAM"' not in plain


def test_density_map_counts_cells_per_square_millimetre():
    xy = np.array([[400.0, 400.0]] * 10)
    density = cell_density((50, 50), xy, scale=40.0, overview_mpp=Mpp(4.0))
    pixel_mm2 = (4.0 / 1000) ** 2
    assert density.sum() * pixel_mm2 == pytest.approx(10, rel=1e-3)  # the smoothing keeps the total
    assert np.unravel_index(density.argmax(), density.shape) == (10, 10)


def test_untrusted_names_are_escaped(tmp_path):
    folder = write_slide_outputs(result(file="<script>alert(1)</script>.svs"), tmp_path)
    html = (folder / "report.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;.svs" in html
    assert (folder / "report.pdf").stat().st_size > 1000  # the PDF's mini-markup must not choke on it either


def test_rewriting_replaces_the_folder_whole(tmp_path):
    write_slide_outputs(result(), tmp_path)
    (tmp_path / "case-1" / "stale.txt").write_text("old")
    folder = write_slide_outputs(result(), tmp_path)
    assert not (folder / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case-1"]


def test_a_failure_while_writing_leaves_the_previous_folder_untouched(tmp_path, monkeypatch):
    folder = write_slide_outputs(result(), tmp_path)
    before = (folder / "differential.json").read_text()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("bmpipe.report.outputs.write_pdf", broken)
    with pytest.raises(RuntimeError):
        write_slide_outputs(result(), tmp_path)
    assert (folder / "differential.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case-1"]
