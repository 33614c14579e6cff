"""``report.pdf``: the report's content on A4 through reportlab's platypus, in pure Python.

No browser, no system library and no font file: the 14 standard PDF fonts every reader has (Helvetica),
so a fresh machine without internet writes the same PDF. Text is escaped for platypus' mini-markup.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.platypus import (
    Image,
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from bmpipe.report.content import NOTICE, DifferentialTables, ReportContent
from bmpipe.taxonomy import load_taxonomy

if TYPE_CHECKING:
    from bmpipe.report.case import CaseContent

MARGIN = 15 * mm
WIDTH = A4[0] - 2 * MARGIN
GALLERY_CELL = 16 * mm


def _styles() -> dict[str, ParagraphStyle]:
    base = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=base["BodyText"], fontName="Helvetica", fontSize=9, leading=12)
    return {
        "title": ParagraphStyle("title", parent=base["Title"], fontName="Helvetica-Bold", fontSize=15,
                                alignment=0, spaceAfter=2),
        "h2": ParagraphStyle("h2", parent=base["Heading2"], fontName="Helvetica-Bold", fontSize=11.5,
                             spaceBefore=8, spaceAfter=4),
        "h3": ParagraphStyle("h3", parent=base["Heading3"], fontName="Helvetica-Bold", fontSize=9.5,
                             spaceBefore=4, spaceAfter=2),
        "body": body,
        "meta": ParagraphStyle("meta", parent=body, fontSize=7.5, leading=10, textColor=colors.HexColor("#555555")),
        "notice": ParagraphStyle("notice", parent=body, backColor=colors.HexColor("#fff4e5"), borderPadding=4,
                                 spaceBefore=4, spaceAfter=6),
        "reviewed": ParagraphStyle("reviewed", parent=body, backColor=colors.HexColor("#e8f4ea"), borderPadding=4,
                                   spaceAfter=6),
        "borderline": ParagraphStyle("borderline", parent=body, textColor=colors.HexColor("#a15c00"),
                                     fontName="Helvetica-Bold"),
        "cell": ParagraphStyle("cell", parent=body, fontSize=8, leading=10),
    }


def _p(text: str, style: ParagraphStyle) -> Paragraph:
    return Paragraph(escape(text), style)


def _image(data: bytes, width: float) -> Image:
    w, h = ImageReader(io.BytesIO(data)).getSize()
    return Image(io.BytesIO(data), width=width, height=width * h / w)


def _table(rows: list[list], widths: list[float] | None = None, header: bool = True) -> Table:
    table = Table(rows, colWidths=widths, repeatRows=1 if header else 0, hAlign="LEFT")
    style = [
        ("FONT", (0, 0), (-1, -1), "Helvetica", 8),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#dddddd")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 1.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
    ]
    if header:
        style.append(("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8))
    table.setStyle(TableStyle(style))
    return table


def _differential_story(c: DifferentialTables, s: dict[str, ParagraphStyle]) -> list:
    """Summary, differential, groups and chart: what a slide's and a case's report both show."""
    story: list = []
    story.append(_p("Summary", s["h2"]))
    story.append(_table([[_p(k, s["cell"]), _p(v, s["cell"])] for k, v in c.summary_rows()],
                        [0.35 * WIDTH, 0.65 * WIDTH], header=False))
    story.append(_p(f"Denominator of every percentage except dysplasia: {c.diff.denominator}. Dysplastic "
                    "fractions are of the scored cells of their lineage. Intervals are exact 95% Clopper-Pearson "
                    "intervals.", s["meta"]))

    story.append(_p("Differential", s["h2"]))
    rows = [["Class", "Code", "Group", "Count", "%", "95% CI"]]
    classes = c.differential_rows()
    rows += [[r["name"], r["code"], r["group"], r["count"], r["pct"], r["ci"]] for r in classes]
    table = _table(rows, [0.3 * WIDTH, 0.1 * WIDTH, 0.22 * WIDTH, 0.1 * WIDTH, 0.12 * WIDTH, 0.16 * WIDTH])
    table.setStyle(TableStyle([("ALIGN", (3, 0), (-1, -1), "RIGHT")] + [
        ("TEXTCOLOR", (1, i), (1, i), colors.Color(*(v / 255 for v in r["rgb"])))
        for i, r in enumerate(classes, start=1)
    ]))
    story.append(table)
    if c.synthetic_note():
        story.append(_p(c.synthetic_note(), s["meta"]))
    story.append(_p("BMSNet groups", s["h3"]))
    groups = [["Group", "Count", "%", "95% CI"]] + [[g["group"], g["count"], g["pct"], g["ci"]] for g in c.group_rows()]
    story.append(_table(groups, [0.4 * WIDTH, 0.15 * WIDTH, 0.15 * WIDTH, 0.2 * WIDTH]))
    story.append(Spacer(1, 4))
    story.append(_image(c.bar_png, 0.9 * WIDTH))
    return story


def _story(c: ReportContent) -> list:
    s = _styles()
    tax = load_taxonomy()
    story: list = [
        _p(f"Bone-marrow aspirate differential: {c.slide.id}", s["title"]),
        _p(f"File {c.slide.file} · analysed {c.generated} · {c.software} · resolution {c.slide.mpp} "
           f"({c.slide.mpp_source}) · regions: {c.regions_mode}", s["meta"]),
        _p(f"Models: {c.model_line()}", s["meta"]),
        _p(NOTICE, s["notice"]),
    ]
    if c.diff.reviewed:
        story.append(_p(c.review_note, s["reviewed"]))
    story.append(_p("Findings", s["h2"]))
    story += [_p("• " + f.text, s["borderline" if f.borderline else "body"]) for f in c.diff.findings]

    story += _differential_story(c, s)

    story.append(PageBreak())
    story.append(_p("Smear", s["h2"]))
    if c.overview_jpg:
        figs = [_image(c.overview_jpg, 0.48 * WIDTH)]
        if c.density_png:
            figs.append(_image(c.density_png, 0.48 * WIDTH))
        story.append(Table([figs], hAlign="LEFT"))
        story.append(_p("Left: smear mask (green readable monolayer, red thick zone, amber feathered edge); "
                        f"zones {c.zone_line()} of the smear. Right: detected nucleated cells per mm².", s["meta"]))
    else:
        story.append(_p(f"{c.slide.n_fields} field photographs of one case, each analysed whole.", s["body"]))

    story.append(_p("Cells per class", s["h2"]))
    for code, items in c.gallery.items():
        images = []
        for item in items:
            images.append(_image(item.crop, GALLERY_CELL))
            if item.overlay:
                images.append(_image(item.overlay, GALLERY_CELL))
        per_row = max(1, int(WIDTH // (GALLERY_CELL + 2)))
        grid = [images[i : i + per_row] for i in range(0, len(images), per_row)]
        story.append(KeepTogether([_p(f"{code} · {tax[code].name}", s["h3"]),
                                   Table(grid, hAlign="LEFT", colWidths=GALLERY_CELL + 2)]))

    story.append(_p("Quality control", s["h2"]))
    story.append(_table([[_p(k, s["cell"]), _p(v, s["cell"])] for k, v in c.qc_rows()],
                        [0.45 * WIDTH, 0.55 * WIDTH], header=False))
    return story


def _footer(canvas, doc) -> None:
    canvas.saveState()
    canvas.setFont("Helvetica", 7)
    canvas.setFillColor(colors.HexColor("#555555"))
    canvas.drawString(MARGIN, 8 * mm, "bmpipe: research software, not a diagnostic device.")
    canvas.drawRightString(A4[0] - MARGIN, 8 * mm, f"page {doc.page}")
    canvas.restoreState()


def write_pdf(content: ReportContent, path: Path) -> Path:
    doc = SimpleDocTemplate(
        str(path), pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN, bottomMargin=MARGIN,
        title=f"bmpipe report: {content.slide.id}", author=content.software, subject="Bone-marrow differential",
        invariant=True,
    )
    doc.build(_story(content), onFirstPage=_footer, onLaterPages=_footer)
    return path


def _case_story(c: CaseContent) -> list:
    s = _styles()
    story: list = [
        _p(f"Bone-marrow aspirate differential, per patient: {c.case}", s["title"]),
        _p(f"{len(c.pooled.slides)} smears pooled · analysed {c.generated} · {c.software}", s["meta"]),
        _p(NOTICE, s["notice"]),
        *(_p(w, s["notice"]) for w in c.warnings),
        _p("Findings", s["h2"]),
        *(_p("• " + text, s["body"]) for text in c.findings()),
        _p("Smears", s["h2"]),
    ]
    rows = [["Slide", "Counted", "Blasts", "Blast %", "Residual"]]
    rows += [[r["slide"], r["n"], r["blasts"], r["blast"], r["residual"]] for r in c.slide_rows()]
    story.append(_table(rows, [0.3 * WIDTH, 0.12 * WIDTH, 0.12 * WIDTH, 0.32 * WIDTH, 0.12 * WIDTH]))
    return story + _differential_story(c, s)


def write_case_pdf(content: CaseContent, path: Path) -> Path:
    doc = SimpleDocTemplate(
        str(path), pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN, bottomMargin=MARGIN,
        title=f"bmpipe case report: {content.case}", author=content.software, subject="Bone-marrow differential",
        invariant=True,
    )
    doc.build(_case_story(content), onFirstPage=_footer, onLaterPages=_footer)
    return path
