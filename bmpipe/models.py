"""The shipped models a run uses, loaded once per process and per device."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from bmpipe.nn.cell_classifier import CellClassifier
from bmpipe.nn.unet_detector import UnetDetector
from bmpipe.nn.weights import ModelRecord, default_models_dir


@dataclass(frozen=True)
class Models:
    detector: UnetDetector
    classifier: CellClassifier

    @property
    def records(self) -> list[ModelRecord]:
        return [self.detector.record, self.classifier.record]


@cache
def load_models(models_dir: Path | None = None, device: str | None = None) -> Models:
    """Detector and classifier from ``models_dir`` (default: the repository's ``models/``), sha256-checked."""
    folder = models_dir or default_models_dir()
    return Models(
        detector=UnetDetector.load(folder, device=device),
        classifier=CellClassifier.load(folder, device=device),
    )
