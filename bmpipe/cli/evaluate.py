"""``bmpipe evaluate``: score a shipped or trained model on held-out images and print its figures and targets."""

from __future__ import annotations

import argparse

from bmpipe.cli.delegate import register_group

#: What can be evaluated → (module with ``main(argv) -> int``, which parses its own options; what it scores).
EVALUATORS = {
    "classifier": ("bmpipe.evaluation.classifier", "the cell classifier: held-out sets, a folder, or --transfer"),
    "detector": ("bmpipe.evaluation.detector", "a nucleated-cell detector on held-out real and phantom fields"),
    "resolution": ("bmpipe.evaluation.resolution", "the red-cell µm/px estimate against each set's known value"),
}


def register(sub: argparse._SubParsersAction) -> None:
    register_group(sub, "evaluate", "score a model, or the resolution check, on held-out images (figures and targets)",
                   EVALUATORS)
