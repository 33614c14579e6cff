"""Score the cell classifier: per-class precision/recall/F1 (strict and with Matek's tolerated confusions),
PBC 8-group macro-F1, dysplasia and granule-grade agreement, speed, and the confusion matrix.

``bmpipe evaluate classifier --data DIR [--mpp M]`` scores a folder of labelled single-cell images: class
folders named by Matek code (ImageFolder, or the public Matek layout with nested sub-folders) or by PBC group.
Without ``--data`` it scores the held-out real PBC split, SegPC plasma cells and phantom cells the training
never saw, and prints each figure beside the project's target. The training run calls the same functions,
so a model card and this command always agree.
"""

from __future__ import annotations

import argparse
import csv
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bmpipe.cli.options import (
    Parser,
    add_batch_size,
    add_device,
    add_models,
    add_mpp,
    add_out,
    add_threads,
    exit_status,
)
from bmpipe.datasets import cell_data
from bmpipe.datasets.catalog import DATASETS, data_root
from bmpipe.datasets.cell_data import CropSet
from bmpipe.errors import InputError
from bmpipe.nn.cell_classifier import (
    GRANULE_CODES,
    SECOND_LOOK_BELOW,
    UNIDENTIFIED_CODE,
    CellClassifier,
    CellPredictions,
    granule_grade,
)
from bmpipe.nn.weights import default_models_dir
from bmpipe.resolution import Mpp
from bmpipe.stages.calibrate import check_cell_images_mpp
from bmpipe.taxonomy import load_taxonomy

log = logging.getLogger(__name__)

#: Matek code → PBC group folder, exactly as the reference scorer (shared/tools/eval_classify.py) maps them;
#: any other predicted code counts as wrong for a PBC image.
PBC_GROUP_OF_CODE = {
    "BAS": "basophil", "EOS": "eosinophil", "ABE": "eosinophil", "EBO": "erythroblast", "PEB": "erythroblast",
    "PMO": "ig", "MYB": "ig", "MMZ": "ig", "NGB": "neutrophil", "NGS": "neutrophil", "LYT": "lymphocyte",
    "LYI": "lymphocyte", "MON": "monocyte", "PLT": "platelet",
}
PBC_GROUPS = tuple(sorted(set(PBC_GROUP_OF_CODE.values())))


@dataclass(frozen=True)
class Target:
    """A benchmark figure the issue asks for (not a clinical threshold): the value must reach ``at_least``
    (None: a figure with no target of its own, watched for a fall when two models are compared; ``note``
    says why it is printed)."""

    label: str
    at_least: float | None
    unit: str = ""
    note: str = "guard, no target"


#: Issue 4's targets, checked by ``bmpipe evaluate classifier`` without ``--data``.
TARGETS = {
    "pbc_group_macro_f1": Target("held-out PBC, 8-group macro-F1", 0.93),
    "phantom_macro_f1": Target("phantom cells, macro-F1 over all classes", 0.95),
    "grade_within_1": Target("phantom neutrophils, granule grade within ±1", 0.95),
    "cpu_crops_per_s": Target("CPU classify throughput", 200.0, " crops/s"),
}


# --- scores -----------------------------------------------------------------------------------------------


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def _order(labels: set[str]) -> list[str]:
    codes = load_taxonomy().codes
    return sorted(labels, key=lambda c: (codes.index(c) if c in codes else len(codes), c))


