"""cells.parquet and cells.geojson written batch by batch, as the stream classifies cells, equal the same
cells written at once: one row (and feature) per cell, ids running on across batches and row groups."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from bmpipe.records import Cells
from bmpipe.report import cell_files
from bmpipe.report.cell_files import CELLS_GEOJSON, CELLS_TABLE, CellFiles, write_cell_files


def some_cells(n: int, seed: int = 0) -> Cells:
    rng = np.random.default_rng(seed)
    boxes = rng.uniform(0, 5000, (n, 4))
    boxes[:, 2:] = boxes[:, :2] + rng.uniform(40, 160, (n, 2))
    cells = Cells.from_boxes(boxes, rng.uniform(0.3, 1.0, n))
    cells = cells.with_labels(rng.choice(["BLA", "EBO", "NGS", "PLM"], n).astype(object), rng.uniform(size=n))
    cells.dysplasia_grade = rng.integers(-1, 4, n)
    cells.dysplasia_score = rng.uniform(size=n)
    return cells


def test_cells_written_in_batches_equal_the_cells_written_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(cell_files, "ROW_GROUP", 100)  # several row groups, each of several batches
    cells = some_cells(1000)
    whole, batched = tmp_path / "whole", tmp_path / "batched"
    whole.mkdir(), batched.mkdir()
    write_cell_files(whole, cells, "slide-1")
    with CellFiles(batched, "slide-1") as files:
        for part in np.array_split(np.arange(len(cells)), [7, 7, 256, 300, 555, 999]):  # an empty one too
            files.write(cells.take(part))

    table = pq.ParquetFile(batched / CELLS_TABLE)
    assert table.metadata.num_row_groups > 1
    frame = pd.read_parquet(batched / CELLS_TABLE)
    pd.testing.assert_frame_equal(frame, pd.read_parquet(whole / CELLS_TABLE))
    assert frame.cell_id.tolist() == list(range(len(cells)))
    back = Cells.from_frame(frame)
    for name in ("x", "y", "x0", "y0", "x1", "y1", "score", "label_score", "dysplasia_grade", "dysplasia_score"):
        np.testing.assert_array_equal(getattr(back, name), getattr(cells, name), err_msg=name)
    assert back.label.tolist() == cells.label.tolist()

    features = json.loads((batched / CELLS_GEOJSON).read_text())["features"]
    assert features == json.loads((whole / CELLS_GEOJSON).read_text())["features"]
    assert [f["properties"]["measurements"]["cell id"] for f in features] == list(range(len(cells)))


def test_a_slide_without_cells_still_gets_both_files(tmp_path):
    write_cell_files(tmp_path, Cells.empty(), "slide-1")
    frame = pd.read_parquet(tmp_path / CELLS_TABLE)
    assert len(frame) == 0 and "label" in frame.columns and frame.cell_id.dtype == np.int64
    assert json.loads((tmp_path / CELLS_GEOJSON).read_text())["features"] == []


def test_fields_of_a_case_get_a_field_column_and_no_geojson(tmp_path):
    cells = some_cells(10)
    fields = np.array(["a.png"] * 4 + ["b.png"] * 6, dtype=object)
    write_cell_files(tmp_path, cells, "case-1", geojson=False, fields=fields)
    frame = pd.read_parquet(tmp_path / CELLS_TABLE)
    assert list(frame.columns[:2]) == ["cell_id", "field"] and frame.field.tolist() == fields.tolist()
    assert not (tmp_path / CELLS_GEOJSON).exists()


def test_a_write_that_fails_half_way_leaves_the_rows_before_it_readable(tmp_path):
    """The stream stopping (a bad tile, a kill of the worker) closes the files on the way out; the staging
    folder is then discarded, but nothing is left open or corrupt for the process to trip on."""
    cells = some_cells(20)
    with pytest.raises(RuntimeError), CellFiles(tmp_path, "slide-1") as files:
        files.write(cells)
        raise RuntimeError("the stream stopped")
    assert len(pd.read_parquet(tmp_path / CELLS_TABLE)) == 20
    assert len(json.loads((tmp_path / CELLS_GEOJSON).read_text())["features"]) == 20
