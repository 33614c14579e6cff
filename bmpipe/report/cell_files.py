"""A slide's per-cell files, ``cells.parquet`` and ``cells.geojson``, written while its cells are classified.

These are the only outputs that grow with the slide: written whole at the end, a million cells' GeoJSON
alone took 2.9 GB. :class:`CellFiles` takes each batch as the stream classifies it, so the slide's cells
reach disk during the models' time and the writing holds a row group at most. Row ``i`` of the table is
feature ``i`` of the GeoJSON, ``cell_id`` ``i`` and the ``cell id`` measurement QuPath shows.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bmpipe.records import Cells
from bmpipe.report.geojson import GeoJsonWriter

if TYPE_CHECKING:
    from typing_extensions import Self

CELLS_TABLE = "cells.parquet"
CELLS_GEOJSON = "cells.geojson"
#: Rows per Parquet row group: large enough to read back fast, ~6 MB of records in memory while filling.
ROW_GROUP = 65_536

_FLOAT_COLUMNS = ("x", "y", "x0", "y0", "x1", "y1", "score")

def cells_schema(with_field: bool) -> pa.Schema:
    """``cells.parquet``'s columns: the cell id, the photograph it is on (a case of fields), then ``Cells``'."""
    columns = [pa.field("cell_id", pa.int64())]
    if with_field:
        columns.append(pa.field("field", pa.string()))
    columns += [pa.field(name, pa.float64()) for name in _FLOAT_COLUMNS]
    columns += [
        pa.field("label", pa.string()),
        pa.field("label_score", pa.float64()),
        pa.field("dysplasia_grade", pa.int64()),
        pa.field("dysplasia_score", pa.float64()),
        pa.field("stain_score", pa.float64()),
    ]
    return pa.schema(columns)


class CellFiles:
    """``folder``'s cell table, and its GeoJSON unless ``geojson`` is False (fields of a case share no
    coordinate frame to draw on), written batch by batch by :meth:`write`; complete once closed.

    Rows wait for their row group in columns allocated once: the stream's batches are small (a classifier
    batch) and many, and an Arrow record batch per stream batch, each pinning its own small buffers between
    the stream's large transient ones, grew the 150,000-cell bench slide's peak memory by 1.6 GB.
    """

    def __init__(self, folder: Path, slide_id: str, *, geojson: bool = True, with_field: bool = False) -> None:
        self.schema = cells_schema(with_field)
        self.written = 0
        self._rows = {f.name: np.empty(ROW_GROUP, object if f.type == pa.string() else f.type.to_pandas_dtype())
                      for f in self.schema}
        self._filled = 0
        self._table = pq.ParquetWriter(folder / CELLS_TABLE, self.schema)
        self._geojson = GeoJsonWriter(folder / CELLS_GEOJSON, slide_id) if geojson else None

    def write(self, cells: Cells, fields: np.ndarray | None = None) -> None:
        """Append ``cells`` (with, for a case, the photograph each is on)."""
        if self._geojson is not None:
            self._geojson.write(cells)
        columns = {"cell_id": np.arange(self.written, self.written + len(cells)), "field": fields,
                   **{f.name: getattr(cells, f.name) for f in dataclasses.fields(Cells)}}
        done = 0
        while done < len(cells):
            n = min(len(cells) - done, ROW_GROUP - self._filled)
            for name, column in self._rows.items():
                column[self._filled:self._filled + n] = columns[name][done:done + n]
            self._filled += n
            done += n
            if self._filled == ROW_GROUP:
                self._flush()
        self.written += len(cells)

    def _flush(self) -> None:
        if self._filled:
            rows = [pa.array(self._rows[f.name][: self._filled], f.type) for f in self.schema]
            self._table.write_table(pa.Table.from_arrays(rows, schema=self.schema))
            self._filled = 0

    def close(self) -> None:
        self._flush()
        self._table.close()
        if self._geojson is not None:
            self._geojson.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def write_cell_files(folder: Path, cells: Cells, slide_id: str, *, geojson: bool = True,
                     fields: np.ndarray | None = None) -> None:
    """All of ``cells`` into ``folder``'s cell files, a row group at a time."""
    with CellFiles(folder, slide_id, geojson=geojson, with_field=fields is not None) as files:
        for start in range(0, len(cells), ROW_GROUP):
            rows = np.arange(start, min(start + ROW_GROUP, len(cells)))
            files.write(cells.take(rows), None if fields is None else fields[rows])
