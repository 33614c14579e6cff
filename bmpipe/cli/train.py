"""``bmpipe train``: train a model on real and phantom data; each trainer parses its own options."""

from __future__ import annotations

import argparse
import importlib

#: Trainer name → module with ``main(argv) -> int``.
TRAINERS = {
    "classifier": "bmpipe.train.classifier",
    "detector": "bmpipe.train.yolo",
    "dysplasia": "bmpipe.train.dysplasia",
    "segmenter": "bmpipe.train.segmenter",
}


def _train(args: argparse.Namespace) -> int:
    return importlib.import_module(TRAINERS[args.what]).main(args.rest) or 0


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a model on real and phantom data")
    train.add_argument("what", choices=sorted(TRAINERS))
    train.add_argument("rest", nargs=argparse.REMAINDER, help="options of that trainer (see its --help)")
    train.set_defaults(func=_train)
