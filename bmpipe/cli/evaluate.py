"""``bmpipe evaluate``: score a shipped or trained model on held-out images and print its figures and targets."""

from __future__ import annotations

import argparse
import importlib

#: What can be evaluated → module with ``main(argv) -> int``, which parses its own options.
EVALUATORS = {
    "classifier": "bmpipe.evaluation.classifier",
    "detector": "bmpipe.evaluation.detector",
}


def _evaluate(args: argparse.Namespace) -> int:
    return importlib.import_module(EVALUATORS[args.what]).main(args.rest) or 0


def register(sub: argparse._SubParsersAction) -> None:
    evaluate = sub.add_parser("evaluate", help="score a model on held-out images (figures and targets)")
    evaluate.add_argument("what", choices=sorted(EVALUATORS))
    evaluate.add_argument("rest", nargs=argparse.REMAINDER, help="options of that evaluation (see its --help)")
    evaluate.set_defaults(func=_evaluate)
