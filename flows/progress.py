"""Progress of a run, one bar per slide advancing stage by stage, for the command line.

Flows report stages to the process-wide ``reporter``; the CLI installs a rich progress display when its
output is a terminal, and nothing (the default) otherwise, so logs and CI output stay plain. On a Dask
cluster of processes the stages run elsewhere and only the batch's own steps are shown.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Self

#: The steps of one slide, in order; a bar's total.
STAGES = ("open", "smear regions", "detect and classify", "aggregate", "report")


class Progress:
    """Does nothing: the reporter when no terminal is watching."""

    def stage(self, slide: str, stage: str) -> None:
        pass

    def finished(self, slide: str, status: str) -> None:
        pass


class RichProgress(Progress):
    """A rich bar per slide: ``slide · stage`` with the stages done so far."""

    def __init__(self, console: object | None = None) -> None:
        from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bars

        self.bars = Bars(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console)
        self._ids: dict[str, int] = {}

    def stage(self, slide: str, stage: str) -> None:
        if slide not in self._ids:
            self._ids[slide] = self.bars.add_task(slide, total=len(STAGES))
        done = STAGES.index(stage) if stage in STAGES else 0
        self.bars.update(self._ids[slide], completed=done, description=f"{slide} · {stage}")

    def finished(self, slide: str, status: str) -> None:
        if slide not in self._ids:
            self._ids[slide] = self.bars.add_task(slide, total=len(STAGES))
        self.bars.update(self._ids[slide], completed=len(STAGES), description=f"{slide} · {status}")

    def __enter__(self) -> Self:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()


reporter: Progress = Progress()


@contextmanager
def showing(progress: Progress) -> Iterator[None]:
    """Report the stages of flows run inside to ``progress``."""
    global reporter
    previous, reporter = reporter, progress
    try:
        yield
    finally:
        reporter = previous
