"""This process's peak memory, as benchmarks and training runs report it."""

from __future__ import annotations

import resource
import sys
from pathlib import Path


def peak_rss() -> int:
    """This process's peak resident memory in bytes, since it started this program.

    Linux's ``ru_maxrss`` survives ``execve``: a child forked from a parent of 3 GB (a test session, or a
    bench that has just generated its phantom slides) reports at least 3 GB. ``VmHWM`` belongs to the
    address space, which ``execve`` replaces; ``ru_maxrss`` only where there is no ``/proc``."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) * 1024
