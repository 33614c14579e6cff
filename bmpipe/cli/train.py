"""``bmpipe train``: train a model on real and phantom data; each trainer parses its own options."""

from __future__ import annotations

import argparse

from bmpipe.cli.delegate import register_group

#: Trainer name → (module with ``main(argv) -> int``, what it trains).
TRAINERS = {
    "classifier": ("bmpipe.train.classifier", "the cell classifier, on the real sets, phantom cells and --data folders"),
    "detector": ("bmpipe.train.yolo", "the YOLO nucleated-cell detector"),
    "dysplasia": ("bmpipe.train.dysplasia", "the classifier's dysplasia heads, on a lab's own labels"),
    "segmenter": ("bmpipe.train.segmenter", "the U-Net nucleated-cell detector"),
}


def register(sub: argparse._SubParsersAction) -> None:
    register_group(sub, "train", "train a model on real and phantom data", TRAINERS)
