"""The ``bmpipe`` command. Each sub-command lives in its own module and registers itself with ``register``."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from bmpipe import __version__
from bmpipe.cli.options import Parser
from bmpipe.cli.run import DEMO_SLIDE
from bmpipe.errors import BmpipeError

__all__ = ["DEMO_SLIDE", "build_parser", "main"]

log = logging.getLogger("bmpipe")

#: Sub-command modules (``bmpipe.cli.NAME``, each with ``register(subparsers)``), in the order ``--help`` lists them.
COMMANDS = ("run", "serve", "phantom", "train", "evaluate", "classify", "detect", "bench", "review")


def _setup_environment() -> None:
    """Offline, quiet third-party settings, set before prefect or ultralytics are imported."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # The flow's temporary API server can take well over its default 20 s to start on a loaded 2-core machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def _no_run_failure_echo(record: logging.LogRecord) -> bool:
    """Console filter: Prefect's own records of a failed task or flow run (with its traceback) are dropped,
    because the batch reports every failure itself, bad input in one line naming the file and a bug with its
    traceback; they still reach the Prefect UI, whose handler this filter is not on. ``--debug`` keeps them."""
    return not (record.name.startswith(("prefect.task_runs", "prefect.flow_runs")) and record.levelno >= logging.ERROR)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="bmpipe", description="Whole-slide analysis of bone-marrow aspirate smears.")
    parser.add_argument("--version", action="version", version=f"bmpipe {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"bmpipe.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    _setup_environment()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(levelname)s %(message)s" if not args.debug else "%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if not args.debug:  # the flow's local API server chatters on every request; tifffile warns without naming the file
        for noisy in ("httpx", "httpcore", "prefect", "uvicorn"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        logging.getLogger("tifffile").setLevel(logging.ERROR)
        for handler in logging.getLogger().handlers:
            handler.addFilter(_no_run_failure_echo)
    try:
        return args.func(args)
    except BmpipeError as exc:
        if args.debug:
            raise
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
