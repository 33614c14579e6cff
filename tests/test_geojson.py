"""cells.geojson against the form QuPath's reader takes (qupath.lib.io.PathObjectTypeAdapters, 0.4+)."""

import json
import math
import uuid

import numpy as np
import pytest

from bmpipe.records import Cells
from bmpipe.report.geojson import write_geojson
from bmpipe.taxonomy import load_taxonomy

TAX = load_taxonomy()


def cells_of(labels, scores=None):
    n = len(labels)
    boxes = np.array([[10.0 * i, 5.0 * i, 10.0 * i + 30.25, 5.0 * i + 40.0] for i in range(n)])
    cells = Cells.from_boxes(boxes, np.full(n, 0.8))
    return cells.with_labels(np.array(labels, dtype=object), np.full(n, 0.9) if scores is None else np.array(scores))


@pytest.fixture
def cells_geojson(tmp_path):
    """The collection ``write_geojson`` writes for ``cells``, parsed as strict JSON (no NaN or Infinity)."""

    def collection(cells, slide_id):
        path = tmp_path / f"{slide_id}.geojson"
        write_geojson(path, cells, slide_id)
        return json.loads(path.read_text("utf-8"), parse_constant=lambda name: pytest.fail(f"{name} in JSON"))

    return collection


def check_qupath_feature(feature):
    """Everything QuPath needs to recreate a classified detection with measurements from one feature."""
    assert set(feature) == {"type", "id", "geometry", "properties"} and feature["type"] == "Feature"
    uuid.UUID(feature["id"])  # QuPath keeps the object's id only when it parses as a UUID
    geometry = feature["geometry"]
    assert geometry["type"] == "Polygon" and len(geometry["coordinates"]) == 1  # one exterior ring, no holes
    ring = geometry["coordinates"][0]
    assert len(ring) >= 4 and ring[0] == ring[-1]  # RFC 7946: a closed linear ring of at least 4 positions
    assert all(len(p) == 2 and all(isinstance(v, float) and math.isfinite(v) for v in p) for p in ring)
    props = feature["properties"]
    assert props["objectType"] == "detection"
    assert isinstance(props["name"], str)
    measurements = props["measurements"]
    assert isinstance(measurements, dict)  # the 0.4+ form: name -> number
    assert all(isinstance(k, str) and isinstance(v, (int, float)) and math.isfinite(v) for k, v in measurements.items())
    if "classification" in props:
        cls = props["classification"]
        assert set(cls) == {"name", "color"} and isinstance(cls["name"], str)
        assert len(cls["color"]) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in cls["color"])


def test_every_feature_has_qupaths_detection_form(cells_geojson):
    labels = list(TAX.codes) + [""]
    collection = cells_geojson(cells_of(labels), "slide-1")
    assert set(collection) == {"type", "features"} and collection["type"] == "FeatureCollection"
    assert len(collection["features"]) == len(labels)
    for feature in collection["features"]:
        check_qupath_feature(feature)


def test_boxes_are_level0_pixels_and_classes_carry_the_taxonomy_colour(cells_geojson):
    collection = cells_geojson(cells_of(["BLA", "EBO"]), "slide-1")
    second = collection["features"][1]
    xs = [p[0] for p in second["geometry"]["coordinates"][0]]
    ys = [p[1] for p in second["geometry"]["coordinates"][0]]
    assert (min(xs), max(xs), min(ys), max(ys)) == (10.0, 40.2, 5.0, 45.0)  # rounded to 0.1 px
    assert second["properties"]["classification"] == {"name": "EBO", "color": list(TAX.colour("EBO"))}
    assert second["properties"]["measurements"]["cell id"] == 1


def test_an_unclassified_cell_has_no_classification(cells_geojson):
    (feature,) = cells_geojson(cells_of([""]), "slide-1")["features"]
    assert "classification" not in feature["properties"] and feature["properties"]["name"] == "unclassified"


def test_ids_are_stable_across_runs_and_distinct_between_slides(cells_geojson):
    cells = cells_of(["BLA"] * 5)
    first = [f["id"] for f in cells_geojson(cells, "slide-1")["features"]]
    assert first == [f["id"] for f in cells_geojson(cells, "slide-1")["features"]]
    assert len(set(first)) == 5
    assert not set(first) & {f["id"] for f in cells_geojson(cells, "slide-2")["features"]}


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_score_never_makes_the_file_invalid_json(bad, cells_geojson):
    collection = cells_geojson(cells_of(["BLA"], scores=[bad]), "slide-1")  # fails on a NaN/inf in the text
    assert "class probability" not in collection["features"][0]["properties"]["measurements"]


def test_an_empty_slide_is_an_empty_collection(cells_geojson):
    assert cells_geojson(Cells.empty(), "slide-1") == {"type": "FeatureCollection", "features": []}
