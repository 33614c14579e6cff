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


@pytest.fixture()
def cell_photographs():
    """Writes ``n`` CellaVision-like photographs at ``mpp`` into a folder: a white cell in the middle and four
    whole 7.5 µm red cells (pink, a pale centre) in the corners, on light glass; returns the folder."""
    import cv2

    def write(folder: Path, n: int, mpp) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        size = round(36 / mpp.um_per_px)
        r = 3.75 / mpp.um_per_px
        for i in range(n):
            rng = np.random.default_rng(i)
            image = np.full((size, size, 3), 235, np.uint8)
            cv2.circle(image, (size // 2, size // 2), round(5 / mpp.um_per_px), (140, 40, 90), -1, cv2.LINE_AA)
            for fx, fy in ((0.2, 0.2), (0.8, 0.2), (0.2, 0.8), (0.8, 0.8)):
                x, y = np.rint((np.array([fx, fy]) + rng.uniform(-0.03, 0.03, 2)) * size).astype(int)
                cv2.circle(image, (x, y), round(r), (175, 170, 215), -1, cv2.LINE_AA)  # BGR
                cv2.circle(image, (x, y), round(r / 3), (200, 200, 225), -1, cv2.LINE_AA)
            cv2.imwrite(str(folder / f"{i:02d}.png"), image)
        return folder

    return write
