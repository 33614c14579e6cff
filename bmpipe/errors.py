"""Errors a user sees: each names the file and the problem in one line."""

from __future__ import annotations

from pathlib import Path


class BmpipeError(Exception):
    """Base of every error bmpipe reports to a user without a traceback."""


class InputError(BmpipeError):
    """A file given to bmpipe cannot be used; the message starts with the file's path."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class SlideError(InputError):
    """A slide cannot be opened or read."""


class ModelError(InputError):
    """A model file is missing, changed or unreadable."""
