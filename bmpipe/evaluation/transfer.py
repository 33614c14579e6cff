"""Transfer: the classifier on real cells from labs, stains and marrow it never trained on.

A classifier scored only on held-out images of its training sources can score well by learning each source's
look (PLM learned from SegPC alone: "marrow-looking" means plasma cell). These scores never touch a source's
images in training:

- **unseen lab**: BCCD white cells (fields with one white cell and one subtype) and ``wbc_seg`` Datasets 1
  and 2, scored in PBC's groups (a neutrophil called NGS or NGB is right). These sets must never be trained on;
  nothing under ``bmpipe.train`` reads them.
- **real marrow negatives**: nucleated cells in held-out SegPC fields outside every plasma-cell mask: the
  share called PLM (and SegPC plasma-cell recall beside it).
- **synthetic-only proxy**: a model trained with ``--synthetic-only CODE`` saw only phantom cells of CODE,
  as BLA is seen today; its recall on CODE's real held-out images says how far phantom cells carry a class.

``bmpipe evaluate classifier --transfer`` prints them beside their targets and writes ``transfer.json``.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bmpipe.datasets import cell_data
from bmpipe.datasets.catalog import DATASETS, data_root
from bmpipe.datasets.detector_data import voc_boxes
from bmpipe.evaluation.classifier import PBC_GROUPS, Target, class_report, evaluate_pbc_groups, pbc_group
from bmpipe.imaging.image_files import read_rgb
from bmpipe.nn.cell_classifier import CROP_PX, CellClassifier, single_cell_crop
from bmpipe.resolution import Mpp

log = logging.getLogger(__name__)

#: Subtype names of BCCD's ``wbc_subtype_labels.csv`` and ``wbc_seg``'s class numbers → PBC group.
BCCD_GROUPS = {"NEUTROPHIL": "neutrophil", "EOSINOPHIL": "eosinophil", "LYMPHOCYTE": "lymphocyte",
               "MONOCYTE": "monocyte", "BASOPHIL": "basophil"}
WBC_SEG_GROUPS = {1: "neutrophil", 2: "lymphocyte", 3: "monocyte", 4: "eosinophil", 5: "basophil"}
#: ``wbc_seg`` states no pixel size. Median white-cell mask diameter per class against PBC's measured cells
#: (neutrophils 14.3 µm, lymphocytes 10.4 µm, ``datasets.DATASETS["pbc"]``): Dataset 1 neutrophils 76.5 px,
#: lymphocytes 58.2 px (0.187, 0.179); Dataset 2 160.1 px and 140.2 px (0.089, 0.074).
WBC_SEG_MPP = {"Dataset 1": Mpp(0.18), "Dataset 2": Mpp(0.08)}

#: Said beside a set's score where its labels deserve less trust than an expert's.
_LABEL_NOTES = {"wbc_seg_1": " [labels not expert-checked]", "wbc_seg_2": " [labels not expert-checked]"}

#: The issue's benchmark figures (not clinical thresholds).
TRANSFER_TARGETS = {
    "bccd_accuracy": Target("BCCD white cells (unseen lab), accuracy", 0.85),
    "wbc_seg_1_accuracy": Target("wbc_seg Dataset 1 (unseen lab), accuracy", 0.75),
    "wbc_seg_2_accuracy": Target("wbc_seg Dataset 2 (unseen lab), accuracy", 0.75),
    "segpc_others_not_plm": Target("SegPC non-plasma marrow cells not called PLM", 0.90),
    "segpc_plm_recall": Target("SegPC plasma cells, recall", 0.95),
    "pbc_group_macro_f1": Target("held-out PBC, 8-group macro-F1", 0.95),
    "synthetic_only_mean_recall": Target("synthetic-only proxy, mean recall", 0.80),
    "synthetic_only_min_recall": Target("synthetic-only proxy, lowest recall", 0.60),
}


@dataclass
class GroupedCells:
    """Classifier inputs (N, CROP_PX, CROP_PX, 3) of real cells labelled only by PBC group."""

    name: str
    crops: np.ndarray
    groups: list[str]
    paths: list[str]


def bccd_cells(root: Path | None = None) -> GroupedCells:
    """BCCD fields that hold exactly one annotated white cell and one subtype, cut around that cell."""
    root = root or DATASETS["bccd"].path
    labels = root.parent / "wbc_subtype_labels.csv"
    mpp = DATASETS["bccd"].mpp
    crops, groups, paths = [], [], []
    with open(labels, newline="") as f:
        for row in csv.DictReader(f):
            group = BCCD_GROUPS.get((row.get("Category") or "").strip())
            if group is None or not (row.get("Image") or "").strip().isdigit():
                continue  # no subtype, or several ("NEUTROPHIL, LYMPHOCYTE")
            stem = f"BloodImage_{int(row['Image']):05d}"
            image, xml = root / "JPEGImages" / f"{stem}.jpg", root / "Annotations" / f"{stem}.xml"
            if not image.exists() or not xml.exists():
                continue
            boxes = voc_boxes(xml)
            if len(boxes) != 1:
                continue
            x0, y0, x1, y1 = boxes[0]
            crops.append(single_cell_crop(read_rgb(image), mpp, centre=((x0 + x1 + 1) / 2, (y0 + y1 + 1) / 2)))
            groups.append(group)
            paths.append(str(image))
    return GroupedCells("bccd", _stack(crops), groups, paths)


def wbc_seg_cells(dataset: str, root: Path | None = None) -> GroupedCells:
    """``wbc_seg`` single-cell images of one dataset, centred on their white-cell mask."""
    root = root or data_root() / "wbc_seg"
    crops, groups, paths = [], [], []
    with open(root / f"Class Labels of {dataset}.csv", newline="") as f:
        rows = [r for r in csv.reader(f)][1:]
    for row in rows:
        if len(row) < 2 or not row[0].strip().isdigit() or not row[1].strip().isdigit():
            continue
        group = WBC_SEG_GROUPS.get(int(row[1]))
        image = root / dataset / f"{int(row[0]):03d}.bmp"
        if group is None or not image.exists():
            continue
        rgb = read_rgb(image)
        mask = cv2.imread(str(image.with_suffix(".png")), cv2.IMREAD_GRAYSCALE)
        centre = None
        if mask is not None and (mask > 20).any():
            ys, xs = np.nonzero(mask > 20)
            centre = (float(xs.mean()), float(ys.mean()))
        crops.append(single_cell_crop(rgb, WBC_SEG_MPP[dataset], centre=centre))
        groups.append(group)
        paths.append(str(image))
    return GroupedCells(f"wbc_seg {dataset}", _stack(crops), groups, paths)


def _stack(crops: list[np.ndarray]) -> np.ndarray:
    return np.stack(crops) if crops else np.zeros((0, CROP_PX, CROP_PX, 3), np.uint8)


def score_groups(clf: CellClassifier, cells: GroupedCells) -> dict[str, Any]:
    """Accuracy and per-group recall in PBC's groups, and what each group is mostly called (codes)."""
    labels = [str(p) for p in clf.predict(cells.crops, grade_neutrophils=False).label]
    report = class_report(cells.groups, [pbc_group(p) for p in labels], tolerate=False)
    called = {g: Counter(p for p, t in zip(labels, cells.groups) if t == g).most_common(3)
              for g in PBC_GROUPS if g in cells.groups}
    return {
        "n": report["n"],
        "accuracy": report["accuracy"],
        "recall": {g: r["strict"][1] for g, r in report["rows"].items()},
        "n_by_group": {g: r["n"] for g, r in report["rows"].items()},
        "called": {g: [[c, n] for c, n in top] for g, top in called.items()},
    }


