"""The doctor-in-the-loop (Mori 2020): a review file a hematologist edits, and its import.

Each slide's output folder gets ``review.csv`` (cell id, crop path, predicted class, score and an empty
``corrected_class`` column) with the crops it names (``bmpipe.report.review_files``).

``bmpipe review import`` reads the edited file back: the differential is recomputed from ``cells.parquet``
with the corrected labels, the folder's ``differential.json``, report and GeoJSON are rewritten (atomically)
and marked reviewed, and every label the hematologist gave is added to the run folder's retraining list.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bmpipe import __version__
from bmpipe.errors import InputError
from bmpipe.records import Cells
from bmpipe.report.cell_files import CELLS_GEOJSON, CELLS_TABLE
from bmpipe.report.cohort import COHORT_CSV, write_cohort_summary
from bmpipe.report.content import GalleryItem, ReportContent, SlideSummary
from bmpipe.report.geojson import write_geojson
from bmpipe.report.outputs import (
    DENSITY_FILE,
    GALLERY_DIR,
    GALLERY_PER_CLASS,
    OVERVIEW_FILE,
    utc_stamp,
    write_reports,
)
from bmpipe.report.review_files import REVIEW_COLUMNS
from bmpipe.report.spreadsheet import SafeWriter, read_cell
from bmpipe.report.staging import replacing, write_text_atomic
from bmpipe.stages.aggregate import Differential, differential
from bmpipe.taxonomy import load_taxonomy

log = logging.getLogger(__name__)

CORRECTIONS = "corrections.csv"
CORRECTIONS_DIR = "corrections"


@dataclass(frozen=True)
class Correction:
    cell_id: int
    label: str
    line: int  # the review file's line, for messages
    crop_path: str  # as the row names it; the crop itself is found by :func:`crop_file`


#: Delimiters a review file may come back with: spreadsheets in many locales save CSV with semicolons.
_DELIMITERS = (",", ";", "\t")


def _delimiter(header: str) -> str:
    """The delimiter of a review file, from its header line (the one that splits it into most columns)."""
    return max(_DELIMITERS, key=header.count) if any(d in header for d in _DELIMITERS) else ","


@dataclass(frozen=True)
class Review:
    """What a review file says: the cells it lists, the labels given, and when ``review.html`` saved it
    (its ``verified_at`` column, latest; "" for a file edited by hand)."""

    reviewed: list[int]
    corrections: list[Correction]
    verified_at: str = ""


def read_review(path: Path, n_cells: int) -> Review:
    """The review in an edited review file; a bad line is an ``InputError`` naming it."""
    tax = load_taxonomy()
    try:
        text = path.read_text(encoding="utf-8-sig")  # spreadsheets save UTF-8 with a BOM
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=_delimiter(text.partition("\n")[0]))
        missing = {"cell_id", "corrected_class"} - set(reader.fieldnames or ())
        if missing:
            raise InputError(path, f"has no column {', '.join(sorted(missing))} (expected {', '.join(REVIEW_COLUMNS)}, "
                                   "separated by commas or semicolons)")
        rows = [(reader.line_num, {k: read_cell(v or "") for k, v in row.items() if k}) for row in reader]
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(path, f"is not a UTF-8 CSV file ({exc})") from None
    given: dict[int, Correction] = {}
    reviewed: list[int] = []
    verified = max((str(row.get("verified_at") or "").strip() for _, row in rows), default="")
    for line, row in rows:
        try:
            cell = int(str(row["cell_id"]).strip())
        except ValueError:
            raise InputError(path, f"line {line}: cell_id {row['cell_id']!r} is not a whole number") from None
        if not 0 <= cell < n_cells:
            raise InputError(path, f"line {line}: cell_id {cell} is not a cell of this slide (0-{n_cells - 1})")
        reviewed.append(cell)
        label = (row.get("corrected_class") or "").strip().upper()
        if not label:
            continue
        if label not in tax.classes:
            raise InputError(
                path, f"line {line}: unknown class code {label!r} in corrected_class (known: {', '.join(tax.codes)})"
            )
        previous = given.get(cell)
        if previous is not None and previous.label != label:
            raise InputError(path, f"line {line}: cell {cell} is corrected twice ({previous.label}, {label})")
        given[cell] = Correction(cell, label, line, (row.get("crop_path") or "").strip())
    return Review(reviewed, list(given.values()), verified)


def crop_path_of(cell_id: int, predicted: str) -> str:
    """Where the analysis wrote a cell's review crop, relative to its slide folder (``review_files``)."""
    return f"crops/{predicted}/{cell_id}.jpg"


