"""report.html as people see it: opened in headless Chromium, on a phone-sized and a desktop window, and printed."""

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bmpipe.report.outputs import write_slide_outputs
from tests.test_report import result

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium / chromium-browser / google-chrome on PATH")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return write_slide_outputs(result(), tmp_path_factory.mktemp("browser")) / "report.html"


def chromium(report: Path, tmp: Path, *args: str) -> None:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
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