def class_report(truth: list[str], pred: list[str], tolerate: bool = True) -> dict[str, Any]:
    """Per-class precision/recall/F1, strict and tolerant (Matek 2021's tolerated confusions, from the taxonomy).

    ``tolerate=False`` for labels that are not taxonomy codes (PBC groups): tolerant then equals strict.
    """
    taxonomy = load_taxonomy()
    ok = taxonomy.is_tolerated if tolerate else (lambda t, p: t == p)
    t_arr, p_arr = np.asarray(truth, object), np.asarray(pred, object)
    tol = np.array([ok(t, p) for t, p in zip(truth, pred)], bool)
    rows = {}
    for c in _order(set(truth)):
        is_t, is_p = t_arr == c, p_arr == c
        n = int(is_t.sum())
        tol_tp = int((is_t & tol).sum())
        rows[c] = {
            "n": n,
            "strict": prf(int((is_t & is_p).sum()), int((~is_t & is_p).sum()), int((is_t & ~is_p).sum())),
            "tolerant": prf(tol_tp, int((~is_t & is_p & ~tol).sum()), n - tol_tp),
        }
    macro = {k: float(np.mean([r[k][2] for r in rows.values()])) if rows else 0.0 for k in ("strict", "tolerant")}
    accuracy = float(np.mean(t_arr == p_arr)) if truth else 0.0
    return {"rows": rows, "macro_f1": macro, "accuracy": accuracy, "n": len(truth)}


def format_class_report(result: dict[str, Any], title: str) -> list[str]:
    lines = [
        (f"{title}: n={result['n']}  accuracy {result['accuracy']:.3f}  macro-F1 strict "
         f"{result['macro_f1']['strict']:.3f} tolerant {result['macro_f1']['tolerant']:.3f}"),
        "  class            n   P      R      F1   | tolerant P   R      F1",
    ]
    for c, r in result["rows"].items():
        lines.append(f"  {c:<12} {r['n']:5d}  {r['strict'][0]:.3f}  {r['strict'][1]:.3f}  {r['strict'][2]:.3f} | "
                     f"{r['tolerant'][0]:.3f}  {r['tolerant'][1]:.3f}  {r['tolerant'][2]:.3f}")
    return lines


def pbc_group(code: str) -> str:
    """The PBC group a predicted code is scored as; a code of no group keeps a label of its own, so it counts
    as wrong for every group (as ``eval_classify.py`` counts it)."""
    return PBC_GROUP_OF_CODE.get(code, "other:" + code)


def pbc_group_scores(report: dict[str, Any]) -> dict[str, Any]:
    """8-group F1 exactly as ``eval_classify.py`` scores it: the strict columns of the group-level
    :func:`class_report` (folder groups against :func:`pbc_group` of each prediction, ``tolerate=False``),
    so the group table and the group score printed beside it come from one count."""
    return {
        "f1": {g: r["strict"][2] for g, r in report["rows"].items()},
        "macro_f1": report["macro_f1"]["strict"],
        "accuracy": report["accuracy"],
        "n": report["n"],
    }


def pbc_group_calls(clf: CellClassifier, pbc: CropSet) -> tuple[list[str], list[str], CellPredictions]:
    """Each PBC cell's group (its folder), the group ``clf`` calls it, and its predictions (without the
    16-rotation grades)."""
    predictions = clf.predict(pbc.centre_crops(), grade_neutrophils=False)
    return [Path(p).parent.name for p in pbc.paths], [pbc_group(str(p)) for p in predictions.label], predictions


def evaluate_pbc_groups(clf: CellClassifier, pbc: CropSet) -> dict[str, Any]:
    """:func:`pbc_group_scores` of ``clf`` on PBC cells (folder = group)."""
    truth, called, _ = pbc_group_calls(clf, pbc)
    return pbc_group_scores(class_report(truth, called, tolerate=False))


def format_group_scores(g: dict[str, Any]) -> str:
    return (f"PBC 8-group macro-F1 {g['macro_f1']:.3f} accuracy {g['accuracy']:.3f} (n={g['n']})  "
            + " ".join(f"{k}={v:.2f}" for k, v in g["f1"].items()))


