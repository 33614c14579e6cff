"""report.html as people see it: opened in headless Chromium, on a phone-sized and a desktop window, and printed."""

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bmpipe.report.browser import HEADLESS_ARGS, system_chromium
from bmpipe.report.outputs import write_slide_outputs
from tests.test_report import result

CHROMIUM = system_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium / chromium-browser / google-chrome on PATH")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return write_slide_outputs(result(), tmp_path_factory.mktemp("browser")) / "report.html"


def chromium(report: Path, tmp: Path, *args: str) -> None:
    command = [CHROMIUM, "--headless", *HEADLESS_ARGS, "--hide-scrollbars",
               f"--user-data-dir={tmp / 'profile'}", *args, report.as_uri()]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


@pytest.mark.parametrize("width, height", [(390, 844), (1280, 900)])  # a phone, a desktop
def test_report_renders_as_a_non_blank_page(report, tmp_path, width, height):
    shot = tmp_path / "shot.png"
    chromium(report, tmp_path, f"--screenshot={shot}", f"--window-size={width},{height}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(shot)
    assert image.size == (width, height)
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    assert (pixels.min(axis=1) < 200).mean() > 0.03  # text and figures, not an empty white page
    assert len(np.unique(pixels, axis=0)) > 50  # anti-aliased text and coloured findings, not a flat error page
    notice = (np.abs(pixels.astype(int) - (255, 244, 229)).sum(axis=1) < 6).mean()
    assert notice > 0.005  # the not-a-diagnostic-device notice is drawn at the top


def test_report_prints_to_paper(report, tmp_path):
    pdf = tmp_path / "printed.pdf"
    chromium(report, tmp_path, f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
    data = pdf.read_bytes()
    assert data[:5] == b"%PDF-"
    assert len(re.findall(rb"/Type\s*/Page(?!s)", data)) >= 2  # the smear section starts a new page
    assert len(data) > 20_000  # the inline figures made it to paper


@pytest.mark.parametrize("width", [390, 1280])  # a phone, a desktop
def test_no_table_is_wider_than_the_window(report, tmp_path, width):
    """Every table fits the window, on a phone too: values wrap rather than run off the right edge.

    Headless Chromium's windows are at least 500 px wide, so the report is laid out in a frame of ``width``
    px (a same-origin ``srcdoc`` frame, which the host page can measure)."""
    html = json.dumps(report.read_text("utf-8")).replace("</", "<\\/")
    host = tmp_path / "host.html"
    host.write_text(
        f'<!doctype html><html><body style="margin:0"><iframe id="f" style="width:{width}px;height:844px;border:0">'
        "</iframe><script>const f = document.getElementById('f'); f.onload = () => { const d = f.contentDocument;"
        " const w = f.contentWindow.innerWidth; const edges = [...d.querySelectorAll('table')]"
        ".map(t => Math.ceil(t.getBoundingClientRect().right));"
        " document.body.dataset.window = w; document.body.dataset.edges = edges.join(',');"
        f" document.body.dataset.page = d.documentElement.scrollWidth; }}; f.srcdoc = {html};</script></body></html>",
        "utf-8")
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
               "--window-size=1400,900", "--virtual-time-budget=3000", "--dump-dom", host.as_uri()]
    dom = subprocess.run(command, check=True, capture_output=True, text=True, timeout=120).stdout
    found = {k: re.search(rf'data-{k}="([^"]*)"', dom) for k in ("window", "edges", "page")}
    assert all(found.values()), "the measuring script did not run"
    assert int(found["window"].group(1)) == width
    edges = [int(e) for e in found["edges"].group(1).split(",")]
    assert len(edges) >= 4 and max(edges) <= width, f"tables reach past the {width}px window: {edges}"
    assert int(found["page"].group(1)) <= width  # nothing scrolls the page sideways
