"""Training at scale, measured: ``bmpipe train classifier`` streaming generated Matek-layout trees.

A lab's path to clinical accuracy is training on Matek 2021's 171,374 marrow cells or its own labels. This
times the real command on a tree of ``n`` small images and on one a tenth the size: crops per second, and
peak memory of the training, which must not grow with the number of images (they are read a batch at a time).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

#: Images of the generated tree: 24 µm squares at the classifier's 0.25 µm/px, so nothing is resampled.
TREE_PX = 96
TREE_MPP = 0.25
#: Distinct rendered cells per class; the tree's files are flips, turns and noisy copies of them.
RENDERED_PER_CODE = 6


def matek_tree(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` JPEG cells under ``root`` in the public Matek layout (``NGS/0001-1000/NGS_00001.jpg``), classes in
    turn, drawn from phantom cells; returns ``root``."""
    from bmpipe.phantom.crops import DEFAULT_CODES, cell_crops
    from bmpipe.resolution import Mpp

    rendered, labels, _, _ = cell_crops(RENDERED_PER_CODE, seed=seed, mpp=Mpp(TREE_MPP), size_px=TREE_PX,
                                        codes=DEFAULT_CODES)
    rng = np.random.default_rng(seed)
    counters: dict[str, int] = {}
    for i in range(n):
        k = rng.integers(len(rendered))
        code = str(labels[k])
        image = np.rot90(rendered[k], rng.integers(4))[:, :: rng.choice([-1, 1])]
        image = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
        j = counters[code] = counters.get(code, 0) + 1
        low = (j - 1) // 1000 * 1000 + 1
        path = root / code / f"{low:04d}-{low + 999:04d}" / f"{code}_{j:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return root


def train_on_tree(tree: Path, scratch: Path, steps: int, batch_size: int, threads: int) -> dict[str, Any]:
    """Run ``bmpipe train classifier`` on ``tree`` in a fresh process; its ``training.json`` figures."""
    work = scratch / f"work-{tree.name}"
    argv = [sys.executable, "-m", "bmpipe.train.classifier", "--data", str(tree), "--mpp", str(TREE_MPP),
            "--no-builtin", "--no-phantom", "--no-transfer", "--steps", str(steps), "--batch-size", str(batch_size),
            "--threads", str(threads), "--models", str(scratch / f"models-{tree.name}"), "--out", str(work),
            "--model-version", "bench"]
    t0 = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    record = json.loads((work / "training.json").read_text())
    record["wall_s"] = round(time.monotonic() - t0, 1)
    return record


def run(images: int, steps: int, batch_size: int, threads: int, scratch: Path | None = None) -> list[dict[str, Any]]:
    """Train on trees of ``images // 10`` and ``images`` images; one row of figures for each."""
    scratch = scratch or Path(tempfile.mkdtemp(prefix="bmpipe-train-bench-"))
    rows = []
    for n in (max(images // 10, 50), images):
        t0 = time.monotonic()
        tree = matek_tree(scratch / f"tree{n}", n)
        made = time.monotonic() - t0
        record = train_on_tree(tree, scratch, steps, batch_size, threads)
        rows.append({"images": n, "tree_s": round(made, 1), "crops_per_s": record["crops_per_s"],
                     "peak_rss_mb": record["peak_rss_mb"], "load_s": record["load_seconds"],
                     "train_s": record["seconds"], "device": record["device"], "wall_s": record["wall_s"]})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'images':>8} {'crops/s':>8} {'peak MB':>8} {'index s':>8} {'train s':>8}  device"]
    lines += [f"{r['images']:>8,} {r['crops_per_s']:>8.0f} {r['peak_rss_mb']:>8.0f} {r['load_s']:>8.1f} "
              f"{r['train_s']:>8.1f}  {r['device']}" for r in rows]
    if len(rows) == 2:
        lines.append(f"peak memory, {rows[1]['images']:,} vs {rows[0]['images']:,} images: "
                     f"{rows[1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f}×")
    return "\n".join(lines)
