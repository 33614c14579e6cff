"""Train the cell classifier from scratch, score it on held-out real and phantom cells, write its model card.

Run as ``bmpipe train classifier [--data DIR --mpp X]``. Training is bounded by wall time (default 29 min on
two CPU cores) rather than epochs, because that is the budget a shared build machine gives; the learning rate
follows the fraction of that time used, so a slower machine sees fewer steps but a complete schedule.
On a machine shared with other jobs, start it with ``OMP_WAIT_POLICY=PASSIVE``: spinning OpenMP threads that
compete for the same cores made training 7× slower in our measurements (36 vs 270 crops/s on 2 cores).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import itertools
import json
import logging
import math
import os
import tempfile
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bmpipe.cli.options import (
    Parser,
    add_batch_size,
    add_device,
    add_model_version,
    add_models,
    add_mpp,
    add_threads,
    positive_int,
)
from bmpipe.datasets import cell_data
from bmpipe.datasets.catalog import DATASETS
from bmpipe.datasets.cell_data import CropSet
from bmpipe.errors import InputError
from bmpipe.evaluation.classifier import evaluate, format_metrics, speed_on_pbc
from bmpipe.evaluation.transfer import (
    change_from,
    evaluate_transfer,
    format_transfer,
    load_transfer_sets,
    write_transfer,
)
from bmpipe.nn.cell_classifier import (
    MIN_REAL_IMAGES,
    MODEL_NAME,
    CellClassifier,
    CellNet,
    count_parameters,
    default_config,
    load_network,
    too_few_real_images,
)
from bmpipe.nn.stain import StainCheck, unlike_share
from bmpipe.nn.weights import ModelRecord, default_models_dir, save_model
from bmpipe.process_memory import peak_rss
from bmpipe.resolution import Mpp
from bmpipe.taxonomy import load_taxonomy
from bmpipe.train.augment import EOSIN_TINTED, Augment, eosin_tint

log = logging.getLogger(__name__)

#: What the phantom-only classes are drawn as (``bmpipe.phantom``): a card must say how narrow they are.
PHANTOM_ONLY_NOTES = (
    ("- FGC (faggot cell) is drawn as a promyelocyte-like cell with bundles of Auer rods, OTH (other) as mast "
     "cells and macrophages, ART (artefact) as a ruptured cell with a fragmented nucleus and stain deposit, NIF "
     "(not identifiable) as any cell strongly out of focus. Real faggot cells, other cells and artefacts vary far "
     "more: read these four classes as 'looks like the phantom', not as validated detectors."),
)


@dataclass(frozen=True)
class TrainSettings:
    minutes: float = 29.0
    steps: int | None = None  # fixed step count instead of the time budget (reproducible short runs)
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup: float = 0.03
    real_fraction: float = 0.8  # share of a class's draws from real images when it has real and phantom ones
    phantom_per_code: int = 500
    phantom_eval_per_code: int = 60
    label_smoothing: float = 0.05
    ema_decay: float = 0.998
    seed: int = 0
    threads: int = 2
    init: Path | None = None  # models folder whose classifier the run starts from (warm start)
    # Extra loss weight per true code (others 1): costlier mistakes for classes whose misses matter most,
    # e.g. a promyelocyte called a faggot cell (suggests APL), or segmented neutrophils lost to bands.
    class_weights: tuple[tuple[str, float], ...] = ()
    # Codes whose real images are left out of training (phantom cells only), as BLA is learned: the proxy
    # that measures how far phantom cells alone carry a class to real ones.
    synthetic_only: tuple[str, ...] = ()
    # Real training images kept of each ``synthetic_only`` code, drawn with the seed: a lab that has labelled
    # this many cells of a class the model knew only from phantom cells (the points of the proxy's learning curve).
    keep_real: int = 0
    # Share of batches' draws from cells labelled only by what they are not (SegPC non-plasma marrow cells).
    negative_fraction: float = 0.015
    # Weight of the adversarial loss that makes phantom and real cells of a class indistinguishable in the
    # features (0: off). Only classes with both real and phantom images take part.
    domain_weight: float = 0.1
    # Share of crops whose surroundings are taken from another crop of the batch (``Augment.swap_p``; 0: off).
    swap_surroundings: float = 0.0
    # Share of crops passed through a random convolution (``Augment.random_conv_p``; 0: off).
    random_convolutions: float = 0.0
    # Share of crops given another crop's lowest-frequency amplitudes (``Augment.fourier_p``; 0: off).
    fourier_mix: float = 0.0
    # Share of neutrophil-series crops whose stained parts take up extra eosin (``eosin_tint``; 0: off).
    eosin_neutrophils: float = 0.0
    # Channels of every layer × this (``default_config``): 1 is the shipped size.
    width: float = 1.0
    device: str | None = None  # torch device; default CUDA when there is one
    workers: int = 2  # threads reading and augmenting batches ahead of the network (0: in the training loop)
    checkpoint: Path | None = None  # the run's state, saved every checkpoint_minutes and on Ctrl-C
    checkpoint_minutes: float = 10.0
    resume: bool = False  # go on from ``checkpoint``


@dataclass
class TrainingData:
    train: CropSet
    held_out: dict[str, CropSet]  # evaluation sets by name: "pbc", "segpc", "phantom", or a folder's name


def gather_data(settings: TrainSettings, folders: list[tuple[Path, Mpp]], builtin: bool, phantom: bool) -> TrainingData:
    """Real data sets present on this machine, any extra class-code folders, and phantom cells. Real images of
    ``settings.synthetic_only`` codes stay out of training (their held-out images are still scored)."""
    train, held = [], {}
    if builtin:
        loaders = (("pbc", "pbc", cell_data.load_pbc), ("segpc", "segpc", cell_data.load_segpc),
                   ("segpc", "segpc-other", cell_data.load_segpc_others),
                   ("txl_pbc", "txl-white", cell_data.load_txl_white_cells))
        for dataset, name, loader in loaders:
            if DATASETS[dataset].path.is_dir():
                tr, te = loader()
                train.append(tr)
                held[name] = te
            else:
                log.warning("%s not found at %s; training without it", name, DATASETS[dataset].path)
    for root, mpp in folders:
        tr, te = cell_data.load_folder(root, mpp, name=root.name, stream=True)
        train.append(tr)
        held[root.name] = te
    if phantom:
        if not cell_data.phantom_available():
            raise RuntimeError("bmpipe.phantom.cell_crops is not importable; pass --no-phantom to train without it")
        t0 = time.monotonic()
        train.append(cell_data.load_phantom(settings.phantom_per_code, settings.seed))
        held["phantom"] = cell_data.load_phantom(settings.phantom_eval_per_code,
                                                 settings.seed + cell_data.PHANTOM_HELD_OUT_SEED)
        log.info("phantom crops rendered in %.0f s", time.monotonic() - t0)
    data = CropSet.concat(train)
    if settings.synthetic_only:
        real = np.isin(data.codes, settings.synthetic_only) & (data.sources != "phantom")
        real[kept_rows(data.codes, real, settings.keep_real, settings.seed)] = False
        log.info("synthetic only: %d real images of %s left out of training (up to %d of each kept)", real.sum(),
                 ", ".join(settings.synthetic_only), settings.keep_real)
        data = data.subset(np.flatnonzero(~real))
    if not len(data):
        raise RuntimeError("no training data: no real data set found and phantom cells disabled")
    return TrainingData(data, held)


def kept_rows(codes: np.ndarray, rows: np.ndarray, per_code: int, seed: int) -> np.ndarray:
    """Up to ``per_code`` of the ``rows`` (a mask) of each code, drawn at random with ``seed``; nested, so
    that a larger ``per_code`` keeps the same rows and more, as a lab labelling more cells adds to its set."""
    rng = np.random.default_rng(seed)
    kept = [rng.permutation(idx)[:per_code]
            for idx in (np.flatnonzero(rows & (codes == c)) for c in np.unique(codes[rows]))]
    return np.concatenate(kept) if kept else np.zeros(0, int)


class BalancedSampler:
    """Batches with every class equally likely; within a class, real vs phantom mixed at ``real_fraction``;
    a ``negative_fraction`` of draws from each source of cells labelled only by codes they are not.

    Class balance because marrow counts are dominated by a few classes while the rare ones (blasts, plasma
    cells) matter most; the real/phantom mix so a class learned from both is robust to both looks.
    """

    def __init__(self, data: CropSet, codes: tuple[str, ...], real_fraction: float, seed: int,
                 negative_fraction: float = 0.0):
        self.seed = seed
        self.real_fraction = real_fraction
        is_phantom = data.sources == "phantom"
        self.pools = [
            (np.flatnonzero((data.codes == c) & ~is_phantom), np.flatnonzero((data.codes == c) & is_phantom))
            for c in codes
        ]
        self.pools = [p for p in self.pools if len(p[0]) or len(p[1])]
        negative = (data.codes == "") & (data.not_codes != "")
        self.negatives = [np.flatnonzero(negative & (data.sources == s)) for s in np.unique(data.sources[negative])]
        self.negative_fraction = negative_fraction if self.negatives else 0.0

    def batch(self, size: int, step: int) -> np.ndarray:
        """The rows of training step ``step``: a function of the seed and the step alone."""
        rng = np.random.default_rng([self.seed, step])
        out = np.empty(size, np.int64)
        for i, k in enumerate(rng.integers(len(self.pools), size=size)):
            pick = rng.random()
            source = int(pick // self.negative_fraction) if self.negative_fraction else len(self.negatives)
            if source < len(self.negatives):
                out[i] = self.negatives[source][rng.integers(len(self.negatives[source]))]
                continue
            real, synth = self.pools[k]
            use_real = len(real) and (not len(synth) or rng.random() < self.real_fraction)
            pool = real if use_real else synth
            out[i] = pool[rng.integers(len(pool))]
        return out


#: A SegPC cell taught as "not PLM" that the network already gives at least this probability of PLM is left
#: out of that batch's loss: SegPC leaves some plasma cells unmasked, and those look like the masked ones.
#: Negatives of other sources are trusted whatever the network says (a boxed white cell is not debris).
NEGATIVE_TRUST = {"segpc-other": 0.3}


def not_code_loss(logits: torch.Tensor, not_codes: torch.Tensor, trust: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Mean over rows of -log(1 - p(any of the row's ``not_codes``)), a boolean (rows, codes) mask: the loss of
    cells known only by what they are not; rows where that probability is ``trust`` or more count as zero
    (likely mislabelled)."""
    rest = logits.masked_fill(not_codes, float("-inf"))
    loss = torch.logsumexp(logits, 1) - torch.logsumexp(rest, 1)  # -log(1 - p)
    return (loss * (1 - torch.exp(-loss.detach()) < trust)).mean()


