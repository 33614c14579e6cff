"""Single-cell classifier: taxonomy class, dysplastic vs normal (Lee 2022) and neutrophil granule grade (Mori 2020).

The network sees a crop of fixed *physical* size (24 µm at 0.25 µm/px) centred on the cell, so a cell's size is
a feature it can trust whatever the scanner. It is a small residual CNN built here (no downloaded weights) that
runs at a few hundred crops per second on two CPU cores, so a whole slide is not held up by classification.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bmpipe.errors import InputError, ModelError
from bmpipe.imaging.image_files import read_rgb
from bmpipe.imaging.rescale import rescale
from bmpipe.nn.fusion import fuse_batchnorm
from bmpipe.nn.stain import StainCheck
from bmpipe.nn.weights import ModelRecord, default_models_dir, load_weights
from bmpipe.resolution import Mpp
from bmpipe.slide.mpp_metadata import read_tiff_mpp, resolve_mpp
from bmpipe.taxonomy import load_taxonomy

log = logging.getLogger(__name__)

#: The resolution every crop is resampled to before classification.
CLASSIFIER_MPP = Mpp(0.25)
#: Crop side in pixels at ``CLASSIFIER_MPP`` (24 µm: a myelocyte with margin; a megakaryocyte is cut, on purpose
#: its nucleus and granular cytoplasm fill the crop, which is what tells it apart).
CROP_PX = 96
MODEL_NAME = "classifier"
#: Codes whose granules are graded 0-3 (Mori 2020 graded decreased granules in neutrophils).
GRANULE_CODES = ("NGS", "NGB", "MMZ")
#: Lineages with a normal-vs-dysplastic call (Lee 2022 scored erythroid, granulocytic, megakaryocytic cells).
DYSPLASIA_LINEAGES = ("granulocytic", "erythroid", "megakaryocytic")
#: Mori 2020 infers at 16 rotations of 22.5° and keeps the maximum grade (the score depends on orientation).
GRADE_ROTATIONS = 16
MAX_GRADE = 3
#: Below this top-class probability a cell is reported as NIF ("not identifiable") rather than guessed.
UNIDENTIFIED_CODE = "NIF"
#: A cell whose top-class probability is under this gets a second look: its class probabilities become the
#: geometric mean over the crop's 8 flips and quarter turns. A cell has no orientation, so the views disagree
#: only where the network is unsure; an unsure cell costs 7 more passes, a sure one none (the measured effect
#: on real cells is in the model card).
SECOND_LOOK_BELOW = 0.7
#: A class taught by phantom cells counts as learned from real cells only from this many real training images
#: of it, a cautious floor: a few real images beside the phantom cells leave its recall on real cells short,
#: and dependent on which cells were drawn (model card, "How many real cells a class needs"). Reports keep
#: marking such a class as they mark one no real image taught; from this many on, the card's held-out F1 on
#: real cells says how well it was learned.
MIN_REAL_IMAGES = 100


def too_few_real_images(learned_from: dict[str, list[str]], real_images: dict[str, int]) -> dict[str, int]:
    """Classes taught by phantom cells and fewer than ``MIN_REAL_IMAGES`` real images, with how many real ones
    (0: none): the classes reported as unvalidated on real cells."""
    return {c: n for c, n in real_images.items() if n < MIN_REAL_IMAGES and "phantom" in learned_from.get(c, ())}

# Per-channel statistics of Giemsa-stained crops (RGB, 0-1) used to centre the input; fixed, not learned.
_MEAN = (0.80, 0.70, 0.78)
_STD = (0.14, 0.18, 0.12)


def default_config(codes: tuple[str, ...] | list[str], width: float = 1.0) -> dict[str, Any]:
    """The architecture bmpipe ships; stored in the weight file so the file alone rebuilds the network.
    ``width`` scales the channels of every layer (rounded to multiples of 8), for a lab with the data and the
    hardware to train a larger network."""
    return {
        "arch": "bmpipe-cellnet-v1",
        "stem": _channels(24, width),
        "widths": [_channels(w, width) for w in (32, 64, 128, 192)],
        "depths": [1, 1, 2, 1],
        "codes": list(codes),
        "mpp": CLASSIFIER_MPP.um_per_px,
        "crop_px": CROP_PX,
        "heads": {"class": len(codes), "dysplastic": 1, "granule_grade": MAX_GRADE},
        "granule_codes": list(GRANULE_CODES),
        "dysplasia_lineages": list(DYSPLASIA_LINEAGES),
        "grade_rotations": GRADE_ROTATIONS,
        "unidentified_threshold": 0.30,
        "mean": list(_MEAN),
        "std": list(_STD),
        "input_norm": "crop",
    }


def _channels(n: int, width: float) -> int:
    return max(8, round(n * width / 8) * 8)


class _Block(nn.Module):
    """Pre-activation-free basic residual block (two 3×3 convs); a 1×1 projection when shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.short(x), inplace=True)