def score_segpc(clf: CellClassifier, plasma: cell_data.CropSet, others: cell_data.CropSet) -> dict[str, Any]:
    """Held-out SegPC fields: plasma-cell recall, and the share of the other marrow cells called PLM."""
    out: dict[str, Any] = {}
    if len(plasma):
        out["plm_recall"] = float(np.mean(clf.predict(plasma.centre_crops(), grade_neutrophils=False).label == "PLM"))
        out["plm_n"] = len(plasma)
    if len(others):
        labels = clf.predict(others.centre_crops(), grade_neutrophils=False).label
        out["others_called_plm"] = float(np.mean(labels == "PLM"))
        out["others_n"] = len(others)
        out["others_called"] = [[str(c), n] for c, n in Counter(labels.tolist()).most_common(5)]
    return out


def score_synthetic_only(clf: CellClassifier, real_held_out: dict[str, cell_data.CropSet]) -> dict[str, Any]:
    """Recall on real held-out cells of each class the model was trained on only from phantom cells
    (its ``training.synthetic_only``); empty for a model trained on every real image it was given."""
    codes = clf.config.get("training", {}).get("synthetic_only") or []
    recall = {}
    for code in codes:
        crops = [s.centre_crops()[s.codes == code] for s in real_held_out.values() if (s.codes == code).any()]
        if crops:
            labels = clf.predict(np.concatenate(crops), grade_neutrophils=False).label
            recall[code] = {"recall": float(np.mean(labels == code)), "n": int(sum(len(c) for c in crops)),
                            "called": [[str(c), n] for c, n in Counter(labels.tolist()).most_common(3)]}
    return recall


#: The real held-out sets these scores use, each with its loader: a training run passes its own.
_HELD_OUT = {"pbc": ("pbc", cell_data.load_pbc), "segpc": ("segpc", cell_data.load_segpc),
             "segpc-other": ("segpc", cell_data.load_segpc_others)}