def warm_start(model: CellNet, codes: tuple[str, ...], models_dir: Path) -> str:
    """Copy a trained classifier's weights into ``model``; class-head rows are matched by code, so codes new
    to ``model`` start untrained while every other weight starts where the earlier training ended. A wider
    ``model`` (``--width``) takes the old weights as its first channels and starts computing what the old
    network did: its new channels are fed by random weights but feed nothing until training grows their
    outgoing weights from zero."""
    old, old_config, record = load_network(models_dir)
    row = {c: i for i, c in enumerate(old_config["codes"])}
    state = model.state_dict()
    try:
        for key, value in old.state_dict().items():
            if key not in state:
                continue
            if key.startswith("class_head."):
                for i, code in enumerate(codes):
                    if code in row:
                        _grow_into(state[key][i:i + 1], value[row[code]:row[code] + 1])
            else:
                _grow_into(state[key], value)
    except ValueError as exc:
        raise InputError(models_dir / record.file, f"its network (stem {old_config['stem']}, widths "
                         f"{old_config['widths']}) is wider than this run's ({exc}); give --width at least "
                         "the one it was trained with") from exc
    model.load_state_dict(state)
    log.info("warm start from %s %s: %d of %d codes already known", record.name, record.version,
             sum(c in row for c in codes), len(codes))
    return record.version


def _grow_into(target: torch.Tensor, value: torch.Tensor) -> None:
    """``value`` into the leading slice of ``target`` (as large or larger in every dimension); a weight's inputs
    beyond ``value``'s (dimension 1, new channels feeding old ones) are zeroed."""
    if any(t < v for t, v in zip(target.shape, value.shape)):
        raise ValueError(f"cannot start a {tuple(target.shape)} weight from a larger {tuple(value.shape)} one")
    target[tuple(slice(0, n) for n in value.shape)] = value
    if target.dim() >= 2 and target.shape[1] > value.shape[1]:
        target[:, value.shape[1]:] = 0


#: Crops of each kind that are not Romanowsky-stained (H&E tissue, colourless copies) the stain check sees.
STAIN_NEGATIVES = 3000


