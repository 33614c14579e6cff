"""review.html in a real headless Chromium (Playwright driving the system's Chromium; nothing downloaded):
served and opened from disk, relabelled by key, drag and click, reloaded, exported, imported; and the page's
own count (file mode) against the Python's on the same inputs."""

import csv
import json
import threading

import numpy as np
import pytest

from bmpipe.records import Cells
from bmpipe.report.browser import HEADLESS_ARGS, system_chromium
from bmpipe.report.figures import jpeg_bytes
from bmpipe.report.outputs import write_slide_outputs
from bmpipe.report.review import import_review
from bmpipe.report.review_files import select_for_review
from bmpipe.report.review_page import PER_SHEET, THUMB_PX, live_summary, rules, rules_script, static_parts
from bmpipe.report.review_server import review_server
from bmpipe.stages.aggregate import differential, is_dysplastic
from bmpipe.taxonomy import load_taxonomy
from tests.test_report import result

CHROMIUM = system_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium / chromium-browser / google-chrome on PATH")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=list(HEADLESS_ARGS))
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(accept_downloads=True)
    yield context.new_page()
    context.close()


@pytest.fixture
def folder(tmp_path):
    """A slide's outputs with review crops and a thumbnail per cell (each a flat shade of its cell id)."""
    r = result()
    r.crops = {int(i): jpeg_bytes(np.full((128, 128, 3), 40 + i % 200, np.uint8)) for i in select_for_review(r.cells)}
    r.thumbnails = lambda rows: np.stack([np.full((THUMB_PX, THUMB_PX, 3), 30 + i % 200, np.uint8) for i in rows])
    return write_slide_outputs(r, tmp_path)


