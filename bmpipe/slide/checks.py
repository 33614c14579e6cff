"""Checks made before any pixel is touched: the file itself, the size its header claims, and a safe id.

They run first so that a wrong path, an empty upload or a corrupt header that claims terapixels is answered
with one clear line instead of a library traceback or an out-of-memory kill.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from bmpipe.errors import SlideError

#: Largest level-0 image accepted (10^11 px is ~4× the biggest real whole-slide scans); beyond it a header
#: is corrupt or hostile, and trusting it would make later code allocate absurd buffers.
MAX_LEVEL0_PIXELS = 10**11
#: Largest side accepted (a 75 mm slide at 0.0075 µm/px); guards headers claiming e.g. 10^9 × 1.
MAX_SIDE = 10**7

_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_DOT_RUNS = re.compile(r"\.{2,}")
_MAX_ID_LENGTH = 120


def check_file(path: Path) -> None:
    """Refuse a path that is missing, a folder, empty or unreadable, naming which."""
    try:
        if not path.exists():
            raise SlideError(path, "file not found")
        if path.is_dir():
            raise SlideError(path, "is a folder, not a slide or image file")
        if path.stat().st_size == 0:
            raise SlideError(path, "empty file (0 bytes)")
    except OSError as err:
        raise SlideError(path, f"cannot access the file ({err.strerror or err})") from err
    if not os.access(path, os.R_OK):
        raise SlideError(path, "cannot read the file (permission denied)")


def check_dimensions(path: Path, width: int, height: int) -> None:
    """Refuse a header whose size is empty or beyond what any real slide has, before anything is allocated."""
    if width <= 0 or height <= 0:
        raise SlideError(path, f"its header gives no pixels ({width}×{height})")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_LEVEL0_PIXELS:
        raise SlideError(
            path,
            f"its header claims {width}×{height} pixels, beyond the accepted {MAX_LEVEL0_PIXELS:.0e} pixels "
            f"or {MAX_SIDE:.0e} per side; the file is corrupt or not a slide",
        )


def slide_id(path: Path) -> str:
    """The file stem made safe as a folder name: only ``[A-Za-z0-9._-]``, never ``..``, hidden or empty.

    Output folders are named after it, so a crafted name such as ``../../etc`` or ``<script>`` must not
    escape the output root or reach an HTML report unescaped.
    """
    stem = path.stem
    if stem.lower().endswith(".ome"):  # "x.ome.tif" is slide "x"
        stem = stem[: -len(".ome")]
    safe = _DOT_RUNS.sub(".", _UNSAFE_ID_CHARS.sub("_", stem)).lstrip(".-")[:_MAX_ID_LENGTH]
    return safe or "slide"