def check_crop_paths(review: Path, corrections: list[Correction], predicted: pd.Series) -> None:
    """Refuse a review row that names a crop other than its own cell's: crops are found from the slide folder
    and the cell id alone, so an edited file cannot pull other files into the retraining set or a report."""
    for c in corrections:
        own = crop_path_of(c.cell_id, str(predicted.iat[c.cell_id]))
        if c.crop_path and c.crop_path != own:
            raise InputError(review, f"line {c.line}: crop_path {c.crop_path!r} is not cell {c.cell_id}'s crop "
                                     f"({own}); a review row may name only its own cell's crop")


def crop_file(folder: Path, cell_id: int, predicted: str) -> Path | None:
    """A cell's review crop in ``folder``: a JPEG file of the folder itself (not a link out of it), else None."""
    path = folder / crop_path_of(cell_id, predicted)
    try:
        if path.is_symlink() or not path.is_file():
            return None
        with open(path, "rb") as f:
            return path if f.read(3) == b"\xff\xd8\xff" else None
    except OSError:
        return None


def apply_corrections(frame: pd.DataFrame, corrections: list[Correction]) -> Cells:
    """Cells of ``cells.parquet`` with each corrected label in place of the prediction."""
    cells = Cells.from_frame(frame)
    label = cells.label.astype(object).copy()
    for c in corrections:
        label[c.cell_id] = c.label
    return cells.with_labels(label, cells.label_score)


def update_corrections_list(run_dir: Path, folder: Path, slide: str, corrections: list[Correction],
                            predicted: pd.Series) -> Path:
    """Add the slide's corrected crops to ``run_dir/corrections.csv`` (path,label) and to the class-code
    folders ``run_dir/corrections/<CODE>/``, replacing what an earlier import of the same slide put there."""
    target = run_dir / CORRECTIONS_DIR
    list_path = run_dir / CORRECTIONS
    kept: list[tuple[str, str]] = []
    if list_path.exists():
        with open(list_path, newline="", encoding="utf-8") as f:
            kept = [(r["path"], r["label"]) for r in csv.DictReader(f) if not _is_of_slide(r["path"], slide)]
    for old in target.glob(f"*/{slide}--*.jpg"):
        old.unlink()
    added, no_crop = [], []
    for c in corrections:
        crop = crop_file(folder, c.cell_id, str(predicted.iat[c.cell_id]))
        if crop is None:
            no_crop.append(c.cell_id)
            continue
        dest = target / c.label / f"{slide}--{c.cell_id}.jpg"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(crop, dest)
        added.append((str(dest.relative_to(run_dir)), c.label))
    if no_crop:
        log.warning("%s: %d corrected cell(s) have no crop (e.g. cell %d): their labels count in the differential "
                    "but cannot be added to the retraining list", folder, len(no_crop), no_crop[0])
    buffer = io.StringIO()
    writer = SafeWriter(buffer)
    writer.writerow(["path", "label"])
    writer.writerows(kept + added)
    write_text_atomic(list_path, buffer.getvalue())
    return list_path


def _is_of_slide(path: str, slide: str) -> bool:
    return Path(path).name.startswith(f"{slide}--")


def saved_gallery(folder: Path) -> dict[str, list[GalleryItem]]:
    """The gallery as written at analysis time, for a review that offered no crops to relabel."""
    gallery: dict[str, list[GalleryItem]] = {}
    for code in load_taxonomy().codes:
        n = 0
        while crops := sorted(folder.glob(f"{code}-{n}.[jp][pn]g")):
            cams = sorted(folder.glob(f"{code}-{n}.cam.*"))
            gallery.setdefault(code, []).append(
                GalleryItem(crops[0].read_bytes(), cams[0].read_bytes() if cams else None)
            )
            n += 1
    return gallery


