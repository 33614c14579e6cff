"""One command-line grammar: every sub-command's options are defined once, spelled alike and shown with their
defaults, and exit statuses follow one policy (``bmpipe.cli.options``)."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from bmpipe.cli import build_parser
from bmpipe.cli.evaluate import EVALUATORS
from bmpipe.cli.options import DETECTORS, DefaultsShown, exit_status, mpp_or_auto, mpp_value
from bmpipe.cli.train import TRAINERS


def _subparsers(parser: argparse.ArgumentParser, name: str) -> dict[str, argparse.ArgumentParser]:
    found = {name: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, p in action.choices.items():
                found |= _subparsers(p, f"{name} {sub}")
    return found


def _all_parsers() -> dict[str, argparse.ArgumentParser]:
    parsers = _subparsers(build_parser(), "bmpipe")
    for group, modules in (("train", TRAINERS), ("evaluate", EVALUATORS)):
        for what, (module, _) in modules.items():
            parsers[f"bmpipe {group} {what}"] = importlib.import_module(module).parser()
    return parsers


PARSERS = _all_parsers()


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def test_every_command_is_reached() -> None:
    assert {"bmpipe run", "bmpipe classify", "bmpipe train classifier", "bmpipe evaluate detector",
            "bmpipe phantom slide", "bmpipe review import"} <= set(PARSERS)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_option_says_what_it_is_and_shows_its_default(name: str) -> None:
    parser = PARSERS[name]
    formatter = DefaultsShown(name)
    for action in _options(parser):
        assert action.help, f"{name} {action.option_strings[0]}: no help"
        if isinstance(action, argparse._VersionAction):
            continue
        shown = formatter._get_help_string(action)
        has_default = not (action.default is None or isinstance(action.default, bool) or action.default == [])
        assert not has_default or "default" in shown, f"{name} {action.option_strings[0]}: default not shown"


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_one_spelling_for_one_idea(name: str) -> None:
    spelled = {s for a in _options(PARSERS[name]) for s in a.option_strings}
    assert not spelled & {"--models-dir", "--work", "--batch"}, name
    if name != "bmpipe":
        assert "--version" not in spelled, f"{name}: --version is bmpipe's own; a model's is --model-version"
    for action in _options(PARSERS[name]):
        if "--detector" in action.option_strings:
            assert tuple(action.choices) == DETECTORS and action.default == DETECTORS[0], name
        if "--mpp" in action.option_strings:
            assert action.type in (mpp_value, mpp_or_auto), name


def test_commands_that_run_a_model_choose_its_device() -> None:
    for name in ("bmpipe run", "bmpipe demo", "bmpipe serve", "bmpipe classify", "bmpipe detect", "bmpipe bench",
                 "bmpipe train classifier", "bmpipe evaluate classifier", "bmpipe evaluate detector"):
        assert any("--device" in a.option_strings for a in _options(PARSERS[name])), name


@pytest.mark.parametrize("text", ["0", "-0.1", "abc", "nan"])
def test_a_resolution_that_is_not_a_positive_number_is_refused_alike(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a positive number of µm per pixel"):
        mpp_value(text)
    with pytest.raises(argparse.ArgumentTypeError, match="not a positive number of µm per pixel"):
        mpp_or_auto(text)


def test_exit_status_policy() -> None:
    assert (exit_status(3, 0), exit_status(2, 1), exit_status(0, 2)) == (0, 1, 2)


def test_group_help_lists_what_can_be_trained_and_evaluated() -> None:
    for group, modules in (("train", TRAINERS), ("evaluate", EVALUATORS)):
        done = subprocess.run([sys.executable, "-m", "bmpipe.cli", group, "--help"], capture_output=True,
                              text=True, check=True)
        for what, (_, text) in modules.items():
            assert f"{what}" in done.stdout and text in done.stdout.replace("\n", " ").replace("  ", " ")


def test_a_usage_error_exits_2_naming_the_option() -> None:
    done = subprocess.run([sys.executable, "-m", "bmpipe.cli", "classify", "x.png", "--out", "p.csv",
                           "--mpp", "zero"], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "--mpp" in done.stderr and "not a positive number" in done.stderr
