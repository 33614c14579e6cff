"""Fine-tune the classifier's dysplasia heads on a lab's own labelled cells: ``bmpipe train dysplasia --labels CSV``.

The shipped heads learned dysplasia only from phantom cells (no public image set is labelled for it), so a
lab with a few hundred expert-graded crops should retrain them. The CSV has one row per single-cell image:

    path,lineage,grade
    cells/n001.jpg,granulocytic,2     # hypogranulation grade 0-3 (Mori 2020) of a neutrophil-series cell
    cells/e017.jpg,erythroid,1        # 0 normal / 1 dysplastic (Lee 2022)
    cells/m003.jpg,megakaryocytic,0

Paths are relative to the CSV. Only the dysplastic logit and the granule-grade regression are trained; the
backbone is frozen (or moves at ``--backbone-lr``), and the class head is never touched, so the
differential keeps the figures on its card. A neutrophil graded at or above the project's dysplasia grade
(``criteria.yaml``) is also a dysplastic call. Bad rows are all reported (file, line, problem) before any
training, and nothing is trained until they are fixed: a model half-trained on a mislabelled file is worse
than none.
"""

from __future__ import annotations

import argparse
import copy
import csv
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bmpipe.cli.options import Parser, add_batch_size, add_model_version, add_mpp, add_threads, positive_int
from bmpipe.criteria import load_criteria
from bmpipe.datasets.cell_data import centre_crops, held_out, store_crops
from bmpipe.errors import InputError
from bmpipe.evaluation.classifier import grade_agreement
from bmpipe.nn.cell_classifier import (
    DYSPLASIA_LINEAGES,
    MAX_GRADE,
    MODEL_NAME,
    CellClassifier,
    CellNet,
    granule_grade,
    load_network,
)
from bmpipe.nn.weights import ModelRecord, default_models_dir, save_model
from bmpipe.resolution import Mpp
from bmpipe.train.augment import Augment

log = logging.getLogger(__name__)

COLUMNS = ("path", "lineage", "grade")
GRANULOCYTIC = "granulocytic"
#: Share of the labelled cells kept aside (salted hash of the path) to score the heads before and after.
HELD_OUT_FRACTION = 0.2


@dataclass(frozen=True)
class Labels:
    paths: list[Path]
    lineages: np.ndarray  # str
    dysplastic: np.ndarray  # float32 0/1
    grades: np.ndarray  # float32: granule grade 0-3, -1 where the lineage has none


def read_labels(path: Path) -> Labels:
    """Parse and check the labels CSV; every bad row is logged, then one error says how many there were."""
    if not path.is_file():
        raise InputError(path, "labels CSV not found")
    threshold = int(load_criteria()["dysplasia"]["granule_grade"])
    rows, problems = [], []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(path, f"line 1: missing column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}")
        for line, row in enumerate(reader, start=2):
            problem, parsed = _check_row(path.parent, row, threshold)
            if problem:
                problems.append(f"line {line}: {problem}")
            else:
                rows.append(parsed)
    for p in problems:
        log.error("%s", InputError(path, p))
    if problems:
        raise InputError(path, f"{len(problems)} bad row(s) (listed above); fix them and run again")
    if not rows:
        raise InputError(path, "no labelled cells")
    image, lineage, dys, grade = zip(*rows)
    return Labels(list(image), np.array(lineage), np.array(dys, np.float32), np.array(grade, np.float32))


def _check_row(base: Path, row: dict[str, str], threshold: int) -> tuple[str, tuple]:
    image = Path((row.get("path") or "").strip())
    lineage = (row.get("lineage") or "").strip().lower()
    text = (row.get("grade") or "").strip()
    if not str(image) or str(image) == ".":
        return "empty path", ()
    image = image if image.is_absolute() else base / image
    if not image.is_file():
        return f"image {image} not found", ()
    if lineage not in DYSPLASIA_LINEAGES:
        return f"lineage {lineage!r} is not one of {', '.join(DYSPLASIA_LINEAGES)}", ()
    top = MAX_GRADE if lineage == GRANULOCYTIC else 1
    if not text.isdigit() or int(text) > top:
        what = "a hypogranulation grade 0-3" if lineage == GRANULOCYTIC else "0 (normal) or 1 (dysplastic)"
        return f"grade {text!r} must be {what} for {lineage} cells", ()
    grade = int(text)
    if lineage == GRANULOCYTIC:
        return "", (image, lineage, float(grade >= threshold), float(grade))
    return "", (image, lineage, float(grade), -1.0)


