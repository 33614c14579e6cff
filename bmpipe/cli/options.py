"""Options shared by bmpipe's commands, each defined once: its name, type, default and help.

Every command's parser is a :class:`Parser`, whose help ends each option with its default. The grammar
(README, "Command line"): ``--out`` is where a command writes what it produces; ``--models`` is the models
folder a command reads (a trainer: the one it writes to); ``--init`` the models folder a trainer starts
from; ``--model-version`` the version a trainer gives its model (``--version`` is bmpipe's own);
``--device`` and ``--mpp`` mean the same everywhere. Exit status: 0 all done; 1 done, but some inputs could
not be used (each named in an error line); 2 nothing done (bad usage, or an input or model that stops the
command, named in one line).
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: The nucleated-cell detectors bmpipe ships (``bmpipe.models.load_detector``), the default first.
DETECTORS = ("unet", "yolo")


class DefaultsShown(argparse.HelpFormatter):
    """Each option's help ends with its default, unless the help already speaks of it or it has none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        quiet = (default is None or isinstance(default, bool) or default == [] or default is argparse.SUPPRESS
                 or not action.option_strings)
        if quiet or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An argument parser whose help shows every option's default; sub-command parsers are of this class too."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsShown)
        super().__init__(*args, **kwargs)


def _um_per_px(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of µm per pixel")
    return value


def mpp_value(text: str):
    """``--mpp``: a positive number of µm per pixel, as an :class:`~bmpipe.resolution.Mpp`."""
    from bmpipe.resolution import Mpp

    return Mpp(_um_per_px(text))


def mpp_or_auto(text: str) -> float | str:
    """``run --mpp``: a positive number of µm per pixel, or ``auto`` (measured on the red cells)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return _um_per_px(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, nor 'auto'") from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_out(p: argparse.ArgumentParser, what: str, default: Path | None = None) -> None:
    p.add_argument("--out", type=Path, required=default is None, default=default, help=what)


def add_models(p: argparse.ArgumentParser, writes: bool = False) -> None:
    p.add_argument("--models", type=Path, default=None,
                   help=("models folder to write the trained model to" if writes else "models folder to read")
                        + " (default: the shipped one)")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:1 (default: CUDA when there is "
                                                  "one, else the CPU)")


def add_detector(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detector", choices=DETECTORS, default=DETECTORS[0], help="nucleated-cell detector")


def add_mpp(p: argparse.ArgumentParser, what: str, repeat: bool = False, auto: bool = False) -> None:
    """``--mpp``: µm per pixel of the images; ``repeat``: once per folder option, in the same order; ``auto``:
    ``auto`` (measured on the red cells) is taken too."""
    if repeat:
        p.add_argument("--mpp", type=mpp_value, action="append", default=[], help=what)
    else:
        p.add_argument("--mpp", type=mpp_or_auto if auto else mpp_value, default=None, help=what)


def add_threads(p: argparse.ArgumentParser, default: int | None) -> None:
    p.add_argument("--threads", type=positive_int, default=default,
                   help="torch CPU threads" + ("" if default is not None else " (default: torch's own choice)"))


def add_batch_size(p: argparse.ArgumentParser, default: int) -> None:
    p.add_argument("--batch-size", type=positive_int, default=default, help="crops or tiles per network pass")


def add_model_version(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--model-version", default=None, help=f"version written into the model's manifest and card "
                                                          f"(default: {default})")


def add_port(p: argparse.ArgumentParser, default: int = 8765) -> None:
    """``--port``: the local port a command serves on (127.0.0.1 only)."""
    p.add_argument("--port", type=port_number, default=default, help="port on 127.0.0.1 to serve on (0: any free one)")


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0-65535)")
    return value


def exit_status(done: int, failed: int) -> int:
    """The exit status of a command that went through ``done + failed`` inputs (see the module's policy)."""
    return 0 if not failed else 1 if done else 2
