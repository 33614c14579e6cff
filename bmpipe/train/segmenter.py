"""Train the U-Net nucleated-cell detector, score it on held-out fields, ship its weights and model card.

``bmpipe train segmenter`` runs :func:`main`. Training is bounded by wall time as well as by steps (the
learning-rate schedule follows whichever is further along), so a busy machine shortens training rather than
overrunning its budget. Validation uses fields never trained on: TXL-PBC's own ``val`` split, fixed-seed
splits of BCCD and SegPC, and phantom fields drawn with other seeds.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bmpipe.cli.options import Parser, add_models, add_mpp, positive_int
from bmpipe.datasets import detector_data as dd
from bmpipe.datasets.catalog import DATASETS
from bmpipe.evaluation.detector import metric_rows, throughput, validation
from bmpipe.nn.unet_detector import DEFAULT_CONFIG, NAME, UnetDetector, build_network, to_input
from bmpipe.nn.weights import ModelRecord, default_models_dir, save_model
from bmpipe.resolution import Mpp

log = logging.getLogger(__name__)

VERSION = "1.0.0"

#: Share of each training batch per source. Phantom marrow is what the pipeline is accepted on (dense cells,
#: many red cells, exact instances); the real sets keep the detector honest about real stain and optics.
SHARES = {"phantom": 0.55, "segpc": 0.2, "txl_pbc": 0.15, "bccd": 0.05, "user": 0.3}

#: Phantom fields are 1024 px at 0.1 µm/px (102 µm; 256 px at the detector's 0.4 µm/px): ``write_fields``
#: puts 3-15 nucleated cells in a field, so small fields come near the ~800 µm² per cell of a cellular
#: marrow monolayer (phantom slides and SegPC) and hold more touching cells.
PHANTOM_SIZE_PX = 1024
PHANTOM_MPP = Mpp(0.1)


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


# --- data --------------------------------------------------------------------------------------------------


def training_samples(s: TrainSettings, work: Path) -> list[dd.Sample]:
    samples: list[dd.Sample] = list(dd.txl_pbc_samples("train"))
    samples += dd.bccd_samples(dd.bccd_fields(s.seed)["train"])
    samples += dd.segpc_samples(dd.segpc_fields(s.seed)["train"])
    if s.phantom_fields:
        folder = dd.phantom_folder(work, s.phantom_fields, s.seed, PHANTOM_SIZE_PX, PHANTOM_MPP)
        samples += dd.folder_samples(folder / "images", folder / "masks", PHANTOM_MPP, "phantom")
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
    val_folder = dd.phantom_folder(work, s.phantom_val_fields, s.seed + 1000, PHANTOM_SIZE_PX, PHANTOM_MPP) \
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
    text = CARD.format(
        name=NAME, version=record.version, sha=record.sha256, file=record.file,
        arch=config["arch"], encoder=config["encoder"], depth=config["encoder_depth"],
        decoder=config["decoder_channels"], params=params, mpp=config["mpp"], tile=config["tile_size"],
        fg=config["fg_threshold"], mk=config["marker_threshold"], min_area=config["min_area_um2"],
        min_seed=config["min_seed_um2"], speed=speed, phantom=PHANTOM_SIZE_PX, val_seed=s.seed + 1000,
        steps=stats["steps"], loss=stats["final_loss"], batch=s.batch, train_tile=s.tile, minutes=stats["seconds"] / 60,
        total=total_seconds / 60, threads=s.threads, counts=", ".join(f"{k} {v}" for k, v in counts.items()),
        shares=", ".join(f"{k} {v:g}" for k, v in SHARES.items() if k in counts),
        metrics="\n".join(metric_rows(metrics)), seed=s.seed,
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


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="bmpipe train segmenter", description=__doc__.splitlines()[0])
    add_models(p, writes=True)
    p.add_argument("--out", type=Path, default=None,
                   help="the run's folder: phantom fields and detection CSVs (default: build/ beside the models)")
    p.add_argument("--images", type=Path, action="append", default=[], help="extra training image folder")
    p.add_argument("--masks", type=Path, action="append", default=[],
                   help="mask folder for the matching --images (nucleated-cell instance or binary masks)")
    add_mpp(p, "µm per pixel of the matching --images (once for all of them, or once per folder)", repeat=True)
    p.add_argument("--steps", type=positive_int, default=TrainSettings.steps, help="training steps at most")
    p.add_argument("--minutes", type=float, default=TrainSettings.minutes, help="wall-time cap on training")
    p.add_argument("--phantom-fields", type=int, default=TrainSettings.phantom_fields,
                   help="phantom fields rendered for training")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    a = p.parse_args(argv)
    if len(a.images) != len(a.masks):
        p.error("give one --masks folder for each --images folder")
    if a.images and len(a.mpp) not in (1, len(a.images)):
        p.error("give --mpp (µm/px of the --images; photographs do not carry it) once, or once per folder")
    mpps = a.mpp * len(a.images) if len(a.mpp) == 1 else a.mpp
    for folder in (*a.images, *a.masks):
        if not folder.is_dir():
            p.error(f"{folder}: not a folder")
    extra = list(zip(a.images, a.masks, mpps))
    settings = TrainSettings(steps=a.steps, minutes=a.minutes, seed=a.seed, phantom_fields=a.phantom_fields,
                             extra=extra)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    record = train_segmenter(a.models, settings, a.out)
    log.info("saved %s %s sha256 %s", record.name, record.version, record.sha256)
    return 0