class CellNet(nn.Module):
    """Residual CNN with three heads: class logits, dysplastic logit, granule grade (0-3, sigmoid-scaled).

    The grade is a bounded regression as in Mori 2020 (sigmoid × 3): ordinal, and never outside 0-3.
    Input is uint8-range float RGB (N, 3, H, W); normalisation happens inside so callers cannot forget it.
    """

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        stem, widths, depths = config["stem"], config["widths"], config["depths"]
        self.register_buffer("mean", torch.tensor(config["mean"]).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(config["std"]).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        cin = stem
        for width, depth in zip(widths, depths):
            for i in range(depth):
                layers.append(_Block(cin, width, 2 if i == 0 else 1))
                cin = width
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(0.2)
        self.class_head = nn.Linear(cin, config["heads"]["class"])
        self.dysplastic_head = nn.Linear(cin, 1)
        self.grade_head = nn.Linear(cin, 1)
        self.max_grade = float(config["heads"]["granule_grade"])
        self.input_norm = config.get("input_norm", "fixed")

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input scaling. ``"crop"``: each crop centred on its own channel means and scaled by its
        own contrast (one scale for the three channels, so colour balance within the crop survives): a lab's
        stain strength, white balance and contrast are then not features a class can be learned from.
        ``"fixed"`` (classifiers before 2.0): fixed Giemsa statistics."""
        if self.input_norm == "crop":
            centred = x - x.mean((2, 3), keepdim=True)
            return centred / (centred.square().mean((1, 2, 3), keepdim=True).sqrt() + 2.0)
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalise(x)
        return torch.flatten(F.adaptive_avg_pool2d(self.body(self.stem(x)), 1), 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.heads(self.dropout(self.features(x)))

    def heads(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        grade = torch.sigmoid(self.grade_head(f).squeeze(1)) * self.max_grade
        return self.class_head(f), self.dysplastic_head(f).squeeze(1), grade


def rotate_batch(x: torch.Tensor, angles_deg: torch.Tensor) -> torch.Tensor:
    """Rotate each image of ``x`` (N, C, H, W) about its centre; corners are filled by reflection.

    Reflection rather than zeros because a crop's corners are background, and a black corner is a cue the
    network never saw in training.
    """
    a = torch.deg2rad(angles_deg.to(x.dtype))
    cos, sin = torch.cos(a), torch.sin(a)
    zero = torch.zeros_like(a)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def granule_grade(raw: np.ndarray) -> np.ndarray:
    """Whole granule grades 0-``MAX_GRADE`` from :meth:`CellClassifier.raw_grade` scores: rounded here alone,
    so the grades ``predict`` reports are the ones the evaluation and the dysplasia fine-tuning score."""
    return np.clip(np.rint(raw), 0, MAX_GRADE).astype(np.int64)


def image_mpp(path: Path, given: Mpp | None) -> Mpp:
    """µm/px of a single-cell image: ``given`` (the user's ``--mpp``) wins, else the TIFF's own metadata."""
    tiff = read_tiff_mpp(path) if Path(path).suffix.lower() in (".tif", ".tiff") else None
    return resolve_mpp(Path(path), given, tiff)[0]


def resample(image: np.ndarray, src: Mpp, dst: Mpp = CLASSIFIER_MPP) -> np.ndarray:
    """Rescale ``image`` from ``src`` to ``dst`` µm/px; area averaging when shrinking so granules do not alias."""
    f = src.um_per_px / dst.um_per_px
    return image if abs(f - 1) < 1e-3 else rescale(image, f)


def crop_centred(image: np.ndarray, cx: float, cy: float, size: int) -> np.ndarray:
    """``size``-px square centred on (cx, cy); parts outside the image are mirrored (background, not black)."""
    x0, y0 = int(np.floor(cx - size / 2 + 0.5)), int(np.floor(cy - size / 2 + 0.5))
    h, w = image.shape[:2]
    pad = max(0, -x0, -y0, x0 + size - w, y0 + size - h)
    if pad:  # OpenCV reflects repeatedly, so even an image smaller than the padding fills the square
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    return image[y0 + pad : y0 + pad + size, x0 + pad : x0 + pad + size]


def single_cell_crop(image: np.ndarray, mpp: Mpp, size: int = CROP_PX, dst: Mpp = CLASSIFIER_MPP,
                     centre: tuple[float, float] | None = None) -> np.ndarray:
    """A cell of an image at ``mpp`` as a classifier input: resampled to ``dst`` and cut to ``size`` px around
    ``centre`` (image pixels; default the image centre), so every cell is seen at the same physical size.
    A tight single-cell image is padded with its own background (median border colour): mirroring would paste
    copies of the cell's edge around it."""
    image = resample(np.asarray(image, np.uint8), mpp, dst)
    f = mpp.um_per_px / dst.um_per_px
    h, w = image.shape[:2]
    cx, cy = ((w - 1) / 2, (h - 1) / 2) if centre is None else ((centre[0] + 0.5) * f - 0.5, (centre[1] + 0.5) * f - 0.5)
    if h < size or w < size:
        border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
        fill = tuple(int(v) for v in np.median(border, axis=0))
        dy, dx = max(0, size - h), max(0, size - w)
        image = cv2.copyMakeBorder(image, dy // 2, dy - dy // 2, dx // 2, dx - dx // 2, cv2.BORDER_CONSTANT,
                                   value=fill)
        cx, cy = cx + dx // 2, cy + dy // 2
    return np.ascontiguousarray(crop_centred(image, cx, cy, size))


@dataclass(frozen=True)
class CellPredictions:
    """Per-crop outputs of :meth:`CellClassifier.predict` (arrays of length N)."""

    probs: np.ndarray  # (N, n_codes) float32, softmax over ``codes``
    label: np.ndarray  # (N,) object: code, or NIF when the top probability is under the threshold
    label_score: np.ndarray  # (N,) float32: top probability
    dysplasia_score: np.ndarray  # (N,) float32: probability dysplastic
    granule_grade: np.ndarray  # (N,) int: 0-3 for NGS/NGB/MMZ predictions (max over 16 rotations), else -1
    dysplasia_grade: np.ndarray  # (N,) int: granule grade for neutrophils, 0/1 for other scored lineages, else -1
    stain_score: np.ndarray | None = None  # (N,) float32: P(Romanowsky-stained), NaN without a stain check

    def __len__(self) -> int:
        return len(self.label)


class CellClassifier:
    """Verified weights + network + the batched inference the pipeline calls."""

    def __init__(self, model: CellNet, config: dict[str, Any], record: ModelRecord, device: str = "cpu",
                 second_look_below: float = SECOND_LOOK_BELOW):
        self.config = config
        self.second_look_below = second_look_below
        self.record = record
        self.mpp = Mpp(config["mpp"])
        self.crop_px = int(config["crop_px"])
        self.codes: tuple[str, ...] = tuple(config["codes"])
        self.device = torch.device(device)
        self.threshold = float(config["unidentified_threshold"])
        self.rotations = int(config["grade_rotations"])
        learned = config.get("learned_from", {})
        #: Classes this model saw no real image of, or too few beside its phantom cells (a lab's fine-tune on a
        #: handful of its own blasts): every count of them is unvalidated on real cells. Classifiers that did
        #: not record ``real_images`` are judged on their sources alone.
        few_real = too_few_real_images(learned, config.get("real_images", {}))
        self.synthetic_only: tuple[str, ...] = tuple(
            c for c in self.codes if set(learned.get(c, ())) == {"phantom"} or c in few_real)
        #: Whether every dysplastic example it learned from was synthetic (no real dysplasia labels).
        self.dysplasia_synthetic_only = set(config.get("dysplasia_learned_from", ())) == {"phantom"}
        #: Whether a crop looks Romanowsky-stained (None for classifiers before 2.0, which had no check).
        self.stain_check = StainCheck.from_config(config.get("stain_check"))
        taxonomy = load_taxonomy()
        self._granule_mask = np.array([c in config["granule_codes"] for c in self.codes])
        lineages = set(config["dysplasia_lineages"])
        self._dysplasia_mask = np.array([taxonomy[c].lineage in lineages for c in self.codes])
        self._cuda = self.device.type == "cuda"
        # channels_last helps oneDNN on CPU as much as cuDNN on GPU (≈1.5× measured on 2 cores).
        self.model = fuse_batchnorm(model.eval()).to(self.device, memory_format=torch.channels_last)

    @classmethod
    def load(cls, models_dir: Path | None = None, device: str | None = None,
             second_look_below: float = SECOND_LOOK_BELOW) -> CellClassifier:
        """Load the verified ``classifier`` weights; on CUDA when available unless ``device`` says otherwise.
        ``second_look_below`` 0 turns the second look off (:data:`SECOND_LOOK_BELOW`)."""
        model, config, record = load_network(models_dir)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        log.info("cell classifier %s %s (%s…) on %s", record.name, record.version, record.sha256[:12], device)
        return cls(model, config, record, device, second_look_below)

    def crop_image(self, image: np.ndarray, mpp: Mpp) -> np.ndarray:
        """A single-cell image at ``mpp`` as the network's input (:func:`single_cell_crop`)."""
        return single_cell_crop(image, mpp, self.crop_px, self.mpp)

    def crops_from_files(self, paths: list[Path], mpp: Mpp | None) -> tuple[np.ndarray, list[int]]:
        """Network inputs of single-cell image files, and the indices of ``paths`` they come from. A file that
        cannot be used (unreadable, no resolution) is logged as one error line naming it and left out."""
        crops, kept = [], []
        for i, path in enumerate(paths):
            try:
                crops.append(self.crop_image(read_rgb(path), image_mpp(path, mpp)))
            except InputError as exc:
                log.error("%s", exc)
                continue
            kept.append(i)
        out = np.stack(crops) if crops else np.zeros((0, self.crop_px, self.crop_px, 3), np.uint8)
        return out, kept

    def _tensor(self, crops: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device, non_blocking=True)
        return x.permute(0, 3, 1, 2).float().contiguous(memory_format=torch.channels_last)

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._cuda:
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            with torch.autocast("cuda", dtype=dtype):
                logits, dys, grade = self.model(x)
            return logits.float(), dys.float(), grade.float()
        return self.model(x)

    @torch.inference_mode()
    def raw_grade(self, crops: np.ndarray, batch_size: int = 256, upright: np.ndarray | None = None) -> np.ndarray:
        """Mori 2020's granule score: the maximum regression output over 16 rotations (22.5° steps), unrounded.

        ``upright``, the scores of the unrotated crops when already computed, saves one of the 16 passes.
        """
        first = 0 if upright is None else 1
        angles = torch.arange(first, self.rotations, dtype=torch.float32) * (360.0 / self.rotations)
        k = len(angles)
        per_batch = max(1, batch_size // k)
        out = np.zeros(len(crops), np.float32) if upright is None else upright.astype(np.float32).copy()
        for start in range(0, len(crops), per_batch):
            x = self._tensor(crops[start : start + per_batch])
            n = x.shape[0]
            xr = rotate_batch(x.repeat_interleave(k, 0), angles.to(x.device).repeat(n))
            grade = self._run(xr)[2].view(n, k).amax(1).cpu().numpy()
            out[start : start + n] = np.maximum(out[start : start + n], grade)
        return out

    def _all_views(self, x: torch.Tensor, upright: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Class log-probabilities of the crops ``x`` (already on the device) as the normalised geometric mean
        over their 8 flips and quarter turns; ``upright``: those of the crops as they are (one view done)."""
        total = upright.clone()
        per_batch = max(1, batch_size // 7)
        for start in range(0, x.shape[0], per_batch):
            part = x[start : start + per_batch]
            views = [torch.rot90(v, k, (2, 3)) for v in (part, part.flip(3)) for k in range(4)][1:]
            logits = self._run(torch.cat(views).contiguous(memory_format=torch.channels_last))[0]
            total[start : start + part.shape[0]] += torch.log_softmax(logits, 1).view(7, part.shape[0], -1).sum(0)
        return torch.log_softmax(total / 8, 1)

    @torch.inference_mode()
    def predict(self, crops: np.ndarray, batch_size: int = 256, grade_neutrophils: bool = True) -> CellPredictions:
        """Classify ``crops`` (N, crop_px, crop_px, 3) uint8 RGB at ``self.mpp``.

        ``grade_neutrophils=False`` skips the 16-rotation granule pass (granule grades stay -1) when only the
        differential is wanted. Cells under ``second_look_below`` are classified on all 8 views of their crop;
        the dysplasia score stays the upright view's.
        """
        if crops.ndim != 4 or crops.shape[1:] != (self.crop_px, self.crop_px, 3) or crops.dtype != np.uint8:
            raise ValueError(
                f"crops must be uint8 (N, {self.crop_px}, {self.crop_px}, 3) at {self.mpp}; got {crops.dtype} {crops.shape}"
            )
        n = len(crops)
        probs = np.zeros((n, len(self.codes)), np.float32)
        dys = np.zeros(n, np.float32)
        upright = np.zeros(n, np.float32)
        for start in range(0, n, batch_size):
            x = self._tensor(crops[start : start + batch_size])
            logits, d, g = self._run(x)
            logp = torch.log_softmax(logits, 1)
            again = logp.amax(1).exp() < self.second_look_below
            if again.any():
                logp[again] = self._all_views(x[again], logp[again], batch_size)
            stop = start + len(logits)
            probs[start:stop] = logp.exp().cpu().numpy()
            dys[start:stop] = torch.sigmoid(d).cpu().numpy()
            upright[start:stop] = g.cpu().numpy()
        top = probs.argmax(1)
        score = probs[np.arange(n), top]
        unsure = score < self.threshold
        label = np.where(unsure, UNIDENTIFIED_CODE, np.array(self.codes, dtype=object)[top]).astype(object)

        granule = np.full(n, -1, np.int64)
        neutro = self._granule_mask[top] & ~unsure
        if grade_neutrophils and neutro.any():
            raw = self.raw_grade(crops[neutro], batch_size, upright[neutro])
            granule[neutro] = granule_grade(raw)
        dgrade = np.full(n, -1, np.int64)
        scored = self._dysplasia_mask[top] & ~unsure
        dgrade[scored] = (dys[scored] > 0.5).astype(np.int64)
        if grade_neutrophils:
            dgrade[neutro] = granule[neutro]
        stain = self.stain_check.score(crops) if self.stain_check else np.full(n, np.nan, np.float32)
        return CellPredictions(probs, label, score.astype(np.float32), dys, granule, dgrade, stain)


def load_network(models_dir: Path | None = None) -> tuple[CellNet, dict[str, Any], ModelRecord]:
    """The verified ``classifier`` as a trainable network (BatchNorm not folded), its config and record."""
    models_dir = models_dir or default_models_dir()
    state, config, record = load_weights(models_dir, MODEL_NAME)
    model = CellNet(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(models_dir / record.file, f"weights do not fit the stored architecture ({exc})") from exc
    return model, config, record


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
