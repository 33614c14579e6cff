"""Training crops for the cell classifier: real public images and phantom cells, all at 0.25 µm/px.

Every crop is resampled from its data set's measured µm/px (``datasets.DATASETS``) to the classifier's, so a
lymphocyte is the same number of pixels whichever camera took it. Crops are stored larger than the network's
input (``STORE_PX``) so that rotation, scaling and shifting at training time draw on real surroundings.

Real labels come from PBC file-name prefixes (Acevedo 2020, healthy donors) and SegPC plasma-cell masks
(myeloma marrow). Dysplasia labels come only from phantom cells, except that PBC's donors had no haematological
disease, so its granulocytic, erythroid and platelet images are labelled normal (grade 0 for neutrophils).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage as ndi

from bmpipe.datasets.catalog import DATASETS, data_root
from bmpipe.datasets.crop_store import ImageFiles, LazyCrops, stored_crop
from bmpipe.errors import InputError
from bmpipe.imaging.image_files import binary_mask, read_rgb
from bmpipe.nn.cell_classifier import (
    CLASSIFIER_MPP,
    CROP_PX,
    DYSPLASIA_LINEAGES,
    GRANULE_CODES,
    crop_centred,
    image_mpp,
    resample,
)
from bmpipe.resolution import Mpp
from bmpipe.slide import IMAGE_SUFFIXES
from bmpipe.slide.resample import best_reduction
from bmpipe.slide.resample import resample as resample_as_read
from bmpipe.slide.tiff_backend import JPEG_REDUCTIONS, decode_jpeg
from bmpipe.stages.calibrate import check_cell_images_mpp
from bmpipe.taxonomy import load_taxonomy

log = logging.getLogger(__name__)

#: Side of a stored crop at ``CLASSIFIER_MPP``: 32 µm, so a 24 µm input rotated by any angle stays mostly inside.
STORE_PX = 128
#: PBC file-name prefix → Matek 2021 code (data README). ``IG`` and ``NEUTROPHIL`` name no single code.
PBC_PREFIXES = {
    "BA": "BAS", "EO": "EOS", "ERB": "EBO", "PMY": "PMO", "MY": "MYB", "MMY": "MMZ",
    "BNE": "NGB", "SNE": "NGS", "LY": "LYT", "MO": "MON", "PLATELET": "PLT",
}
#: Prefixes resolved only to a PBC group: never trained on, scored at group level in the held-out set.
PBC_GROUP_ONLY = ("IG", "NEUTROPHIL")
HELD_OUT_FRACTION = 0.15
_SPLIT_SALT = "bmpipe-classifier-split-v1"
#: SegPC blobs smaller than this (pixels at the 512-px field) are mask noise, not cells.
SEGPC_MIN_AREA = 200
#: Blobs over this multiple of the median blob area are touching cells sharing one mask: their centre lies
#: between cells, so they are left out rather than taught as one plasma cell.
SEGPC_MERGED_FACTOR = 2.2


@dataclass
class CropSet:
    """Crops (N, STORE_PX, STORE_PX, 3) uint8 RGB at 0.25 µm/px with their labels; -1 marks 'not labelled'.

    ``images`` is an array, or :class:`LazyCrops` where some rows are still files (a streamed folder): read
    those with :meth:`read` a batch at a time, or all at once with :meth:`materialise`."""

    images: np.ndarray | LazyCrops
    codes: np.ndarray  # str; "" where only the group is known (PBC IG / NEUTROPHIL)
    sources: np.ndarray  # str: data set name
    paths: np.ndarray  # str: source image ("" for phantom)
    dysplastic: np.ndarray  # int8: 1 dysplastic, 0 normal, -1 unknown
    grades: np.ndarray  # int8: granule grade 0-3, -1 unknown
    not_codes: np.ndarray | None = None  # str: codes the cell is known not to be, space-separated ("" none)

    def __post_init__(self) -> None:
        if self.not_codes is None:
            self.not_codes = np.full(len(self.codes), "", "U8")

    def __len__(self) -> int:
        return len(self.codes)

    def subset(self, index: np.ndarray) -> CropSet:
        return CropSet(*(getattr(self, f)[index] for f in _FIELDS))

    @staticmethod
    def concat(sets: Iterable[CropSet]) -> CropSet:
        sets = [s for s in sets if len(s)]
        if not sets:
            return empty_cropset()
        images = [s.images for s in sets]
        joined = (np.concatenate(images) if all(isinstance(i, np.ndarray) for i in images)
                  else LazyCrops.join(images))
        return CropSet(joined, *(np.concatenate([getattr(s, f) for s in sets]) for f in _FIELDS[1:]))

    def read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The stored crops of ``rows`` and which could be read (unreadable files are logged, their rows zero)."""
        if isinstance(self.images, np.ndarray):
            return self.images[rows], np.ones(len(rows), bool)
        return self.images.read(rows)

    def materialise(self) -> CropSet:
        """This set with every crop in memory; rows whose file cannot be read are left out."""
        if isinstance(self.images, np.ndarray):
            return self
        images, ok = self.images.read()
        kept = self.subset(np.flatnonzero(ok))
        return CropSet(images[ok], *(getattr(kept, f) for f in _FIELDS[1:]))

    def centre_crops(self, size: int = CROP_PX) -> np.ndarray:
        return centre_crops(self.materialise().images, size)