def reviewed_gallery(folder: Path, cells: Cells, predicted: pd.Series, reviewed: list[int]) -> dict[str, list[GalleryItem]]:
    """After review: the ``reviewed`` cells' crops under their confirmed classes, the relabelled ones first;
    without review crops, the gallery of the analysis."""
    gallery: dict[str, list[tuple[bool, GalleryItem]]] = {}  # (kept its predicted class, crop)
    for cell in dict.fromkeys(reviewed):
        path = crop_file(folder, cell, str(predicted.iat[cell]))
        if path is None:
            continue
        label = str(cells.label[cell])
        kept = label == predicted.iat[cell]
        caption = f"cell {cell}" + ("" if kept else f", predicted {predicted.iat[cell]}")
        gallery.setdefault(label, []).append((kept, GalleryItem(path.read_bytes(), None, caption)))
    if not gallery:
        return saved_gallery(folder / GALLERY_DIR)
    order = {code: i for i, code in enumerate(load_taxonomy().codes)}
    return {
        code: [item for _, item in sorted(items, key=lambda kept_item: kept_item[0])][:GALLERY_PER_CLASS]
        for code, items in sorted(gallery.items(), key=lambda kv: order[kv[0]])
    }


def rewrite_reviewed(
    folder: Path, data: dict[str, Any], diff: Differential, cells: Cells, frame: pd.DataFrame,
    corrected: dict[int, str], note: str, reviewed: list[int],
) -> Path:
    """Rewrite ``folder`` (atomically) with ``diff``, the differential of the reviewed ``cells``; ``data`` is
    the folder's ``differential.json`` as the analysis wrote it, for what a review does not change.

    ``cells.parquet`` keeps the model's ``label`` and gains ``corrected_label`` ("" where not corrected), so
    that importing a review again starts from the predictions."""
    summary = data.get("slide_summary") or {}
    summary["dimensions"] = tuple(summary.get("dimensions", (0, 0)))
    content = ReportContent(
        slide=SlideSummary(**summary),
        generated=data.get("generated", ""),
        software=data.get("software", f"bmpipe {__version__}"),
        models=data.get("models", []),
        regions_mode=data.get("regions", ""),
        diff=diff,
        tiles=data.get("tiles", {"tiles_read": data.get("tiles_read", 0)}),
        overview_jpg=(folder / OVERVIEW_FILE).read_bytes() if (folder / OVERVIEW_FILE).is_file() else None,
        density_png=(folder / DENSITY_FILE).read_bytes() if (folder / DENSITY_FILE).is_file() else None,
        zone_fractions=data.get("zone_fractions", {}),
        gallery=reviewed_gallery(folder, cells, frame["label"], reviewed),
        review_note=note,
    )
    with replacing(folder) as staging:
        shutil.copytree(folder, staging, dirs_exist_ok=True)
        frame = frame.copy()
        frame["corrected_label"] = ""
        for i, label in corrected.items():
            frame.loc[frame.index[i], "corrected_label"] = label
        frame.to_parquet(staging / CELLS_TABLE, index=False)
        if (folder / CELLS_GEOJSON).is_file():
            write_geojson(staging / CELLS_GEOJSON, cells, data["slide"])
        write_reports(staging, content)
    return folder


def reviewed_differential(frame: pd.DataFrame, corrections: list[Correction], data: dict[str, Any]) -> tuple[Cells, Differential]:
    """The cells of ``cells.parquet`` with ``corrections`` applied, and their differential, told what the
    analysis knew (``data``, its ``differential.json``): what the classifier never saw real, the resolution's
    warning and the sample. ``bmpipe review import`` and ``bmpipe review serve`` both count so."""
    cells = apply_corrections(frame, corrections)
    diff = differential(cells, data["slide"], synthetic_only=tuple(data.get("synthetic_only", ())),
                        dysplasia_synthetic_only=bool(data.get("dysplasia_synthetic_only", False)),
                        resolution_warning=data.get("resolution_warning", ""))
    diff.sample = data.get("sample")
    return cells, diff


def check_output_folder(folder: Path) -> None:
    for needed in ("differential.json", "cells.parquet"):
        if not (folder / needed).is_file():
            raise InputError(folder, f"is not a bmpipe slide output folder (no {needed})")


#: The review file as ``review.html`` saves it: every cell, and when it was verified.
BROWSER_COLUMNS = REVIEW_COLUMNS + ("verified_at",)


