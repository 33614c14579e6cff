"""Outputs of one slide, made from hand-built records (no models): files, escaping, GeoJSON shape."""

import json

import numpy as np
import pandas as pd

from bmpipe.imaging.smear import GLASS, MONOLAYER, THICK
from bmpipe.nn.weights import ModelRecord
from bmpipe.records import Cells
from bmpipe.report.outputs import SlideResult, SlideSummary, write_slide_outputs
from bmpipe.resolution import Mpp
from bmpipe.stages.aggregate import differential
from bmpipe.stages.detect import TileStats
from bmpipe.stages.regions import SmearMap


def result(slide_id="case-1", file="case-1.svs"):
    rng = np.random.default_rng(0)
    labels = np.array(["BLA"] * 30 + ["NGS"] * 120 + ["EBO"] * 40 + ["KSC"] * 5, dtype=object)
    xy = rng.uniform(100, 1900, size=(len(labels), 2))
    cells = Cells.from_boxes(np.hstack([xy - 60, xy + 60]), np.full(len(labels), 0.9))
    cells = cells.with_labels(labels, np.full(len(labels), 0.95))
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
        tiles=TileStats(tiles_read=4), models=[ModelRecord("detector-unet", "1", "a" * 64, "d.safetensors")],
        gallery={"BLA": [b"\x89PNG fake"]},
    )


def test_outputs_are_complete_and_consistent(tmp_path):
    folder = write_slide_outputs(result(), tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == [
        "cells.geojson", "cells.parquet", "differential.json", "report.html",
    ]
    data = json.loads((folder / "differential.json").read_text())
    assert data["slide"] == "case-1" and data["n_counted"] == 190
    assert data["blast_pct"] == 100 * 30 / 190
    assert data["models"] == [["detector-unet", "1", "a" * 64]]
    assert len(pd.read_parquet(folder / "cells.parquet")) == 195
    html = (folder / "report.html").read_text()
    assert "not a diagnostic device" in html and "15.8%" in html and "data:image/png;base64," in html
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_geojson_follows_qupaths_detection_form(tmp_path):
    folder = write_slide_outputs(result(), tmp_path)
    collection = json.loads((folder / "cells.geojson").read_text())
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == 195
    feature = collection["features"][0]
    assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Polygon"
    ring = feature["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 5
    props = feature["properties"]
    assert props["objectType"] == "detection"
    assert props["classification"]["name"] == "BLA" and len(props["classification"]["color"]) == 3
    assert len({f["id"] for f in collection["features"]}) == 195


def test_untrusted_names_are_escaped(tmp_path):
    folder = write_slide_outputs(result(file="<script>alert(1)</script>.svs"), tmp_path)
    html = (folder / "report.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;.svs" in html


def test_rewriting_replaces_the_folder_whole(tmp_path):
    write_slide_outputs(result(), tmp_path)
    (tmp_path / "case-1" / "stale.txt").write_text("old")
    folder = write_slide_outputs(result(), tmp_path)
    assert not (folder / "stale.txt").exists()
