"""Command groups that hand their options on: ``bmpipe GROUP WHAT [options...]`` runs ``main(options)`` of the
module named for ``WHAT``, which parses them itself and is imported only when run (training pulls in
ultralytics and the data loaders, which ``bmpipe run`` never needs)."""

from __future__ import annotations

import argparse
import importlib


def register_group(sub: argparse._SubParsersAction, name: str, help: str, modules: dict[str, str]) -> None:
    """Add ``name WHAT ...`` to ``sub``, ``modules`` mapping each ``WHAT`` to a module with ``main(argv)``."""

    def run(args: argparse.Namespace) -> int:
        return importlib.import_module(modules[args.what]).main(args.rest) or 0

    group = sub.add_parser(name, help=help)
    group.add_argument("what", choices=sorted(modules))
    group.add_argument("rest", nargs=argparse.REMAINDER, help="options of that command (see its --help)")
    group.set_defaults(func=run)
