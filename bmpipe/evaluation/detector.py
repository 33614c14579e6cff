"""Scores of a nucleated-cell detector on held-out fields and a phantom slide, each next to its target.

``bmpipe evaluate detector [--detector yolo|unet]`` runs :func:`main`. The held-out sets are those the
trainers never train on: TXL-PBC's own ``val`` split, fixed-seed splits of BCCD and SegPC (the same splits
``bmpipe.datasets.detector_data`` trains on the rest of), phantom fields drawn with another seed, and a phantom
slide read whole through the detection stage (tiles, overlap, merge) to count cells found twice at tile
borders. Box matching follows ``shared/tools/eval_detect.py``, and the detection CSVs are kept in the work
folder so that scorer can be run on them too. The trainers call the same functions for their model cards.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from bmpipe.cli.options import Parser, add_detector, add_device, add_models, add_out
from bmpipe.datasets import detector_data as dd
from bmpipe.datasets.catalog import DATASETS
from bmpipe.imaging.boxes import iou_matrix
from bmpipe.imaging.image_files import binary_mask, read_rgb
from bmpipe.imaging.rescale import rescale
from bmpipe.nn.detector import Detector
from bmpipe.resolution import Mpp

log = logging.getLogger(__name__)

def detect_image(detector: Detector, image: np.ndarray, mpp: Mpp) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (in ``image`` pixels) and scores of one RGB image at ``mpp``, resampled to the detector's."""
    scale = 1.0 / mpp.factor_to(detector.mpp)
    small = rescale(image, scale)
    boxes, scores = detector.detect(small[None])[0]
    sy, sx = image.shape[0] / small.shape[0], image.shape[1] / small.shape[1]
    return boxes * np.array([sx, sy, sx, sy]), scores