def fit_stain_check(data: TrainingData, seed: int) -> dict[str, Any]:
    """The stain check (``bmpipe.nn.stain``) fitted on this run's training crops against H&E tissue crops and
    colourless copies of the training crops, with the range of their colour figures; with each held-out set's
    share of crops it calls unlike."""
    rng = np.random.default_rng(seed)
    sample = data.train.subset(rng.permutation(len(data.train))[:4 * STAIN_NEGATIVES]).materialise()
    stained = sample.centre_crops()
    grey = stained[:STAIN_NEGATIVES].mean(3, keepdims=True).round().astype(np.uint8).repeat(3, 3)
    tissue = cell_data.he_tissue_crops(STAIN_NEGATIVES, seed)
    check = StainCheck.fit(stained, np.concatenate([grey, tissue]), sample.sources)
    validated = {name: round(unlike_share(check.score(s.centre_crops())), 4) for name, s in data.held_out.items()
                 if len(s)}
    log.info("stain check: %d H&E tissue crops; share called unlike on held-out sets %s", len(tissue), validated)
    return {"stain_check": check.as_config(), "stain_unlike_validated": validated}


def real_images(data: CropSet, codes: tuple[str, ...]) -> dict[str, int]:
    """Per code, its real (not phantom) training images: a class also taught by phantom cells is reported as
    learned from real cells only from ``MIN_REAL_IMAGES`` of them (``CellClassifier.synthetic_only``)."""
    real = data.sources != "phantom"
    return {c: int(np.sum(real & (data.codes == c))) for c in codes}


def learned_from(data: CropSet, codes: tuple[str, ...]) -> dict[str, list[str]]:
    """Per code, the data sets its training images came from: reports mark the codes learned only from
    phantom cells (``CellClassifier.synthetic_only``)."""
    return {c: sorted(set(data.sources[data.codes == c].tolist())) for c in codes}


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; the gradient times ``-scale`` backward (Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def domain_head(width: int) -> torch.nn.Module:
    """Tells phantom from real cells from the features; trained against them, never saved."""
    return torch.nn.Sequential(torch.nn.Linear(width, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))


def shared_codes(data: CropSet, codes: tuple[str, ...]) -> np.ndarray:
    """Per row: whether the row's code has both real and phantom images (the rows domain alignment uses)."""
    both = [c for c, sources in learned_from(data, codes).items() if "phantom" in sources and len(sources) > 1]
    return np.isin(data.codes, both)


def _lr_factor(progress: float, warmup: float) -> float:
    if progress < warmup:
        return progress / warmup
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * (progress - warmup) / (1 - warmup)))


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def batches(data: CropSet, sampler: BalancedSampler, settings: TrainSettings,
            first_step: int = 0) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """(rows, augmented crops) for every step from ``first_step`` on.

    Files are read and batches augmented ``settings.workers`` steps ahead in threads, so the disk and the
    augmentation overlap the network's step. A batch depends only on the seed and its step number, so a
    resumed run sees exactly the batches an uninterrupted one would have.
    """
    augment = Augment(swap_p=settings.swap_surroundings, random_conv_p=settings.random_convolutions,
                      fourier_p=settings.fourier_mix)

    def prepare(step: int) -> tuple[np.ndarray, torch.Tensor]:
        rows = sampler.batch(settings.batch_size, step)
        images, ok = data.read(rows)
        rows, images = rows[ok], images[ok]
        if settings.eosin_neutrophils > 0:
            picked = np.isin(data.codes[rows], EOSIN_TINTED)
            images = eosin_tint(images, picked, settings.eosin_neutrophils,
                                np.random.default_rng([settings.seed, step, 17]))
        return rows, augment(images, _step_generator(settings.seed, step))

    if settings.workers < 1:
        yield from map(prepare, itertools.count(first_step))
        return
    pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="batches")
    try:
        ahead = deque(pool.submit(prepare, s) for s in range(first_step, first_step + 2 * settings.workers))
        for step in itertools.count(first_step + len(ahead)):
            yield ahead.popleft().result()
            ahead.append(pool.submit(prepare, step))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


#: Settings that shape a run's schedule and batches: a checkpoint resumes only a run that agrees on them.
_SCHEDULE_KEYS = ("minutes", "steps", "batch_size", "lr", "weight_decay", "warmup", "real_fraction",
                  "label_smoothing", "ema_decay", "seed", "class_weights", "synthetic_only", "negative_fraction",
                  "domain_weight", "swap_surroundings", "random_convolutions", "fourier_mix", "eosin_neutrophils")


