"""The house's rooms: layers depend only downward, and no back doors between training, evaluation and inference.

Read from the source (every ``import``, at module level or inside a function), so a lazy import inside a
function is caught as well as one at the top of a file.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Where each installed package's source lives (``flows/`` is installed as ``bmpipe.flows``).
ROOTS = {"bmpipe": REPO / "bmpipe", "bmpipe.flows": REPO / "flows"}

#: What a slide analysis runs: none of it may reach training or evaluation code.
INFERENCE = ("bmpipe.slide", "bmpipe.imaging", "bmpipe.nn", "bmpipe.stages", "bmpipe.report", "bmpipe.flows",
             "bmpipe.models", "bmpipe.criteria", "bmpipe.records", "bmpipe.taxonomy", "bmpipe.stats",
             "bmpipe.resolution", "bmpipe.datasets", "bmpipe.cli.run", "bmpipe.cli.serve", "bmpipe.cli.classify",
             "bmpipe.cli.detect", "bmpipe.cli.review", "bmpipe.cli.phantom")
#: Layer → the layers above it, which it must never import (slide I/O → image tools → models → stages → the rest).
BELOW = {
    "bmpipe.slide": ("bmpipe.imaging", "bmpipe.nn", "bmpipe.stages", "bmpipe.flows", "bmpipe.report", "bmpipe.cli"),
    "bmpipe.imaging": ("bmpipe.nn", "bmpipe.stages", "bmpipe.flows", "bmpipe.report", "bmpipe.cli"),
    "bmpipe.nn": ("bmpipe.stages", "bmpipe.flows", "bmpipe.report", "bmpipe.cli"),
    "bmpipe.stages": ("bmpipe.flows", "bmpipe.report", "bmpipe.cli"),
    "bmpipe.report": ("bmpipe.flows", "bmpipe.cli"),
    "bmpipe.flows": ("bmpipe.cli",),
    # readers may run the stages (SegPC's non-plasma cells are what the detector finds), never training
    "bmpipe.datasets": ("bmpipe.train", "bmpipe.evaluation", "bmpipe.flows", "bmpipe.report", "bmpipe.cli"),
}


def _modules() -> Iterator[tuple[str, Path]]:
    for package, root in ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            name = ".".join((package, *parts))
            if package == "bmpipe" and name.startswith("bmpipe.flows"):
                continue
            yield name, path


def imports_of(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


GRAPH = {name: imports_of(path) for name, path in _modules()}


def _within(name: str, packages: tuple[str, ...] | str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in ((packages,) if isinstance(packages, str) else packages))


def _offending(importers: tuple[str, ...] | str, forbidden: tuple[str, ...] | str) -> list[str]:
    return sorted(f"{m} imports {i}" for m, found in GRAPH.items() if _within(m, importers)
                  for i in found if _within(i, forbidden))


def test_the_graph_is_read_from_every_module() -> None:
    assert "bmpipe.flows.batch" in GRAPH and "bmpipe.train.classifier" in GRAPH
    assert "bmpipe.evaluation.classifier" in GRAPH["bmpipe.train.classifier"]  # imports are seen


def test_inference_never_reaches_training_or_evaluation() -> None:
    assert _offending(INFERENCE, ("bmpipe.train", "bmpipe.evaluation")) == []


def test_evaluation_does_not_import_training() -> None:
    """Training may score itself with evaluation's code; evaluation reads data through ``bmpipe.datasets``."""
    assert _offending("bmpipe.evaluation", "bmpipe.train") == []


def test_no_old_top_level_flows_package_is_imported() -> None:
    assert _offending("bmpipe", "flows") == []


@pytest.mark.parametrize("layer", sorted(BELOW))
def test_layers_depend_only_downward(layer: str) -> None:
    assert _offending(layer, BELOW[layer]) == []


def test_no_module_imports_a_package_whose_init_imports_it_back() -> None:
    """``from bmpipe.phantom import texture`` inside ``bmpipe.phantom``, whose ``__init__`` imports the modules
    that do so, works only by the order of that ``__init__``; such modules import their siblings by name."""
    reexporting = {p for p, found in GRAPH.items() if any(i.startswith(p + ".") for i in found)}
    offending = sorted(f"{m} imports {i}" for m, found in GRAPH.items() for i in found
                       if i in reexporting and i == m.rsplit(".", 1)[0] and not m.endswith(".__main__"))
    assert offending == []


def test_the_command_line_help_does_not_import_torch() -> None:
    """``bmpipe --help`` builds every sub-command's parser: none may import torch (seconds) to do it."""
    import subprocess
    import sys

    code = ("import sys; from bmpipe.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'prefect', 'ultralytics') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
