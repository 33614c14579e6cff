"""``bmpipe train``: train a model on real and phantom data; each trainer parses its own options."""

from __future__ import annotations

import argparse

from bmpipe.cli.delegate import register_group

#: Trainer name → module with ``main(argv) -> int``.
TRAINERS = {
    "classifier": "bmpipe.train.classifier",
    "detector": "bmpipe.train.yolo",
    "dysplasia": "bmpipe.train.dysplasia",
    "segmenter": "bmpipe.train.segmenter",
}


def register(sub: argparse._SubParsersAction) -> None:
    register_group(sub, "train", "train a model on real and phantom data", TRAINERS)