def centre_crops(crops: np.ndarray, size: int = CROP_PX) -> np.ndarray:
    """The network's input: the central ``size`` pixels of every stored crop (N, S, S, 3). A function as well
    as a :class:`CropSet` method because the dysplasia fine-tuning keeps its crops outside a CropSet."""
    o = (crops.shape[1] - size) // 2
    return np.ascontiguousarray(crops[:, o : o + size, o : o + size])


_FIELDS = ("images", "codes", "sources", "paths", "dysplastic", "grades", "not_codes")


def empty_cropset() -> CropSet:
    return CropSet(
        np.zeros((0, STORE_PX, STORE_PX, 3), np.uint8), np.zeros(0, "U8"), np.zeros(0, "U16"),
        np.zeros(0, "U256"), np.zeros(0, np.int8), np.zeros(0, np.int8), np.zeros(0, "U8"),
    )


def held_out(keys: list[str], groups: list[str], fraction: float = HELD_OUT_FRACTION) -> np.ndarray:
    """Fixed split: within each group, the ``fraction`` of keys with the smallest salted hash is held out.

    A hash of the file name rather than a random draw, so the split is the same on every machine, in every
    run, and whatever else is added to the folder.
    """
    groups_a = np.asarray(groups)
    digest = np.array([int(hashlib.sha256(f"{_SPLIT_SALT}/{k}".encode()).hexdigest()[:12], 16) for k in keys])
    out = np.zeros(len(keys), bool)
    for g in np.unique(groups_a):
        idx = np.flatnonzero(groups_a == g)
        n = int(np.floor(fraction * len(idx) + 0.5))
        out[idx[np.argsort(digest[idx], kind="stable")[:n]]] = True
    return out


