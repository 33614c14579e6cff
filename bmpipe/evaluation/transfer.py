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
  It is also read at fixed shares of healthy cells called a phantom-only class (:func:`recall_at_false_calls`),
  so that two runs are compared on how well they separate, not on where each happened to put its threshold.
  With ``--keep-real K`` the run also kept K real images of each such class: the same scores, read over K,
  say how many cells a lab must label before a class transfers.
- **label audit**: where a set's published labels were checked by eye (``data/label_audits.yaml``), its
  accuracy is also given on the cells whose image shows what their label says. The target stays on the
  labels as published; the second figure tells the model's errors from the label's.

``bmpipe evaluate classifier --transfer`` prints them beside their targets and writes ``transfer.json``.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from bmpipe.datasets import cell_data
from bmpipe.datasets.catalog import DATASETS, data_root
from bmpipe.datasets.detector_data import voc_boxes
from bmpipe.evaluation import outcomes
from bmpipe.evaluation.classifier import (
    PBC_GROUPS,
    Target,
    class_report,
    pbc_group,
    pbc_group_calls,
    pbc_group_scores,
)
from bmpipe.imaging.image_files import read_rgb
from bmpipe.nn.cell_classifier import CROP_PX, CellClassifier, single_cell_crop
from bmpipe.nn.stain import UNLIKE_SHARE, unlike_share
from bmpipe.resolution import Mpp

log = logging.getLogger(__name__)

#: Subtype names of BCCD's ``wbc_subtype_labels.csv`` and ``wbc_seg``'s class numbers → PBC group.
BCCD_GROUPS = {"NEUTROPHIL": "neutrophil", "EOSINOPHIL": "eosinophil", "LYMPHOCYTE": "lymphocyte",
               "MONOCYTE": "monocyte", "BASOPHIL": "basophil"}
WBC_SEG_GROUPS = {1: "neutrophil", 2: "lymphocyte", 3: "monocyte", 4: "eosinophil", 5: "basophil"}
#: ``wbc_seg`` states no pixel size. Dataset 2's red cells, the ruler PBC is measured by, give it: their
#: median diameter (Hough circles on green, pink inside) is 72 px in 62 of its 100 tight crops, where PBC's
#: read 73 px by the same circles (72 px isolated, 0.104 µm/px), so it is CellaVision's own scale; its cells
#: are a blog's larger ones (neutrophil masks 160 px across, 16 µm). Dataset 1's crops hold no whole red
#: cell: its scale is its white cells' against PBC's (neutrophil masks 76.5 px for 14.3 µm, lymphocytes
#: 58.2 px for 10.4 µm: 0.187, 0.179 µm/px).
WBC_SEG_MPP = {"Dataset 1": Mpp(0.18), "Dataset 2": Mpp(0.10)}

#: Said beside a set's score where its labels deserve less trust than an expert's.
_LABEL_NOTES = {"wbc_seg_1": " [labels not expert-checked; a rapid white-cell stain, not Romanowsky: yellow "
                             "background (Jiangxi Tecom, per the data set's README)]",
                "wbc_seg_2": " [labels not expert-checked; CellaVision blog images]"}