@pytest.fixture
def served(folder):
    server = review_server(folder, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def review_rows(folder):
    with open(folder / "review.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def open_review(page, url):
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")


def count(page, code):
    cell = page.locator(f"#diff tr[data-code='{code}'] td.count")
    return int(cell.inner_text()) if cell.count() else 0


def key_of(page, code):
    return page.locator(f"#keys button[data-code='{code}'] kbd").inner_text()


def relabel_first_cell_by_key(page, code):
    """Select the first cell of the first page (the least confident blast) and press ``code``'s key."""
    page.locator("#grid .cell").first.click()
    page.keyboard.press(key_of(page, code))


def test_served_review_saves_each_relabel_and_the_import_makes_it_the_report(page, served, folder):
    open_review(page, served)
    assert "Served by bmpipe review serve" in page.inner_text("#mode")
    assert page.locator("#grid .cell").count() == 30  # the 30 blasts, one page
    assert "review/sheets/00000.jpg" in page.locator("#grid .cell").first.get_attribute("style")
    first = int(page.locator("#grid .cell").first.get_attribute("data-cell"))
    before_bla, before_lyt = count(page, "BLA"), count(page, "LYT")
    relabel_first_cell_by_key(page, "LYT")
    page.wait_for_function("document.getElementById('status').textContent === 'saved'")
    assert (count(page, "BLA"), count(page, "LYT")) == (before_bla - 1, before_lyt + 1)
    assert "1 of 195 cells relabelled" in page.inner_text("#changed")
    saved = {int(r["cell_id"]): r for r in review_rows(folder)}
    assert len(saved) == 195 and saved[first]["corrected_class"] == "LYT" and saved[first]["verified_at"]

    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    assert (count(page, "BLA"), count(page, "LYT")) == (before_bla - 1, before_lyt + 1)
    assert page.locator(f"#grid .cell[data-cell='{first}'] .tag").inner_text() == "LYT"

    import_review(folder)
    data = json.loads((folder / "differential.json").read_text())
    assert data["counts"]["BLA"] == 29 and data["counts"]["LYT"] == 1 and data["n_corrected"] == 1
    html = (folder / "report.html").read_text()
    assert "Verified: 1 of 195 cells relabelled, in the browser review of " + saved[first]["verified_at"] in html
    assert "15.3%" in html  # 29 blasts of 190


def test_served_review_relabels_by_drag_and_click_and_undoes(page, served, folder):
    open_review(page, served)
    before = count(page, "BLA")
    second = page.locator("#grid .cell").nth(1)
    second.drag_to(page.locator("#keys button[data-code='EBO']"))
    page.wait_for_function(f"document.querySelector(\"#diff tr[data-code='BLA'] td.count\").textContent == '{before - 1}'")
    assert count(page, "EBO") == 41
    page.locator("#grid .cell").nth(2).click()
    page.locator("#keys button[data-code='MON']").click()
    page.wait_for_function("document.getElementById('changed').textContent.startsWith('2 of')")
    page.keyboard.press("Control+z")
    page.keyboard.press("Backspace")
    page.wait_for_function("document.getElementById('changed').textContent.startsWith('0 of')")
    assert count(page, "BLA") == before and count(page, "MON") == 0
    assert not [r for r in review_rows(folder) if r["corrected_class"]]


def test_pages_follow_the_class_tabs_and_the_arrows(page, folder):
    open_review(page, (folder / "review.html").as_uri())
    page.locator("#tabs button", has_text="NGS").click()
    assert page.locator("#grid .cell").count() == PER_SHEET  # 120 neutrophils: a page of 100, then 20
    page.keyboard.press("PageDown")
    assert page.locator("#grid .cell").count() == 20 and "page 2 of 2" in page.inner_text("#where")
    ids = [int(c.get_attribute("data-cell")) for c in page.locator("#grid .cell").all()]
    r = result()
    scores = r.cells.label_score[ids]
    assert list(scores) == sorted(scores) and set(r.cells.label[ids]) == {"NGS"}  # least confident first


def test_opened_from_disk_the_page_counts_keeps_and_exports_the_review(page, folder, tmp_path):
    open_review(page, (folder / "review.html").as_uri())
    assert "Opened from disk" in page.inner_text("#mode")
    before_bla, before_plm = count(page, "BLA"), count(page, "PLM")
    relabel_first_cell_by_key(page, "PLM")
    assert (count(page, "BLA"), count(page, "PLM")) == (before_bla - 1, before_plm + 1)
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    assert (count(page, "BLA"), count(page, "PLM")) == (before_bla - 1, before_plm + 1)
    with page.expect_download() as download:
        page.click("#export")
    exported = tmp_path / "exported.csv"
    download.value.save_as(exported)
    import_review(folder, exported)
    data = json.loads((folder / "differential.json").read_text())
    assert data["counts"]["PLM"] == 1 and data["n_reviewed"] == 195
    assert "Verified: 1 of 195 cells relabelled" in (folder / "report.html").read_text()


def random_cells(rng, n, codes, dysplastic_share):
    labels = rng.choice(codes, size=n).astype(object)
    cells = Cells.from_boxes(np.tile([0, 0, 10, 10], (n, 1)), np.ones(n)).with_labels(labels, rng.uniform(0, 1, n))
    cells.dysplasia_score = np.where(rng.uniform(0, 1, n) < dysplastic_share, 0.9, 0.1)
    return cells


def test_the_pages_own_count_equals_the_pythons_on_the_same_cells(page):
    """File mode's JavaScript against ``live_summary`` of ``differential``: every finding, summary row and
    class row, word for word, on counts that reach each range, borderline, tie and empty case."""
    tax = load_taxonomy()
    rng = np.random.default_rng(7)
    cases = []
    weights = [("BLA", "EBO", "NGS", "PLM", "LYT", "MGK", "KSC"), ("BLA",), ("PLM", "NGS"), ("NGS", "MYB"),
               ("KSC", "NIF"), ("EBO", "PEB", "BLA", "LYT", "PLT", "MGK")]
    for i in range(24):
        codes = list(weights[i % len(weights)]) + list(rng.choice(tax.codes, size=i % 4))
        n = [0, 16, 80, 499, 500, 777, 3000, 12345][i % 8]
        cells = random_cells(rng, n, codes, [0.0, 0.08, 0.12, 0.5][i % 4])
        static = {"resolution_warning": "Resolution differs." if i % 5 == 0 else "", "domain_warning": "",
                  "synthetic_only": ["BLA", "PLM"] if i % 3 == 0 else [], "dysplasia_synthetic_only": i % 2 == 0,
                  "sample": {"max_cells": 500, "tiles_read": 3, "tiles_planned": 9, "estimated_cells_in_area": 1500}
                  if i % 7 == 0 else None}
        diff = differential(cells, "s", synthetic_only=tuple(static["synthetic_only"]),
                            dysplasia_synthetic_only=static["dysplasia_synthetic_only"],
                            resolution_warning=static["resolution_warning"])
        diff.sample = static["sample"]
        flags = is_dysplastic(cells)
        counts = {c: int((cells.label == c).sum()) for c in tax.codes}
        dysplastic = {c: int(((cells.label == c) & flags).sum()) for c in tax.codes}
        cases.append(({"counts": counts, "dys": dysplastic, "static": static_parts(static)}, live_summary(diff)))
    page.set_content("<!doctype html><meta charset='utf-8'><body></body>")
    page.add_script_tag(content=rules_script())
    got = page.evaluate("([cases, R]) => cases.map((c) => BmpipeRules.summarise(c.counts, c.dys, R, c.static))",
                        [[c for c, _ in cases], rules()])
    for (inputs, expected), actual in zip(cases, got):
        assert actual == json.loads(json.dumps(expected)), inputs["counts"]


@pytest.mark.parametrize("x, decimals, text", [(6.25, 1, "6.2"), (6.35, 1, "6.3"), (0.125, 2, "0.12"),
                                               (2.5, 0, "2"), (3.5, 0, "4"), (12.3456, 2, "12.35")])
def test_the_page_rounds_as_python_formats(page, x, decimals, text):
    page.set_content("<body></body>")
    page.add_script_tag(content=rules_script())
    assert page.evaluate("([x, d]) => BmpipeRules.fixed(x, d)", [x, decimals]) == text == f"{x:.{decimals}f}"
