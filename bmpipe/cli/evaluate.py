"""``bmpipe evaluate``: score a shipped or trained model on held-out images and print its figures and targets."""

from __future__ import annotations

import argparse

from bmpipe.cli.delegate import register_group

#: What can be evaluated → module with ``main(argv) -> int``, which parses its own options.
EVALUATORS = {
    "classifier": "bmpipe.evaluation.classifier",
    "detector": "bmpipe.evaluation.detector",
    "resolution": "bmpipe.evaluation.resolution",
}


def register(sub: argparse._SubParsersAction) -> None:
    register_group(sub, "evaluate", "score a model, or the resolution check, on held-out images (figures and targets)", EVALUATORS)