#: The issue's benchmark figures (not clinical thresholds).
TRANSFER_TARGETS = {
    "bccd_accuracy": Target("BCCD white cells (unseen lab), accuracy", 0.85),
    "bccd_audited_accuracy": Target("BCCD, cells whose image shows their label", None,
                                    note="label audit, no target"),
    "wbc_seg_1_accuracy": Target("wbc_seg Dataset 1 (unseen lab), accuracy", 0.75),
    "wbc_seg_2_accuracy": Target("wbc_seg Dataset 2 (unseen lab), accuracy", 0.75),
    "segpc_others_not_plm": Target("SegPC non-plasma marrow cells not called PLM", 0.90),
    "segpc_plm_recall": Target("SegPC plasma cells, recall", 0.95),
    "pbc_group_macro_f1": Target("held-out PBC, 8-group macro-F1", 0.95),
    "pbc_not_phantom_only": Target("held-out PBC cells not called a phantom-only class", None),
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


@cache
def label_audits() -> dict[str, Any]:
    """Labels of the unseen-lab sets checked by eye (``data/label_audits.yaml``), by set name."""
    return yaml.safe_load(resources.files("bmpipe.data").joinpath("label_audits.yaml").read_text("utf-8"))


def not_shown(name: str, cells: GroupedCells) -> np.ndarray:
    """Which of a set's cells carry a label that their image, by the set's audit, does not show (all False
    for a set with no audit)."""
    audit = label_audits().get(name)
    if not audit:
        return np.zeros(len(cells.groups), bool)
    stems = set(audit["not_shown"])
    return np.array([g == audit["label"] and Path(p).stem in stems for g, p in zip(cells.groups, cells.paths)],
                    bool)


def _most_called(labels: Any, n: int) -> list[list[Any]]:
    """The ``n`` codes most often called among ``labels``, as ``[code, count]`` pairs (JSON-ready)."""
    return [[str(c), k] for c, k in Counter(str(label) for label in labels).most_common(n)]


def _calls_text(calls: list[list[Any]]) -> str:
    return ", ".join(f"{c} {k}" for c, k in calls)


def _stack(crops: list[np.ndarray]) -> np.ndarray:
    return np.stack(crops) if crops else np.zeros((0, CROP_PX, CROP_PX, 3), np.uint8)


def score_groups(clf: CellClassifier, cells: GroupedCells, set_aside: np.ndarray | None = None) -> dict[str, Any]:
    """Accuracy and per-group recall in PBC's groups, what each group is mostly called (codes), and each
    cell's outcome (``hit``: called in its group). Cells in ``set_aside`` (labels their image does not show,
    :func:`not_shown`) are also scored apart: what they are called, and the outcomes of all the others
    (``audit``)."""
    predictions = clf.predict(cells.crops, grade_neutrophils=False)
    labels = [str(p) for p in predictions.label]
    called_groups = [pbc_group(p) for p in labels]
    report = class_report(cells.groups, called_groups, tolerate=False)
    called = {g: _most_called((p for p, t in zip(labels, cells.groups) if t == g), 3)
              for g in PBC_GROUPS if g in cells.groups}
    hit = [c == g for c, g in zip(called_groups, cells.groups)]
    scores = {
        "n": report["n"],
        "accuracy": report["accuracy"],
        "recall": {g: r["strict"][1] for g, r in report["rows"].items()},
        "n_by_group": {g: r["n"] for g, r in report["rows"].items()},
        "called": called,
        "hit": hit,
    }
    stain = predictions.stain_score
    if stain is not None and np.isfinite(stain).all():
        scores["unlike_stain"] = unlike_share(stain)
    if set_aside is not None and set_aside.any():
        scores["audit"] = {"set_aside": int(set_aside.sum()),
                           "called": _most_called((p for p, s in zip(labels, set_aside) if s), 3),
                           "hit": [h for h, s in zip(hit, set_aside) if not s]}
    return scores


def score_segpc(clf: CellClassifier, plasma: cell_data.CropSet, others: cell_data.CropSet) -> dict[str, Any]:
    """Held-out SegPC fields: plasma-cell recall, and the share of the other marrow cells called PLM (with
    each cell's call, ``plm_called`` and ``others_called_plm_each``)."""
    out: dict[str, Any] = {}
    if len(plasma):
        called = clf.predict(plasma.centre_crops(), grade_neutrophils=False).label == "PLM"
        out.update(plm_recall=float(np.mean(called)), plm_n=len(plasma), plm_called=called.tolist())
    if len(others):
        labels = clf.predict(others.centre_crops(), grade_neutrophils=False).label
        out.update(others_called_plm=float(np.mean(labels == "PLM")), others_n=len(others),
                   others_called=_most_called(labels, 5),
                   others_called_plm_each=(labels == "PLM").tolist())
    return out


def held_back_codes(clf: CellClassifier) -> tuple[str, ...]:
    """Classes no real image taught, and a proxy run's classes even when ``--keep-real`` kept a few real images
    of them: a guard that moved with the number kept would not compare the points of one learning curve."""
    proxy = clf.config.get("training", {}).get("synthetic_only") or ()
    return tuple(c for c in clf.codes if c in clf.synthetic_only or c in proxy)


def score_synthetic_only(clf: CellClassifier, real_held_out: dict[str, cell_data.CropSet]) -> dict[str, Any]:
    """Recall on real held-out cells of each class the model was trained on only from phantom cells, or from
    phantom cells and the few real ones ``--keep-real`` kept (its ``training.synthetic_only``); empty for a
    model trained on every real image it was given. Each code's ``probs`` are its cells' class probabilities
    (for :func:`recall_at_false_calls`; not JSON)."""
    codes = clf.config.get("training", {}).get("synthetic_only") or []
    sets = [(s.codes, s.centre_crops()) for s in real_held_out.values()] if codes else []
    recall = {}
    for code in codes:
        crops = [centred[held == code] for held, centred in sets if (held == code).any()]
        if crops:
            predictions = clf.predict(np.concatenate(crops), grade_neutrophils=False)
            labels = predictions.label
            recall[code] = {"recall": float(np.mean(labels == code)), "n": len(labels),
                            "called": _most_called(labels, 3),
                            "hit": (labels == code).tolist(), "probs": predictions.probs}
    return recall


#: Shares of held-out PBC cells (classes with real images) called a phantom-only class at which the proxy is
#: also read: about the false blasts a marrow count could bear (1-3%), and a loose 10%.
FALSE_CALL_RATES = (0.01, 0.03, 0.10)
#: Biases tried on the phantom-only log-probabilities (natural log), in steps fine enough for a few hundred cells.
BIASES = np.arange(-8.0, 8.0 + 1e-9, 0.25)


def recall_at_false_calls(proxy_probs: dict[str, np.ndarray], guard_probs: np.ndarray, codes: tuple[str, ...],
                          phantom_only: tuple[str, ...], rates: tuple[float, ...] = FALSE_CALL_RATES) -> list[dict]:
    """The proxy's recall (argmax calls) with a bias b added to the log-probability of every ``phantom_only``
    class, b as large as keeps the share of ``guard_probs`` cells (real cells of classes with real images) called
    phantom-only within each rate. A bias moves a model along its own trade of the two, so runs compared at one
    rate differ in how well they separate real cells of phantom-only classes, not in their thresholds."""
    phantom = np.isin(codes, phantom_only)
    shift = BIASES[:, None] * phantom[None]  # (biases, codes)

    def called(log_p: np.ndarray, k: int) -> np.ndarray:
        """Each cell's call (code index) with the ``k``-th bias."""
        return (log_p + shift[k]).argmax(1)

    guard_log, *proxy_logs = (np.log(np.maximum(p, 1e-12)) for p in (guard_probs, *proxy_probs.values()))
    false = np.array([phantom[called(guard_log, k)].mean() for k in range(len(BIASES))])  # rises with b
    rows = []
    for rate in rates:
        k = int(np.searchsorted(false, rate, side="right")) - 1
        if k < 0:
            continue
        recall = {code: float(np.mean(called(log_p, k) == codes.index(code)))
                  for code, log_p in zip(proxy_probs, proxy_logs)}
        rows.append({"rate": rate, "bias": float(BIASES[k]), "false_calls": float(false[k]), "recall": recall,
                     "mean_recall": float(np.mean(list(recall.values())))})
    return rows


#: The real held-out sets these scores use, each with its loader: a training run passes its own.
_HELD_OUT = {"pbc": ("pbc", cell_data.load_pbc), "segpc": ("segpc", cell_data.load_segpc),
             "segpc-other": ("segpc", cell_data.load_segpc_others)}

#: How each figure of :data:`TRANSFER_TARGETS` comes from its cells' outcomes.
FIGURE_STATS: dict[str, outcomes.Stat] = {
    "bccd_accuracy": outcomes.share_of_hits,
    "bccd_audited_accuracy": outcomes.share_of_hits,
    "wbc_seg_1_accuracy": outcomes.share_of_hits,
    "wbc_seg_2_accuracy": outcomes.share_of_hits,
    "segpc_others_not_plm": outcomes.share_of_hits,
    "segpc_plm_recall": outcomes.share_of_hits,
    "pbc_group_macro_f1": outcomes.macro_f1,
    "pbc_not_phantom_only": outcomes.share_of_hits,
    "synthetic_only_mean_recall": outcomes.mean_recall,
    "synthetic_only_min_recall": outcomes.lowest_recall,
}


@dataclass
class TransferSets:
    """The cells every transfer score is computed on, loaded once so that two models are scored on the same
    cells: unseen labs' cells by set name, and the real held-out sets by the names of :data:`_HELD_OUT`."""

    unseen: dict[str, GroupedCells]
    real: dict[str, cell_data.CropSet]


def load_transfer_sets(held_out: dict[str, cell_data.CropSet] | None = None) -> TransferSets:
    """Every set the data here holds (sets not found are skipped with a warning). ``held_out``: the real
    held-out sets already loaded (a training run's), by the names of :data:`_HELD_OUT`."""
    unseen: dict[str, GroupedCells] = {}
    if (DATASETS["bccd"].path.parent / "wbc_subtype_labels.csv").exists():
        unseen["bccd"] = bccd_cells()
    else:
        log.warning("BCCD subtype labels not found under %s; not scored", DATASETS["bccd"].path.parent)
    for dataset in WBC_SEG_MPP:
        if (data_root() / "wbc_seg" / dataset).is_dir():
            unseen[f"wbc_seg_{dataset.split()[-1]}"] = wbc_seg_cells(dataset)
        else:
            log.warning("wbc_seg %s not found; not scored", dataset)
    real = dict(held_out or {})
    for name, (dataset, loader) in _HELD_OUT.items():
        if name not in real and DATASETS[dataset].path.is_dir():
            real[name] = loader()[1]
    return TransferSets(unseen, real)


def evaluate_transfer(clf: CellClassifier, sets: TransferSets | None = None) -> dict[str, Any]:
    """Every transfer score of ``clf`` on ``sets`` (default: :func:`load_transfer_sets`), with each figure's
    per-cell outcomes (``outcomes``, by the keys of :data:`TRANSFER_TARGETS`)."""
    sets = sets or load_transfer_sets()
    result: dict[str, Any] = {"model": f"{clf.record.name} {clf.record.version}", "sha256": clf.record.sha256,
                              "second_look_below": clf.second_look_below}
    result["unseen_lab"] = {name: score_groups(clf, cells, not_shown(name, cells))
                            for name, cells in sets.unseen.items()}
    found: dict[str, outcomes.Outcome] = {}
    for name, s in result["unseen_lab"].items():
        found[f"{name}_accuracy"] = outcomes.hits(s.pop("hit"))
        if "audit" in s:
            found[f"{name}_audited_accuracy"] = outcomes.hits(s["audit"].pop("hit"))
    real = sets.real
    if "segpc" in real:
        segpc = score_segpc(clf, real["segpc"], real.get("segpc-other", cell_data.empty_cropset()))
        if "plm_called" in segpc:
            found["segpc_plm_recall"] = outcomes.hits(segpc.pop("plm_called"))
        if "others_called_plm_each" in segpc:
            found["segpc_others_not_plm"] = outcomes.hits(not c for c in segpc.pop("others_called_plm_each"))
        result["segpc"] = segpc
    guard_probs = None
    if "pbc" in real:
        truth, called, predictions = pbc_group_calls(clf, real["pbc"])
        result["pbc_groups"] = pbc_group_scores(class_report(truth, called, tolerate=False))
        found["pbc_group_macro_f1"] = outcomes.calls(truth, called)
        held_back = held_back_codes(clf)
        if held_back:  # a false alarm of a class no real image taught (a blast among healthy cells)
            real_class = np.isin(real["pbc"].codes, held_back, invert=True)
            phantom_called = np.isin(predictions.label, held_back)
            found["pbc_not_phantom_only"] = outcomes.hits(~phantom_called[real_class])
            result["pbc_phantom_only_calls"] = _most_called(predictions.label[real_class & phantom_called], 5)
            guard_probs = predictions.probs[real_class]
    proxy = score_synthetic_only(clf, {k: v for k, v in real.items() if k in ("pbc", "segpc")})
    if proxy:
        per_code = outcomes.hits_by_stratum({code: v.pop("hit") for code, v in proxy.items()})
        found["synthetic_only_mean_recall"] = found["synthetic_only_min_recall"] = per_code
        probs = {code: v.pop("probs") for code, v in proxy.items()}
        result["synthetic_only"] = proxy
        result["synthetic_only_kept_real"] = int(clf.config["training"].get("keep_real", 0))
        if guard_probs is not None:
            result["synthetic_only_at_false_calls"] = recall_at_false_calls(probs, guard_probs, clf.codes, held_back)
    result["outcomes"] = found
    result["figures"] = transfer_figures(result)
    result["intervals"] = {key: outcomes.interval(o, FIGURE_STATS[key]) for key, o in found.items()}
    return result


def transfer_figures(result: dict[str, Any]) -> dict[str, float]:
    """The figures :data:`TRANSFER_TARGETS` names, from the per-cell outcomes of an :func:`evaluate_transfer`
    result."""
    return {key: FIGURE_STATS[key](o) for key, o in result["outcomes"].items()}


def compare_transfer(before: dict[str, Any], after: dict[str, Any]) -> dict[str, outcomes.Change]:
    """Each figure both results hold on the same cells: before, after, and the paired interval of the change
    (figures on different cells, such as two proxies of different classes, are left out)."""
    changes = {}
    for key, stat in FIGURE_STATS.items():
        b, a = before["outcomes"].get(key), after["outcomes"].get(key)
        if b is not None and a is not None and outcomes.same_cells(b, a):
            changes[key] = outcomes.paired_change(b, a, stat)
    return changes


def change_from(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """:func:`compare_transfer` as a record for ``after["change_from"]``: :func:`format_transfer` prints it and
    ``transfer.json`` keeps it."""
    return {"model": before["model"], "sha256": before["sha256"],
            "figures": {k: {**asdict(c), "verdict": c.verdict} for k, c in compare_transfer(before, after).items()}}


def format_comparison(record: dict[str, Any]) -> list[str]:
    """A :func:`change_from` record, one line per figure."""
    head = (f"change from {record['model']} (sha256 {record['sha256'][:12]}…) on the same cells, "
            f"with the {outcomes.CONFIDENCE:.0%} paired bootstrap interval of the change:")
    lines = [head]
    for key, c in record["figures"].items():
        lines.append(f"  {TRANSFER_TARGETS[key].label:<52} {c['before']:.3f} → {c['after']:.3f}  "
                     f"{c['after'] - c['before']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]  {c['verdict']}")
    return lines


def format_transfer(result: dict[str, Any]) -> list[str]:
    """Per set: accuracy, per-group recall and what each group is mostly called; then figures vs targets."""
    look = result.get("second_look_below", 0)
    lines = [f"transfer of {result['model']} (sha256 {result['sha256'][:12]}…), "
             + (f"second look below p {look:g}" if look > 0 else "no second look")]
    for name, s in result.get("unseen_lab", {}).items():
        lines.append(f"  {name}: accuracy {s['accuracy']:.3f} (n={s['n']}){_LABEL_NOTES.get(name, '')}  recall "
                     + " ".join(f"{g}={r:.2f}(n={s['n_by_group'][g]})" for g, r in s["recall"].items()))
        lines += [f"    {g} called {_calls_text(top)}" for g, top in s["called"].items()]
        if "unlike_stain" in s:
            lines.append(f"    stain check: {s['unlike_stain']:.1%} of these cells do not look Romanowsky-stained"
                         + (" (a slide of them gets a warning, not a differential)"
                            if s["unlike_stain"] > UNLIKE_SHARE else ""))
        if "audit" in s:
            audit = label_audits()[name]
            lines.append(f"    {s['audit']['set_aside']} cells labelled {audit['label']} whose image shows no "
                         f"{audit['shows']} (label audit): called {_calls_text(s['audit']['called'])}")
    segpc = result.get("segpc", {})
    if "others_called_plm" in segpc:
        lines.append(f"  SegPC held-out non-plasma marrow cells called PLM: {segpc['others_called_plm']:.3f} "
                     f"(n={segpc['others_n']}; called " + _calls_text(segpc["others_called"])
                     + ")")
    if "plm_recall" in segpc:
        lines.append(f"  SegPC held-out plasma cells called PLM: {segpc['plm_recall']:.3f} (n={segpc['plm_n']})")
    kept = result.get("synthetic_only_kept_real")
    for code, v in result.get("synthetic_only", {}).items():
        lines.append(f"  synthetic-only {code}" + (f" ({kept} real training images kept)" if kept else "")
                     + f": recall on real {v['recall']:.3f} (n={v['n']}; called "
                     + _calls_text(v["called"]) + ")")
    if "pbc_phantom_only_calls" in result:
        lines.append("  held-out PBC cells of classes with real images called a phantom-only class: "
                     + (_calls_text(result["pbc_phantom_only_calls"]) or "none"))
    for row in result.get("synthetic_only_at_false_calls", []):
        lines.append(f"  synthetic-only proxy with at most {row['rate']:.0%} of those PBC cells called phantom-only "
                     f"(bias {row['bias']:+.2f} on phantom-only classes, {row['false_calls']:.1%}): mean recall "
                     f"{row['mean_recall']:.3f} (" + ", ".join(f"{c} {r:.3f}" for c, r in row["recall"].items()) + ")")
    lines.append(f"targets ({outcomes.CONFIDENCE:.0%} interval over these cells):")
    for key, t in TRANSFER_TARGETS.items():
        if key in result["figures"]:
            v, (low, high) = result["figures"][key], result["intervals"][key]
            lines.append(f"  {t.label:<52} {v:.3f} [{low:.3f}, {high:.3f}]  "
                         + (f"({t.note})" if t.at_least is None else
                            f"(target ≥ {t.at_least:.2f})  " + ("met" if v >= t.at_least else "NOT MET")))
        elif key.startswith("synthetic_only"):
            lines.append(f"  {t.label:<52} not measured: needs a model trained with --synthetic-only")
    if "change_from" in result:
        lines += format_comparison(result["change_from"])
    return lines


def write_transfer(result: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "transfer.json"
    path.write_text(json.dumps(result, indent=1), "utf-8")
    return path
