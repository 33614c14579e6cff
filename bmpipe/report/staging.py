"""Output folders written all or nothing: into a hidden staging folder, renamed into place when complete.
(:func:`write_text_atomic` does the same for a single file that lives outside a slide's folder.)

Every writer of a slide's folder (the first report, a rewrite after review, the flows' finished run) goes
through :func:`replacing`, so a run killed at any point leaves the previous folder or the new complete one,
never a half-written report; what a kill leaves behind ends in ``STAGING_SUFFIX`` and is swept on the next run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Staging folders are hidden and end in ``.partial``: never mistaken for a finished slide.
STAGING_SUFFIX = ".partial"


def write_text_atomic(path: Path, text: str) -> None:
    """Write one text file through a hidden temporary beside it, renamed into place: a reader (a spreadsheet,
    the next run) sees the old file or the new one, never half of it. ``text`` is written as given (no
    newline translation), so a CSV keeps the line endings its writer chose."""
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(text, "utf-8", newline="")
    os.replace(tmp, path)


def staging_dir(final: Path) -> Path:
    """A fresh hidden folder beside ``final`` to write its outputs into."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=STAGING_SUFFIX, dir=final.parent))


@contextmanager
def replacing(final: Path) -> Iterator[Path]:
    """A staging folder for ``final``'s new content; when the block ends without error it takes ``final``'s
    place (an old ``final`` is first renamed aside, so one of them always exists), else it is removed."""
    staging = staging_dir(final)
    try:
        yield staging
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide the outputs from the lab's other accounts
        if final.exists():
            old = final.parent / f".{final.name}.old{os.getpid()}{STAGING_SUFFIX}"
            os.replace(final, old)
            os.replace(staging, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
