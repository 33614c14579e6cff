"""Resuming a batch: which slides are already finished, and finishing a slide's folder all or nothing.

A slide's output folder is complete only once it holds ``run.json``, the record of what made it: the
sha256 of the slide's bytes, the sha256 of each model used and the settings that change results. ``run.json``
is written last, inside a hidden staging folder that is renamed into place in one step, so a run killed at
any point leaves either the previous folder or the new complete one, never a half-written report. A rerun
skips a slide whose ``run.json`` matches, and redoes it (from scratch) otherwise.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bmpipe import __version__
from bmpipe.errors import InputError
from bmpipe.nn.weights import ModelRecord
from bmpipe.report.staging import STAGING_SUFFIX, replacing

if TYPE_CHECKING:
    from bmpipe.flows.deidentify import Pseudonyms

log = logging.getLogger(__name__)

RUN_RECORD = "run.json"
#: Hex digits of a source id; its first 8 tell two same-named outputs apart.
SOURCE_HEX = 16
_CHUNK = 4 << 20


def file_sha256(path: Path) -> str:
    """sha256 of a slide's bytes, streamed (a 3 GB slide takes seconds, its analysis minutes).

    A MIRAX ``.mrxs`` keeps its pixels in a folder of the same stem beside it; those files are hashed too.
    """
    digest = hashlib.sha256()
    _stream(path, digest)
    companion = path.with_suffix("")
    if path.suffix.lower() == ".mrxs" and companion.is_dir():
        for part in sorted(p for p in companion.rglob("*") if p.is_file()):
            digest.update(b"\0" + part.relative_to(companion).as_posix().encode() + b"\0")
            _stream(part, digest)
    return digest.hexdigest()


def _stream(path: Path, digest: hashlib._Hash) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)


def models_fingerprint(records: list[ModelRecord]) -> dict[str, str]:
    """Model name → sha256 of the models a run uses (the loader refuses any file that does not match).

    Only the models used count: adding or retraining a detector the run does not use changes nothing.
    """
    return {r.name: r.sha256 for r in sorted(records, key=lambda r: r.name)}


def run_record(slide_sha256: str, models: dict[str, str], settings: dict[str, Any]) -> dict[str, Any]:
    """What decides a slide's outputs; two runs with equal records give equal results."""
    return {"input_sha256": slide_sha256, "models": models, "settings": settings, "software": f"bmpipe {__version__}"}


def is_finished(folder: Path, record: dict[str, Any]) -> bool:
    """Whether ``folder`` is a complete output made from exactly ``record``."""
    done = finished_record(folder)
    return done is not None and {k: done.get(k) for k in record} == record


@contextmanager
def finished(final: Path, record: dict[str, Any], source: str = "", notes: dict[str, Any] | None = None,
             ) -> Iterator[Path]:
    """A staging folder for ``final`` (``bmpipe.report.staging.replacing``) that gets ``run.json`` last, after
    the block wrote everything else: only a complete folder carries the record a rerun skips it by. ``source``
    (:func:`source_id`) is kept beside the record: it says whose folder this is, not whether it is current;
    so are ``notes``, which the block may fill (what was measured on the way, such as the resolution)."""
    with replacing(final) as staging:
        yield staging
        done = {**record, **({"source": source} if source else {}), **(notes or {})}
        (staging / RUN_RECORD).write_text(json.dumps(done, indent=2) + "\n", "utf-8")


def source_id(path: Path, pseudonyms: Pseudonyms | None = None) -> str:
    """Which input an output folder was made from: a digest of its absolute path (keyed under
    ``--deidentify``), so that two slides of the same name never share, or overwrite, one folder."""
    where = os.path.abspath(path)
    if pseudonyms is not None:
        return pseudonyms.digest(where)
    return hashlib.sha256(where.encode("utf-8")).hexdigest()[:SOURCE_HEX]


def finished_record(folder: Path) -> dict[str, Any] | None:
    """The ``run.json`` of a finished output folder (None: no folder, or no readable record)."""
    try:
        done = json.loads((folder / RUN_RECORD).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return done if isinstance(done, dict) else None


def files_sha256(paths: list[Path]) -> str:
    """sha256 over several files' names and bytes (the photographs of a case), in the order given."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(b"\0" + path.name.encode("utf-8") + b"\0" + file_sha256(path).encode())
    return digest.hexdigest()


def sweep_staging(out_dir: Path) -> int:
    """Remove staging folders left by a killed run anywhere under ``out_dir``; return how many."""
    stale = [p for p in out_dir.rglob(f".*{STAGING_SUFFIX}") if p.is_dir()] if out_dir.is_dir() else []
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    if stale:
        log.info("removed %d unfinished output folder(s) of an interrupted run", len(stale))
    return len(stale)


def make_out_dir(out_dir: Path) -> Path:
    """``out_dir``, created if missing; a path that cannot be an output folder is one clear line, not a traceback."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(out_dir, "is a file, not a folder: --out needs a folder") from None
    except NotADirectoryError:
        raise InputError(out_dir, "lies under a file, not a folder: --out needs a folder") from None
    except OSError as exc:
        raise InputError(out_dir, f"output folder cannot be created ({exc.strerror or exc})") from None
    return out_dir


@contextmanager
def batch_lock(out_dir: Path) -> Iterator[None]:
    """One batch at a time per output folder (a scheduled run and a manual one must not sweep each other).

    An ``flock`` is released by the kernel when its process dies, so a killed run never leaves it stuck.
    """
    make_out_dir(out_dir)
    try:
        lock = open(out_dir / ".bmpipe.lock", "w")  # noqa: SIM115 - held for the block below
    except OSError as exc:
        raise InputError(out_dir, f"output folder cannot be written ({exc.strerror or exc})") from None
    with lock as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(out_dir, "another bmpipe run is writing to this output folder") from None
        yield
