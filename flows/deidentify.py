"""``--deidentify``: slide names replaced by a keyed hash in every output and log line of a run.

A file name often carries a patient's name or record number. The pseudonym is HMAC-SHA256 of the name
under a lab-held key, so the same slide always gets the same pseudonym (reruns resume, cohorts line up)
while nobody without the key can test a guessed name against it. The key comes from
``$BMPIPE_DEIDENTIFY_KEY`` or, failing that, from ``<out>/.bmpipe-deidentify.key``, created once with
permissions 0600.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from bmpipe.slide import slide_id

if TYPE_CHECKING:
    from bmpipe.flows.slide import RunSettings

KEY_ENV = "BMPIPE_DEIDENTIFY_KEY"
KEY_FILE = ".bmpipe-deidentify.key"
#: 16 hex digits (64 bits): collisions are out of reach for any lab's archive, and folder names stay short.
PSEUDONYM_HEX = 16


def load_key(out_dir: Path) -> bytes:
    """The key from the environment, else from the out folder's key file, created there on first use."""
    if env := os.environ.get(KEY_ENV):
        return env.encode("utf-8")
    path = out_dir / KEY_FILE
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return path.read_bytes().strip()


class Pseudonyms:
    """Names → pseudonyms under one key, and the redaction of every name seen so far from any text."""

    def __init__(self, key: bytes):
        self._key = key
        self._seen: dict[str, str] = {}
        self._pattern: re.Pattern[str] | None = None  # of the names in _seen; rebuilt when one is added

    def of(self, name: str) -> str:
        """The pseudonym of one name (a file stem or a folder name), e.g. ``s-3f2a9c0d41b7e865``."""
        digest = hmac.new(self._key, name.encode("utf-8"), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]
        pseudonym = f"s-{digest}"
        self._remember(name, pseudonym)
        return pseudonym

    def digest(self, text: str) -> str:
        """A keyed digest of ``text`` that is not remembered for redaction (an id, not a name's stand-in)."""
        return hmac.new(self._key, b"source\0" + text.encode("utf-8"), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]

    def path(self, relative: Path) -> Path:
        """A relative slide path with every folder and the file stem replaced (the suffix is kept)."""
        parts = [self.of(p) for p in relative.parent.parts]
        return Path(*parts, self.of(relative.stem) + relative.suffix)

    def slide(self, path: Path, subfolder: Path = Path()) -> str:
        """Redact a slide's path, file name and id (which the stages log) from now on; returns how the manifest
        names it: its pseudonymised place ``subfolder/<pseudonym><suffix>``."""
        label = str(self.path(subfolder / path.name))
        self.alias(str(path), label)
        self.alias(path.name, label)
        self.alias(slide_id(path), self.of(path.stem))
        return label

    def case(self, folder: Path) -> str:
        """Redact a case folder of field photographs, by path and by id, as the pseudonym of its whole name (a
        folder's dot starts no suffix); returns that pseudonym."""
        pseudonym = self.of(folder.name)
        self.alias(str(folder), pseudonym)
        self.alias(slide_id(folder), pseudonym)
        return pseudonym

    def alias(self, name: str, replacement: str) -> None:
        """Also redact ``name`` (e.g. a slide's full path) wherever it appears, as ``replacement``."""
        self._remember(name, replacement)

    def _remember(self, name: str, replacement: str) -> None:
        if self._seen.get(name) != replacement:
            self._seen[name] = replacement
            self._pattern = None

    def redact(self, text: str) -> str:
        """``text`` with every known name replaced by its pseudonym, longest names first."""
        if not self._seen:
            return text
        if self._pattern is None:
            names = sorted(self._seen, key=len, reverse=True)
            self._pattern = re.compile("|".join(rf"(?<![\w-]){re.escape(n)}(?![\w-])" for n in names))
        return self._pattern.sub(lambda m: self._seen[m.group(0)], text)


class _RedactFilter(logging.Filter):
    def __init__(self, pseudonyms: Pseudonyms):
        super().__init__()
        self.pseudonyms = pseudonyms

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info:  # a traceback quotes paths too: render it here, redacted, and drop the original
            text += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, None
        record.msg, record.args = self.pseudonyms.redact(text), None
        return True


def _all_handlers() -> Iterable[logging.Handler]:
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    seen: set[int] = set()
    for logger in loggers:
        for handler in logger.handlers:
            if id(handler) not in seen:
                seen.add(id(handler))
                yield handler


@contextmanager
def redacted_logs(pseudonyms: Pseudonyms | None) -> Iterator[None]:
    """While inside, every configured log handler (console, file, Prefect's API) redacts slide names."""
    if pseudonyms is None:
        yield
        return
    flt = _RedactFilter(pseudonyms)
    handlers = list(_all_handlers())
    for handler in handlers:
        handler.addFilter(flt)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(flt)


@contextmanager
def deidentified(settings: RunSettings) -> Iterator[Pseudonyms | None]:
    """The run's pseudonyms (None without ``--deidentify``), with every log line redacted while inside.

    The filter reads the names when a line is logged, so a slide registered inside (``Pseudonyms.slide``,
    ``Pseudonyms.case``) is redacted from every line logged after; each flow and worker task enters this itself,
    as a task may run in another process than its flow.
    """
    pseudonyms = Pseudonyms(load_key(settings.out_dir)) if settings.deidentify else None
    with redacted_logs(pseudonyms):
        yield pseudonyms
