"""``report.html``: one self-contained file (images inline as data URIs), for a phone, a desk and paper."""

from __future__ import annotations

import base64

import jinja2

from bmpipe.report.content import NOTICE, ReportContent
from bmpipe.taxonomy import load_taxonomy


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def image_kind(data: bytes) -> str:
    """The data-URI subtype of encoded image bytes (the gallery holds PNG and JPEG crops)."""
    return "jpeg" if data[:3] == b"\xff\xd8\xff" else "png"


def image_suffix(data: bytes) -> str:
    return "jpg" if image_kind(data) == "jpeg" else "png"


def _environment() -> jinja2.Environment:
    """Templates of the package (``templates/``), partials included: the same from a checkout or a wheel."""
    return jinja2.Environment(loader=jinja2.PackageLoader("bmpipe.report", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined)


def render_template(template: str, **values: object) -> str:
    """Any of the package's templates, rendered with ``values``."""
    return _environment().get_template(template).render(**values)


def render(template: str, content: object) -> str:
    """``template`` rendered for ``content`` (a slide's ``ReportContent`` or a patient's ``CaseContent``)."""
    tax = load_taxonomy()
    return _environment().get_template(template).render(
        c=content, notice=NOTICE, names={code: tax[code].name for code in tax.codes}, b64=b64, kind=image_kind
    )


def render_html(content: ReportContent) -> str:
    return render("report.html.j2", content)