def _normal_labels(codes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Dysplasia labels for images from donors without haematological disease: normal where scored."""
    taxonomy = load_taxonomy()
    dys = np.array([0 if c and taxonomy[c].lineage in DYSPLASIA_LINEAGES else -1 for c in codes], np.int8)
    grade = np.array([0 if c in GRANULE_CODES else -1 for c in codes], np.int8)
    return dys, grade


def store_crops(files: list[Path], mpp: Mpp | None) -> tuple[np.ndarray, np.ndarray]:
    """Stored crops of single-cell images at ``mpp`` (None: each TIFF's own), and which files could be used
    (one that cannot is logged as an error line naming it, and skipped)."""
    out = np.zeros((len(files), STORE_PX, STORE_PX, 3), np.uint8)
    ok = np.ones(len(files), bool)
    for i, f in enumerate(files):
        try:
            out[i] = stored_crop(f, image_mpp(f, mpp), STORE_PX)
        except InputError as exc:
            log.error("%s; skipped", exc)
            ok[i] = False
    return out, ok


def image_files(path: Path) -> list[Path]:
    """``path`` itself when it is a file, else every image below it (any depth), sorted."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(path, "no such file or folder")
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def class_folders(root: Path) -> list[tuple[str, list[Path]]]:
    """``(folder name, its images at any depth)`` for each sub-folder of ``root``: an ImageFolder layout
    (``NGS/x.jpg``) and the public Matek layout (``NGS/0001-1000/NGS_00001.jpg``) read alike."""
    if not root.is_dir():
        raise InputError(root, "not a folder of class sub-folders")
    folders = [(p.name, image_files(p)) for p in sorted(root.iterdir()) if p.is_dir()]
    if not any(files for _, files in folders):
        raise InputError(root, "no images under class sub-folders (ImageFolder or Matek layout expected)")
    return folders


def load_pbc(root: Path | None = None) -> tuple[CropSet, CropSet]:
    """(train, held-out) PBC crops. Held-out also holds the group-only IG/NEUTROPHIL images (code "")."""
    spec = DATASETS["pbc"]
    root = root or spec.path
    files = sorted(root.glob("*/*.jpg"))
    prefixes = [f.name.split("_")[0].upper() for f in files]
    keep = [p in PBC_PREFIXES or p in PBC_GROUP_ONLY for p in prefixes]
    files = [f for f, k in zip(files, keep) if k]
    prefixes = [p for p, k in zip(prefixes, keep) if k]
    codes = [PBC_PREFIXES.get(p, "") for p in prefixes]
    test = held_out([f.name for f in files], prefixes)
    dys, grade = _normal_labels(codes)
    images, readable = store_crops(files, spec.mpp)
    crops = CropSet(
        images, np.array(codes, "U8"), np.full(len(files), "pbc", "U16"),
        np.array([str(f) for f in files], "U256"), dys, grade,
    )
    train = ~test & (crops.codes != "") & readable
    test &= readable
    log.info("PBC %s: %d train, %d held out (%d group-only)", root, train.sum(), test.sum(), (test & (crops.codes == "")).sum())
    return crops.subset(np.flatnonzero(train)), crops.subset(np.flatnonzero(test))


def _segpc_centres(mask: np.ndarray) -> list[tuple[float, float, int]]:
    """(x, y, area) of every mask blob above ``SEGPC_MIN_AREA`` pixels."""
    labels, n = ndi.label(mask)
    if n == 0:
        return []
    areas = np.bincount(labels.ravel())[1:]
    centres = ndi.center_of_mass(mask, labels, np.arange(1, n + 1))
    return [(x, y, a) for (y, x), a in zip(centres, areas) if a > SEGPC_MIN_AREA]


def _segpc_plasma_cells(root: Path) -> tuple[dict[Path, list[tuple[float, float]]], int]:
    """Per masked SegPC field, the centres of its single plasma cells (mask blobs up to
    ``SEGPC_MERGED_FACTOR`` × the median area), and how many merged blobs were left out."""
    fields = [p for p in sorted((root / "images").glob("*.jpg")) if (root / "masks" / p.name).exists()]
    blobs = {p: _segpc_centres(binary_mask(root / "masks" / p.name)) for p in fields}
    areas = [a for found in blobs.values() for _, _, a in found]
    limit = SEGPC_MERGED_FACTOR * float(np.median(areas)) if areas else 0.0
    single = {p: [(x, y) for x, y, a in found if a <= limit] for p, found in blobs.items()}
    return single, len(areas) - sum(len(c) for c in single.values())


def _segpc_split(crops: CropSet, cells: dict[Path, list[tuple[float, float]]]) -> tuple[CropSet, CropSet]:
    """(train, held-out) by field: a fixed share of the fields that hold plasma cells (the split classifiers
    before 2.0 were trained on), so all cells of a field are on one side; other fields train."""
    fields = [str(p) for p, c in cells.items() if c]
    test_fields = {p for p, t in zip(fields, held_out(fields, ["PLM"] * len(fields))) if t}
    test = np.isin(crops.paths, list(test_fields))
    return crops.subset(np.flatnonzero(~test)), crops.subset(np.flatnonzero(test))


def _field_crops(image: np.ndarray, mpp: Mpp, centres: list[tuple[float, float]]) -> list[np.ndarray]:
    """Stored crops around ``centres`` (file pixels) of a field at ``mpp``."""
    f = mpp.um_per_px / CLASSIFIER_MPP.um_per_px
    scaled = resample(image, mpp)
    return [crop_centred(scaled, (x + 0.5) * f - 0.5, (y + 0.5) * f - 0.5, STORE_PX) for x, y in centres]


def _segpc_crops(image: np.ndarray, mpp: Mpp, centres: list[tuple[float, float]]) -> list[np.ndarray]:
    """:func:`_field_crops` of a SegPC field, cut from its picture without the letterbox bands."""
    from bmpipe.datasets.detector_data import segpc_picture

    picture, top = segpc_picture(image)
    return _field_crops(picture, mpp, [(x, y - top) for x, y in centres])


def load_segpc(root: Path | None = None) -> tuple[CropSet, CropSet]:
    """(train, held-out) plasma-cell crops cut around SegPC mask blobs; split by field, not by cell."""
    from bmpipe.datasets.detector_data import segpc_mpp

    root = root or DATASETS["segpc"].path
    cells, merged = _segpc_plasma_cells(root)
    crops, paths = [], []
    for path, centres in cells.items():
        if centres:
            image = read_rgb(path)
            crops += _segpc_crops(image, segpc_mpp(image), centres)
            paths += [str(path)] * len(centres)
    n = len(crops)
    if not n:
        return empty_cropset(), empty_cropset()
    crops_set = CropSet(
        np.stack(crops), np.full(n, "PLM", "U8"), np.full(n, "segpc", "U16"), np.array(paths, "U256"),
        np.full(n, -1, np.int8), np.full(n, -1, np.int8),
    )
    train, test = _segpc_split(crops_set, cells)
    log.info("SegPC %s: %d plasma cells (%d merged blobs left out), %d held out", root, n, merged, len(test))
    return train, test


#: A detected cell whose centre lies this close to a plasma-cell mask may be that plasma cell (masks are
#: drawn a little inside the cell edge), so it is not taken as a non-plasma cell.
SEGPC_MASK_MARGIN_UM = 3.0


def load_segpc_others(root: Path | None = None, models_dir: Path | None = None) -> tuple[CropSet, CropSet]:
    """(train, held-out) real marrow cells that are not plasma cells: the nucleated cells the shipped U-Net
    detector finds in SegPC fields with their centre outside every plasma-cell mask. Their class is unknown,
    so they are labelled by what they are not (``not_codes`` "PLM"): the one real marrow that teaches
    "marrow-looking" is not "plasma cell". SegPC leaves some plasma cells unmasked, so a few of them are
    plasma cells after all (training trusts them only below ``NEGATIVE_TRUST``). Split by field as
    :func:`load_segpc` splits, so a held-out field's cells are on one side together."""
    from bmpipe.datasets.detector_data import segpc_mpp
    from bmpipe.models import load_detector
    from bmpipe.slide import open_slide
    from bmpipe.stages.detect import detect_cells
    from bmpipe.stages.regions import whole_field

    root = root or DATASETS["segpc"].path
    plasma, _ = _segpc_plasma_cells(root)
    detector = load_detector("unet", models_dir, "cpu")
    crops, paths = [], []
    for path in plasma:
        image = read_rgb(path)
        mpp = segpc_mpp(image)
        mask = binary_mask(root / "masks" / path.name)
        margin = round(mpp.px(SEGPC_MASK_MARGIN_UM))
        near = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(
            cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))) > 0
        slide = open_slide(path, mpp)
        cells = detect_cells(slide, whole_field(slide), detector, workers=1)
        h, w = mask.shape
        centres = [(x, y) for x, y in zip(cells.x, cells.y)
                   if 0 <= x < w and 0 <= y < h and not near[int(y), int(x)]]
        crops += _segpc_crops(image, mpp, centres)
        paths += [str(path)] * len(centres)
    n = len(crops)
    if not n:
        return empty_cropset(), empty_cropset()
    crops_set = CropSet(
        np.stack(crops), np.full(n, "", "U8"), np.full(n, "segpc-other", "U16"), np.array(paths, "U256"),
        np.full(n, -1, np.int8), np.full(n, -1, np.int8), np.full(n, "PLM", "U8"),
    )
    train, test = _segpc_split(crops_set, plasma)
    log.info("SegPC %s: %d detected non-plasma marrow cells, %d held out", root, n, len(test))
    return train, test


