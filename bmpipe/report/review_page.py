"""``review.html``: every cell of a slide, to verify in a browser as lab staff verify a CellaVision count.

The page shows every detected cell grouped by predicted class, least confident first, a page of
``PER_SHEET`` at a time; a technologist relabels cells by click, drag or key and the differential beside
them follows. It is one self-contained file (no network): the cells' thumbnails are JPEG sheets of
``SHEET_SIDE`` × ``SHEET_SIDE`` (``review/sheets/NNNNN.jpg``, one sheet per page, so a page loads one
image whatever the slide's size), and the cells' classes, scores and dysplasia flags are embedded.

The differential the page shows is the report's own: served (``bmpipe review serve``, ``review_server``)
it is computed by :func:`bmpipe.stages.aggregate.differential` on every relabel and rendered from
:func:`live_summary`; opened from disk it is recomputed in the page by a small JavaScript port of the count
and the criteria (``templates/review-rules.js``), which ``tests/test_review_browser.py`` checks against
:func:`live_summary` on the same inputs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from bmpipe.criteria import load_criteria
from bmpipe.records import Cells
from bmpipe.report.content import NOTICE, DifferentialTables
from bmpipe.report.figures import jpeg_bytes
from bmpipe.report.html import render_template
from bmpipe.resolution import Mpp
from bmpipe.slide import Slide
from bmpipe.stages.aggregate import Differential, is_dysplastic
from bmpipe.taxonomy import GROUPS, load_taxonomy

log = logging.getLogger(__name__)

REVIEW_PAGE = "review.html"
SHEETS_DIR = "review/sheets"
#: Thumbnails show the review crops' 32 µm field at 0.5 µm/px: enough to tell the classes apart on a page
#: of 100, and a sheet of 100 is about 60 kB.
THUMB_MPP = Mpp(0.5)
THUMB_PX = 64
SHEET_SIDE = 10
PER_SHEET = SHEET_SIDE * SHEET_SIDE
#: Thumbnails are read in bands of this many level-0 pixels across the slide, this many cells at a time.
READ_BAND = 2000
READ_CHUNK = 4096
#: One key per class, in taxonomy order, as on a CellaVision-style counter's keypad.
HOTKEYS = "1234567890qwertyuiopasdfghjkl"

#: Thumbnails of the given cell rows, (N, THUMB_PX, THUMB_PX, 3) uint8.
ThumbReader = Callable[[np.ndarray], np.ndarray]


def slide_thumbnails(slide: Slide, cells: Cells) -> ThumbReader:
    """Thumbnails read from ``slide``, centred on each cell; white past the image's edge, so a person sees
    where the field ends (the classifier's crops are mirrored there instead)."""
    return lambda rows: slide.read_centred(cells.x[rows], cells.y[rows], THUMB_PX, THUMB_MPP)


def page_layout(labels: np.ndarray, scores: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The pages, in order: per predicted class in taxonomy order, its cells least confident first (where
    errors are likeliest), ``PER_SHEET`` to a page."""
    labels = labels.astype(str)
    pages = []
    for code in load_taxonomy().codes:
        idx = np.flatnonzero(labels == code)
        idx = idx[np.argsort(scores[idx], kind="stable")]
        pages += [(code, idx[i:i + PER_SHEET]) for i in range(0, len(idx), PER_SHEET)]
    return pages


def write_sheets(folder: Path, cells: Cells, pages: list[tuple[str, np.ndarray]], thumbs: ThumbReader) -> None:
    """One JPEG sheet per page, its cells row by row (a last, partial row makes a shorter sheet).

    A page's cells lie anywhere on the slide, and reading them page by page cost 7 ms a cell (a 100,000-cell
    slide: 12 minutes); read in bands across the slide, neighbours share their reads (under 1 ms a cell). So
    every thumbnail is read once in that order into a scratch file beside the sheets, then the sheets are cut
    from it: memory stays that of one read, whatever the slide's count."""
    out = folder / SHEETS_DIR
    out.mkdir(parents=True)
    scratch = out.parent / ".thumbnails.npy"
    store = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.uint8, shape=(len(cells), THUMB_PX, THUMB_PX, 3))
    try:
        order = np.lexsort((cells.x, np.floor(cells.y / READ_BAND)))
        for start in range(0, len(order), READ_CHUNK):
            rows = order[start:start + READ_CHUNK]
            store[rows] = thumbs(rows)
        for n, (_, rows) in enumerate(pages):
            sheet = np.full((-(-len(rows) // SHEET_SIDE) * THUMB_PX, SHEET_SIDE * THUMB_PX, 3), 255, np.uint8)
            for i, row in enumerate(rows):
                r, c = divmod(i, SHEET_SIDE)
                sheet[r * THUMB_PX:(r + 1) * THUMB_PX, c * THUMB_PX:(c + 1) * THUMB_PX] = store[row]
            (out / f"{n:05d}.jpg").write_bytes(jpeg_bytes(sheet, quality=80))
    finally:
        del store
        scratch.unlink()


def live_summary(diff: Differential) -> dict[str, Any]:
    """What the review page shows beside the cells, as the report words it: findings, summary, per class."""
    tables = DifferentialTables()
    tables.diff = diff
    return {
        "findings": [{"text": f.text, "borderline": f.borderline} for f in diff.findings],
        "summary": [list(row) for row in tables.summary_rows()],
        "rows": [{k: row[k] for k in ("code", "name", "count", "pct", "ci")} for row in tables.differential_rows()],
    }


def rules() -> dict[str, Any]:
    """The taxonomy and criteria the page's own count needs (file mode), from the same YAML as Python's."""
    tax = load_taxonomy()
    return {
        "codes": list(tax.codes),
        "names": {c: tax[c].name for c in tax.codes},
        "lineage": {c: tax[c].lineage for c in tax.codes},
        "denominator": list(tax.denominator_codes()),
        "groups": {g: list(tax.codes_of_group(g)) for g in GROUPS},
        "me_myeloid": list(tax.me_myeloid),
        "me_erythroid": list(tax.me_erythroid),
        "criteria": load_criteria(),
    }


def rules_script() -> str:
    """The page's JavaScript count (file mode), as shipped in the package."""
    return resources.files("bmpipe.report").joinpath("templates/review-rules.js").read_text("utf-8")


def static_parts(data: dict[str, Any]) -> dict[str, Any]:
    """What a relabel never changes, from ``differential.json``: warnings, provenance, the sample."""
    return {key: data.get(key, default) for key, default in (
        ("resolution_warning", ""), ("domain_warning", ""), ("synthetic_only", []),
        ("dysplasia_synthetic_only", False), ("sample", None))}


def page_data(cells: Cells, data: dict[str, Any], pages: list[tuple[str, np.ndarray]], crops: set[int],
              summary: dict[str, Any], sheets: bool) -> dict[str, Any]:
    """Everything the page embeds: per cell its predicted class (an index), score (‰) and dysplasia flag;
    the pages; the cells that have a review crop (named in an exported review file); the rules."""
    tax = load_taxonomy()
    index = {c: i for i, c in enumerate(tax.codes)}
    return {
        "slide": data["slide"],
        "generated": data.get("generated", ""),
        "pred": [index[str(c)] for c in cells.label],
        "score": np.rint(np.asarray(cells.label_score) * 1000).astype(int).tolist(),
        "dys": is_dysplastic(cells).astype(int).tolist(),
        "pages": [[code, rows.tolist()] for code, rows in pages],
        "crops": sorted(crops),
        "sheets": sheets,
        "thumb": THUMB_PX,
        "side": SHEET_SIDE,
        "hotkeys": HOTKEYS[: len(tax.codes)],
        "rules": rules(),
        "static": static_parts(data),
        "summary": summary,
    }


def _script_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element: no ``<`` can close it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")


def write_review_page(folder: Path, cells: Cells, data: dict[str, Any], diff: Differential, crops: set[int],
                      thumbs: ThumbReader | None) -> Path:
    """``folder/review.html`` and its sheets (none when ``thumbs`` is None: the page shows numbered boxes)."""
    pages = page_layout(cells.label, cells.label_score)
    if thumbs is not None:
        write_sheets(folder, cells, pages, thumbs)
    embedded = page_data(cells, data, pages, crops, live_summary(diff), thumbs is not None)
    html = render_template("review.html.j2", slide=data["slide"], notice=NOTICE, data=_script_json(embedded),
                           rules_js=rules_script())
    (folder / REVIEW_PAGE).write_text(html, "utf-8")
    return folder / REVIEW_PAGE
