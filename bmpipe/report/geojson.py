"""Detected cells as GeoJSON that QuPath imports (File > Import objects) onto the same slide.

The form is the one QuPath's own reader expects (``qupath.lib.io.PathObjectTypeAdapters``, QuPath 0.4+): a
``FeatureCollection`` of ``Feature``s, each with a UUID ``id``, a ``Polygon`` geometry (here the cell's box, in
level-0 pixels as in bmpipe) and ``properties`` holding ``objectType: "detection"``, ``classification``
``{"name", "color": [r, g, b]}`` and ``measurements``, an object of finite numbers.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from bmpipe.records import Cells
from bmpipe.taxonomy import load_taxonomy

#: Fixed namespace so that the same cell of the same slide keeps its object id across runs.
_NAMESPACE = uuid.UUID("5b0c1d6e-8a4f-4e0b-9a57-6f1f2c3d4e5f")


def _measurements(values: dict[str, float]) -> dict[str, float]:
    """QuPath reads measurements as doubles; a NaN would make the file invalid JSON, so it is left out."""
    return {name: v for name, v in values.items() if math.isfinite(v)}


def cells_geojson(cells: Cells, slide_id: str) -> dict[str, Any]:
    tax = load_taxonomy()
    features = []
    for i in range(len(cells)):
        x0, y0, x1, y1 = (round(float(v), 1) for v in (cells.x0[i], cells.y0[i], cells.x1[i], cells.y1[i]))
        code = str(cells.label[i]) or "unclassified"
        properties: dict[str, Any] = {
            "objectType": "detection",
            "name": code,
            "measurements": _measurements({
                "cell id": float(i),  # the row of cells.parquet and the cell_id of review.csv
                "detection score": round(float(cells.score[i]), 4),
                "class probability": round(float(cells.label_score[i]), 4),
                "dysplasia probability": round(float(cells.dysplasia_score[i]), 4),
                "dysplasia grade": float(cells.dysplasia_grade[i]),
            }),
        }
        if code in tax.classes:
            properties["classification"] = {"name": code, "color": list(tax.colour(code))}
        features.append(
            {
                "type": "Feature",
                "id": str(uuid.uuid5(_NAMESPACE, f"{slide_id}:{i}:{x0}:{y0}")),
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]],
                },
                "properties": properties,
            }
        )
    return {"type": "FeatureCollection", "features": features}