#: What a white cell boxed in a blood smear is known not to be, whatever its class: a cell a differential
#: counts, so none of the codes the taxonomy leaves out of all nucleated cells (debris, smudges, platelets,
#: megakaryocytes, cells too poor to identify).
WHITE_CELL_IS_NOT = load_taxonomy().excluded_codes()
#: TXL-PBC's own fields: its other field sizes are copies of BCCD (the transfer test) and PBC fields.
TXL_OWN_FIELD = (575, 575)


def load_txl_white_cells() -> tuple[CropSet, CropSet]:
    """(train, held-out) white cells of TXL-PBC's own blood-smear fields (its train and val splits), a lab
    and stain of their own. Their class is unknown, so they are labelled by what a white cell is not
    (:data:`WHITE_CELL_IS_NOT`): real cells of an unseen look that must still be called a white cell."""
    from bmpipe.datasets.detector_data import TXL_PBC_MPP, txl_pbc_boxes

    own = TXL_PBC_MPP[TXL_OWN_FIELD]  # txl_pbc_boxes gives each field its size's µm/px: no second decode to tell
    out = []
    for split in ("train", "val"):
        crops, paths = [], []
        for path, mpp, boxes in txl_pbc_boxes(split):
            if mpp != own or not len(boxes):
                continue
            crops += _field_crops(read_rgb(path), mpp, [((x0 + x1) / 2, (y0 + y1) / 2) for x0, y0, x1, y1 in boxes])
            paths += [str(path)] * len(boxes)
        n = len(crops)
        out.append(CropSet(
            np.stack(crops), np.full(n, "", "U8"), np.full(n, "txl-white", "U16"), np.array(paths, "U256"),
            np.full(n, -1, np.int8), np.full(n, -1, np.int8), np.full(n, " ".join(WHITE_CELL_IS_NOT), "U32"),
        ) if n else empty_cropset())
    log.info("TXL-PBC own fields: %d white cells, %d held out", len(out[0]), len(out[1]))
    return out[0], out[1]


