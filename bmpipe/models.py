"""The shipped models a run uses, loaded once per process and per device."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from bmpipe.nn.cell_classifier import CellClassifier
from bmpipe.nn.detector import Detector
from bmpipe.nn.weights import ModelRecord, default_models_dir

DetectorKind = Literal["unet", "yolo"]
DETECTORS: tuple[DetectorKind, ...] = ("unet", "yolo")


@dataclass(frozen=True)
class Models:
    detector: Detector
    classifier: CellClassifier

    @property
    def records(self) -> list[ModelRecord]:
        return [self.detector.record, self.classifier.record]


def load_detector(kind: str = "unet", models_dir: Path | None = None, device: str | None = None) -> Detector:
    """The nucleated-cell detector ``kind`` (``"unet"`` or ``"yolo"``), sha256-checked. Each network's
    module is imported only when chosen (ultralytics is slow to import and not needed by the U-Net)."""
    folder = models_dir or default_models_dir()
    if kind == "unet":
        from bmpipe.nn.unet_detector import UnetDetector

        return UnetDetector.load(folder, device=device)
    if kind == "yolo":
        from bmpipe.nn.yolo_detector import YoloDetector

        return YoloDetector.load(folder, device=device)
    raise ValueError(f"unknown detector {kind!r}; choose one of {', '.join(DETECTORS)}")


@cache
def load_models(models_dir: Path | None = None, device: str | None = None, detector: str = "unet") -> Models:
    """Detector and classifier from ``models_dir`` (default: the repository's ``models/``), sha256-checked."""
    folder = models_dir or default_models_dir()
    return Models(
        detector=load_detector(detector, folder, device),
        classifier=CellClassifier.load(folder, device=device),
    )