def greedy_match(iou: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Detections (rows of ``iou``, highest score first) each matched to the free truth box (column) it
    overlaps most, if at IoU ≥ 0.5, as ``shared/tools/eval_detect.py`` matches them: whether each detection
    matched, and whether each truth box was taken. One loop, so the held-out scores and the phantom-slide
    check count a match the same way."""
    hit = np.zeros(iou.shape[0], bool)
    used = np.zeros(iou.shape[1], bool)
    if not iou.shape[1]:
        return hit, used
    for k, row in enumerate(iou):
        free = np.where(used, 0.0, row)
        j = int(np.argmax(free))
        if free[j] >= 0.5:
            used[j] = hit[k] = True
    return hit, used


def box_scores(pairs: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """AP50, recall and precision over (truth boxes, detected boxes, scores) per image, matched greedily by
    score at IoU ≥ 0.5 as ``shared/tools/eval_detect.py`` does (101-point interpolated AP)."""
    hits, npos, ndet = [], 0, 0
    for truth, boxes, scores in pairs:
        npos += len(truth)
        ndet += len(boxes)
        order = np.argsort(-scores, kind="stable")
        iou = iou_matrix(boxes[order], truth) if len(truth) and len(boxes) else np.zeros((len(boxes), 0))
        hit, _ = greedy_match(iou)
        hits += [(float(scores[i]), int(ok)) for i, ok in zip(order, hit)]
    hits.sort(key=lambda h: -h[0])
    tp = np.cumsum([h[1] for h in hits]) if hits else np.zeros(0)
    fp = np.cumsum([1 - h[1] for h in hits]) if hits else np.zeros(0)
    rec = tp / max(npos, 1)
    prec = tp / np.maximum(tp + fp, 1)
    ap = float(np.mean([prec[rec >= t].max() if (rec >= t).any() else 0.0 for t in np.linspace(0, 1, 101)]))
    return {
        "AP50": ap,
        "recall": float(rec[-1]) if len(rec) else 0.0,
        "precision": float(prec[-1]) if len(prec) else 0.0,
        "truth": npos,
        "detections": ndet,
    }


def centre_recall(masks: list[np.ndarray], boxes: list[np.ndarray], min_area: int = 200) -> dict[str, float]:
    """Share of mask blobs (≥ ``min_area`` px) holding a detection centre (``eval_detect.py masks``)."""
    found = total = 0
    for mask, b in zip(masks, boxes):
        labels, n = ndimage.label(mask, structure=np.ones((3, 3)))  # 8-connected, as the reference
        area = np.bincount(labels.ravel(), minlength=n + 1)
        cx = ((b[:, 0] + b[:, 2]) / 2).astype(int)
        cy = ((b[:, 1] + b[:, 3]) / 2).astype(int)
        inside = (cx >= 0) & (cy >= 0) & (cx < mask.shape[1]) & (cy < mask.shape[0])
        hit = np.zeros(n + 1, bool)
        hit[labels[cy[inside], cx[inside]]] = True
        big = area >= min_area
        big[0] = False
        total += int(big.sum())
        found += int((hit & big).sum())
    return {"recall": found / max(total, 1), "truth": total, "found": found}


def write_detections(path: Path, rows: Iterable[tuple[str, np.ndarray, np.ndarray]]) -> None:
    """``image,x0,y0,x1,y1,score`` CSV, the format of ``bmpipe detect`` and the reference scorer."""
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["image", "x0", "y0", "x1", "y1", "score"])
        for name, boxes, scores in rows:
            for b, s in zip(boxes, scores):
                out.writerow([name, *(f"{v:.1f}" for v in b), f"{s:.4f}"])


@dataclass
class Field:
    """A held-out image with its resolution and nucleated-cell truth (boxes, or a binary mask)."""

    path: Path
    mpp: Mpp
    truth_boxes: Callable[[], np.ndarray] | None = None
    truth_mask: Callable[[], np.ndarray] | None = None


def txl_val_fields(single_mpp: bool = False) -> list[Field]:
    return [
        Field(p, DATASETS["txl_pbc"].mpp if single_mpp else mpp, truth_boxes=lambda b=boxes: b)
        for p, mpp, boxes in dd.txl_pbc_boxes("val")
    ]


def bccd_val_fields(seed: int) -> list[Field]:
    return [
        Field(p, mpp, truth_boxes=lambda b=boxes: b)
        for p, mpp, boxes in dd.bccd_boxes(dd.bccd_fields(seed)["val"])
    ]


def segpc_val_fields(seed: int) -> list[Field]:
    masks = DATASETS["segpc"].path / "masks"
    return [
        Field(p, dd.segpc_mpp(read_rgb(p)), truth_mask=lambda m=masks / p.name: binary_mask(m))
        for p in dd.segpc_fields(seed)["val"]
    ]


def phantom_val_fields(folder: Path, mpp: Mpp) -> list[Field]:
    return [
        Field(p, mpp, truth_boxes=lambda m=folder / "masks" / f"{p.stem}.png": mask_boxes(m))
        for p in dd.images_in(folder / "images")
    ]


def mask_boxes(mask_path: Path) -> np.ndarray:
    """Bounding boxes (x1/y1 exclusive) of the nucleated-cell instances in a phantom mask."""
    return dd.instance_boxes(dd.read_instances(mask_path)[0])


def evaluate(detector: Detector, fields: list[Field], csv_path: Path | None = None) -> dict[str, float]:
    """Scores of the detector on ``fields`` (box AP50/recall/precision, or centre recall on masks)."""
    dets = []
    for f in fields:
        boxes, scores = detect_image(detector, read_rgb(f.path), f.mpp)
        dets.append((f.path.name, boxes, scores))
    if csv_path is not None:
        write_detections(csv_path, dets)
    if fields and fields[0].truth_mask is not None:
        return centre_recall([f.truth_mask() for f in fields], [d[1] for d in dets])
    return box_scores((f.truth_boxes(), d[1], d[2]) for f, d in zip(fields, dets))


def throughput(detector: Detector, batch: int = 4, repeats: int = 3) -> float:
    """Megapixels per second of ``detect`` on full tiles of a light field with a few dark blobs (best of
    ``repeats``, so other jobs on a shared machine distort it less)."""
    rng = np.random.default_rng(0)
    tiles = np.full((batch, detector.tile_size, detector.tile_size, 3), 225, np.uint8)
    for t in tiles:
        for x, y in rng.integers(20, detector.tile_size - 20, size=(30, 2)):
            cv2.circle(t, (int(x), int(y)), 14, (110, 60, 150), -1)
    detector.detect(tiles)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        detector.detect(tiles)
        best = min(best, time.perf_counter() - start)
    return tiles.shape[0] * tiles.shape[1] * tiles.shape[2] / best / 1e6


def validation(
    detector: Detector, seed: int, work: Path, phantom: Path | None
) -> dict[str, dict[str, float]]:
    """Scores on every held-out set, ``phantom`` a folder of phantom fields at ``PHANTOM_VAL["mpp"]``;
    detections are kept as CSVs in ``work`` for the reference scorer."""
    metrics = {
        "txl_pbc": evaluate(detector, txl_val_fields(), work / "txl_pbc_val.csv"),
        f"txl_pbc@{DATASETS['txl_pbc'].mpp.um_per_px:g}": evaluate(
            detector, txl_val_fields(single_mpp=True), work / "txl_pbc_val_single.csv"
        ),
        "bccd": evaluate(detector, bccd_val_fields(seed), work / "bccd_val.csv"),
        "segpc": evaluate(detector, segpc_val_fields(seed), work / "segpc_val.csv"),
    }
    if phantom is not None:
        fields = phantom_val_fields(phantom, PHANTOM_VAL["mpp"])
        metrics["phantom"] = evaluate(detector, fields, work / "phantom_val.csv")
    for name, m in metrics.items():
        log.info("validation %s: %s", name, {k: round(v, 3) if isinstance(v, float) else v for k, v in m.items()})
    return metrics


# --- tile borders on a phantom slide -----------------------------------------------------------------------

#: The phantom slide read whole: small enough for a CPU, large enough for a few hundred tile borders.
BORDER_SLIDE = {"cells": 400, "seed": 11}


def border_check(detector: Detector, work: Path) -> dict[str, float]:
    """Read a phantom slide through the detection stage as a run does (readable area, overlapping tiles,
    merge in slide coordinates) and score the kept boxes against the slide's truth: a box matching
    (IoU ≥ 0.5) only a nucleated cell already matched by a higher-scored box is that cell counted twice."""
    from bmpipe.phantom import make_slide
    from bmpipe.phantom.smear import truth_path
    from bmpipe.slide import open_slide
    from bmpipe.stages.detect import detect_cells
    from bmpipe.stages.regions import find_smear

    path = work / f"border-slide-c{BORDER_SLIDE['cells']}-s{BORDER_SLIDE['seed']}.tiff"
    if not path.exists():
        make_slide(path, cells=BORDER_SLIDE["cells"], seed=BORDER_SLIDE["seed"])
    nucleated = [c for c in json.loads(truth_path(path).read_text())["cells"] if c["code"] != "PLT"]
    with open_slide(path) as slide:
        smear = find_smear(slide)
        cells = detect_cells(slide, smear, detector)
    truth = np.array([c["box"] for c in nucleated], np.float64).reshape(-1, 4)
    counted = np.array([c["zone"] == "monolayer" for c in nucleated]) & smear.analysed_at(
        np.array([c["x"] for c in nucleated]), np.array([c["y"] for c in nucleated]))
    order = np.argsort(-cells.score, kind="stable")
    iou = iou_matrix(cells.boxes()[order], truth) if len(truth) else np.zeros((len(order), 0))
    hit, used = greedy_match(iou)
    doubles = int((~hit & (iou >= 0.5).any(axis=1)).sum())
    return {"double_counts": doubles, "recall": float(used[counted].mean()) if counted.any() else 0.0,
            "precision": float(used.sum() / max(len(order), 1)), "truth": int(counted.sum()),
            "detections": len(order)}


# --- the benchmark -----------------------------------------------------------------------------------------

#: Phantom validation fields: the U-Net trainer's (1024 px at 0.1 µm/px, seed 1000), never trained on.
PHANTOM_VAL = {"n": 30, "seed": 1000, "size_px": 1024, "mpp": Mpp(0.1)}

#: (figure, set, key, target, higher is better) printed by ``bmpipe evaluate detector``.
TARGETS = (
    ("TXL-PBC held-out AP50", "txl_pbc", "AP50", 0.95, True),
    ("BCCD held-out AP50", "bccd", "AP50", None, True),
    ("SegPC plasma-cell recall @IoU0.5", "segpc", "recall", 0.90, True),
    ("phantom-field recall", "phantom", "recall", 0.98, True),
    ("phantom-field precision", "phantom", "precision", 0.97, True),
    ("phantom-slide double counts", "slide", "double_counts", 0, False),
    ("phantom-slide monolayer recall", "slide", "recall", None, True),
    ("phantom-slide precision", "slide", "precision", None, True),
)


def benchmark(detector: Detector, work: Path, seed: int = 0, slide: bool = True) -> dict[str, dict[str, float]]:
    """Every held-out score of ``detector`` (see :func:`validation`), plus the phantom-slide border check."""
    work.mkdir(parents=True, exist_ok=True)
    metrics = validation(detector, seed, work, dd.phantom_folder(work, **PHANTOM_VAL))
    if slide:
        metrics["slide"] = border_check(detector, work)
        log.info("phantom slide: %s", metrics["slide"])
    return metrics


def metric_rows(metrics: dict[str, dict[str, float]]) -> list[str]:
    """Markdown rows (set, AP50, recall, precision, truth cells) of every scored set: the same table in the
    YOLO and the U-Net model cards."""
    rows = []
    for name, m in metrics.items():
        cells = [f"{m[k]:.3f}" if k in m else "–" for k in ("AP50", "recall", "precision")]
        rows.append(f"| {name} | {' | '.join(cells)} | {m.get('truth', '–')} |")
    return rows


def target_rows(metrics: dict[str, dict[str, float]]) -> list[tuple[str, str, str, str]]:
    """(figure, value, target, verdict) for every figure measured."""
    rows = []
    for label, name, key, target, higher in TARGETS:
        if name not in metrics or key not in metrics[name]:
            continue
        value = metrics[name][key]
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        if target is None:
            rows.append((label, shown, "–", ""))
            continue
        ok = value >= target if higher else value <= target
        rows.append((label, shown, f"{'≥' if higher else '≤'} {target:g}", "meets" if ok else "MISSES"))
    return rows


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="bmpipe evaluate detector", description=__doc__.splitlines()[0])
    add_detector(p)
    add_models(p)
    add_out(p, "folder for phantom data and detection CSVs", Path("build/evaluate-detector"))
    add_device(p)
    p.add_argument("--no-slide", action="store_true", help="skip the phantom-slide tile-border check")
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from bmpipe.models import load_detector

    detector = load_detector(a.detector, a.models, a.device)
    metrics = benchmark(detector, a.out, slide=not a.no_slide)
    record = detector.record
    lines = [f"detector-{a.detector} {record.version} ({record.sha256[:12]}…) at {detector.mpp}",
             f"{'figure':36} {'value':>8}  {'target':8} verdict"]
    lines += [f"{f:36} {v:>8}  {t:8} {ok}" for f, v, t, ok in target_rows(metrics)]
    lines.append(f"detections: {a.out}/*.csv (image,x0,y0,x1,y1,score; see shared/tools/eval_detect.py)")
    sys.stdout.write("\n".join(lines) + "\n")  # the benchmark's output is its table, not a log
    return 0