def grade_agreement(grade: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Share of granule grades within ±1 of the truth (Mori 2020's measure) and equal to it; the held-out
    evaluation and the dysplasia fine-tuning report these two the same way."""
    return {
        "grade_within_1": float(np.mean(np.abs(grade - truth) <= 1)),
        "grade_exact": float(np.mean(grade == truth)),
    }


def dysplasia_metrics(clf: CellClassifier, data: CropSet, pred) -> dict[str, Any]:
    """Dysplastic accuracy where labelled, and granule grade (16-rotation maximum) on true NGS/NGB/MMZ cells."""
    out: dict[str, Any] = {}
    d = data.dysplastic >= 0
    if d.any():
        called = pred.dysplasia_score[d] > 0.5
        truth = data.dysplastic[d] == 1
        out["dysplastic_accuracy"] = float(np.mean(called == truth))
        out["dysplastic_n"] = int(d.sum())
        out["dysplastic_positive_n"] = int(truth.sum())
        if truth.any():
            out["dysplastic_sensitivity"] = float(np.mean(called[truth]))
        if (~truth).any():
            out["dysplastic_false_positive_rate"] = float(np.mean(called[~truth]))
    # Codes that have dysplastic examples here: accuracy over all scored codes is inflated by the many whose
    # every example is normal.
    variant_codes = np.unique(data.codes[data.dysplastic == 1])
    v = d & np.isin(data.codes, variant_codes)
    if v.any() and len(variant_codes):
        out["dysplastic_accuracy_codes_with_dysplasia"] = float(
            np.mean((pred.dysplasia_score[v] > 0.5) == (data.dysplastic[v] == 1))
        )
        out["codes_with_dysplasia"] = ", ".join(variant_codes)
    g = (data.grades >= 0) & np.isin(data.codes, GRANULE_CODES)
    if g.any():
        grade = granule_grade(clf.raw_grade(data.centre_crops()[g]))
        truth = data.grades[g].astype(int)
        out.update(grade_agreement(grade, truth))
        out["grade_n"] = int(g.sum())
        out["grade_confusion"] = [[int(np.sum((truth == t) & (grade == p))) for p in range(4)] for t in range(4)]
    return out


def evaluate(clf: CellClassifier, sets: dict[str, CropSet], work: Path) -> dict[str, Any]:
    """Score ``clf`` on every held-out set: the numbers for the card and for :func:`format_metrics`."""
    metrics: dict[str, Any] = {}
    for name, data in sets.items():
        if not (data.codes != "").any():
            continue  # nothing labelled by class (cells known only by what they are not: see transfer)
        pred = clf.predict(data.centre_crops())
        labels = [str(p) for p in pred.label]
        coded = data.codes != ""
        classes = class_report([str(c) for c in data.codes[coded]], [labels[i] for i in np.flatnonzero(coded)])
        result: dict[str, Any] = {
            "classes": classes,
            "unidentified_rate": float(np.mean(pred.label == UNIDENTIFIED_CODE)),
            "truth": [str(c) for c in data.codes],
            "pred": labels,
        }
        result.update(dysplasia_metrics(clf, data, pred))
        if name == "pbc":
            groups = [Path(p).parent.name for p in data.paths]
            by_group = class_report(groups, [pbc_group(p) for p in labels], tolerate=False)
            result["groups"] = pbc_group_scores(by_group)
            result["group_truth"] = groups
            result["reference_scorer"] = run_reference_scorer([str(p) for p in data.paths], labels, work)
        metrics[name] = result
    return metrics


#: Dysplasia figures printed after a set's class table, when the set has the labels for them.
_DYSPLASIA_KEYS = ("dysplastic_accuracy", "dysplastic_sensitivity", "dysplastic_false_positive_rate",
                   "grade_within_1", "grade_exact")


def format_metrics(metrics: dict[str, Any]) -> list[str]:
    """Every held-out set's class table, PBC group scores, reference-scorer line and dysplasia figures."""
    lines = []
    for name, m in metrics.items():
        if name == "speed":
            continue
        lines += format_class_report(m["classes"], f"held-out {name}")
        if "groups" in m:
            lines.append(format_group_scores(m["groups"]))
            lines.append("reference scorer eval_classify.py: " + " | ".join(m["reference_scorer"].splitlines()))
        shown = [f"{k.replace('_', ' ')} {m[k]:.3f}" for k in _DYSPLASIA_KEYS if k in m]
        if shown:
            lines.append("  " + ", ".join(shown))
    return lines


def reference_scorer_path() -> Path:
    return data_root().parent / "tools" / "eval_classify.py"


def run_reference_scorer(paths: list[str], labels: list[str], work: Path) -> str:
    """Write ``image,label`` for PBC-group images and run the project's reference scorer on it."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / "pbc_predictions.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "label"])
        writer.writerows(zip(paths, labels))
    script = reference_scorer_path()
    if not script.exists():
        return f"(reference scorer {script} not found; predictions in {path})"
    out = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def measure_speed(clf: CellClassifier, mixed: np.ndarray, neutrophils: np.ndarray, repeats: int = 3) -> dict[str, float]:
    """Crops per second of predict(): without the 16-rotation grade pass, on a real mix, on neutrophils only."""

    def rate(fn, crops: np.ndarray) -> float:
        fn(crops[:64])
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn(crops)
        return repeats * len(crops) / (time.perf_counter() - t0)

    out = {
        "classify_only": rate(lambda c: clf.predict(c, grade_neutrophils=False), mixed),
        "mixed_with_grades": rate(clf.predict, mixed),
        "neutrophils_with_grades": rate(clf.predict, neutrophils),
        "threads": torch.get_num_threads(),
        "device": str(clf.device),
        "n_mixed": len(mixed),
        "neutrophil_share_of_mixed": float(np.mean(np.isin(clf.predict(mixed).label, GRANULE_CODES))),
    }
    # A marrow differential is ~30 % metamyelocytes, bands and segmented neutrophils (each graded 16 times).
    per_crop = 1 / out["classify_only"]
    out["marrow_mix_30pct_estimate"] = 1 / (per_crop + 0.3 * (1 / out["neutrophils_with_grades"] - per_crop))
    return out


def speed_on_pbc(clf: CellClassifier, pbc: CropSet) -> dict[str, float]:
    crops = pbc.centre_crops()
    mixed = np.random.default_rng(0).permutation(len(crops))[:512]
    return measure_speed(clf, crops[mixed], crops[np.isin(pbc.codes, GRANULE_CODES)][:256])


# --- confusion matrix -------------------------------------------------------------------------------------


def confusion(truth: list[str], pred: list[str]) -> tuple[list[str], list[str], np.ndarray]:
    """(truth labels, predicted labels, counts[truth, pred])."""
    rows = _order(set(truth))
    cols = _order(set(pred) | set(rows))
    m = np.zeros((len(rows), len(cols)), np.int64)
    ri, ci = {c: i for i, c in enumerate(rows)}, {c: i for i, c in enumerate(cols)}
    for t, p in zip(truth, pred):
        m[ri[t], ci[p]] += 1
    return rows, cols, m


def write_confusion(truth: list[str], pred: list[str], out: Path, title: str) -> tuple[Path, Path]:
    """``confusion.csv`` (counts, truth by row) and ``confusion.png`` (row-normalised, counts printed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols, m = confusion(truth, pred)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out / "confusion.csv", out / "confusion.png"
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["truth \\ predicted", *cols])
        writer.writerows([r, *m[i].tolist()] for i, r in enumerate(rows))
    frac = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.42 * len(cols), 1.2 + 0.42 * len(rows)), dpi=110)
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i, j in zip(*np.nonzero(m)):
        ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=7,
                color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return csv_path, png_path


