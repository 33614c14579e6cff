"""Train the YOLO nucleated-cell detector with ultralytics, ship its weights as safetensors with a model card.

``bmpipe train detector`` runs :func:`main`. Given ``--data DATA.yaml`` (the ultralytics layout, images
already at the detector's 0.4 µm/px) it trains on that; otherwise it first builds its own data set from the
real data and phantom fields (:func:`build_dataset`). ultralytics resizes every training image so that its
long side is ``imgsz``, which would change the size of cells, so every image written here is exactly
``imgsz`` square at 0.4 µm/px: small blood-smear fields are packed 2 × 2 into one image, larger ones cropped.
The only real marrow, SegPC, is listed several times per epoch (:func:`oversampled`).

Training is capped by wall time (ultralytics' ``time``), runs without plots, AMP check or downloads, and the
weights are taken from the trainer in memory (its exponential moving average) and saved through
:mod:`bmpipe.nn.weights`; ultralytics' own pickled checkpoints stay in the work folder and are never read.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import yaml

from bmpipe.cli.options import Parser, add_batch_size, add_models
from bmpipe.datasets import detector_data as dd
from bmpipe.datasets.catalog import DATASETS
from bmpipe.imaging.image_files import read_rgb
from bmpipe.imaging.rescale import rescale
from bmpipe.nn.weights import ModelRecord, default_models_dir, load_weights, save_model
from bmpipe.nn.yolo_detector import DEFAULT_CONFIG, DETECTOR_MPP, NAME, build_network
from bmpipe.resolution import Mpp
from bmpipe.slide import images_in

log = logging.getLogger(__name__)

VERSION = "1.1.0"

#: Phantom fields are rendered at 0.2 µm/px (2.8× faster than 0.1, still twice the detector's detail) and
#: shrunk to the detector's 0.4 µm/px.
PHANTOM_MPP = Mpp(0.2)


@dataclass
class YoloSettings:
    """One training run; on 2 shared CPU cores the wall-time cap ends training."""

    minutes: float = 35.0  # training proper (data building and scoring come on top)
    batch: int = 16
    seed: int = 0
    phantom_fields: int = 250
    workers: int = 1
    threads: int = 2
    #: SegPC fields shown this many times per epoch: its real marrow (dense, touching cells) is otherwise
    #: outweighed by blood smears and phantom fields, and its plasma cells then score low (held-out recall
    #: 0.82 at score 0.25 with each field once, the misses scored 0.02-0.25; 0.94 after 15 epochs at ×3).
    segpc_repeat: int = 3
    arch: str = DEFAULT_CONFIG["arch"]


# --- data set building -------------------------------------------------------------------------------------


@dataclass
class Canvas:
    """One training image at the detector's resolution with its boxes (x0, y0, x1, y1 in its pixels)."""

    name: str
    source: str
    image: np.ndarray
    boxes: np.ndarray


def _fill_colour(image: np.ndarray) -> np.ndarray:
    return np.median(image.reshape(-1, 3), axis=0).astype(np.uint8)


def packed(fields: Iterator[tuple[str, np.ndarray, np.ndarray]], source: str, size: int,
           rng: np.random.Generator) -> Iterator[Canvas]:
    """Small fields (image, boxes at the detector's resolution) packed 2 × 2 into ``size`` squares, each at a
    random place in its quarter, the rest of the quarter filled with the field's median colour. A box cut by
    the quarter keeps its visible part when at least 60 % of it shows, else that area is painted over."""
    cell = size // 2
    group: list[tuple[str, np.ndarray, np.ndarray]] = []
    for item in fields:
        group.append(item)
        if len(group) == 4:
            yield _pack(group, source, size, cell, rng)
            group = []
    if group:
        yield _pack(group, source, size, cell, rng)