def crops_in(folder: Path, predicted: pd.Series) -> set[int]:
    """The cells that have their review crop in ``folder`` (see :func:`crop_file`)."""
    ids = {int(p.stem) for p in folder.glob("crops/*/*.jpg") if p.stem.isdigit() and int(p.stem) < len(predicted)}
    return {i for i in ids if crop_file(folder, i, str(predicted.iat[i])) is not None}


def _csv_line(values: list[Any]) -> str:
    buffer = io.StringIO()
    SafeWriter(buffer).writerow(values)
    return buffer.getvalue().removesuffix("\r\n")


class BrowserReviewFile:
    """``folder/review.csv`` as the browser review leaves it: a row per cell (each was shown), its crop where
    the analysis wrote one (``crops``), its corrected class where relabelled, and the time of the review
    (``verified_at``). ``bmpipe review import`` reads it as any review file.

    It is saved whole on every relabel, so each row's unchanging cells are formatted once: formatting a
    100,000-cell file anew took 0.8 s a save."""

    def __init__(self, folder: Path, frame: pd.DataFrame, crops: set[int]) -> None:
        self.path = folder / "review.csv"
        labels = frame["label"].astype(str).to_numpy()
        score, xs, ys = frame["label_score"].to_numpy(), frame["x"].to_numpy(), frame["y"].to_numpy()
        fields = frame["field"].to_numpy() if "field" in frame.columns else None
        self._head = _csv_line(list(BROWSER_COLUMNS) + (["field"] if fields is not None else []))
        self._before = [_csv_line([i, crop_path_of(i, code) if i in crops else "", code, f"{score[i]:.4f}"])
                        for i, code in enumerate(labels)]
        self._after = [_csv_line([f"{xs[i]:.1f}", f"{ys[i]:.1f}"]) for i in range(len(labels))]
        self._tail = [] if fields is None else ["," + _csv_line([str(f)]) for f in fields]

    def write(self, corrected: dict[int, str], stamp: str) -> Path:
        """Save, atomically, with the ``corrected`` classes (taxonomy codes) reviewed at ``stamp``."""
        lines = [self._head]
        for i, (before, after) in enumerate(zip(self._before, self._after)):
            lines.append(f"{before},{corrected.get(i, '')},{after},{stamp}" + (self._tail[i] if self._tail else ""))
        write_text_atomic(self.path, "\r\n".join(lines) + "\r\n")
        return self.path


def import_review(folder: Path, review: Path | None = None) -> Path:
    """Recompute ``folder``'s differential with a hematologist's corrections and rewrite its outputs; the
    labels given are added to the retraining list of the run folder (``folder``'s parent)."""
    folder = Path(folder)
    review = Path(review) if review else folder / "review.csv"
    check_output_folder(folder)
    frame = pd.read_parquet(folder / "cells.parquet")
    given = read_review(review, len(frame))
    reviewed, corrections = given.reviewed, given.corrections
    n_reviewed = len(reviewed)
    check_crop_paths(review, corrections, frame["label"])
    corrected = {c.cell_id: c.label for c in corrections}
    data = json.loads((folder / "differential.json").read_text("utf-8"))
    cells, diff = reviewed_differential(frame, corrections, data)
    diff.reviewed, diff.n_reviewed = True, n_reviewed
    diff.n_corrected = sum(label != str(frame["label"].iat[i]) for i, label in corrected.items())
    if given.verified_at:  # saved by review.html, which shows every cell
        note = (f"Verified: {diff.n_corrected} of {n_reviewed} cells relabelled, in the browser review of "
                f"{given.verified_at} (imported {utc_stamp()}); the differential below counts the corrected labels.")
    else:
        note = (f"Reviewed {utc_stamp()}: {n_reviewed} cells listed in {review.name} were offered for review, "
                f"{len(corrections)} labelled by a hematologist and {diff.n_corrected} of those relabelled; the "
                "differential below counts the corrected labels.")
    rewrite_reviewed(folder, data, diff, cells, frame, corrected, note, reviewed)
    update_corrections_list(folder.parent, folder, data["slide"], corrections, frame["label"])
    log.info("%s: %d labels imported from %s, %d changed", folder, len(corrections), review, diff.n_corrected)
    run_dir = next((p for p in folder.resolve().parents if (p / COHORT_CSV).is_file()), None)
    if run_dir is not None:  # the run's cohort summary shows this slide's reviewed figures from now on
        write_cohort_summary(run_dir)
    return folder