def labelled_images(root: Path, extra_labels: Iterable[str] = ()) -> tuple[list[Path], list[str]]:
    """Images under the class folders of ``root`` and their labels: a taxonomy code (folder named so, in any
    case) or one of ``extra_labels`` (lower case, e.g. PBC groups); other folders are skipped with a warning."""
    codes, extra = load_taxonomy().codes, set(extra_labels)
    files, labels = [], []
    for folder, found in class_folders(root):
        label = folder.upper() if folder.upper() in codes else folder.lower()
        if label not in codes and label not in extra:
            log.warning("%s: folder %r is not a class this data can hold; skipped", root, folder)
            continue
        files += found
        labels += [label] * len(found)
    if not files:
        raise InputError(root, "no images under folders named by a taxonomy code"
                         + (f" or one of {', '.join(sorted(extra))}" if extra else ""))
    return files, labels


def load_folder(root: Path, mpp: Mpp, name: str = "folder", stream: bool = False) -> tuple[CropSet, CropSet]:
    """(train, held-out) from class-code folders, ImageFolder or Matek's nested layout (:func:`class_folders`).
    Folders that are not taxonomy codes are skipped with a warning, unreadable images with an error line.

    ``stream``: the training rows stay files (:class:`LazyCrops`), read a batch at a time, and at most
    ``VALIDATION_PER_CLASS`` held-out images of each class are read to score the run, so memory does not
    grow with the number of images. ``mpp`` is checked against the red cells around the cells."""
    files, codes = labelled_images(root)
    check_cell_images_mpp(root, files, mpp)
    test = held_out([str(f.relative_to(root)) for f in files], codes)
    n = len(files)
    paths = np.array([str(f) for f in files])
    labels = (np.array(codes, "U8"), np.full(n, name, "U16"), paths, np.full(n, -1, np.int8), np.full(n, -1, np.int8))
    if stream:
        crops = CropSet(LazyCrops.of(ImageFiles(paths.astype(object), np.full(n, mpp.um_per_px), STORE_PX)), *labels)
        train = crops.subset(np.flatnonzero(~test))
        scored = validation_rows(np.flatnonzero(test), np.array(codes), VALIDATION_PER_CLASS)
        test_set = crops.subset(scored).materialise()
        log.info("%s %s at %s: %d train (streamed), %d held out (%d scored)", name, root, mpp, len(train),
                 test.sum(), len(test_set))
        return train, test_set
    images, readable = store_crops(files, mpp)
    crops = CropSet(images, *labels)
    log.info("%s %s at %s: %d train, %d held out", name, root, mpp, (~test & readable).sum(), (test & readable).sum())
    return crops.subset(np.flatnonzero(~test & readable)), crops.subset(np.flatnonzero(test & readable))