@dataclass(frozen=True)
class FinetuneSettings:
    steps: int = 300
    minutes: float = 10.0  # wall-time cap, whichever comes first
    batch_size: int = 32
    lr: float = 3e-3
    backbone_lr: float = 0.0  # 0: backbone frozen
    seed: int = 0
    threads: int = 2


def _trainable(model: CellNet, settings: FinetuneSettings) -> list[dict[str, Any]]:
    """Parameter groups: the two dysplasia heads, and the backbone only when it is given a learning rate."""
    heads = [*model.dysplastic_head.parameters(), *model.grade_head.parameters()]
    backbone = [*model.stem.parameters(), *model.body.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    groups = [{"params": heads, "lr": settings.lr}]
    if settings.backbone_lr > 0:
        groups.append({"params": backbone, "lr": settings.backbone_lr})
    for g in groups:
        for p in g["params"]:
            p.requires_grad_(True)
    return groups


def finetune(model: CellNet, crops: np.ndarray, labels: Labels, settings: FinetuneSettings) -> dict[str, Any]:
    """Train the dysplasia heads of ``model`` in place on ``crops`` (stored size, augmented per batch)."""
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    groups = _trainable(model, settings)
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    base = [g["lr"] for g in groups]
    # BatchNorm statistics stay those of the full training set: a few hundred lab cells would skew them.
    model.eval()
    augment = Augment()
    dys = torch.from_numpy(labels.dysplastic)
    grades = torch.from_numpy(labels.grades)
    positive = labels.dysplastic.mean()
    pos_weight = torch.tensor(float(np.sqrt(np.clip((1 - positive) / max(positive, 1e-3), 1.0, 100.0))))
    start, step, losses = time.monotonic(), 0, []
    while step < settings.steps and time.monotonic() - start < settings.minutes * 60:
        for g, lr in zip(opt.param_groups, base):
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / settings.steps))
        idx = torch.from_numpy(rng.integers(len(crops), size=settings.batch_size))
        x = augment(crops[idx.numpy()], gen)
        _, dys_logit, grade = model(x)
        loss = F.binary_cross_entropy_with_logits(dys_logit, dys[idx], pos_weight=pos_weight)
        graded = grades[idx] >= 0
        if graded.any():
            loss = loss + 0.5 * F.mse_loss(grade[graded], grades[idx][graded])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 50 == 0:
            log.info("step %d  loss %.3f", step, float(np.mean(losses[-50:])))
    for p in model.parameters():
        p.requires_grad_(True)
    return {"steps": step, "seconds": round(time.monotonic() - start, 1),
            "final_loss": round(float(np.mean(losses[-20:])), 4) if losses else None}


def score(clf: CellClassifier, crops: np.ndarray, labels: Labels) -> dict[str, float]:
    """Dysplastic-call accuracy over all cells, and granule grade (16-rotation max, Mori 2020) on granulocytic ones."""
    out: dict[str, float] = {"n": float(len(crops))}
    if not len(crops):
        return out
    pred = clf.predict(crops, grade_neutrophils=False)
    out["dysplastic_accuracy"] = float(np.mean((pred.dysplasia_score > 0.5) == (labels.dysplastic > 0.5)))
    g = labels.grades >= 0
    if g.any():
        out.update(grade_agreement(granule_grade(clf.raw_grade(crops[g])), labels.grades[g]))
    return out


def _subset(labels: Labels, index: np.ndarray) -> Labels:
    return Labels([labels.paths[i] for i in index], labels.lineages[index], labels.dysplastic[index],
                  labels.grades[index])