# --- the command ------------------------------------------------------------------------------------------


def _folder_truth(root: Path) -> tuple[list[Path], list[str], bool]:
    """Images and their labels from class folders: Matek codes, or PBC group names (``True``)."""
    paths, labels = cell_data.labelled_images(root, PBC_GROUPS)
    groups = {lab in PBC_GROUPS for lab in labels}
    if len(groups) > 1:
        raise InputError(root, "mixes PBC group folders with taxonomy-code folders; score them apart")
    return paths, labels, groups.pop()


def evaluate_folder(clf: CellClassifier, root: Path, mpp: Mpp | None, out: Path, batch_size: int) -> int:
    """Score ``clf`` on labelled class folders; prints the tables, writes the confusion matrix and CSVs."""
    paths, labels, groups = _folder_truth(root)
    warning = check_cell_images_mpp(root, paths, mpp) if mpp is not None else ""
    crops, kept = clf.crops_from_files(paths, mpp)
    if not kept:
        raise InputError(root, "none of its images could be used")
    failed = len(paths) - len(kept)
    pred = [str(p) for p in clf.predict(crops, batch_size=batch_size, grade_neutrophils=False).label]
    paths, labels = [paths[i] for i in kept], [labels[i] for i in kept]
    lines = []
    if groups:
        # PBC file names also name the finer class: score those codes where the prefix resolves one.
        fine = [cell_data.PBC_PREFIXES.get(p.name.split("_")[0].upper(), "") for p in paths]
        known = [i for i, c in enumerate(fine) if c]
        if known:
            lines += format_class_report(class_report([fine[i] for i in known], [pred[i] for i in known]),
                                         f"{root} (codes from PBC file names)")
        pred_groups = [pbc_group(p) for p in pred]
        by_group = class_report(labels, pred_groups, tolerate=False)
        lines += format_class_report(by_group, f"{root} (PBC groups)")
        lines.append(format_group_scores(pbc_group_scores(by_group)))
        lines.append("reference scorer: " + " | ".join(
            run_reference_scorer([str(p) for p in paths], pred, out).splitlines()))
        truth_for_matrix, pred_for_matrix = labels, pred_groups
    else:
        lines += format_class_report(class_report(labels, pred), str(root))
        truth_for_matrix, pred_for_matrix = labels, pred
    csv_path, png_path = write_confusion(truth_for_matrix, pred_for_matrix, out,
                                         f"{root.name}: classifier {clf.record.version}")
    lines.append(f"confusion matrix: {csv_path} {png_path}")
    if failed:
        lines.append(f"{failed} image(s) could not be used (see the errors above)")
    if warning:
        lines.append(f"WARNING: {warning}")
    print("\n".join(lines))
    return exit_status(len(kept), failed)