#: Held-out images per class a streamed folder's run is scored on: enough for a per-class F1 to ±0.05, few
#: enough that a Matek-sized validation split stays a few hundred MB.
VALIDATION_PER_CLASS = 200


def validation_rows(rows: np.ndarray, codes: np.ndarray, per_class: int) -> np.ndarray:
    """At most ``per_class`` of ``rows`` for each code, chosen the same way on every run."""
    rng = np.random.default_rng(0)
    return np.sort(np.concatenate([rng.permutation(rows[codes[rows] == c])[:per_class]
                                   for c in np.unique(codes[rows])] or [rows[:0]]))


#: H&E tissue slides of the shared data that show the stain check what a Romanowsky smear is not. The third
#: one there, ``wsi/cmu-1-small-region.svs``, is left out so that it tests the check.
HE_SLIDES = ("wsi/tcga-cr-7395-01a-01-ts1.svs", "wsi/kidney-48-5.tif")
#: Their files state no µm/px usable here; both are 20× scans.
HE_MPP = Mpp(0.5)


def he_tissue_crops(n: int, seed: int) -> np.ndarray:
    """``n`` crops (CROP_PX at the classifier's µm/px) of H&E tissue, at random places that are not glass."""
    from bmpipe.slide import open_slide

    rng = np.random.default_rng(seed)
    out = []
    paths = [data_root() / p for p in HE_SLIDES if (data_root() / p).is_file()]
    for k, path in enumerate(paths):
        with open_slide(path, mpp=HE_MPP) as slide:
            w, h = slide.dimensions
            overview = slide.read_region(0, 0, w // 8, h // 8, Mpp(HE_MPP.um_per_px * 8))
            ys, xs = np.nonzero(overview.mean(2) < 200)
            pick = rng.choice(len(xs), size=min(len(xs), n // len(paths) + (k < n % len(paths))), replace=False)
            f, half = 8, CROP_PX / 2 * HE_MPP.factor_to(CLASSIFIER_MPP)
            x, y = xs[pick] * f - half, ys[pick] * f - half
            out.append(slide.read_regions(x, y, CROP_PX, CROP_PX, CLASSIFIER_MPP))
    return np.concatenate(out) if out else np.zeros((0, CROP_PX, CROP_PX, 3), np.uint8)


def phantom_available() -> bool:
    try:
        from bmpipe.phantom import cell_crops  # noqa: F401
    except ImportError:
        return False
    return True


#: Slides are scanned at ~0.1 µm/px and resampled to the classifier's 0.25 µm/px, which softens chromatin
#: differently from drawing a cell at 0.25 directly (blasts then drift towards immature lymphocytes), so half
#: of the phantom cells are drawn at this scan resolution, JPEG-compressed as a scanner does, and resampled.
SCAN_MPP = Mpp(0.1)
SCAN_JPEG_QUALITY = 90
#: Seed of the held-out phantom cells (training draws its own with the run's seed, never this one).
PHANTOM_HELD_OUT_SEED = 10_007


def as_scanned(images: np.ndarray, size_px: int) -> np.ndarray:
    """Scan-resolution crops JPEG-compressed and brought to ``size_px`` as the slide reader reads a JPEG level
    at a coarser resolution: decoded as small as libjpeg can without becoming coarser, then area-resampled."""
    out = np.empty((len(images), size_px, size_px, 3), np.uint8)
    for i, image in enumerate(images):
        _, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, SCAN_JPEG_QUALITY])
        decoded = decode_jpeg(jpeg.tobytes(), best_reduction(JPEG_REDUCTIONS, image.shape[1] / size_px))
        out[i] = resample_as_read(decoded, 0.0, 0.0, decoded.shape[1] / size_px, size_px, size_px)
    return out


def phantom_codes() -> list[str]:
    """Every class the phantom draws for the classifier: all drawable cells and defocused NIF."""
    from bmpipe.phantom.crops import DEFAULT_CODES, NIF_CODE

    return [*DEFAULT_CODES, NIF_CODE]


def load_phantom(n_per_code: int, seed: int, codes: Iterable[str] | None = None) -> CropSet:
    """Phantom cells with exact class and dysplasia labels: half drawn at 0.25 µm/px, half as scanned."""
    from bmpipe.phantom import cell_crops

    codes = list(codes) if codes else phantom_codes()
    direct = cell_crops(max(1, n_per_code // 2), seed, mpp=CLASSIFIER_MPP, size_px=STORE_PX, codes=codes)
    scan_px = round(STORE_PX * SCAN_MPP.factor_to(CLASSIFIER_MPP))
    scanned = cell_crops(max(1, n_per_code - n_per_code // 2), seed + 1, mpp=SCAN_MPP, size_px=scan_px,
                         codes=codes)
    images = np.concatenate([direct[0], as_scanned(scanned[0], STORE_PX)])
    crop_codes = list(direct[1]) + list(scanned[1])
    grades = np.concatenate([direct[2], scanned[2]])
    dysplastic = np.concatenate([direct[3], scanned[3]])
    taxonomy = load_taxonomy()
    crop_codes = [str(c) for c in crop_codes]
    scored = np.array([taxonomy[c].lineage in DYSPLASIA_LINEAGES for c in crop_codes])
    n = len(crop_codes)
    return CropSet(
        np.asarray(images, np.uint8), np.array(crop_codes, "U8"), np.full(n, "phantom", "U16"),
        np.full(n, "", "U256"),
        np.where(scored, np.asarray(dysplastic, bool).astype(np.int8), -1).astype(np.int8),
        np.where(np.asarray(grades) >= 0, np.clip(grades, 0, 3), -1).astype(np.int8),  # phantom says which
    )