def _pack(group, source: str, size: int, cell: int, rng: np.random.Generator) -> Canvas:
    canvas = np.empty((size, size, 3), np.uint8)
    boxes = []
    for q in range(4):
        qy, qx = (q // 2) * cell, (q % 2) * cell
        if q >= len(group):
            canvas[qy:qy + cell, qx:qx + cell] = canvas[:cell, :cell].reshape(-1, 3).mean(0) if q else 230
            continue
        _, image, b = group[q]
        fill = _fill_colour(image)
        quarter = np.empty((cell, cell, 3), np.uint8)
        quarter[...] = fill
        h, w = image.shape[:2]
        oy = int(rng.integers(0, max(0, cell - h) + 1)) if h <= cell else -int(rng.integers(0, h - cell + 1))
        ox = int(rng.integers(0, max(0, cell - w) + 1)) if w <= cell else -int(rng.integers(0, w - cell + 1))
        ys, xs = max(0, oy), max(0, ox)
        ye, xe = min(cell, oy + h), min(cell, ox + w)
        quarter[ys:ye, xs:xe] = image[ys - oy:ye - oy, xs - ox:xe - ox]
        for x0, y0, x1, y1 in b + np.array([ox, oy, ox, oy]):
            cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, cell), min(y1, cell)
            if cx1 <= cx0 or cy1 <= cy0:
                continue
            if (cx1 - cx0) * (cy1 - cy0) >= 0.6 * (x1 - x0) * (y1 - y0):
                boxes.append([cx0 + qx, cy0 + qy, cx1 + qx, cy1 + qy])
            else:  # a sliver of a cell: neither a cell to find nor background to learn
                quarter[int(cy0):int(np.ceil(cy1)), int(cx0):int(np.ceil(cx1))] = fill
        canvas[qy:qy + cell, qx:qx + cell] = quarter
    return Canvas(f"{source}_{group[0][0]}", source, canvas, np.array(boxes, np.float64).reshape(-1, 4))


def box_fields(paths_boxes: Iterator[tuple[Path, Mpp, np.ndarray]]) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, image, boxes) resampled to the detector's µm/px from files with boxes in file pixels."""
    for path, mpp, boxes in paths_boxes:
        scale = 1.0 / mpp.factor_to(DETECTOR_MPP)
        yield path.stem, rescale(read_rgb(path), scale), boxes * scale


