"""Training fields for the nucleated-cell detector, resampled to its 0.4 µm/px, with targets and loss weights.

Each source gives nucleated-cell *instances* in its own way, and each is turned into the same three maps:
foreground (the whole cell), marker (each cell's normalised distance to its own edge) and two loss weights
that are 0 where the truth is unknown:

* TXL-PBC and BCCD label white cells with boxes only: each box becomes the ellipse inscribed in it, whose
  bounding box is the labelled box itself (what detection is scored on).
* SegPC labels only plasma cells (and touching cells share one mask): every other nucleated cell in its
  marrow fields is unlabelled, so purple-stained blobs outside the labelled masks, grown by a cytoplasm rim,
  are left out of the loss instead of being taught as background; the marker is not taught inside masks
  that look like several cells merged (large or non-convex), whose centres are unknown.
* Phantom fields (``bmpipe.phantom``) and user folders of instance masks give exact instances.

Resolution: no public set states its pixel size, and TXL-PBC and SegPC each merge fields from several
microscopes, so the µm/px used here is chosen per image group (by image size or letterbox), measured as
written beside each value.
"""

from __future__ import annotations

import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from bmpipe.datasets.catalog import DATASETS
from bmpipe.errors import InputError
from bmpipe.imaging.image_files import binary_mask, read_rgb
from bmpipe.imaging.rescale import rescale
from bmpipe.nn.unet_detector import DETECTOR_MPP
from bmpipe.resolution import Mpp
from bmpipe.slide import images_in

log = logging.getLogger(__name__)

#: TXL-PBC merges four sources with different optics; their fields differ in size. µm/px per (height, width):
#: median equivalent diameter of isolated round red cells (Otsu on green, solidity > 0.95, aspect < 1.2,
#: not purple) taken as 7.5 µm, the rule ``datasets.py`` uses for PBC (which gives 0.104 there too).
TXL_PBC_MPP = {
    (575, 575): Mpp(0.062),  # red cell ~121 px
    (416, 416): Mpp(0.104),  # ~72 px
    (363, 360): Mpp(0.104),  # ~71 px (these are PBC / CellaVision fields)
    (369, 366): Mpp(0.104),  # same source as 363×360
    (480, 640): Mpp(0.083),  # ~90 px (these are BCCD fields)
}

#: SegPC fields come from two cameras, letterboxed differently into 512×512. Rows of padding -> µm/px.
#: 63 rows (263 fields): the burnt-in 10 µm scale bar spans 54 px (red cells ~40-45 px across). 64 rows
#: (35 fields, no scale bar): plasma-cell masks are 0.85× as wide and red cells ~31 px, so ~0.23.
SEGPC_MPP_BY_PAD = {63: Mpp(0.185), 64: Mpp(0.23)}


@dataclass
class Sample:
    """One field at the detector's resolution: image, targets and loss weights."""

    name: str
    source: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    fg: np.ndarray  # (H, W) uint8: 1 inside a nucleated cell
    marker: np.ndarray  # (H, W) float32 in [0, 1]: distance to the cell's edge / its largest value
    fg_weight: np.ndarray  # (H, W) uint8: 0 where the foreground truth is unknown
    marker_weight: np.ndarray  # (H, W) uint8: 0 where the marker truth is unknown