def _verdict(key: str, value: float) -> str:
    t = TARGETS[key]
    fmt = f"{value:.0f}" if t.unit else f"{value:.3f}"
    target = f"{t.at_least:.0f}" if t.unit else f"{t.at_least:.2f}"
    return f"  {t.label:<48} {fmt}{t.unit}  (target ≥ {target}{t.unit})  {'met' if value >= t.at_least else 'NOT MET'}"


def evaluate_held_out(clf: CellClassifier, models_dir: Path, out: Path, phantom_per_code: int) -> int:
    """The shipped figures, re-measured: held-out real PBC and SegPC, phantom cells, CPU speed."""
    sets: dict[str, CropSet] = {}
    for name, loader in (("pbc", cell_data.load_pbc), ("segpc", cell_data.load_segpc)):
        if DATASETS[name].path.is_dir():
            sets[name] = loader()[1]
        else:
            log.warning("%s not found at %s; not scored", name, DATASETS[name].path)
    sets["phantom"] = cell_data.load_phantom(phantom_per_code, cell_data.PHANTOM_HELD_OUT_SEED)
    metrics = evaluate(clf, sets, out)
    lines = format_metrics(metrics)
    ph = metrics["phantom"]
    write_confusion(ph["truth"], ph["pred"], out / "phantom", f"phantom: classifier {clf.record.version}")
    figures = {"phantom_macro_f1": ph["classes"]["macro_f1"]["strict"]}
    if "grade_within_1" in ph:
        figures["grade_within_1"] = ph["grade_within_1"]
    if "pbc" in metrics:
        pbc = metrics["pbc"]
        figures["pbc_group_macro_f1"] = pbc["groups"]["macro_f1"]
        write_confusion(pbc["group_truth"], [pbc_group(p) for p in pbc["pred"]],
                        out / "pbc", f"held-out PBC groups: classifier {clf.record.version}")
        cpu = clf if clf.device.type == "cpu" else CellClassifier.load(models_dir, device="cpu")
        speed = speed_on_pbc(cpu, sets["pbc"])
        figures["cpu_crops_per_s"] = speed["classify_only"]
        lines.append(f"CPU ({speed['threads']} threads): classify only {speed['classify_only']:.0f} crops/s, "
                     f"with 16-rotation grades on the real mix {speed['mixed_with_grades']:.0f} crops/s")
        if clf.device.type == "cuda":
            gpu = speed_on_pbc(clf, sets["pbc"])
            lines.append(f"GPU ({torch.cuda.get_device_name()}): classify only {gpu['classify_only']:.0f} crops/s, "
                         f"with grades {gpu['mixed_with_grades']:.0f} crops/s")
    lines.append(f"targets (classifier {clf.record.version}, sha256 {clf.record.sha256[:12]}…):")
    lines += [_verdict(k, figures[k]) for k in TARGETS if k in figures]
    lines.append(f"confusion matrices under {out}")
    print("\n".join(lines))
    return 0


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="bmpipe evaluate classifier", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None,
                   help="class folders (Matek codes or PBC groups; ImageFolder or Matek's nested layout)")
    add_mpp(p, "µm per pixel of the --data images (required unless they are TIFFs that carry it)")
    add_models(p)
    add_out(p, "where confusion.png/.csv and prediction CSVs go", Path("classifier-evaluation"))
    add_batch_size(p, 256)
    add_threads(p, 2)
    add_device(p)
    p.add_argument("--phantom-per-code", type=int, default=60, help="held-out phantom cells per class")
    p.add_argument("--second-look", type=float, default=SECOND_LOOK_BELOW, metavar="P",
                   help="classify cells whose top probability is under P on all 8 flips and quarter turns of "
                        "their crop, as a run does (0 turns it off)")
    p.add_argument("--transfer", action="store_true",
                   help="score real cells from sources never trained on (BCCD, wbc_seg, SegPC non-plasma "
                        "cells) and the synthetic-only proxy; writes transfer.json")
    p.add_argument("--against", type=Path, default=None, metavar="DIR",
                   help="with --transfer: also score the classifier in models folder DIR on the same cells, and "
                        "print each figure's change with its 95%% paired interval (default: none)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.against is not None and not args.transfer:
        p.error("--against compares transfer figures: give --transfer with it")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    torch.set_num_threads(args.threads)
    models_dir = args.models or default_models_dir()
    clf = CellClassifier.load(models_dir, device=args.device, second_look_below=args.second_look)
    if args.data is not None:
        return evaluate_folder(clf, args.data, args.mpp, args.out, args.batch_size)
    if args.transfer:
        return _transfer(clf, args)
    return evaluate_held_out(clf, models_dir, args.out, args.phantom_per_code)


def _transfer(clf: CellClassifier, args: argparse.Namespace) -> int:
    from bmpipe.evaluation import transfer

    sets = transfer.load_transfer_sets()
    result = transfer.evaluate_transfer(clf, sets)
    if args.against is not None:
        base = CellClassifier.load(args.against, device=args.device, second_look_below=args.second_look)
        result["change_from"] = transfer.change_from(transfer.evaluate_transfer(base, sets), result)
    print("\n".join([*transfer.format_transfer(result), f"written {transfer.write_transfer(result, args.out)}"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