def write_card(out: Path, record: ModelRecord, base: ModelRecord, csv_path: Path, labels: Labels,
               stats: dict[str, Any], before: dict[str, float], after: dict[str, float], old_card: str | None) -> Path:
    counts = ", ".join(f"{lin}: {int(np.sum(labels.lineages == lin))}" for lin in DYSPLASIA_LINEAGES)

    def fig(d: dict[str, float], key: str) -> str:
        return f"{d[key]:.3f}" if key in d else "-"

    lines = [
        f"# Model card: `{record.name}` {record.version}",
        "",
        f"- file `{record.file}`, sha256 `{record.sha256}`",
        (f"- classifier {base.version} (sha256 `{base.sha256[:12]}…`) with its dysplasia heads fine-tuned on "
         f"`{csv_path.name}`: {len(labels.paths)} labelled cells ({counts})"),
        (f"- {stats['steps']} steps in {stats['seconds']:.0f} s, heads lr {stats['lr']}, backbone "
         + ("frozen" if not stats["backbone_lr"] else f"lr {stats['backbone_lr']}")
         + "; the class head is unchanged"),
        "",
        f"## Dysplasia heads on held-out labelled cells (n={int(after.get('n', 0))})",
        "",
        "| figure | before | after |",
        "|---|---|---|",
        *(f"| {k.replace('_', ' ')} | {fig(before, k)} | {fig(after, k)} |"
          for k in ("dysplastic_accuracy", "grade_within_1", "grade_exact")),
        "",
        ("These labels are the lab's own: the figures say how well the heads agree with its graders, on cells "
         "kept out of the fine-tuning by a fixed hash of their path."),
        "",
    ]
    if old_card:
        lines += [f"## Card of the base classifier {base.version}", "",
                  *("#" + line if line.startswith("#") else line for line in old_card.splitlines())]
    path = out / f"{MODEL_NAME}.card.md"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def train_dysplasia(csv_path: Path, mpp: Mpp | None, models_dir: Path, out: Path, version: str | None,
                    settings: FinetuneSettings) -> ModelRecord:
    torch.set_num_threads(settings.threads)
    labels = read_labels(csv_path)
    crops, readable = store_crops(labels.paths, mpp)
    if not readable.all():
        raise InputError(csv_path, f"{int((~readable).sum())} image(s) could not be used (listed above)")
    model, config, base = load_network(models_dir)
    old_card_path = models_dir / f"{MODEL_NAME}.card.md"
    old_card = old_card_path.read_text("utf-8") if old_card_path.is_file() else None
    test = held_out([str(p) for p in labels.paths], list(labels.lineages), HELD_OUT_FRACTION)
    train_idx, test_idx = np.flatnonzero(~test), np.flatnonzero(test)
    if not len(train_idx):
        raise InputError(csv_path, "too few labelled cells to keep any for training")
    test_crops, test_labels = centre_crops(crops[test_idx], int(config["crop_px"])), _subset(labels, test_idx)
    before = score(CellClassifier(copy.deepcopy(model), config, base, "cpu"), test_crops, test_labels)
    stats = finetune(model, crops[train_idx], _subset(labels, train_idx), settings)
    stats.update(lr=settings.lr, backbone_lr=settings.backbone_lr, base_version=base.version,
                 base_sha256=base.sha256, n_train=len(train_idx), n_held_out=len(test_idx))
    config = {**config, "dysplasia_finetune": stats}
    version = version or f"{base.version}+dys.{time.strftime('%Y%m%d')}"
    record = save_model(model, out, MODEL_NAME, version, config)
    after = score(CellClassifier.load(out, device="cpu"), test_crops, test_labels)
    card = write_card(out, record, base, csv_path, labels, stats, before, after, old_card)
    log.info("dysplasia heads before %s → after %s; saved %s %s and %s", before, after, record.version,
             record.sha256[:12], card)
    return record


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="bmpipe train dysplasia", description=__doc__.splitlines()[0])
    p.add_argument("--labels", type=Path, required=True, help="CSV with columns path,lineage,grade")
    add_mpp(p, "µm per pixel of the images (required unless they are TIFFs that carry it)")
    p.add_argument("--init", type=Path, default=None,
                   help="models folder of the classifier to start from (default: the shipped one)")
    p.add_argument("--models", type=Path, default=None,
                   help="models folder to write the fine-tuned classifier to (default: the --init folder)")
    add_model_version(p, "the base version + dys.DATE")
    p.add_argument("--steps", type=positive_int, default=FinetuneSettings.steps, help="training steps at most")
    p.add_argument("--minutes", type=float, default=FinetuneSettings.minutes, help="wall-time budget")
    add_batch_size(p, FinetuneSettings.batch_size)
    p.add_argument("--lr", type=float, default=FinetuneSettings.lr, help="learning rate of the heads")
    p.add_argument("--backbone-lr", type=float, default=FinetuneSettings.backbone_lr,
                   help="learning rate of the backbone (default 0: frozen)")
    p.add_argument("--seed", type=int, default=FinetuneSettings.seed, help="seed of every random choice")
    add_threads(p, FinetuneSettings.threads)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    base = args.init or default_models_dir()
    settings = FinetuneSettings(steps=args.steps, minutes=args.minutes, batch_size=args.batch_size, lr=args.lr,
                                backbone_lr=args.backbone_lr, seed=args.seed, threads=args.threads)
    train_dysplasia(args.labels, args.mpp, base, args.models or base, args.model_version, settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