def marker_of(instances: np.ndarray) -> np.ndarray:
    """Per-instance distance to the instance's own edge, divided by its maximum (1 at each centre)."""
    inst = instances.astype(np.int32)
    n = int(inst.max())
    if n == 0:
        return np.zeros(inst.shape, np.float32)
    padded = np.pad(inst, 1, mode="constant")
    centre = padded[1:-1, 1:-1]
    edge = np.zeros(inst.shape, bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        edge |= padded[dy : dy + inst.shape[0], dx : dx + inst.shape[1]] != centre
    inside = ((inst > 0) & ~edge).astype(np.uint8)
    dist = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
    peak = np.asarray(ndimage.maximum(dist, inst, index=np.arange(1, n + 1)), np.float32)
    peak = np.concatenate([[1.0], np.maximum(peak, 1.0)])
    return (dist / peak[inst]).astype(np.float32)


def nuclear_stain(image: np.ndarray) -> np.ndarray:
    """Pixels stained like a nucleus (dark purple: green well below background and below red and blue).

    A colour rule rather than a model, used only to keep unlabelled nucleated cells out of the loss.
    """
    rgb = image.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    background_g = np.percentile(g, 90)
    stained = (((r + b) / 2 - g) > 30) & (g < 0.7 * background_g)
    return cv2.morphologyEx(stained.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0


def unlabelled_cells(image: np.ndarray, labelled: np.ndarray, mpp: Mpp) -> np.ndarray:
    """Area of nucleated cells that no label covers: stained blobs of nucleus size outside ``labelled``,
    grown by a 3 µm rim of cytoplasm. Blobs smaller than a small lymphocyte's nucleus (platelets) stay."""
    blobs, n = ndimage.label(nuclear_stain(image))
    if n == 0:
        return np.zeros(labelled.shape, bool)
    area = np.bincount(blobs.ravel(), minlength=n + 1)
    covered = np.bincount(blobs.ravel(), weights=labelled.ravel() > 0, minlength=n + 1)
    keep = (area >= 12.0 / mpp.um_per_px**2) & (covered < 0.3 * area)
    keep[0] = False
    rim = round(mpp.px(3.0))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rim + 1, 2 * rim + 1))
    return (cv2.dilate(keep[blobs].astype(np.uint8), disc) > 0) & (labelled == 0)


def merged_blobs(instances: np.ndarray) -> np.ndarray:
    """Instances that look like several touching cells sharing one mask: over 1.8× the median area or less
    than 0.88 convex (a single cell is nearly convex)."""
    n = int(instances.max())
    out = np.zeros(instances.shape, bool)
    if n == 0:
        return out
    area = np.bincount(instances.ravel(), minlength=n + 1)
    median = np.median(area[1:][area[1:] > 0]) if (area[1:] > 0).any() else 0
    bad = np.zeros(n + 1, bool)
    for i, sl in enumerate(ndimage.find_objects(instances), start=1):
        if sl is None:
            continue
        crop = (instances[sl] == i).astype(np.uint8)
        contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        hull = cv2.contourArea(cv2.convexHull(np.concatenate(contours)))
        bad[i] = area[i] > 1.8 * median or (hull > 0 and area[i] / hull < 0.88)
    return bad[instances]


def sample_from_instances(
    name: str,
    source: str,
    image: np.ndarray,
    instances: np.ndarray,
    partial: bool = False,
    merged: bool = False,
) -> Sample:
    """A Sample from an image and instance map already at the detector's resolution.

    ``partial``: only some nucleated cells are labelled (leave unlabelled stained blobs out of the loss).
    ``merged``: touching cells may share one instance (leave the marker of merged-looking ones untaught).
    """
    fg = (instances > 0).astype(np.uint8)
    fg_weight = np.ones_like(fg)
    if partial:
        fg_weight[unlabelled_cells(image, instances, DETECTOR_MPP)] = 0
    marker_weight = fg_weight.copy()
    if merged:
        marker_weight[merged_blobs(instances)] = 0
    return Sample(name, source, image, fg, marker_of(instances), fg_weight, marker_weight)


def instance_boxes(instances: np.ndarray, min_px: float = 0.0) -> np.ndarray:
    """Bounding boxes (x0, y0, x1, y1; x1/y1 exclusive) of the instances of at least ``min_px`` pixels."""
    n = int(instances.max())
    area = np.bincount(instances.ravel(), minlength=n + 1)
    rows = [[s[1].start, s[0].start, s[1].stop, s[0].stop]
            for i, s in enumerate(ndimage.find_objects(instances, max_label=n), start=1)
            if s is not None and area[i] >= min_px]
    return np.array(rows, np.float64).reshape(-1, 4)