def evaluate_transfer(clf: CellClassifier, held_out: dict[str, cell_data.CropSet] | None = None) -> dict[str, Any]:
    """Every transfer score the data here allows (sets not found are skipped with a warning). ``held_out``:
    the real held-out sets already loaded (a training run's), by the names of :data:`_HELD_OUT`."""
    result: dict[str, Any] = {"model": f"{clf.record.name} {clf.record.version}", "sha256": clf.record.sha256,
                              "second_look_below": clf.second_look_below}
    unseen: dict[str, Any] = {}
    if (DATASETS["bccd"].path.parent / "wbc_subtype_labels.csv").exists():
        unseen["bccd"] = score_groups(clf, bccd_cells())
    else:
        log.warning("BCCD subtype labels not found under %s; not scored", DATASETS["bccd"].path.parent)
    for dataset in WBC_SEG_MPP:
        if (data_root() / "wbc_seg" / dataset).is_dir():
            unseen[f"wbc_seg_{dataset.split()[-1]}"] = score_groups(clf, wbc_seg_cells(dataset))
        else:
            log.warning("wbc_seg %s not found; not scored", dataset)
    result["unseen_lab"] = unseen
    real = dict(held_out or {})
    for name, (dataset, loader) in _HELD_OUT.items():
        if name not in real and DATASETS[dataset].path.is_dir():
            real[name] = loader()[1]
    if "segpc" in real:
        result["segpc"] = score_segpc(clf, real["segpc"], real.get("segpc-other", cell_data.empty_cropset()))
    if "pbc" in real:
        result["pbc_groups"] = evaluate_pbc_groups(clf, real["pbc"])
    proxy = score_synthetic_only(clf, {k: v for k, v in real.items() if k in ("pbc", "segpc")})
    if proxy:
        result["synthetic_only"] = proxy
    result["figures"] = transfer_figures(result)
    return result


def transfer_figures(result: dict[str, Any]) -> dict[str, float]:
    """The figures :data:`TRANSFER_TARGETS` names, from an :func:`evaluate_transfer` result."""
    figures: dict[str, float] = {}
    unseen = result.get("unseen_lab", {})
    for key, name in (("bccd_accuracy", "bccd"), ("wbc_seg_1_accuracy", "wbc_seg_1"),
                      ("wbc_seg_2_accuracy", "wbc_seg_2")):
        if name in unseen:
            figures[key] = unseen[name]["accuracy"]
    segpc = result.get("segpc", {})
    if "others_called_plm" in segpc:
        figures["segpc_others_not_plm"] = 1 - segpc["others_called_plm"]
    if "plm_recall" in segpc:
        figures["segpc_plm_recall"] = segpc["plm_recall"]
    if "pbc_groups" in result:
        figures["pbc_group_macro_f1"] = result["pbc_groups"]["macro_f1"]
    proxy = result.get("synthetic_only")
    if proxy:
        recalls = [v["recall"] for v in proxy.values()]
        figures["synthetic_only_mean_recall"] = float(np.mean(recalls))
        figures["synthetic_only_min_recall"] = float(np.min(recalls))
    return figures


def format_transfer(result: dict[str, Any]) -> list[str]:
    """Per set: accuracy, per-group recall and what each group is mostly called; then figures vs targets."""
    look = result.get("second_look_below", 0)
    lines = [f"transfer of {result['model']} (sha256 {result['sha256'][:12]}…), "
             + (f"second look below p {look:g}" if look > 0 else "no second look")]
    for name, s in result.get("unseen_lab", {}).items():
        lines.append(f"  {name}: accuracy {s['accuracy']:.3f} (n={s['n']}){_LABEL_NOTES.get(name, '')}  recall "
                     + " ".join(f"{g}={r:.2f}(n={s['n_by_group'][g]})" for g, r in s["recall"].items()))
        lines += [f"    {g} called " + ", ".join(f"{c} {n}" for c, n in top) for g, top in s["called"].items()]
    segpc = result.get("segpc", {})
    if "others_called_plm" in segpc:
        lines.append(f"  SegPC held-out non-plasma marrow cells called PLM: {segpc['others_called_plm']:.3f} "
                     f"(n={segpc['others_n']}; called " + ", ".join(f"{c} {n}" for c, n in segpc["others_called"])
                     + ")")
    if "plm_recall" in segpc:
        lines.append(f"  SegPC held-out plasma cells called PLM: {segpc['plm_recall']:.3f} (n={segpc['plm_n']})")
    for code, v in result.get("synthetic_only", {}).items():
        lines.append(f"  synthetic-only {code}: recall on real {v['recall']:.3f} (n={v['n']}; called "
                     + ", ".join(f"{c} {n}" for c, n in v["called"]) + ")")
    lines.append("targets:")
    for key, t in TRANSFER_TARGETS.items():
        if key in result["figures"]:
            v = result["figures"][key]
            lines.append(f"  {t.label:<52} {v:.3f}  (target ≥ {t.at_least:.2f})  "
                         + ("met" if v >= t.at_least else "NOT MET"))
        elif key.startswith("synthetic_only"):
            lines.append(f"  {t.label:<52} not measured: needs a model trained with --synthetic-only")
    return lines


def write_transfer(result: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "transfer.json"
    path.write_text(json.dumps(result, indent=1), "utf-8")
    return path