def run_fingerprint(data: CropSet, codes: tuple[str, ...], settings: TrainSettings) -> str:
    """What a checkpoint must agree with to be resumed: the codes, the training rows and the schedule."""
    rows = hashlib.sha256()
    for field in (data.codes, data.not_codes, data.sources, data.paths):
        rows.update("\n".join(map(str, field)).encode())
    schedule = {k: getattr(settings, k) for k in _SCHEDULE_KEYS}
    return hashlib.sha256(json.dumps([codes, rows.hexdigest(), schedule], default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Checkpoint:
    """A training run's state on disk (weights, averages, optimiser, step, time used, random state), written
    atomically, so that an interrupted run goes on where it stopped instead of starting again."""

    path: Path
    fingerprint: str

    def save(self, step: int, elapsed: float, modules: dict[str, Any]) -> None:
        state = {"fingerprint": self.fingerprint, "step": step, "elapsed": elapsed,
                 "torch_rng": torch.get_rng_state(),
                 **{name: m.state_dict() for name, m in modules.items() if m is not None}}
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        torch.save(state, partial)
        os.replace(partial, self.path)
        log.info("checkpoint at step %d: %s", step, self.path)

    def restore(self, modules: dict[str, Any]) -> tuple[int, float]:
        """Load the saved state into ``modules``; returns (step, seconds already trained)."""
        if not self.path.is_file():
            raise InputError(self.path, "no checkpoint to resume from (give the --work folder of the interrupted run)")
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file: one line, not a traceback
            raise InputError(self.path, f"not a readable training checkpoint ({type(exc).__name__})") from exc
        if state.get("fingerprint") != self.fingerprint:
            raise InputError(self.path, "was written by a run with other data, codes or schedule options; "
                                        "give the same options, or start again without --resume")
        for name, module in modules.items():
            if module is not None:
                module.load_state_dict(state[name])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        log.info("resumed at step %d (%.0f s trained) from %s", state["step"], state["elapsed"], self.path)
        return int(state["step"]), float(state["elapsed"])


#: Memory layout of training on the CPU. Not channels_last: torch 2.14.1's CPU backward of a strided 1×1
#: convolution (every residual shortcut) in channels_last crashes the process on some x86 CPUs (seen on AMD
#: EPYC: a segmentation fault or "double free"); inference, which has no backward, keeps channels_last.
TRAIN_CPU_LAYOUT = torch.contiguous_format


def fit(model: CellNet, data: CropSet, codes: tuple[str, ...], settings: TrainSettings) -> tuple[CellNet, dict[str, Any]]:
    """Train ``model`` on ``data``; returns the exponential moving average of its weights and run statistics.

    On CUDA the step runs in mixed precision (bfloat16 where the GPU has it, else float16 with loss scaling).
    With ``settings.checkpoint`` the run's state is saved every ``checkpoint_minutes`` and on Ctrl-C, and
    ``settings.resume`` continues from it.
    """
    device = torch.device(settings.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    amp = device.type == "cuda"
    amp_dtype = torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16
    layout = torch.channels_last if device.type == "cuda" else TRAIN_CPU_LAYOUT
    torch.manual_seed(settings.seed)
    sampler = BalancedSampler(data, codes, settings.real_fraction, settings.seed, settings.negative_fraction)
    index = {c: i for i, c in enumerate(codes)}
    targets = torch.tensor([index.get(c, -100) for c in data.codes], device=device)
    not_targets = torch.zeros(len(data), len(codes), dtype=torch.bool)
    for row in np.flatnonzero(data.not_codes != ""):
        not_targets[row, [index[c] for c in str(data.not_codes[row]).split() if c in index]] = True
    not_targets = not_targets.to(device)
    trust = torch.tensor([NEGATIVE_TRUST.get(str(s), 1.0) for s in data.sources], device=device)
    unknown = sorted({c for c, _ in settings.class_weights} - set(index))
    if unknown:
        raise ValueError(f"class weights for codes absent from the training data: {', '.join(unknown)}")
    class_weight = torch.ones(len(codes))
    for code, w in settings.class_weights:
        class_weight[index[code]] = w
    class_weight = class_weight.to(device)
    dysplastic = torch.from_numpy(data.dysplastic.astype(np.float32)).to(device)
    grades = torch.from_numpy(data.grades.astype(np.float32)).to(device)
    labelled = data.dysplastic >= 0
    n_pos = int((data.dysplastic == 1).sum())
    # sqrt of the negative:positive ratio: between plain accuracy (1) and full balancing, which would trade
    # many false alarms on normal cells for sensitivity.
    pos_weight = torch.tensor(float(np.sqrt(np.clip((labelled.sum() - n_pos) / max(n_pos, 1), 1.0, 100.0))),
                              device=device)
    model = model.to(device, memory_format=layout).train()
    params = list(model.parameters())
    aligned = torch.from_numpy(shared_codes(data, codes)).to(device)
    is_phantom = torch.from_numpy((data.sources == "phantom").astype(np.float32)).to(device)
    critic = domain_head(model.class_head.in_features).to(device) if settings.domain_weight > 0 else None
    if critic is not None:
        params += list(critic.parameters())
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=amp and amp_dtype == torch.float16)
    ema = copy.deepcopy(model).eval()
    state = {"model": model, "ema": ema, "critic": critic, "optimizer": opt, "scaler": scaler}
    checkpoint = (Checkpoint(settings.checkpoint, run_fingerprint(data, codes, settings))
                  if settings.checkpoint is not None else None)
    step, before = checkpoint.restore(state) if checkpoint is not None and settings.resume else (0, 0.0)
    first_step, budget = step, settings.minutes * 60
    start = last_save = time.monotonic()
    running: Counter = Counter()
    stream = batches(data, sampler, settings, first_step)
    try:
        while True:
            elapsed = before + time.monotonic() - start
            progress = step / settings.steps if settings.steps else elapsed / budget
            if progress >= 1:
                break
            for group in opt.param_groups:
                group["lr"] = settings.lr * _lr_factor(progress, settings.warmup)
            rows, x = next(stream)
            step += 1
            if not len(rows):
                continue  # every file of this batch was unreadable (each already logged)
            idx = torch.from_numpy(rows).to(device)
            x = x.to(device, non_blocking=True).contiguous(memory_format=layout)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                features = model.features(x)
                logits, dys_logit, grade = model.heads(model.dropout(features))
            logits, dys_logit, grade, features = logits.float(), dys_logit.float(), grade.float(), features.float()
            t, nt = targets[idx], not_targets[idx]
            has_t, has_nt = t >= 0, nt.any(1)
            loss_cls = (F.cross_entropy(logits[has_t], t[has_t], weight=class_weight,
                                        label_smoothing=settings.label_smoothing)
                        if has_t.any() else logits.new_zeros(()))
            loss_not = (not_code_loss(logits[has_nt], nt[has_nt], trust[idx][has_nt]) if has_nt.any()
                        else logits.new_zeros(()))
            m_d, m_g = dysplastic[idx] >= 0, grades[idx] >= 0
            loss_dys = (
                F.binary_cross_entropy_with_logits(dys_logit[m_d], dysplastic[idx][m_d], pos_weight=pos_weight)
                if m_d.any() else logits.new_zeros(())
            )
            loss_grade = F.mse_loss(grade[m_g], grades[idx][m_g]) if m_g.any() else logits.new_zeros(())
            loss_dom = logits.new_zeros(())
            m_a = aligned[idx]
            if critic is not None and m_a.any():
                ramp = 2 / (1 + math.exp(-10 * progress)) - 1  # the critic first learns, then the features answer
                guess = critic(_ReverseGradient.apply(features[m_a], ramp)).squeeze(1)
                loss_dom = F.binary_cross_entropy_with_logits(guess, is_phantom[idx][m_a])
            loss = loss_cls + loss_not + 0.5 * loss_dys + 0.5 * loss_grade + settings.domain_weight * loss_dom
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            _ema_update(ema, model, min(settings.ema_decay, step / (9 + step)))
            running.update(
                cls=loss_cls.item(), neg=loss_not.item(), dom=loss_dom.item(), dys=loss_dys.item(),
                grade=loss_grade.item(),
                acc=(logits.argmax(1)[has_t] == t[has_t]).float().mean().item(), n=1,
            )
            if step % 100 == 0:
                _log_progress(step, settings, before + time.monotonic() - start,
                              (step - first_step) * settings.batch_size / (time.monotonic() - start),
                              opt.param_groups[0]["lr"], running)
            if checkpoint is not None and time.monotonic() - last_save >= settings.checkpoint_minutes * 60:
                checkpoint.save(step, before + time.monotonic() - start, state)
                last_save = time.monotonic()
    except KeyboardInterrupt:
        if checkpoint is not None:
            checkpoint.save(step, before + time.monotonic() - start, state)
            log.warning("interrupted at step %d; to go on, run the same command with --resume --out %s",
                        step, checkpoint.path.parent)
        raise
    finally:
        stream.close()
    seconds = time.monotonic() - start
    stats = {"steps": step, "seconds": round(before + seconds, 1), "samples": step * settings.batch_size,
             "pos_weight": round(float(pos_weight), 2), "device": str(device),
             "precision": str(amp_dtype).removeprefix("torch.") if amp else "float32",
             "crops_per_s": round((step - first_step) * settings.batch_size / max(seconds, 1e-9), 1),
             "peak_rss_mb": round(peak_rss() / 2**20, 1)}
    log.info("trained %d steps (%d crops) in %.0f s, %.0f crops/s, peak memory %.0f MB", step, stats["samples"],
             before + seconds, stats["crops_per_s"], stats["peak_rss_mb"])
    return ema.to("cpu", memory_format=torch.contiguous_format), stats


def _log_progress(step: int, settings: TrainSettings, elapsed: float, rate: float, lr: float,
                  running: Counter) -> None:
    """One line per 100 steps: where the run is, how fast, how much memory, and its losses since the last."""
    n = running.pop("n", 0)
    if not n:
        return
    total = f"/{settings.steps}" if settings.steps else f" ({elapsed / (settings.minutes * 60):.0%} of the time)"
    log.info(
        "step %d%s  %.0f s  %.0f crops/s  peak %.0f MB  lr %.2e  loss cls %.3f not-code %.3f domain %.3f "
        "dys %.3f grade %.3f  train acc %.3f", step, total, elapsed, rate, peak_rss() / 2**20, lr,
        *(running[k] / n for k in ("cls", "neg", "dom", "dys", "grade", "acc")),
    )
    running.clear()


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """Exponential moving average of weights and BN statistics; ``decay`` ramps up so early steps fade fast."""
    for e, m in zip(ema.state_dict().values(), model.state_dict().values()):
        if e.dtype.is_floating_point:
            e.lerp_(m, 1 - decay)
        else:
            e.copy_(m)


# --- the run ----------------------------------------------------------------------------------------------


def train_classifier(
    models_dir: Path | None = None,
    settings: TrainSettings = TrainSettings(),
    folders: list[tuple[Path, Mpp]] | None = None,
    builtin: bool = True,
    phantom: bool = True,
    version: str | None = None,
    work: Path | None = None,
    transfer: bool = True,
) -> ModelRecord:
    """Train, save (safetensors + manifest), evaluate and write ``classifier.card.md``; returns the record.

    The run's state is checkpointed in ``work`` (``CHECKPOINT``); ``settings.resume`` goes on from it. Folders
    are streamed from disk; ``transfer=False`` skips the scores on the transfer sets (minutes on 2 cores)."""
    models_dir = models_dir or default_models_dir()
    work = work or Path(tempfile.mkdtemp(prefix="bmpipe-classifier-"))
    settings = replace(settings, checkpoint=settings.checkpoint or work / CHECKPOINT)
    torch.set_num_threads(settings.threads)
    t0 = time.monotonic()
    data = gather_data(settings, folders or [], builtin, phantom)
    taxonomy = load_taxonomy()
    named = set(data.train.codes) | {c for s in data.train.not_codes for c in str(s).split()}
    codes = tuple(c for c in taxonomy.codes if c in named)
    config = default_config(codes, settings.width)
    config["learned_from"] = learned_from(data.train, codes)
    config["real_images"] = real_images(data.train, codes)
    few = {c: n for c, n in too_few_real_images(config["learned_from"], config["real_images"]).items() if n}
    if few:
        log.warning("learned from phantom cells and fewer than %d real images, so still reported as unvalidated "
                    "on real cells: %s", MIN_REAL_IMAGES, ", ".join(f"{c} ({n})" for c, n in few.items()))
    config["dysplasia_learned_from"] = sorted(set(data.train.sources[data.train.dysplastic == 1].tolist()))
    model = CellNet(config)
    if settings.init is not None:
        config["warm_start"] = warm_start(model, codes, settings.init)
    load_seconds = time.monotonic() - t0
    model, stats = fit(model, data.train, codes, settings)
    stats["load_seconds"] = round(load_seconds, 1)
    config["training"] = {**{k: v for k, v in asdict(settings).items() if k not in _RUN_ONLY}, **stats}
    work.mkdir(parents=True, exist_ok=True)
    (work / "training.json").write_text(json.dumps(config["training"], indent=1, default=str), "utf-8")
    record = finish(model, config, data, models_dir, version or time.strftime("%Y.%m.%d"), work, transfer,
                    settings.init)
    settings.checkpoint.unlink(missing_ok=True)  # finished: nothing left to resume
    log.info("total %.0f s", time.monotonic() - t0)
    return record


#: The checkpoint's name in a run's work folder.
CHECKPOINT = "classifier-checkpoint.pt"
#: Settings of how a run was carried out rather than what it learned: kept out of the model's config.
_RUN_ONLY = ("threads", "init", "device", "workers", "checkpoint", "checkpoint_minutes", "resume")


def finish(model: CellNet, config: dict[str, Any], data: TrainingData, models_dir: Path, version: str,
           work: Path, transfer: bool = True, started_from: Path | None = None) -> ModelRecord:
    """A trained network's stain check, weights (safetensors + manifest), held-out and transfer scores and
    model card. A fine-tune (``started_from``: the models folder of its first weights) also scores those
    weights on the same cells, so its log, ``transfer.json`` and card say what the run changed."""
    config.update(fit_stain_check(data, config["training"]["seed"]))
    record = save_model(model, models_dir, MODEL_NAME, version, config)
    log.info("saved %s (%s) sha256 %s", record.file, version, record.sha256)

    clf = CellClassifier.load(models_dir, device="cpu")
    metrics = evaluate(clf, data.held_out, work)
    for line in format_metrics(metrics):
        log.info("%s", line)
    scores = None
    if transfer:
        sets = load_transfer_sets(data.held_out)
        scores = evaluate_transfer(clf, sets)
        if started_from is not None:
            scores["change_from"] = change_from(evaluate_transfer(CellClassifier.load(started_from, "cpu"), sets),
                                                scores)
        for line in format_transfer(scores):
            log.info("%s", line)
        write_transfer(scores, work)
    pbc = data.held_out.get("pbc")
    if pbc is not None and len(pbc):
        metrics["speed"] = speed_on_pbc(clf, pbc)
        log.info("speed (crops/s): %s", metrics["speed"])
    write_card(models_dir, record, config, data, metrics, count_parameters(model), scores)
    return record


def _provenance(data: CropSet, codes: tuple[str, ...], metrics: dict[str, Any]) -> list[str]:
    """Per class: the images it learned from (real or only synthetic) and its strict F1 on each held-out set."""
    lines = [
        "| code | name | real images (data set: n) | phantom images | learned from | held-out F1 (set: F1, n) |",
        "|---|---|---|---|---|---|",
    ]
    taxonomy = load_taxonomy()
    few = too_few_real_images(learned_from(data, codes), real_images(data, codes))
    for c in codes:
        scores = ", ".join(
            f"{name}: {m['classes']['rows'][c]['strict'][2]:.2f} (n={m['classes']['rows'][c]['n']})"
            for name, m in metrics.items() if name != "speed" and c in m["classes"]["rows"]
        ) or "not held out"
        mine = data.codes == c
        real = Counter(str(s) for s in data.sources[mine & (data.sources != "phantom")])
        n_ph = int(np.sum(mine & (data.sources == "phantom")))
        real_txt = ", ".join(f"{k}: {v}" for k, v in sorted(real.items())) or "none"
        kind = ("ONLY SYNTHETIC (phantom)" if not real else "REAL only" if not n_ph
                else f"phantom + FEWER THAN {MIN_REAL_IMAGES} REAL (reported as unvalidated)" if c in few
                else "REAL + phantom")
        lines.append(f"| {c} | {taxonomy[c].name} | {real_txt} | {n_ph} | {kind} | {scores} |")
    return lines


def _data_lines(data: TrainingData) -> list[str]:
    """One line per data set that took part, saying where it comes from and how its labels were made."""
    pbc, segpc = DATASETS["pbc"], DATASETS["segpc"]
    described = {
        "pbc": (
            f"- **PBC** (Acevedo et al. 2020, Data in Brief; {pbc.licence}): peripheral-blood cells of donors "
            f"without haematological disease, CellaVision DM96, resampled from {pbc.mpp} ({pbc.measured}). "
            "File-name prefixes map to Matek codes; IG and NEUTROPHIL images (unresolved within their group) are "
            "never trained on and are scored only at group level in the held-out set. Granulocytic, erythroid and "
            "platelet images are labelled *normal* for the dysplasia head, neutrophil-series granule grade 0."
        ),
        "segpc": (
            f"- **SegPC-2021** ({segpc.licence}): myeloma marrow aspirate fields; plasma cells (PLM) cut around "
            f"mask blobs > {cell_data.SEGPC_MIN_AREA} px, blobs over {cell_data.SEGPC_MERGED_FACTOR}× the median "
            "area (touching cells) left out; resampled from each field's camera (0.185 or 0.23 µm/px, told apart "
            "by the letterbox), and cut from the picture without its letterbox bands, mirrored at its edge. Not "
            "labelled for dysplasia."
        ),
        "segpc-other": (
            "- **SegPC non-plasma marrow cells**: nucleated cells the shipped U-Net detector finds in SegPC fields "
            f"with their centre over {cell_data.SEGPC_MASK_MARGIN_UM:g} µm from every plasma-cell mask; their class "
            "is unknown, so they are taught only as *not PLM* (loss -log(1 - p(PLM)))."
        ),
        "txl-white": (
            "- **TXL-PBC white cells** (MIT): the white-cell boxes of TXL-PBC's own 575×575 fields (train split; "
            "val held out; its other field sizes are copies of BCCD and PBC and are never read); their class is "
            f"unknown, so they are taught only as *not* {', '.join(cell_data.WHITE_CELL_IS_NOT)} "
            "(loss -log(1 - p(any of them)))."
        ),
        "phantom": (
            "- **Phantom** (`bmpipe.phantom.cell_crops`, rendered at 0.25 µm/px): synthetic cells with exact class, "
            "dysplastic flag and granule grade. Every dysplasia-positive example is synthetic."
        ),
    }
    present = set(data.train.sources.tolist())
    lines = [text for name, text in described.items() if name in present]
    lines += [
        f"- **{name}**: class-code folders given with `--data` (labels from folder names; no dysplasia labels)."
        for name in sorted(present - set(described))
    ]
    lines.append(
        f"- held-out: a fixed {cell_data.HELD_OUT_FRACTION:.0%} of each class (salted hash of the file name; "
        "SegPC by field, so all cells of a field are on one side) and phantom cells rendered with another seed. "
        "None of them was trained on."
    )
    return lines


def _device_words(training: dict[str, Any]) -> str:
    device = training.get("device", "cpu")
    if device.startswith("cuda"):
        return f"a GPU ({training.get('precision', 'float32')})"
    return f"{torch.get_num_threads()} CPU threads"


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def write_card(
    models_dir: Path, record: ModelRecord, config: dict[str, Any], data: TrainingData,
    metrics: dict[str, Any], n_params: int, transfer: dict[str, Any] | None = None,
) -> Path:
    """``classifier.card.md``: what the model learned from, how well it does on data it never saw, its limits."""
    t = config["training"]
    size_mb = (models_dir / record.file).stat().st_size / 1e6
    lines = [
        f"# Model card: `{record.name}` {record.version}",
        "",
        f"- file `{record.file}` ({size_mb:.2f} MB), sha256 `{record.sha256}`",
        (f"- architecture `{config['arch']}`: residual CNN, stem {config['stem']}, widths {config['widths']}, "
        f"depths {config['depths']}, {n_params:,} parameters; trained from scratch (no pretrained weights)"),
        (f"- input: {config['crop_px']}×{config['crop_px']} px RGB at {config['mpp']} µm/px "
        f"({config['crop_px'] * config['mpp']:.0f} µm square) centred on the cell"),
        (f"- heads: class over {len(config['codes'])} codes; dysplastic logit (lineages {config['dysplasia_lineages']},"
        f" Lee 2022); neutrophil granule grade 0-3 (sigmoid×3 regression, max over {config['grade_rotations']} "
        f"rotations, Mori 2020) for {config['granule_codes']}"),
        f"- top probability < {config['unidentified_threshold']} → reported as NIF (not identifiable)",
        (f"- training: {t['steps']} steps × batch {t['batch_size']} = {t['samples']:,} augmented crops in "
        f"{t['seconds'] / 60:.1f} min on {_device_words(t)} (+{t['load_seconds'] / 60:.1f} min "
        f"data preparation); AdamW lr {t['lr']}, cosine, EMA {t['ema_decay']}, class-balanced sampling, "
        f"real:phantom {t['real_fraction']} per class; seed {t['seed']}"),
        *([f"- extra loss weight for true codes: {', '.join(f'{c} ×{w:g}' for c, w in t['class_weights'])}"]
          if t.get("class_weights") else []),
        (f"- input normalised per crop ({config.get('input_norm', 'fixed')}); each set of cells known only by "
         f"what they are not {t.get('negative_fraction', 0):.1%} of draws (SegPC non-plasma cells it already calls "
         f"PLM with p ≥ {NEGATIVE_TRUST['segpc-other']:g} left out of the loss); phantom/real feature alignment weight "
         f"{t.get('domain_weight', 0):g}"
         + (f"; surroundings swapped in {t['swap_surroundings']:.0%} of crops"
            if t.get("swap_surroundings") else "")
         + (f"; random convolutions in {t['random_convolutions']:.0%} of crops"
            if t.get("random_convolutions") else "")
         + (f"; lowest frequencies' amplitudes from another crop in {t['fourier_mix']:.0%} of crops"
            if t.get("fourier_mix") else "")
         + (f"; extra eosin in {t['eosin_neutrophils']:.0%} of neutrophil-series crops"
            if t.get("eosin_neutrophils") else "")),
        *([(f"- **synthetic-only proxy**: real images of {', '.join(t['synthetic_only'])} left out of training"
            + (f" but {t['keep_real']} of each, as a lab that labelled that many" if t.get("keep_real") else "")
            + " (their held-out real images scored in the transfer section)")] if t.get("synthetic_only") else []),
        *([(f"- warm start: every weight but the new class-head rows began as classifier {config['warm_start']} "
            "(a classifier trained here, from scratch at first; no outside weights)")] if "warm_start" in config else []),
        "",
        "## Data",
        "",
        *_data_lines(data),
        "",
        *_provenance(data.train, tuple(config["codes"]), metrics),
        "",
        *(["## Transfer: real cells from sources never trained on", "", "```",
           *format_transfer(transfer), "```", ""] if transfer else []),
        "## Results on held-out data",
        "",
    ]
    for name, m in metrics.items():
        if name == "speed":
            continue
        c = m["classes"]
        lines += [
            f"### {name} (n={c['n']})",
            "",
            (f"- accuracy {c['accuracy']:.3f}; macro-F1 strict {c['macro_f1']['strict']:.3f}, tolerant "
            f"{c['macro_f1']['tolerant']:.3f}; reported NIF {m['unidentified_rate']:.3f}"),
        ]
        if "groups" in m:
            g = m["groups"]
            lines += [
                f"- **8-group macro-F1 {g['macro_f1']:.3f}**, accuracy {g['accuracy']:.3f} (n={g['n']}); "
                + ", ".join(f"{k} {v:.2f}" for k, v in g["f1"].items()),
                f"- reference scorer `eval_classify.py` on the written CSV: `{' | '.join(m['reference_scorer'].splitlines())}`",
            ]
        for key in ("dysplastic_accuracy", "dysplastic_accuracy_codes_with_dysplasia", "codes_with_dysplasia",
                    "dysplastic_sensitivity", "dysplastic_false_positive_rate",
                    "dysplastic_n", "dysplastic_positive_n", "grade_within_1", "grade_exact", "grade_n", "grade_confusion"):
            if key in m:
                lines.append(f"- {key.replace('_', ' ')}: {_fmt(m[key])}")
        lines += ["", "| code | n | P | R | F1 | tolerant P | R | F1 |", "|---|---|---|---|---|---|---|---|"]
        for code, r in c["rows"].items():
            lines.append(f"| {code} | {r['n']} | " + " | ".join(f"{v:.2f}" for v in (*r["strict"], *r["tolerant"])) + " |")
        lines.append("")
    if "speed" in metrics:
        s = metrics["speed"]
        lines += [
            "## Speed (CPU, float32, channels_last, BN folded)",
            "",
            (f"- {s['threads']} threads: classify only {s['classify_only']:.0f} crops/s; predict() on real held-out "
            f"mix ({s['neutrophil_share_of_mixed']:.0%} neutrophil-lineage, each graded at 16 rotations) "
            f"{s['mixed_with_grades']:.0f} crops/s; all neutrophils {s['neutrophils_with_grades']:.0f} crops/s; "
            f"estimated for a marrow differential with 30% neutrophil lineage {s['marrow_mix_30pct_estimate']:.0f} "
            "crops/s"),
            "",
        ]
    lines += [
        "## Limits",
        "",
        ("- Real training images are peripheral blood (PBC) plus myeloma marrow (SegPC plasma cells, and its other "
        "nucleated cells taught only as *not PLM*), and another lab's white cells taught only as not debris, smudge, "
        "platelet, megakaryocyte or unidentifiable (TXL-PBC); classes marked ONLY SYNTHETIC were never shown a real image, "
        "their real-marrow accuracy is unknown, and reports mark them (†) and every finding resting on them."),
        ("- Transfer to other labs is measured above on BCCD and wbc_seg white cells, never trained on; read "
        "those figures, not the held-out ones, as what to expect on a new lab's slides."),
        *([("- Stain check: a slide where over half the cells do not look Romanowsky-stained (logistic regression "
            "on crop colours, fitted against H&E tissue crops and colourless copies; a crop whose colour figures lie "
            "outside the range of every training source counts as unlike) gets a warning instead of a confident "
            "differential; held-out crops called unlike: "
            + ", ".join(f"{k} {v:.1%}" for k, v in config["stain_unlike_validated"].items()) + ".")]
          if config.get("stain_check") else []),
        ("- The dysplasia and granule heads learned dysplasia only from phantom cells; real cells were seen only as "
        "normal (PBC healthy donors). Their sensitivity on real MDS marrow is unmeasured: treat their calls as a "
        "prompt for a hematologist, never a finding."),
        ("- µm/px of the public sets is estimated from red-cell and cell diameters; a scanner with a very different "
        "stain or optics can shift results: check on local slides."),
        "- Crops are 24 µm square; megakaryocytes (30-100 µm) are classified from their centre only.",
        *PHANTOM_ONLY_NOTES,
        "",
    ]
    path = models_dir / f"{MODEL_NAME}.card.md"
    path.write_text("\n".join(lines), "utf-8")
    log.info("wrote %s", path)
    return path


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="bmpipe train classifier", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, action="append", default=[],
                   help="folder of class-code sub-folders (ImageFolder or Matek's nested layout); repeatable")
    add_mpp(p, "µm per pixel of each --data folder, in the same order", repeat=True)
    p.add_argument("--no-builtin", action="store_true", help="do not use PBC/SegPC from $BMPIPE_DATA")
    p.add_argument("--no-phantom", action="store_true", help="train without phantom cells")
    add_models(p, writes=True)
    p.add_argument("--out", type=Path, default=None,
                   help="the run's folder: training.json, held-out prediction CSVs and its checkpoint (default: a "
                        "new temporary folder)")
    add_model_version(p, "today's date")
    p.add_argument("--minutes", type=float, default=TrainSettings.minutes, help="wall-time budget of the training")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="a fixed number of steps instead of the time budget")
    add_batch_size(p, TrainSettings.batch_size)
    p.add_argument("--phantom-per-code", type=int, default=TrainSettings.phantom_per_code,
                   help="phantom cells rendered per class")
    p.add_argument("--seed", type=int, default=TrainSettings.seed, help="seed of every random choice")
    p.add_argument("--lr", type=float, default=TrainSettings.lr, help="peak learning rate (AdamW, cosine)")
    p.add_argument("--init", default=None, metavar="DIR|shipped",
                   help="models folder whose classifier to start from, or 'shipped' for bmpipe's own "
                        "(class-head rows matched by code; default: from scratch)")
    add_threads(p, TrainSettings.threads)
    add_device(p)
    p.add_argument("--workers", type=int, default=TrainSettings.workers,
                   help="threads reading and augmenting batches ahead of the network")
    p.add_argument("--checkpoint-minutes", type=float, default=TrainSettings.checkpoint_minutes,
                   help="save the run's state in --out this often, and on Ctrl-C")
    p.add_argument("--resume", action="store_true",
                   help="go on from the checkpoint in --out, with the options of the interrupted run")
    p.add_argument("--no-transfer", action="store_true",
                   help="skip the scores on real cells from sources never trained on (BCCD, wbc_seg, SegPC)")
    p.add_argument("--class-weight", action="append", default=[], metavar="CODE=W",
                   help="loss weight for cells of CODE (default 1); repeatable")
    p.add_argument("--domain-weight", type=float, default=TrainSettings.domain_weight,
                   help="weight of the loss that makes phantom and real cells of a class alike in the "
                        "features (0 turns it off)")
    p.add_argument("--swap-surroundings", type=float, default=TrainSettings.swap_surroundings, metavar="P",
                   help="share of crops that keep their cell and take the surroundings of another crop of the "
                        "batch (0 turns it off)")
    p.add_argument("--random-convolutions", type=float, default=TrainSettings.random_convolutions, metavar="P",
                   help="share of crops passed through a convolution with random weights, which changes colour "
                        "and texture but not shape (0 turns it off)")
    p.add_argument("--fourier-mix", type=float, default=TrainSettings.fourier_mix, metavar="P",
                   help="share of crops that take the amplitudes of their lowest spatial frequencies (broad colour "
                        "casts and shading) from another crop of the batch, keeping their own edges and texture "
                        "(0 turns it off)")
    p.add_argument("--eosin-neutrophils", type=float, default=TrainSettings.eosin_neutrophils, metavar="P",
                   help="share of neutrophil-series crops given extra eosin, as a lab whose neutrophils take "
                        "it up (0 turns it off)")
    p.add_argument("--width", type=float, default=TrainSettings.width, metavar="F",
                   help="channels of every layer × F (1: the shipped network; 1.5 trains at about 0.6× and classifies "
                        "at about 0.3× its speed); with --init, a narrower classifier's weights start the wider one")
    p.add_argument("--synthetic-only", action="append", default=[], metavar="CODE",
                   help="leave CODE's real images out of training (phantom cells only), to measure how far "
                        "phantom cells carry a class to real ones (evaluate classifier --transfer); repeatable")
    p.add_argument("--keep-real", type=int, default=TrainSettings.keep_real, metavar="K",
                   help="with --synthetic-only: keep K real training images of each such class, drawn with "
                        "--seed, as a lab that has labelled K of them (0 keeps none)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if len(args.mpp) != len(args.data):
        p.error("give one --mpp for every --data folder")
    if args.resume and args.out is None:
        p.error("--resume needs --out, the folder of the run to go on with")
    if args.width <= 0:
        p.error("--width takes a factor above 0, e.g. 1.5")
    if args.keep_real < 0 or (args.keep_real and not args.synthetic_only):
        p.error("--keep-real takes a count of 0 or more, and only with --synthetic-only")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        class_weights = tuple((c, float(w)) for c, w in (cw.split("=", 1) for cw in args.class_weight))
    except ValueError:
        p.error("--class-weight takes CODE=W, e.g. PMO=1.5")
    settings = TrainSettings(
        minutes=args.minutes, steps=args.steps, batch_size=args.batch_size,
        phantom_per_code=args.phantom_per_code, seed=args.seed, threads=args.threads, lr=args.lr,
        init=None if args.init is None else default_models_dir() if args.init == "shipped" else Path(args.init),
        class_weights=class_weights, synthetic_only=tuple(c.upper() for c in args.synthetic_only),
        keep_real=args.keep_real,
        domain_weight=args.domain_weight, swap_surroundings=args.swap_surroundings,
        random_convolutions=args.random_convolutions, fourier_mix=args.fourier_mix,
        eosin_neutrophils=args.eosin_neutrophils,
        width=args.width, device=args.device,
        workers=args.workers,
        checkpoint_minutes=args.checkpoint_minutes, resume=args.resume,
    )
    record = train_classifier(
        args.models, settings, list(zip(args.data, args.mpp)), builtin=not args.no_builtin,
        phantom=not args.no_phantom, version=args.model_version, work=args.out, transfer=not args.no_transfer,
    )
    log.info("classifier %s %s", record.version, record.sha256)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