def ellipses(shape: tuple[int, int], boxes: np.ndarray) -> np.ndarray:
    """Instance map of the ellipses inscribed in ``boxes`` (x0, y0, x1, y1), larger ones drawn first so a
    small cell overlapping a large one keeps its own pixels."""
    inst = np.zeros(shape, np.int32)
    order = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    for label, i in enumerate(order, start=1):
        x0, y0, x1, y1 = boxes[i]
        centre = ((x0 + x1) / 2 - 0.5, (y0 + y1) / 2 - 0.5)
        axes = (max((x1 - x0) / 2, 1.0), max((y1 - y0) / 2, 1.0))
        cv2.ellipse(inst, ((centre[0], centre[1]), (2 * axes[0], 2 * axes[1]), 0.0), label, -1)
    return inst


def sample_from_boxes(name: str, source: str, path: Path, mpp: Mpp, boxes: np.ndarray) -> Sample:
    """A Sample from an image file and its white-cell boxes in file pixels."""
    scale = 1.0 / mpp.factor_to(DETECTOR_MPP)
    image = rescale(read_rgb(path), scale)
    inst = ellipses(image.shape[:2], np.asarray(boxes, np.float64).reshape(-1, 4) * scale)
    return sample_from_instances(name, source, image, inst)


# --- TXL-PBC ---------------------------------------------------------------------------------------------


def txl_pbc_mpp(shape: tuple[int, int]) -> Mpp:
    """µm/px of a TXL-PBC field from its (height, width); the data set's overall value for other sizes."""
    return TXL_PBC_MPP.get(tuple(shape[:2]), DATASETS["txl_pbc"].mpp)


def yolo_boxes(label: Path, width: int, height: int, cls: int = 0) -> np.ndarray:
    """Boxes of class ``cls`` from a YOLO label file, in pixels (x0, y0, x1, y1)."""
    rows = []
    if label.exists():
        for line in label.read_text().splitlines():
            p = line.split()
            if len(p) >= 5 and int(float(p[0])) == cls:
                cx, cy, bw, bh = (float(v) for v in p[1:5])
                rows.append([(cx - bw / 2) * width, (cy - bh / 2) * height, (cx + bw / 2) * width,
                             (cy + bh / 2) * height])
    return np.array(rows, np.float64).reshape(-1, 4)


def txl_pbc_boxes(split: str) -> Iterator[tuple[Path, Mpp, np.ndarray]]:
    """(file, µm/px, white-cell boxes in file pixels) of every TXL-PBC field of ``split``: what the U-Net
    and YOLO trainers and the evaluation all read it as."""
    root = DATASETS["txl_pbc"].path
    for path in images_in(root / "images" / split):
        h, w = cv2.imread(str(path)).shape[:2]
        yield path, txl_pbc_mpp((h, w)), yolo_boxes(root / "labels" / split / f"{path.stem}.txt", w, h)


def txl_pbc_samples(split: str) -> Iterator[Sample]:
    for path, mpp, boxes in txl_pbc_boxes(split):
        yield sample_from_boxes(path.stem, "txl_pbc", path, mpp, boxes)


# --- BCCD --------------------------------------------------------------------------------------------------


def _thumb(path: Path) -> np.ndarray:
    return cv2.resize(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), (16, 12), interpolation=cv2.INTER_AREA)


def bccd_fields(seed: int = 0, val_share: float = 0.2) -> dict[str, list[Path]]:
    """BCCD fields split into train/val, leaving out those TXL-PBC also holds (all 194 of its 640×480 fields
    are BCCD fields), so TXL-PBC's validation fields are never trained on under another name."""
    root = DATASETS["bccd"].path
    txl = DATASETS["txl_pbc"].path / "images"
    txl_thumbs = [
        _thumb(p).astype(np.float32)
        for split in ("train", "val")
        for p in images_in(txl / split)
        if cv2.imread(str(p)).shape[:2] == (480, 640)
    ]
    stack = np.stack(txl_thumbs) if txl_thumbs else np.zeros((0, 12, 16), np.float32)
    own = [
        p for p in images_in(root / "JPEGImages")
        if not len(stack) or np.abs(stack - _thumb(p).astype(np.float32)).mean(axis=(1, 2)).min() > 2.0
    ]
    order = np.random.default_rng(seed).permutation(len(own))
    n_val = round(val_share * len(own))
    return {"val": sorted(own[i] for i in order[:n_val]), "train": sorted(own[i] for i in order[n_val:])}