def segpc_canvases(paths: list[Path], size: int) -> Iterator[Canvas]:
    """SegPC marrow fields, plasma cells as boxes. Its other nucleated cells are unlabelled and plasma cells
    that touch share one mask, so both are painted over with the field's background colour: a YOLO loss
    cannot ignore an area, and teaching them as background (or as one box) would teach the wrong thing."""
    min_px = 15.0 / DETECTOR_MPP.um_per_px**2
    for path, image, inst in dd.segpc_instances(paths):
        merged = dd.merged_blobs(inst)
        hide = dd.unlabelled_cells(image, inst, DETECTOR_MPP) | merged
        hide = cv2.dilate(hide.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        if hide.any():
            plain = ~hide & ~dd.nuclear_stain(image) & (inst == 0)
            colour = np.median(image[plain], axis=0) if plain.any() else _fill_colour(image)
            soft = cv2.GaussianBlur(hide.astype(np.float32), (0, 0), 1.5)[..., None]
            image = (image * (1 - soft) + colour * soft).astype(np.uint8)
        inst[merged] = 0
        yield from _crops(path.stem, "segpc", image, dd.instance_boxes(inst, min_px), size)


def _crops(name: str, source: str, image: np.ndarray, boxes: np.ndarray, size: int) -> Iterator[Canvas]:
    """``size`` squares covering ``image`` (padded with its median colour when smaller); boxes that leave a
    square keep their visible part when at least 60 % shows, otherwise the square is not used for them."""
    h, w = image.shape[:2]
    fill = _fill_colour(image)
    for y in sorted({0, max(0, h - size)}):
        for x in sorted({0, max(0, w - size)}):
            canvas = np.empty((size, size, 3), np.uint8)
            canvas[...] = fill
            part = image[y:y + size, x:x + size]
            canvas[:part.shape[0], :part.shape[1]] = part
            b = boxes - np.array([x, y, x, y])
            c = np.clip(b, 0, [part.shape[1], part.shape[0], part.shape[1], part.shape[0]])
            full = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            seen = np.clip(c[:, 2] - c[:, 0], 0, None) * np.clip(c[:, 3] - c[:, 1], 0, None)
            yield Canvas(f"{name}_{y}_{x}", source, canvas, c[seen >= 0.6 * np.maximum(full, 1e-9)])


def phantom_canvases(work: Path, n: int, seed: int, size: int) -> Iterator[Canvas]:
    """Phantom marrow fields (exact instances: every nucleated cell, never a red cell or platelet)."""
    side = round(size * DETECTOR_MPP.um_per_px / PHANTOM_MPP.um_per_px)
    folder = dd.phantom_folder(work, n, seed, side, PHANTOM_MPP)
    for path, image, inst, _ in dd.folder_instances(folder / "images", folder / "masks", PHANTOM_MPP):
        yield from _crops(path.stem, "phantom", image, dd.instance_boxes(inst, 1.0), size)


def write_split(root: Path, split: str, canvases: Iterator[Canvas]) -> dict[str, int]:
    """Images (PNG) and YOLO labels of ``canvases`` under ``root``; returns canvases and boxes per source."""
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for c in canvases:
        h, w = c.image.shape[:2]
        cv2.imwrite(str(root / "images" / split / f"{c.name}.png"), c.image[..., ::-1])
        lines = [f"0 {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}\n"
                 for x0, y0, x1, y1 in c.boxes]
        (root / "labels" / split / f"{c.name}.txt").write_text("".join(lines))
        counts[c.source] = counts.get(c.source, 0) + 1
        counts[f"{c.source} cells"] = counts.get(f"{c.source} cells", 0) + len(c.boxes)
    return counts


def build_dataset(work: Path, s: YoloSettings, size: int) -> tuple[Path, dict[str, dict[str, int]]]:
    """An ultralytics data set at the detector's µm/px from TXL-PBC (train split), BCCD and SegPC (the
    training parts of the fixed-seed splits the evaluation holds out) and phantom fields; its ``val`` split
    (TXL-PBC val, 200 fields, and phantom fields of another seed) only serves ultralytics' closing check."""
    root = work / "yolo-data"
    if (root / "data.yaml").exists():
        return root / "data.yaml", yaml.safe_load((root / "data.yaml").read_text())["counts"]
    rng = np.random.default_rng(s.seed)
    bccd = dd.bccd_fields(s.seed)
    train = write_split(root, "train", _chain(
        packed(box_fields(dd.txl_pbc_boxes("train")), "txl_pbc", size, rng),
        packed(box_fields(dd.bccd_boxes(bccd["train"])), "bccd", size, rng),
        segpc_canvases(dd.segpc_fields(s.seed)["train"], size),
        phantom_canvases(work, s.phantom_fields, s.seed, size),
    ))
    val = write_split(root, "val", _chain(
        packed(box_fields(islice(dd.txl_pbc_boxes("val"), 200)), "txl_pbc", size, rng),
        phantom_canvases(work, 20, s.seed + 2000, size),
    ))
    counts = {"train": train, "val": val}
    data = {"path": str(root.resolve()), "train": "images/train", "val": "images/val",
            "names": {0: "nucleated_cell"}, "counts": counts}
    (root / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    log.info("data set: %s", counts)
    return root / "data.yaml", counts


def oversampled(data_yaml: Path, repeat: int) -> Path:
    """A data.yaml beside ``data_yaml`` whose train split lists every image once and each SegPC one (named by
    its numeric SegPC id) ``repeat`` times; ultralytics keeps repeated lines of a list file."""
    data = yaml.safe_load(data_yaml.read_text())
    root = Path(data["path"])
    images = images_in(root / data["train"])
    lines = [str(p) for p in images for _ in range(repeat if p.stem.split("_")[0].isdigit() else 1)]
    listing = data_yaml.with_name(f"train-segpc-x{repeat}.txt")
    listing.write_text("\n".join(lines) + "\n")
    out = data_yaml.with_name(f"data-segpc-x{repeat}.yaml")
    out.write_text(yaml.safe_dump({**data, "train": str(listing)}, sort_keys=False))
    return out


def _chain(*its):
    for it in its:
        yield from it


# --- training ----------------------------------------------------------------------------------------------


def train_yolo(data_yaml: Path, work: Path, s: YoloSettings, config: dict[str, Any],
               init: dict[str, torch.Tensor] | None = None) -> tuple[torch.nn.Module, dict]:
    """Train with ultralytics' DetectionTrainer for ``s.minutes``, from random weights or from ``init`` (a
    state dict of the same architecture); returns the EMA network and run facts."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    class Trainer(DetectionTrainer):
        def get_model(self, cfg=None, weights=None, verbose=True):
            model = super().get_model(cfg, weights, verbose)
            if init is not None:  # from safetensors, never from a pickled checkpoint
                model.load_state_dict(init)
            return model

        def final_eval(self):
            """Skipped: it re-reads the pickled best.pt; bmpipe scores the saved weights itself."""

    overrides = {
        "model": config["arch"], "data": str(data_yaml), "imgsz": int(config["imgsz"]), "batch": s.batch,
        "device": "cpu", "workers": s.workers, "time": s.minutes / 60, "epochs": 1000, "patience": 1000,
        "pretrained": False, "amp": False, "plots": False, "val": False, "cache": "ram", "seed": s.seed,
        "deterministic": False, "exist_ok": True, "project": str(work / "runs"), "name": "train",
        "verbose": False, "single_cls": True,
        # Cells keep their size at a fixed µm/px: mild scale jitter only; smears have no up or down.
        "scale": 0.15, "degrees": 0.0, "translate": 0.1, "flipud": 0.5, "fliplr": 0.5, "mosaic": 1.0,
        "close_mosaic": 2, "hsv_h": 0.02, "hsv_s": 0.5, "hsv_v": 0.3,
    }
    trainer = Trainer(overrides=overrides)
    start = time.monotonic()
    trainer.train()
    facts = {"epochs": int(trainer.epoch) + 1, "seconds": time.monotonic() - start,
             "fitness": float(trainer.fitness) if trainer.fitness is not None else None,
             "metrics": {k: float(v) for k, v in (trainer.metrics or {}).items()}}
    network = build_network(config)
    network.load_state_dict(trainer.ema.ema.float().state_dict())
    return network.eval(), facts


def train_detector(data_yaml: Path | None, out_dir: Path | None, work: Path | None,
                   s: YoloSettings, warm_start: bool = False) -> ModelRecord:
    """Build the data (unless given), train, save ``detector-yolo`` into ``out_dir``, score it, write its card.
    ``warm_start``: go on training the weights already in ``out_dir`` instead of starting from random ones."""
    out_dir = out_dir or default_models_dir()
    work = work or out_dir.parent / "build" / NAME
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(s.threads)
    config = {**DEFAULT_CONFIG, "arch": s.arch}
    init, before = None, {}
    if warm_start:
        init, config, record = load_weights(out_dir, NAME)
        before = {"from": f"{NAME} {record.version} {record.sha256[:12]}", **config.get("trained", {})}
    t0 = time.monotonic()
    counts: dict[str, dict[str, int]] = {}
    if data_yaml is None:
        data_yaml, counts = build_dataset(work, s, int(config["imgsz"]))
        if s.segpc_repeat > 1:
            data_yaml = oversampled(data_yaml, s.segpc_repeat)
    network, facts = train_yolo(data_yaml, work, s, config, init)
    config["trained"] = {"epochs": facts["epochs"] + int(before.get("epochs", 0)), "batch": s.batch,
                         "seed": s.seed, "minutes": round(facts["seconds"] / 60 + before.get("minutes", 0.0), 1),
                         "runs": [*before.get("runs", []), {"epochs": facts["epochs"],
                                  "minutes": round(facts["seconds"] / 60, 1), "from": before.get("from", "random"),
                                  "data": data_yaml.name}]}
    record = save_model(network, out_dir, NAME, VERSION, config)
    log.info("saved %s %s sha256 %s after %.0f s", NAME, VERSION, record.sha256, time.monotonic() - t0)
    write_card(out_dir, work, s, counts, data_yaml)
    return record


def write_card(out_dir: Path, work: Path, s: YoloSettings, counts: dict[str, dict[str, int]],
               data_yaml: Path) -> Path:
    """``detector-yolo.card.md`` for the weights in ``out_dir``: what the model sees and finds, what it
    learnt from (how it was trained is read from the weights' own metadata), how well, its limits."""
    from bmpipe.evaluation.detector import benchmark, metric_rows, target_rows, throughput
    from bmpipe.nn.yolo_detector import YoloDetector

    detector = YoloDetector.load(out_dir, device="cpu")
    record, config = detector.record, detector.config
    network = build_network(config)
    metrics = benchmark(detector, work.parent / "evaluate-detector", s.seed)
    train = counts.get("train", {})
    data = ", ".join(f"{k} {v}" for k, v in sorted(train.items())) or f"given data set `{data_yaml}`"
    text = CARD.format(
        name=NAME, version=record.version, sha=record.sha256, file=record.file, arch=config["arch"],
        params=sum(p.numel() for p in network.parameters()), mpp=config["mpp"], tile=config["tile_size"],
        imgsz=config["imgsz"], conf=config["conf"], iou=config["iou"], data=data, seed=s.seed,
        epochs=config["trained"]["epochs"], minutes=config["trained"]["minutes"], batch=config["trained"]["batch"],
        threads=s.threads, runs=_runs(config["trained"]),
        phantom=s.phantom_fields, speed=throughput(detector), metrics="\n".join(metric_rows(metrics)),
        targets="\n".join(f"| {f} | {v} | {t} | {ok} |" for f, v, t, ok in target_rows(metrics)),
        txl=", ".join(f"{h}×{w}: {m.um_per_px:g}" for (h, w), m in dd.TXL_PBC_MPP.items()),
        segpc=", ".join(f"{k}: {m.um_per_px:g}" for k, m in dd.SEGPC_MPP_BY_PAD.items()),
        bccd=DATASETS["bccd"].mpp.um_per_px,
    )
    path = out_dir / f"{NAME}.card.md"
    path.write_text(text, "utf-8")
    return path


def _runs(trained: dict[str, Any]) -> str:
    """The training runs recorded in the weights' metadata, in words (``data-segpc-xN``: SegPC shown N×)."""
    runs = trained.get("runs", [])
    shown = [f"{r['epochs']} epochs in {r['minutes']:.1f} min from {r['from']}"
             + (f" on `{r['data']}`" if "data" in r else "") for r in runs]
    earlier = trained["epochs"] - sum(r["epochs"] for r in runs)
    return "; ".join(([f"{earlier} epochs from random"] if earlier > 0 else []) + shown)


CARD = """# Model card: {name} {version}

- **File**: `{file}`, sha256 `{sha}` (checked against `manifest.json` at every load; safetensors, no pickle).
- **Task**: find every *nucleated* cell (white cells, blasts, erythroblasts, plasma cells, megakaryocytes,
  smudge cells) in RGB tiles of a Wright-Giemsa / May-Grünwald-Giemsa smear; red cells, platelets and
  background are not cells. Output: one box (x0, y0, x1, y1 in tile pixels) and a score per cell.
- **Resolution**: tiles at **{mpp} µm/px** (the pipeline resamples the slide to it); tile size {tile} px
  (any size works: tiles are edge-padded to a multiple of 32, never rescaled).
- **Network**: ultralytics `{arch}` built from its yaml with one class, random init (no downloaded
  weights); {params:,} parameters (conv and batch-norm fused at load). Post-processing: score ≥ {conf},
  NMS at IoU {iou}.
- **Speed**: {speed:.2f} megapixels/s (at 0.4 µm/px, batches of 4 × 512², network and NMS) on 2 CPU
  threads of the training machine, shared with other jobs while measured.

## Training data

All images resampled to {mpp} µm/px and written as {imgsz} × {imgsz} px squares (ultralytics rescales
other sizes, which would change the cells' size): small blood-smear fields packed 2 × 2, larger fields cut.

| data set | kind | licence | how its truth is used |
| --- | --- | --- | --- |
| bmpipe phantom marrow fields (`bmpipe.phantom`, {phantom} fields rendered at 0.2 µm/px, seed {seed}) | **synthetic** | project's own (Apache-2.0) | exact boxes of every nucleated cell |
| TXL-PBC (`txl_pbc`, train split) | **real**, peripheral blood | MIT | white-cell boxes (class 0) |
| BCCD (fields not also in TXL-PBC; fixed-seed 80 % split) | **real**, peripheral blood | MIT | `WBC` boxes |
| SegPC-2021 (fixed-seed 80 % split by blocks of 100 ids) | **real**, marrow aspirate | CC BY-NC-SA 4.0 | plasma-cell mask → boxes; unlabelled nucleated cells and masks that merge touching cells are painted over with the field's background colour (a YOLO loss cannot ignore an area) |

Training images (and boxes) per source: {data}.

Resolutions used (none is stated by its data set): TXL-PBC by field size (height×width: µm/px) {txl};
BCCD {bccd}; SegPC by letterbox height (rows: µm/px) {segpc} (see `bmpipe.datasets.detector_data`).

Training: ultralytics `DetectionTrainer`, {epochs} epochs of batch {batch} at imgsz {imgsz} in
{minutes:.1f} min on {threads} CPU threads (wall-time cap), SGD/AdamW as ultralytics' `optimizer=auto`
chooses, mosaic, ±15 % scale, flips, HSV jitter, no AMP, no plots; weights are the trainer's EMA taken
in memory. Runs, oldest first: {runs}.

## Validation (held-out fields, never trained on)

Boxes matched greedily by score at IoU ≥ 0.5 (as `shared/tools/eval_detect.py`). SegPC: share of
plasma-cell mask blobs ≥ 200 px that hold a detection centre (its other, unlabelled cells make precision
meaningless there). `phantom`: 30 fields of 1024 px at 0.1 µm/px, seed 1000. `slide`: a phantom slide
(400 counted cells, seed 11) read as a run reads it (readable area, the detection stage's overlapping tiles,
merged in slide coordinates); recall over its monolayer's nucleated cells, precision over all kept boxes,
double counts = kept boxes that match (IoU ≥ 0.5) only a cell another box already matched.

| data set | AP50 | recall | precision | truth cells |
| --- | --- | --- | --- | --- |
{metrics}

| figure | value | target | |
| --- | --- | --- | --- |
{targets}

## Limits

- Learnt marrow mostly from synthetic fields; the only real marrow (SegPC) labels plasma cells alone, and
  the real blood-smear fields hold one or two white cells each. Dense real marrow with clumps, thick areas
  and smudge cells is not validated with full labels.
- Trained for a few epochs on a CPU: a longer run (or a GPU) would likely do better.
- The resolution of every real set is estimated from red-cell size; a slide whose µm/px is wrong by more
  than ~20 % shows cells at a size the model has not seen.
- Not a diagnostic device: counts are for a hematologist to confirm.
"""


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="bmpipe train detector", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None,
                   help="ultralytics data.yaml (images at 0.4 µm/px); default: build one from the real data")
    add_models(p, writes=True)
    p.add_argument("--out", type=Path, default=None,
                   help="the run's folder: the built data set and ultralytics runs (default: build/ beside the "
                        "models)")
    p.add_argument("--minutes", type=float, default=YoloSettings.minutes, help="wall-time cap on training")
    p.add_argument("--phantom-fields", type=int, default=YoloSettings.phantom_fields,
                   help="phantom fields rendered for training")
    p.add_argument("--arch", default=YoloSettings.arch, help="ultralytics model yaml")
    add_batch_size(p, YoloSettings.batch)
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    p.add_argument("--segpc-repeat", type=int, default=YoloSettings.segpc_repeat,
                   help="times each SegPC field is shown per epoch of the built data set (default %(default)s)")
    p.add_argument("--warm-start", action="store_true",
                   help="go on training the detector-yolo weights in the models folder (same architecture)")
    p.add_argument("--card-only", action="store_true",
                   help="do not train: score the weights in the models folder and rewrite their card")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    a = p.parse_args(argv)
    if a.data is not None and not a.data.is_file():
        p.error(f"{a.data}: no such data.yaml")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    s = YoloSettings(minutes=a.minutes, seed=a.seed, phantom_fields=a.phantom_fields, arch=a.arch, batch=a.batch_size,
                     segpc_repeat=a.segpc_repeat)
    if a.card_only:
        models = a.models or default_models_dir()
        work = a.out or models.parent / "build" / NAME
        data_yaml = a.data or work / "yolo-data" / "data.yaml"
        counts = yaml.safe_load(data_yaml.read_text()).get("counts", {}) if data_yaml.is_file() else {}
        write_card(models, work, s, counts, data_yaml)
        return 0
    train_detector(a.data, a.models, a.out, s, warm_start=a.warm_start)
    return 0
