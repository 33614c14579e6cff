"""Detected cells as GeoJSON that QuPath imports (File > Import objects) onto the same slide.

The form is the one QuPath's own reader expects (``qupath.lib.io.PathObjectTypeAdapters``, QuPath 0.4+): a
``FeatureCollection`` of ``Feature``s, each with a UUID ``id``, a ``Polygon`` geometry (here the cell's box, in
level-0 pixels as in bmpipe) and ``properties`` holding ``objectType: "detection"``, ``classification``
``{"name", "color": [r, g, b]}`` and ``measurements``, an object of finite numbers.

The file is written a batch of cells at a time (:class:`GeoJsonWriter`), each feature formatted straight to
text: built as one dict of every feature and dumped whole, a million cells' collection took 2.9 GB and 43 s.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from bmpipe.records import Cells
from bmpipe.taxonomy import load_taxonomy

if TYPE_CHECKING:
    from typing_extensions import Self

#: Fixed namespace so that the same cell of the same slide keeps its object id across runs.
_NAMESPACE = uuid.UUID("5b0c1d6e-8a4f-4e0b-9a57-6f1f2c3d4e5f")
_HEADER = '{"type": "FeatureCollection", "features": [\n'
_FOOTER = "\n]}\n"


def _measurements(values: dict[str, float]) -> str:
    """QuPath reads measurements as doubles; a NaN would make the file invalid JSON, so it is left out."""
    return ", ".join(f'"{name}": {v!r}' for name, v in values.items() if math.isfinite(v))


def _classes() -> dict[str, str]:
    """Each taxonomy code's ``classification`` object, as JSON text."""
    tax = load_taxonomy()
    return {code: json.dumps({"name": code, "color": list(tax.colour(code))}) for code in tax.classes}


def geojson_features(cells: Cells, slide_id: str, first_id: int = 0) -> Iterator[str]:
    """Each cell's ``Feature`` as one line of JSON; ``first_id`` is the cell id (row of ``cells.parquet``) of
    the first of ``cells``."""
    classes = _classes()
    columns = (cells.x0, cells.y0, cells.x1, cells.y1, cells.score, cells.label_score, cells.dysplasia_score,
               cells.dysplasia_grade)
    for i, (x0, y0, x1, y1, score, p_class, p_dys, grade) in enumerate(zip(*(c.tolist() for c in columns)),
                                                                          first_id):
        x0, y0, x1, y1 = round(x0, 1), round(y0, 1), round(x1, 1), round(y1, 1)
        code = str(cells.label[i - first_id]) or "unclassified"
        measurements = _measurements({
            "cell id": float(i),  # the row of cells.parquet and the cell_id of review.csv
            "detection score": round(score, 4),
            "class probability": round(p_class, 4),
            "dysplasia probability": round(p_dys, 4),
            "dysplasia grade": float(grade),
        })
        classification = f', "classification": {classes[code]}' if code in classes else ""
        yield (
            f'{{"type": "Feature", "id": "{uuid.uuid5(_NAMESPACE, f"{slide_id}:{i}:{x0}:{y0}")}", '
            f'"geometry": {{"type": "Polygon", "coordinates": '
            f"[[[{x0!r}, {y0!r}], [{x1!r}, {y0!r}], [{x1!r}, {y1!r}], [{x0!r}, {y1!r}], [{x0!r}, {y0!r}]]]}}, "
            f'"properties": {{"objectType": "detection", "name": {json.dumps(code)}, '
            f'"measurements": {{{measurements}}}{classification}}}}}'
        )


class GeoJsonWriter:
    """``cells.geojson`` written as cells arrive: :meth:`write` appends a batch's features, :meth:`close`
    ends the collection. Cell ids run on from one batch to the next, from ``first_id`` (a field of a case
    starts where the case's previous fields ended)."""

    def __init__(self, path: Path, slide_id: str, first_id: int = 0) -> None:
        self.slide_id = slide_id
        self.first_id = first_id
        self.written = 0
        self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - open until close(), batch by batch
        self._file.write(_HEADER)

    def write(self, cells: Cells) -> None:
        if not len(cells):
            return
        if self.written:
            self._file.write(",\n")
        self._file.write(",\n".join(geojson_features(cells, self.slide_id, self.first_id + self.written)))
        self.written += len(cells)

    def close(self) -> None:
        if not self._file.closed:
            self._file.write(_FOOTER)
            self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def write_geojson(path: Path, cells: Cells, slide_id: str, batch: int = 65_536, first_id: int = 0) -> None:
    """All of ``cells`` as ``path``, written ``batch`` cells at a time, their ids from ``first_id``."""
    with GeoJsonWriter(path, slide_id, first_id) as writer:
        for part in cells.chunks(batch):
            writer.write(part)
