"""CSV files that people open in a spreadsheet, written so that no cell can run as a formula.

File and folder names are user input, and a name such as ``=HYPERLINK(...)`` or ``+cmd|...`` in a manifest
opens as a live formula in Excel or LibreOffice (CSV injection). Every text cell that starts with a formula
character, and is not a plain number, is written with a leading apostrophe, which spreadsheets show as text
and :func:`read_cell` strips again when bmpipe reads its own files back.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import IO, Any

#: What a spreadsheet reads as the start of a formula (tab and carriage return start one in some).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def text_cell(value: Any) -> Any:
    """``value`` as a cell that cannot run: text starting like a formula gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _is_number(value):
        return "'" + value
    return value


def read_cell(text: str) -> str:
    """A cell as bmpipe wrote it with :func:`text_cell`, its protective apostrophe removed."""
    if text.startswith("'") and text[1:].startswith(FORMULA_START):
        return text[1:]
    return text


class SafeWriter:
    """``csv.writer`` whose rows pass through :func:`text_cell`."""

    def __init__(self, f: IO[str], **kwargs: Any) -> None:
        self._writer = csv.writer(f, **kwargs)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([text_cell(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


class SafeDictWriter(csv.DictWriter):
    """``csv.DictWriter`` whose values pass through :func:`text_cell`."""

    def writerow(self, rowdict: dict[str, Any]) -> Any:
        return super().writerow({k: text_cell(v) for k, v in rowdict.items()})

    def writerows(self, rowdicts: Iterable[dict[str, Any]]) -> None:
        for row in rowdicts:
            self.writerow(row)
