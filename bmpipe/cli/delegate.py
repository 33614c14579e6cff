"""Command groups that hand their options on: ``bmpipe GROUP WHAT [options...]`` runs ``main(options)`` of the
module named for ``WHAT``, which parses them itself and is imported only when run (training pulls in
ultralytics and the data loaders, which ``bmpipe run`` never needs). ``bmpipe GROUP --help`` lists each
``WHAT`` with what it does; ``bmpipe GROUP WHAT --help`` its options."""

from __future__ import annotations

import argparse
import importlib


def register_group(sub: argparse._SubParsersAction, name: str, help: str,
                   modules: dict[str, tuple[str, str]]) -> None:
    """Add ``name WHAT ...`` to ``sub``; ``modules`` maps each ``WHAT`` to (module with ``main(argv)``, what it
    does in a few words)."""

    def run(args: argparse.Namespace) -> int:
        return importlib.import_module(modules[args.what][0]).main(args.rest) or 0

    width = max(map(len, modules))
    listing = "\n".join(f"  {what:<{width}}  {text}" for what, (_, text) in sorted(modules.items()))
    group = sub.add_parser(name, help=help, description=help, formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog=f"{name} what:\n{listing}\n\nOptions of each: bmpipe {name} WHAT --help")
    group.add_argument("what", choices=sorted(modules), metavar="WHAT", help="one of the list below")
    group.add_argument("rest", nargs=argparse.REMAINDER, metavar="...", help="options of that command")
    group.set_defaults(func=run)
