"""report.pdf: the HTML report's content on A4, written in pure Python with the standard PDF fonts."""

import base64
import re
import zlib

import pytest

from bmpipe.report.outputs import report_content, write_slide_outputs
from bmpipe.report.pdf import write_pdf
from tests.test_report import result


def pdf_text(data: bytes) -> str:
    """The text drawn on the pages (content streams inflated, string operands joined)."""
    chunks = []
    for start in re.finditer(rb"(?<!end)stream\r?\n", data):
        if b"/Image" in data[data.rfind(b" obj", 0, start.start()) : start.start()]:
            continue  # pictures hold no text (and decoding them in Python is slow)
        stream = data[start.end() : data.find(b"endstream", start.end())].strip()
        if stream.endswith(b"~>"):  # reportlab writes ASCII85 over Flate
            stream = base64.a85decode(stream[:-2])
        stream = zlib.decompress(stream)
        chunks += re.findall(rb"\(((?:\\.|[^\\)])*)\)\s*Tj", stream)
    text = b" ".join(chunks).decode("latin-1")
    text = re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1), 8)), text)
    return re.sub(r"\s+", " ", re.sub(r"\\([()\\])", r"\1", text))


@pytest.fixture(scope="module")
def pdf(tmp_path_factory):
    folder = write_slide_outputs(result(), tmp_path_factory.mktemp("pdf"))
    return (folder / "report.pdf").read_bytes()


def test_pdf_holds_the_reports_sections_and_findings(pdf):
    assert pdf[:5] == b"%PDF-" and pdf.rstrip().endswith(b"%%EOF")
    text = pdf_text(pdf)
    for part in ("case-1", "not a diagnostic device", "Findings", "Summary", "Differential", "BMSNet groups",
                 "Smear", "Cells per class", "Quality control", "Tiles blurred", "Resolution used", "MDS-IB2",
                 "MDS-EB-2", "MDS/AML", "Clopper-Pearson", "detector-unet", "smudge cell (KSC)"):
        assert part in text, part


def test_pdf_embeds_the_figures_and_gallery(pdf):
    images = len(re.findall(rb"/Subtype\s*/Image", pdf))
    assert images >= 4  # bar chart, smear mask, heat map and the gallery crops
    assert len(re.findall(rb"/Type\s*/Page(?!s)", pdf)) >= 2


def test_pdf_uses_only_the_standard_fonts(pdf):
    fonts = set(re.findall(rb"/BaseFont\s*/([A-Za-z-]+)", pdf))
    assert fonts and fonts <= {b"Helvetica", b"Helvetica-Bold", b"Symbol", b"ZapfDingbats"}
    assert b"/FontFile" not in pdf  # nothing embedded, nothing downloaded


def test_same_content_gives_the_same_bytes(tmp_path):
    content = report_content(result())
    a, b = write_pdf(content, tmp_path / "a.pdf"), write_pdf(content, tmp_path / "b.pdf")
    assert a.read_bytes() == b.read_bytes()
