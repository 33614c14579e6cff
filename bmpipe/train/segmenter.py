"""Train the U-Net nucleated-cell detector, score it on held-out fields, ship its weights and model card.

``bmpipe train segmenter`` runs :func:`main`. Training is bounded by wall time as well as by steps (the
learning-rate schedule follows whichever is further along), so a busy machine shortens training rather than
overrunning its budget. Validation uses fields never trained on: TXL-PBC's own ``val`` split, fixed-seed
splits of BCCD and SegPC, and phantom fields drawn with other seeds.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from bmpipe.nn.unet_detector import DEFAULT_CONFIG, NAME, UnetDetector, build_network, to_input
from bmpipe.nn.weights import ModelRecord, default_models_dir, save_model
from bmpipe.resolution import Mpp
from bmpipe.train import detector_data as dd
from bmpipe.train.datasets import DATASETS

log = logging.getLogger(__name__)

VERSION = "1.0.0"

#: Share of each training batch per source. Phantom marrow is what the pipeline is accepted on (dense cells,
#: many red cells, exact instances); the real sets keep the detector honest about real stain and optics.
SHARES = {"phantom": 0.55, "segpc": 0.2, "txl_pbc": 0.15, "bccd": 0.05, "user": 0.3}

#: Phantom fields are 1024 px at 0.1 µm/px (102 µm; 256 px at the detector's 0.4 µm/px): ``write_fields``
#: puts 3-15 nucleated cells in a field, so small fields come near the ~800 µm² per cell of a cellular
#: marrow monolayer (phantom slides and SegPC) and hold more touching cells.
PHANTOM_SIZE_PX = 1024


@dataclass
class TrainSettings:
    """One training run. Defaults are the shipped model's: on 2 shared CPU cores the 28-minute wall-time cap,
    not the step count, ends training (~3,300 steps)."""

    steps: int = 6000
    minutes: float = 28.0  # wall time of the whole run: data, training and validation
    reserve_minutes: float = 3.0  # of which kept for validation and the card
    batch: int = 16
    tile: int = 128
    lr: float = 3e-3
    seed: int = 0
    phantom_fields: int = 100
    phantom_val_fields: int = 30
    threads: int = 2
    extra: list[tuple[Path, Path, Mpp]] = field(default_factory=list)
    network: dict[str, Any] = field(default_factory=dict)  # overrides of DEFAULT_CONFIG


# --- training ----------------------------------------------------------------------------------------------


def loss_of(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """BCE + soft Dice on the foreground, BCE (soft targets) on the marker; zero-weight pixels ignored."""
    fg_logit, mk_logit = logits[:, 0], logits[:, 1]
    w, wm = batch["fg_weight"], batch["marker_weight"]
    bce = F.binary_cross_entropy_with_logits(fg_logit, batch["fg"], reduction="none")
    bce = (bce * w).sum() / w.sum().clamp(min=1.0)
    p = torch.sigmoid(fg_logit) * w
    t = batch["fg"] * w
    dice = 1 - (2 * (p * t).sum() + 1.0) / (p.sum() + t.sum() + 1.0)
    mk = F.binary_cross_entropy_with_logits(mk_logit, batch["marker"], reduction="none")
    mk = (mk * wm).sum() / wm.sum().clamp(min=1.0)
    return bce + dice + 2.0 * mk


def to_tensors(b: dd.Batch, config: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {
        "x": to_input(b.images, config),
        "fg": torch.from_numpy(b.fg),
        "marker": torch.from_numpy(b.marker),
        "fg_weight": torch.from_numpy(b.fg_weight),
        "marker_weight": torch.from_numpy(b.marker_weight),
    }


def fit(
    network: torch.nn.Module, sampler: dd.TileSampler, config: dict[str, Any], s: TrainSettings, budget: float
) -> dict:
    """Train in place with AdamW and a warm-up + cosine schedule over ``s.steps`` or ``budget`` seconds,
    whichever runs out first; returns step count, seconds and final loss."""
    network.train().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(network.parameters(), lr=s.lr, weight_decay=1e-4)
    start, step, running = time.monotonic(), 0, []
    while True:
        progress = max(step / s.steps, (time.monotonic() - start) / budget)
        if progress >= 1:
            break
        lr = s.lr * min(1.0, progress / 0.03) * 0.5 * (1 + math.cos(math.pi * progress))
        for g in opt.param_groups:
            g["lr"] = lr
        batch = to_tensors(sampler.batch(s.batch), config)
        loss = loss_of(network(batch["x"]), batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running.append(float(loss.detach()))
        step += 1
        if step % 100 == 0:
            log.info("step %d (%.0f%%, %.0f s): loss %.4f lr %.2e", step, 100 * progress,
                     time.monotonic() - start, np.mean(running[-100:]), lr)
    seconds = time.monotonic() - start
    log.info("trained %d steps in %.0f s", step, seconds)
    return {"steps": step, "seconds": seconds, "final_loss": float(np.mean(running[-100:] or [float("nan")]))}


# --- scoring -----------------------------------------------------------------------------------------------


def detect_image(detector: UnetDetector, image: np.ndarray, mpp: Mpp) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (in ``image`` pixels) and scores of one RGB image at ``mpp``, resampled to the detector's."""
    scale = 1.0 / mpp.factor_to(detector.mpp)
    small = dd.resize(image, scale)
    boxes, scores = detector.detect(small[None])[0]
    sy, sx = image.shape[0] / small.shape[0], image.shape[1] / small.shape[1]
    return boxes * np.array([sx, sy, sx, sy]), scores


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def box_scores(pairs: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """AP50, recall and precision over (truth boxes, detected boxes, scores) per image, matched greedily by
    score at IoU ≥ 0.5 as ``shared/tools/eval_detect.py`` does (101-point interpolated AP)."""
    hits, npos, ndet = [], 0, 0
    for truth, boxes, scores in pairs:
        npos += len(truth)
        ndet += len(boxes)
        order = np.argsort(-scores, kind="stable")
        iou = iou_matrix(boxes[order], truth) if len(truth) and len(boxes) else np.zeros((len(boxes), 0))
        used = np.zeros(len(truth), bool)
        for k, i in enumerate(order):
            cand = np.where(used, 0.0, iou[k]) if len(truth) else np.zeros(0)
            j = int(np.argmax(cand)) if len(cand) else -1
            ok = j >= 0 and cand[j] >= 0.5
            if ok:
                used[j] = True
            hits.append((float(scores[i]), int(ok)))
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
    root = DATASETS["txl_pbc"].path
    out = []
    for p in dd.images_in(root / "images" / "val"):
        h, w = cv2.imread(str(p)).shape[:2]
        mpp = DATASETS["txl_pbc"].mpp if single_mpp else dd.txl_pbc_mpp((h, w))
        label = root / "labels" / "val" / f"{p.stem}.txt"
        out.append(Field(p, mpp, truth_boxes=lambda label=label, w=w, h=h: dd.yolo_boxes(label, w, h)))
    return out


def bccd_val_fields(seed: int) -> list[Field]:
    ann = DATASETS["bccd"].path / "Annotations"
    return [
        Field(p, DATASETS["bccd"].mpp,
              truth_boxes=lambda x=ann / f"{p.stem}.xml": dd.voc_boxes(x) + np.array([0, 0, 1.0, 1.0]))
        for p in dd.bccd_fields(seed)["val"]
    ]


def segpc_val_fields(seed: int) -> list[Field]:
    masks = DATASETS["segpc"].path / "masks"
    return [
        Field(p, dd.segpc_mpp(dd.read_rgb(p)), truth_mask=lambda m=masks / p.name: dd.binary_mask(m))
        for p in dd.segpc_fields(seed)["val"]
    ]


def phantom_val_fields(folder: Path, mpp: Mpp) -> list[Field]:
    return [
        Field(p, mpp, truth_boxes=lambda m=folder / "masks" / f"{p.stem}.png": instance_boxes(m))
        for p in dd.images_in(folder / "images")
    ]


def instance_boxes(mask_path: Path) -> np.ndarray:
    """Bounding boxes (x1/y1 exclusive) of the nucleated-cell instances in a phantom mask."""
    inst, _ = dd.read_instances(mask_path)
    slices = ndimage.find_objects(inst)
    return np.array(
        [[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in slices if s is not None], np.float64
    ).reshape(-1, 4)


def evaluate(detector: UnetDetector, fields: list[Field], csv_path: Path | None = None) -> dict[str, float]:
    """Scores of the detector on ``fields`` (box AP50/recall/precision, or centre recall on masks)."""
    dets = []
    for f in fields:
        boxes, scores = detect_image(detector, dd.read_rgb(f.path), f.mpp)
        dets.append((f.path.name, boxes, scores))
    if csv_path is not None:
        write_detections(csv_path, dets)
    if fields and fields[0].truth_mask is not None:
        return centre_recall([f.truth_mask() for f in fields], [d[1] for d in dets])
    return box_scores((f.truth_boxes(), d[1], d[2]) for f, d in zip(fields, dets))


# --- data --------------------------------------------------------------------------------------------------


def phantom_folder(work: Path, n: int, seed: int, size_px: int) -> Path:
    """``n`` phantom marrow fields at 0.1 µm/px written once under ``work`` (reused when already there)."""
    from bmpipe.phantom import write_fields

    folder = work / f"phantom-n{n}-s{seed}-{size_px}px"
    if not (folder / "done").exists():
        t = time.monotonic()
        write_fields(folder, n, seed, size=(size_px, size_px), mpp=Mpp(0.1))
        (folder / "done").write_text("ok\n")
        log.info("wrote %d phantom fields in %.0f s", n, time.monotonic() - t)
    return folder


def training_samples(s: TrainSettings, work: Path) -> list[dd.Sample]:
    samples: list[dd.Sample] = list(dd.txl_pbc_samples("train"))
    samples += dd.bccd_samples(dd.bccd_fields(s.seed)["train"])
    samples += dd.segpc_samples(dd.segpc_fields(s.seed)["train"])
    if s.phantom_fields:
        folder = phantom_folder(work, s.phantom_fields, s.seed, PHANTOM_SIZE_PX)
        samples += dd.folder_samples(folder / "images", folder / "masks", Mpp(0.1), "phantom")
    for images, masks, mpp in s.extra:
        samples += dd.folder_samples(images, masks, mpp, "user")
    counts = {src: sum(x.source == src for x in samples) for src in {x.source for x in samples}}
    log.info("training fields: %s", counts)
    return samples


# --- the run -----------------------------------------------------------------------------------------------


def train_segmenter(
    out_dir: Path | None = None,
    settings: TrainSettings | None = None,
    work_dir: Path | None = None,
) -> ModelRecord:
    """Train, save ``detector-unet`` into ``out_dir`` (the models folder), score it and write its card."""
    s = settings or TrainSettings()
    out_dir = out_dir or default_models_dir()
    work = work_dir or out_dir.parent / "build" / "detector-unet"
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(s.threads)
    torch.manual_seed(s.seed)
    t0 = time.monotonic()
    samples = training_samples(s, work)
    val_folder = phantom_folder(work, s.phantom_val_fields, s.seed + 1000, PHANTOM_SIZE_PX) \
        if s.phantom_val_fields else None
    config = {**DEFAULT_CONFIG, **s.network}
    network = build_network(config)
    sampler = dd.TileSampler(samples, s.tile, SHARES, seed=s.seed)
    budget = (s.minutes - s.reserve_minutes) * 60 - (time.monotonic() - t0)
    if budget <= 0:
        raise ValueError(f"preparing the data took {time.monotonic() - t0:.0f} s, beyond the {s.minutes} min cap")
    stats = fit(network, sampler, config, s, budget)
    config["trained"] = {"steps": stats["steps"], "batch": s.batch, "tile": s.tile, "seed": s.seed}
    record = save_model(network.eval(), out_dir, NAME, VERSION, config)
    detector = UnetDetector.load(out_dir, device="cpu")
    metrics = validation(detector, s.seed, work, val_folder)
    speed = throughput(detector)
    total = time.monotonic() - t0
    write_card(out_dir, record, config, s, stats, metrics, samples, total, network, speed)
    log.info("done in %.0f s: %s", total, metrics)
    return record


def throughput(detector: UnetDetector, batch: int = 4, repeats: int = 3) -> float:
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
    detector: UnetDetector, seed: int, work: Path, phantom: Path | None
) -> dict[str, dict[str, float]]:
    """Scores on every held-out set; detections are kept as CSVs in ``work`` for the reference scorer."""
    metrics = {
        "txl_pbc": evaluate(detector, txl_val_fields(), work / "txl_pbc_val.csv"),
        f"txl_pbc@{DATASETS['txl_pbc'].mpp.um_per_px:g}": evaluate(
            detector, txl_val_fields(single_mpp=True), work / "txl_pbc_val_single.csv"
        ),
        "bccd": evaluate(detector, bccd_val_fields(seed), work / "bccd_val.csv"),
        "segpc": evaluate(detector, segpc_val_fields(seed), work / "segpc_val.csv"),
    }
    if phantom is not None:
        metrics["phantom"] = evaluate(detector, phantom_val_fields(phantom, Mpp(0.1)), work / "phantom_val.csv")
    for name, m in metrics.items():
        log.info("validation %s: %s", name, {k: round(v, 3) if isinstance(v, float) else v for k, v in m.items()})
    return metrics


def write_card(
    out_dir: Path,
    record: ModelRecord,
    config: dict[str, Any],
    s: TrainSettings,
    stats: dict,
    metrics: dict[str, dict[str, float]],
    samples: list[dd.Sample],
    total_seconds: float,
    network: torch.nn.Module,
    speed: float,
) -> Path:
    """``detector-unet.card.md``: what the model sees and finds, what it learnt from, how well, its limits."""
    params = sum(p.numel() for p in network.parameters())
    counts = {src: sum(x.source == src for x in samples) for src in sorted({x.source for x in samples})}
    rows = []
    for name, m in metrics.items():
        cells = [f"{m[k]:.3f}" if k in m else "–" for k in ("AP50", "recall", "precision")]
        rows.append(f"| {name} | {' | '.join(cells)} | {m.get('truth', '–')} |")
    text = CARD.format(
        name=NAME, version=record.version, sha=record.sha256, file=record.file,
        arch=config["arch"], encoder=config["encoder"], depth=config["encoder_depth"],
        decoder=config["decoder_channels"], params=params, mpp=config["mpp"], tile=config["tile_size"],
        fg=config["fg_threshold"], mk=config["marker_threshold"], min_area=config["min_area_um2"],
        min_seed=config["min_seed_um2"], speed=speed, phantom=PHANTOM_SIZE_PX, val_seed=s.seed + 1000,
        steps=stats["steps"], loss=stats["final_loss"], batch=s.batch, train_tile=s.tile, minutes=stats["seconds"] / 60,
        total=total_seconds / 60, threads=s.threads, counts=", ".join(f"{k} {v}" for k, v in counts.items()),
        shares=", ".join(f"{k} {v:g}" for k, v in SHARES.items() if k in counts),
        metrics="\n".join(rows), seed=s.seed,
        txl=", ".join(f"{h}×{w}: {m.um_per_px:g}" for (h, w), m in dd.TXL_PBC_MPP.items()),
        segpc=", ".join(f"{k}: {m.um_per_px:g}" for k, m in dd.SEGPC_MPP_BY_PAD.items()),
        bccd=DATASETS["bccd"].mpp.um_per_px, txl_single=f"{DATASETS['txl_pbc'].mpp.um_per_px:g}",
    )
    path = out_dir / f"{NAME}.card.md"
    path.write_text(text, "utf-8")
    return path


CARD = """# Model card: {name} {version}

- **File**: `{file}`, sha256 `{sha}` (checked against `manifest.json` at every load).
- **Task**: find every *nucleated* cell (white cells, blasts, erythroblasts, plasma cells, megakaryocytes)
  in RGB tiles of a Wright-Giemsa / May-Grünwald-Giemsa smear; red cells, platelets and background are not
  cells. Output: one box (x0, y0, x1, y1 in tile pixels) and a score per cell.
- **Resolution**: tiles at **{mpp} µm/px** (the pipeline resamples the slide to it); tile size {tile} px.
- **Network**: segmentation-models-pytorch `{arch}`, encoder `{encoder}` (depth {depth}, random init, no
  downloaded weights), decoder channels {decoder}; {params:,} parameters; 2 outputs: whole-cell
  foreground and a centre marker (distance to the cell's own edge / its maximum).
- **Post-processing**: foreground > {fg}; seeds = connected parts of marker > {mk} of at least {min_seed}
  µm²; a foreground blob holding several seeds is split by flooding the marker from its seeds downwards
  (watershed by immersion, 10 levels); regions under {min_area} µm² are dropped; score = mean foreground
  probability of the region.
- **Speed**: {speed:.2f} megapixels/s (at 0.4 µm/px, batches of 4 × 512², network and post-processing) on
  {threads} CPU threads of the training machine, shared with other jobs while measured.

## Training data

| data set | kind | licence | how its truth is used |
| --- | --- | --- | --- |
| bmpipe phantom marrow fields (`bmpipe.phantom`) | synthetic | project's own (Apache-2.0) | exact instance masks of nucleated cells |
| TXL-PBC (`txl_pbc`, train split) | real, peripheral blood | MIT | white-cell boxes → inscribed ellipses |
| BCCD (fields not also in TXL-PBC; fixed-seed 80 % split) | real, peripheral blood | MIT | white-cell boxes → inscribed ellipses |
| SegPC-2021 (fixed-seed 80 % split by blocks of 100 ids) | real, marrow aspirate | CC BY-NC-SA 4.0 | plasma-cell masks; other nucleated cells are unlabelled there, so purple-stained blobs outside the masks (grown by 3 µm) carry no loss; no centre target inside merged masks |

Fields used: {counts}. Share of each batch: {shares}. Phantom fields: {phantom} px at 0.1 µm/px
(3-15 nucleated cells each, red cells, platelets, random stain and focus), seed {seed}; its validation
fields use seed {val_seed}.

Resolutions used (none is stated by its data set):
- TXL-PBC, by field size (height×width: µm/px): {txl}; median diameter of isolated round red cells
  taken as 7.5 µm;
- BCCD: {bccd} µm/px, same rule;
- SegPC, by letterbox height (rows: µm/px): {segpc}; the burnt-in 10 µm scale bar is 54 px long, the
  other camera is scaled by plasma-cell and red-cell size.

`wbc_seg` single-cell crops were not used (no context around the cell, so nothing to learn about what is
*not* a cell). Augmentation: crops of {train_tile} px, ±15 % scale, flips, 90° turns, HSV/contrast
jitter, slight blur.

Training: {steps} steps of {batch} tiles, AdamW with warm-up and cosine decay, seed {seed}, final loss
{loss:.3f}; {minutes:.1f} min of training ({total:.1f} min with phantom rendering, data preparation and
validation) on {threads} CPU threads.

## Validation (held-out fields, never trained on)

Boxes matched greedily by score at IoU ≥ 0.5 (as `shared/tools/eval_detect.py`). SegPC: share of
plasma-cell mask blobs ≥ 200 px that hold a detection centre (its other, unlabelled cells make precision
meaningless there). `txl_pbc@{txl_single}`: the same TXL-PBC fields all read at the data set's single
nominal {txl_single} µm/px instead of their per-source value.

| data set | AP50 | recall | precision | truth cells |
| --- | --- | --- | --- | --- |
{metrics}

## Limits

- Trained mostly on synthetic marrow and on *peripheral-blood* fields with one or two white cells each; the
  only real marrow (SegPC) labels plasma cells alone. Dense real marrow with clumped cells, thick areas
  and smudge cells is not validated with full labels.
- Cells piled on each other over several layers of red cells (the thick zone of a smear) are often
  missed or merged: count in the monolayer only, as the pipeline's region stage is meant to ensure.
- The resolution of every real set is estimated from red-cell size; a slide whose µm/px is wrong by more
  than ~20 % shows cells at a size the model has not seen (see `txl_pbc@{txl_single}`).
- Boxes cover the whole cell (nucleus and cytoplasm) as the training truth did; box edges on pale
  cytoplasm are the least certain part.
- Not a diagnostic device: counts are for a hematologist to confirm.
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bmpipe train segmenter", description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=None, help="models folder to write (default: repo models/)")
    p.add_argument("--work", type=Path, default=None, help="folder for phantom fields and detection CSVs")
    p.add_argument("--images", type=Path, action="append", default=[], help="extra training image folder")
    p.add_argument("--masks", type=Path, action="append", default=[],
                   help="mask folder for the matching --images (nucleated-cell instance or binary masks)")
    p.add_argument("--mpp", type=float, action="append", default=[], help="µm/px of the matching --images")
    p.add_argument("--steps", type=int, default=TrainSettings.steps)
    p.add_argument("--minutes", type=float, default=TrainSettings.minutes, help="wall-time cap on training")
    p.add_argument("--phantom-fields", type=int, default=TrainSettings.phantom_fields)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if not (len(a.images) == len(a.masks) == len(a.mpp)):
        p.error("give --images, --masks and --mpp once per extra data folder")
    extra = [(i, m, Mpp(v)) for i, m, v in zip(a.images, a.masks, a.mpp)]
    settings = TrainSettings(steps=a.steps, minutes=a.minutes, seed=a.seed, phantom_fields=a.phantom_fields,
                             extra=extra)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    record = train_segmenter(a.models, settings, a.work)
    log.info("saved %s %s sha256 %s", record.name, record.version, record.sha256)
    return 0
