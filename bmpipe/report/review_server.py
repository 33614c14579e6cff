"""``bmpipe review serve``: a slide's ``review.html`` served from 127.0.0.1, saving every relabel as it is made.

Served, the page's differential is the report's own: each relabel is posted here, written at once into the
slide folder's ``review.csv`` (atomically, as :class:`bmpipe.report.review.BrowserReviewFile` writes it, so
``bmpipe review import`` reads it as it reads any review file), and answered with the differential,
intervals and findings that :func:`bmpipe.report.review.reviewed_differential` computes, as the reviewed
report will. A reload asks for the saved state. Only the page, its sheets and the two API paths are served.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd

from bmpipe.errors import InputError
from bmpipe.report.outputs import utc_stamp
from bmpipe.report.review import (
    BrowserReviewFile,
    Correction,
    check_output_folder,
    crops_in,
    read_review,
    reviewed_differential,
)
from bmpipe.report.review_page import REVIEW_PAGE, SHEETS_DIR, live_summary
from bmpipe.taxonomy import load_taxonomy

log = logging.getLogger(__name__)

_SHEET = re.compile(rf"/{SHEETS_DIR}/\d{{5}}\.jpg")


class ReviewSession:
    """One slide's review: its cells, the corrections so far, and their saving; safe across threads."""

    def __init__(self, folder: Path) -> None:
        check_output_folder(folder)
        if not (folder / REVIEW_PAGE).is_file():
            raise InputError(folder, f"has no {REVIEW_PAGE} (written by bmpipe run since this version; run it again)")
        self.folder = folder
        self.frame = pd.read_parquet(folder / "cells.parquet")
        self.predicted = self.frame["label"].astype(str)
        self.data = json.loads((folder / "differential.json").read_text("utf-8"))
        self.file = BrowserReviewFile(folder, self.frame, crops_in(folder, self.predicted))
        self.corrected: dict[int, str] = {}
        if (folder / "review.csv").is_file():  # a review begun earlier, here or in a spreadsheet, goes on
            for c in read_review(folder / "review.csv", len(self.frame)).corrections:
                if c.label != self.predicted.iat[c.cell_id]:
                    self.corrected[c.cell_id] = c.label
        self.codes = set(load_taxonomy().codes)
        self._lock = threading.Lock()
        self._summary = self._count()

    def _count(self) -> dict[str, Any]:
        corrections = [Correction(i, label, 0, "") for i, label in self.corrected.items()]
        return live_summary(reviewed_differential(self.frame, corrections, self.data)[1])

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {"corrections": {str(i): c for i, c in self.corrected.items()}, "summary": self._summary}

    def relabel(self, cell: Any, label: Any) -> dict[str, Any]:
        """Give ``cell`` the class ``label`` (its predicted class undoes a correction), save, recount."""
        if not isinstance(cell, int) or not 0 <= cell < len(self.frame):
            raise ValueError(f"cell {cell!r} is not a cell of this slide (0-{len(self.frame) - 1})")
        if label not in self.codes:
            raise ValueError(f"unknown class code {label!r}")
        with self._lock:
            if label == self.predicted.iat[cell]:
                self.corrected.pop(cell, None)
            else:
                self.corrected[cell] = label
            self.file.write(self.corrected, utc_stamp())
            self._summary = self._count()
            log.info("%s: cell %d now %s (%d relabelled)", self.folder.name, cell, label, len(self.corrected))
            return {"summary": self._summary}


def handler(session: ReviewSession) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store" if kind != "image/jpeg" else "max-age=3600")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, value: Any) -> None:
            self._send(HTTPStatus.OK, json.dumps(value).encode(), "application/json")

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/", f"/{REVIEW_PAGE}"):
                self._send(HTTPStatus.OK, (session.folder / REVIEW_PAGE).read_bytes(), "text/html; charset=utf-8")
            elif path == "/api/state":
                self._json(session.state())
            elif _SHEET.fullmatch(path) and (session.folder / path[1:]).is_file():
                self._send(HTTPStatus.OK, (session.folder / path[1:]).read_bytes(), "image/jpeg")
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

        def do_POST(self) -> None:
            if self.path != "/api/label":
                self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                self._json(session.relabel(body.get("cell"), body.get("label")))
            except (ValueError, AttributeError) as exc:
                self._send(HTTPStatus.BAD_REQUEST, str(exc).encode(), "text/plain")

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

    return Handler


def review_server(folder: Path, port: int) -> ThreadingHTTPServer:
    """A server of ``folder``'s review on 127.0.0.1:``port`` (0: any free port), not yet serving."""
    session = ReviewSession(Path(folder))
    try:
        return ThreadingHTTPServer(("127.0.0.1", port), handler(session))
    except OSError as exc:
        raise InputError(Path(folder), f"cannot be served on 127.0.0.1:{port} ({exc.strerror or exc})") from None
