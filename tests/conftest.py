"""Shared test settings: an isolated Prefect home, offline ultralytics, the data folder beside the repo."""

from __future__ import annotations

import os
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

# Set before anything imports prefect or ultralytics: both read their settings at import time.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bmpipe-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


@pytest.fixture(autouse=True)
def seeded() -> None:
    """Every test starts from the same random state (Python's, numpy's global and torch's), so a test that
    draws without its own generator still fails or passes the same way on every run."""
    random.seed(0)
    np.random.seed(0)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(0)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real public data (``$BMPIPE_DATA`` or ``../shared/data``); tests needing it skip without it."""
    from bmpipe.datasets.catalog import data_root  # after the environment above is set

    path = data_root()
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent (set BMPIPE_DATA)")
    return path


@pytest.fixture(scope="session")
def demo_slide(tmp_path_factory) -> Path:
    """The slide ``bmpipe demo`` analyses (1,500 phantom cells, ~13 s to make), made once per session."""
    from bmpipe.cli import DEMO_SLIDE
    from bmpipe.phantom import make_slide

    return make_slide(tmp_path_factory.mktemp("demo") / "demo.tiff", **DEMO_SLIDE)
