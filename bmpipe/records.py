"""Typed records passed between pipeline stages.

Coordinates are level-0 pixels of the slide they come from; sizes in micrometres carry ``_um`` in their
name. Cells travel as a columnar ``Cells`` batch (numpy arrays, one row per cell) rather than one object per
cell, because a slide holds 10^5-10^6 of them and every stage works on whole batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Literal

import numpy as np
import pandas as pd

RegionKind = Literal["monolayer", "thick", "edge", "smear"]


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in level-0 pixels, ``x1``/``y1`` exclusive."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    def grown(self, margin: float) -> Box:
        """This box with ``margin`` level-0 px added on every side."""
        return Box(self.x0 - margin, self.y0 - margin, self.x1 + margin, self.y1 + margin)


@dataclass(frozen=True)
class Region:
    """A scored area of the smear: where cells are readable (``monolayer``) or not."""

    box: Box
    kind: RegionKind
    score: float


@dataclass
class Cells:
    """A batch of detected nucleated cells (columnar; every array has one entry per cell).

    ``label`` holds taxonomy codes (``""`` before classification); ``dysplasia_grade`` is -1 where the
    lineage is not scored, else 0-3; ``dysplasia_score`` is the probability that the cell is dysplastic.
    """

    x: np.ndarray
    y: np.ndarray
    x0: np.ndarray
    y0: np.ndarray
    x1: np.ndarray
    y1: np.ndarray
    score: np.ndarray
    label: np.ndarray = field(default=None)  # type: ignore[assignment]
    label_score: np.ndarray = field(default=None)  # type: ignore[assignment]
    dysplasia_grade: np.ndarray = field(default=None)  # type: ignore[assignment]
    dysplasia_score: np.ndarray = field(default=None)  # type: ignore[assignment]
    #: Probability that the cell's crop is Romanowsky-stained (``bmpipe.nn.stain``; NaN unknown).
    stain_score: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        n = len(self.x)
        for f in ("x", "y", "x0", "y0", "x1", "y1", "score"):
            setattr(self, f, np.asarray(getattr(self, f), dtype=np.float64).reshape(-1))
        if self.label is None:
            self.label = np.full(n, "", dtype=object)
        if self.label_score is None:
            self.label_score = np.zeros(n)
        if self.dysplasia_grade is None:
            self.dysplasia_grade = np.full(n, -1, dtype=np.int64)
        if self.dysplasia_score is None:
            self.dysplasia_score = np.zeros(n)
        if self.stain_score is None:
            self.stain_score = np.full(n, np.nan)
        self.label = np.asarray(self.label, dtype=object).reshape(-1)
        self.label_score = np.asarray(self.label_score, dtype=np.float64).reshape(-1)
        self.dysplasia_grade = np.asarray(self.dysplasia_grade, dtype=np.int64).reshape(-1)
        self.dysplasia_score = np.asarray(self.dysplasia_score, dtype=np.float64).reshape(-1)
        self.stain_score = np.asarray(self.stain_score, dtype=np.float64).reshape(-1)
        for f in fields(self):
            if len(getattr(self, f.name)) != n:
                raise ValueError(f"Cells column {f.name!r} has {len(getattr(self, f.name))} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.x)

    @classmethod
    def empty(cls) -> Cells:
        return cls(*(np.zeros(0) for _ in range(7)))

    @classmethod
    def from_boxes(cls, boxes: np.ndarray, scores: np.ndarray) -> Cells:
        """Cells from an (N, 4) array of level-0 ``x0, y0, x1, y1`` boxes; centres are the box centres."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        return cls(
            x=(boxes[:, 0] + boxes[:, 2]) / 2,
            y=(boxes[:, 1] + boxes[:, 3]) / 2,
            x0=boxes[:, 0],
            y0=boxes[:, 1],
            x1=boxes[:, 2],
            y1=boxes[:, 3],
            score=scores,
        )

    @classmethod
    def concat(cls, batches: list[Cells]) -> Cells:
        if not batches:
            return cls.empty()
        return cls(**{f.name: np.concatenate([getattr(b, f.name) for b in batches]) for f in fields(cls)})

    def boxes(self) -> np.ndarray:
        return np.stack([self.x0, self.y0, self.x1, self.y1], axis=1)

    def take(self, index: np.ndarray) -> Cells:
        """The rows at ``index`` (integer positions or a boolean mask)."""
        return Cells(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def chunks(self, size: int) -> Iterator[Cells]:
        """Consecutive batches of at most ``size`` rows."""
        for start in range(0, len(self), size):
            yield self.take(np.arange(start, min(start + size, len(self))))

    def with_labels(self, label: np.ndarray, label_score: np.ndarray) -> Cells:
        return replace(self, label=label, label_score=label_score)

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame({f.name: getattr(self, f.name) for f in fields(self)})
        frame["label"] = frame["label"].astype(str)
        return frame

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Cells:
        return cls(**{f.name: frame[f.name].to_numpy() for f in fields(cls) if f.name in frame})