def voc_boxes(xml: Path, name: str = "WBC") -> np.ndarray:
    rows = []
    for obj in ET.parse(xml).getroot().iter("object"):
        if (obj.findtext("name") or "").strip() == name:
            b = obj.find("bndbox")
            rows.append([float(b.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")])
    return np.array(rows, np.float64).reshape(-1, 4)


def bccd_boxes(paths: list[Path]) -> Iterator[tuple[Path, Mpp, np.ndarray]]:
    """(file, µm/px, white-cell boxes in file pixels) of BCCD fields, as the trainers and the evaluation
    read them."""
    ann = DATASETS["bccd"].path / "Annotations"
    for path in paths:
        boxes = voc_boxes(ann / f"{path.stem}.xml")
        boxes[:, 2:] += 1.0  # VOC corners are inclusive pixel indices
        yield path, DATASETS["bccd"].mpp, boxes


def bccd_samples(paths: list[Path]) -> Iterator[Sample]:
    for path, mpp, boxes in bccd_boxes(paths):
        yield sample_from_boxes(path.stem, "bccd", path, mpp, boxes)


# --- SegPC -------------------------------------------------------------------------------------------------


def _band_rows(image: np.ndarray) -> int:
    """Rows of flat letterbox padding at the top of ``image`` (0 where its first row is picture)."""
    first = image[:1].astype(np.float32)
    if np.abs(first - first.mean(axis=1, keepdims=True)).mean() > 6:
        return 0
    rows = np.abs(image.astype(np.float32) - first).mean(axis=(1, 2))
    return int(np.argmax(rows > 6))


def segpc_picture(image: np.ndarray) -> tuple[np.ndarray, int]:
    """A SegPC field without its letterbox bands, and how many rows were cut above it. A cell crop near a
    band would otherwise carry a flat strip that no slide has, which the classifier learns as a cue."""
    top, bottom = _band_rows(image), _band_rows(image[::-1])
    if top + bottom >= image.shape[0] - 1:
        return image, 0
    return image[top : image.shape[0] - bottom], top


def segpc_mpp(image: np.ndarray) -> Mpp:
    """µm/px of a SegPC field, from the height of its letterbox band (which tells the camera)."""
    pad = _band_rows(image)
    key = min(SEGPC_MPP_BY_PAD, key=lambda k: abs(k - pad))
    return SEGPC_MPP_BY_PAD[key] if abs(key - pad) <= 2 else DATASETS["segpc"].mpp


def segpc_fields(seed: int = 0, val_share: float = 0.2) -> dict[str, list[Path]]:
    """SegPC images split into train/val by blocks of 100 consecutive ids (likely the same slide), so
    neighbouring fields of one patient do not sit on both sides."""
    images = images_in(DATASETS["segpc"].path / "images")
    groups = sorted({int(p.stem) // 100 for p in images if p.stem.isdigit()})
    rng = np.random.default_rng(seed)
    val_groups: set[int] = set()
    for g in rng.permutation(groups):
        if sum(int(p.stem) // 100 in val_groups for p in images) >= val_share * len(images):
            break
        val_groups.add(int(g))
    val = [p for p in images if p.stem.isdigit() and int(p.stem) // 100 in val_groups]
    return {"val": val, "train": [p for p in images if p not in val]}


def segpc_instances(paths: list[Path]) -> Iterator[tuple[Path, np.ndarray, np.ndarray]]:
    """(file, field, plasma-cell instances) of SegPC fields at the detector's µm/px, for the U-Net and YOLO
    trainers alike. Instances are the mask's blobs, so touching cells may share one."""
    masks = DATASETS["segpc"].path / "masks"
    for path in paths:
        raw = read_rgb(path)
        scale = 1.0 / segpc_mpp(raw).factor_to(DETECTOR_MPP)
        image = rescale(raw, scale)
        mask = rescale(binary_mask(masks / path.name).astype(np.float32), scale) > 0.5
        inst, _ = ndimage.label(mask)
        yield path, image, inst


def segpc_samples(paths: list[Path]) -> Iterator[Sample]:
    for path, image, inst in segpc_instances(paths):
        yield sample_from_instances(path.stem, "segpc", image, inst, partial=True, merged=True)


# --- instance-mask folders (phantom fields, user data) ------------------------------------------------------


def read_instances(path: Path) -> tuple[np.ndarray, bool]:
    """Instance labels from a mask image, and whether they are exact: a mask holding only 0 and one other
    value is binary (touching cells may share a blob), so its blobs are labelled as components."""
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise InputError(path, "not a readable mask image")
    if mask.ndim == 3:
        mask = mask[..., 0]
    values = np.unique(mask)
    if len(values[values > 0]) <= 1:
        return ndimage.label(mask > (127 if mask.dtype == np.uint8 and values.max() > 1 else 0))[0], False
    return mask.astype(np.int32), True


def folder_instances(
    images: Path, masks: Path, mpp: Mpp
) -> Iterator[tuple[Path, np.ndarray, np.ndarray, bool]]:
    """(file, field, instances, whether they are exact) at the detector's µm/px from an image folder and a
    mask folder holding a mask of the same stem for each image; the U-Net and YOLO trainers both read phantom
    fields through it."""
    mask_by_stem = {p.stem: p for p in images_in(masks)}
    scale = 1.0 / mpp.factor_to(DETECTOR_MPP)
    for path in images_in(images):
        if path.stem not in mask_by_stem:
            raise InputError(path, f"has no mask of the same name in {masks}")
        inst, exact = read_instances(mask_by_stem[path.stem])
        image = rescale(read_rgb(path), scale)
        yield path, image, rescale(inst, scale, nearest=True), exact


def folder_samples(images: Path, masks: Path, mpp: Mpp, source: str) -> Iterator[Sample]:
    """Samples from an image folder and a mask folder holding a mask of the same stem for each image."""
    for path, image, inst, exact in folder_instances(images, masks, mpp):
        yield sample_from_instances(path.stem, source, image, inst, merged=not exact)


def phantom_folder(work: Path, n: int, seed: int, size_px: int, mpp: Mpp) -> Path:
    """``n`` phantom marrow fields of ``size_px`` square at ``mpp`` written once under ``work`` (reused when
    already there). The folder's name leaves ``mpp`` out, as the folders already written were named: each
    caller keeps its fields, at its one µm/px, in its own work folder."""
    from bmpipe.phantom import write_fields

    folder = work / f"phantom-n{n}-s{seed}-{size_px}px"
    if not (folder / "done").exists():
        t = time.monotonic()
        write_fields(folder, n, seed, size=(size_px, size_px), mpp=mpp)
        (folder / "done").write_text("ok\n")
        log.info("wrote %d phantom fields in %.0f s", n, time.monotonic() - t)
    return folder


# --- augmentation ------------------------------------------------------------------------------------------


@dataclass
class Batch:
    images: np.ndarray  # (B, T, T, 3) uint8 RGB
    fg: np.ndarray  # (B, T, T) float32
    marker: np.ndarray  # (B, T, T) float32
    fg_weight: np.ndarray  # (B, T, T) float32
    marker_weight: np.ndarray  # (B, T, T) float32


class TileSampler:
    """Random training tiles drawn from samples, each source with its own share of the batch.

    Augmentation covers what differs between slides and scanners and leaves the cell sizes nearly alone (the
    detector always runs at 0.4 µm/px): crop, ±15 % scale, flips and 90° turns, HSV and contrast jitter for
    stain and white balance, and a slight blur for focus. Area outside a field (when a field is smaller than
    a tile) is filled with its median colour and carries zero loss weight.
    """

    def __init__(self, samples: list[Sample], tile: int, shares: dict[str, float], seed: int = 0):
        self.tile = tile
        self.rng = np.random.default_rng(seed)
        self.by_source: dict[str, list[Sample]] = {}
        for s in samples:
            self.by_source.setdefault(s.source, []).append(s)
        self.sources = [s for s in self.by_source if shares.get(s, 0) > 0]
        if not self.sources:
            raise ValueError(f"no training samples from any source in {sorted(shares)}")
        p = np.array([shares[s] for s in self.sources], np.float64)
        self.p = p / p.sum()
        self.fill = {id(s): np.median(s.image.reshape(-1, 3), axis=0).astype(np.uint8) for s in samples}

    def batch(self, n: int) -> Batch:
        tiles = [self.tile_of(self._pick()) for _ in range(n)]
        return Batch(*(np.stack(parts) for parts in zip(*tiles)))

    def _pick(self) -> Sample:
        group = self.by_source[self.sources[self.rng.choice(len(self.sources), p=self.p)]]
        return group[self.rng.integers(len(group))]

    def tile_of(self, s: Sample) -> tuple[np.ndarray, ...]:
        rng, t = self.rng, self.tile
        zoom = float(np.exp(rng.uniform(np.log(0.85), np.log(1.15))))
        side = max(8, round(t / zoom))
        h, w = s.fg.shape
        y0 = int(rng.integers(min(0, h - side), max(0, h - side) + 1))
        x0 = int(rng.integers(min(0, w - side), max(0, w - side) + 1))
        maps = [s.image, s.fg, s.marker, s.fg_weight, s.marker_weight]
        fills = [self.fill[id(s)], 0, 0, 0, 0]
        crops = [_crop(m, y0, x0, side, f) for m, f in zip(maps, fills)]
        crops = [
            cv2.resize(c, (t, t), interpolation=cv2.INTER_LINEAR if i in (0, 2) else cv2.INTER_NEAREST)
            for i, c in enumerate(crops)
        ]
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        crops = [np.rot90(c, k) for c in crops]
        if flip:
            crops = [c[:, ::-1] for c in crops]
        image = self._colour(np.ascontiguousarray(crops[0]))
        return (image, *(np.ascontiguousarray(c, dtype=np.float32) for c in crops[1:]))

    def _colour(self, image: np.ndarray) -> np.ndarray:
        rng = self.rng
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-8, 8)) % 180
        hsv[..., 1] *= rng.uniform(0.7, 1.35)
        hsv[..., 2] *= rng.uniform(0.85, 1.12)
        rgb = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
        mean = rgb.mean(axis=(0, 1), keepdims=True)
        rgb = (rgb - mean) * rng.uniform(0.8, 1.2) + mean + rng.uniform(-10, 10, size=3)
        if rng.random() < 0.3:
            rgb = cv2.GaussianBlur(rgb, (0, 0), rng.uniform(0.4, 1.0))
        return np.clip(rgb, 0, 255).astype(np.uint8)


def _crop(m: np.ndarray, y0: int, x0: int, side: int, fill: np.ndarray | int) -> np.ndarray:
    """``side``×``side`` crop at (y0, x0) that may extend past the edges, padded with ``fill``."""
    h, w = m.shape[:2]
    out = np.empty((side, side) + m.shape[2:], m.dtype)
    out[...] = fill
    ys, xs = max(0, y0), max(0, x0)
    ye, xe = min(h, y0 + side), min(w, x0 + side)
    out[ys - y0 : ye - y0, xs - x0 : xe - x0] = m[ys:ye, xs:xe]
    return out
