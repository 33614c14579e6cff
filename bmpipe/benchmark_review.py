"""``bmpipe bench --review N``: the browser review at the size of a whole slide's count.

N cells are taken from the largest bench phantom's truth (its monolayer first: real positions, so the
thumbnails are read from the slide as a run reads them), given their true classes and random scores, and
written as ``review.html`` with its sheets, timed with and without the sheets. The page is then opened in
headless Chromium (Playwright driving the system's Chromium) from disk, and the time to a drawn first page,
to each next page (its sheet loaded and painted) and to a relabel's recount are measured in the page, and
the time a served relabel takes to be saved and recounted (``bmpipe review serve``) in Python.
"""

from __future__ import annotations

import json
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bmpipe.benchmark import SIZES, slide_for
from bmpipe.errors import InputError
from bmpipe.records import Cells
from bmpipe.report.browser import HEADLESS_ARGS, system_chromium
from bmpipe.report.cell_files import write_cell_files
from bmpipe.report.review_page import REVIEW_PAGE, SHEETS_DIR, slide_thumbnails, write_review_page
from bmpipe.report.review_server import ReviewSession
from bmpipe.slide import open_slide
from bmpipe.stages.aggregate import differential

log = logging.getLogger(__name__)

#: Pages turned, each timed.
PAGES_TIMED = 30

#: In the page: turn to the next page, wait for its sheet to be decoded and the page painted (ms).
_NEXT_PAGE = """async () => {
  const t0 = performance.now();
  document.dispatchEvent(new KeyboardEvent("keydown", {key: "PageDown"}));
  const url = getComputedStyle(document.querySelector("#grid .cell")).backgroundImage.slice(5, -2);
  await new Promise((done) => { const image = new Image(); image.onload = done; image.src = url; });
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  return performance.now() - t0;
}"""

_FIRST_PAGE = """async () => {
  const url = getComputedStyle(document.querySelector("#grid .cell")).backgroundImage.slice(5, -2);
  await new Promise((done) => { const image = new Image(); image.onload = done; image.src = url; });
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
}"""

_RELABEL = """async (key) => {
  const t0 = performance.now();
  document.dispatchEvent(new KeyboardEvent("keydown", {key}));
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  return performance.now() - t0;
}"""


def bench_cells(truth: dict[str, Any], n: int, seed: int = 0) -> Cells:
    """``n`` cells of a phantom's truth, monolayer first, with their true classes and random scores."""
    rows = sorted(truth["cells"], key=lambda c: c["zone"] != "monolayer")[:n]
    if len(rows) < n:
        raise InputError(Path(truth["slide"]), f"has {len(rows)} cells, fewer than the {n} asked for")
    rng = np.random.default_rng(seed)
    cells = Cells.from_boxes(np.array([c["box"] for c in rows], float), np.ones(n))
    cells = cells.with_labels(np.array([c["code"] for c in rows], dtype=object), rng.uniform(0.3, 1.0, n))
    cells.dysplasia_score = np.array([0.9 if c.get("dysplastic") else 0.1 for c in rows])
    return cells


def _served_relabels(folder: Path, cells: Cells, data: dict[str, Any]) -> list[float]:
    """Milliseconds of each of a few relabels as ``bmpipe review serve`` makes them: saved and recounted."""
    write_cell_files(folder, cells, data["slide"], geojson=False)
    (folder / "differential.json").write_text(json.dumps(data), "utf-8")
    session = ReviewSession(folder)
    times = []
    for cell in range(0, 50, 10):
        started = time.perf_counter()
        session.relabel(cell, "LYT" if cells.label[cell] != "LYT" else "BLA")
        times.append(1000 * (time.perf_counter() - started))
    return times


def _megabytes(paths: list[Path]) -> float:
    return sum(p.stat().st_size for p in paths) / 1e6


def run(n_cells: int, slides_dir: Path, out: Path) -> dict[str, Any]:
    """Write and open a review of ``n_cells`` cells; the figures as a dict."""
    from playwright.sync_api import sync_playwright

    chromium = system_chromium()
    if chromium is None:
        raise InputError(Path("chromium"), "not found on PATH: the review bench opens the page in it")
    slide_path = slide_for(max(SIZES), slides_dir)
    truth = json.loads(slide_path.with_suffix(".truth.json").read_text("utf-8"))
    cells = bench_cells(truth, n_cells)
    diff = differential(cells, slide_path.stem)
    data = diff.as_dict() | {"generated": time.strftime("%Y-%m-%d %H:%M")}
    folder = out / "review"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with tempfile.TemporaryDirectory(dir=out) as bare:
        started = time.perf_counter()
        write_review_page(Path(bare), cells, data, diff, set(), None)
        page_only = time.perf_counter() - started
    with open_slide(slide_path) as slide:
        started, cpu = time.perf_counter(), time.process_time()
        write_review_page(folder, cells, data, diff, set(), slide_thumbnails(slide, cells))
        with_sheets, cpu = time.perf_counter() - started, time.process_time() - cpu
    sheets = sorted((folder / SHEETS_DIR).glob("*.jpg"))
    served_ms = _served_relabels(folder, cells, data)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=list(HEADLESS_ARGS))
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        started = time.perf_counter()
        page.goto((folder / REVIEW_PAGE).as_uri())
        page.wait_for_selector("body[data-ready='1']")
        page.evaluate(_FIRST_PAGE)
        open_s = time.perf_counter() - started
        page_ms = [page.evaluate(_NEXT_PAGE) for _ in range(PAGES_TIMED)]
        page.locator("#grid .cell").first.click()
        relabel_ms = page.evaluate(_RELABEL, page.locator("#keys kbd").nth(1).inner_text())
        browser.close()
    return {
        "cells": n_cells, "slide": slide_path.name, "pages": len(sheets),
        "sheets_mb": round(_megabytes(sheets), 1), "page_mb": round(_megabytes([folder / REVIEW_PAGE]), 1),
        "write_page_s": round(page_only, 2), "write_sheets_s": round(with_sheets - page_only, 1),
        "write_all_cpu_s": round(cpu, 1),
        "open_s": round(open_s, 3), "next_page_ms_median": round(statistics.median(page_ms), 1),
        "next_page_ms_max": round(max(page_ms), 1), "relabel_ms": round(relabel_ms, 1),
        "served_relabel_ms_median": round(statistics.median(served_ms)),
    }


def table(row: dict[str, Any]) -> str:
    return "\n".join(f"{key:>22}  {value}" for key, value in row.items())
