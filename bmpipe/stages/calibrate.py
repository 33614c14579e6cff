"""Resolution that checks itself: µm/px measured on a slide's red cells, to use (``--mpp auto``) or to check.

Every stage works in µm/px, so a wrong resolution silently ruins a count (cells too big or too small for the
detector and classifier). Field photographs carry none, and metadata can be wrong (another objective, a
resampled export). The red cells of the smear measure it independently (``bmpipe.imaging.red_cells``):
``--mpp auto`` uses that estimate, and otherwise the given or stated value is compared with it and a
difference over ``MAX_DISAGREEMENT`` is warned of, in the log, the report and the manifest. Folders of
single-cell photographs (``bmpipe classify``, and the ``--data`` of training and evaluation) are checked the
same way on the red cells around their cells, where the crops are wide enough to hold whole ones.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bmpipe.errors import InputError, SlideError
from bmpipe.imaging.image_files import read_rgb
from bmpipe.imaging.red_cells import MIN_RED_CELLS, MppEstimate, estimate_mpp, red_cell_diameters
from bmpipe.resolution import Mpp
from bmpipe.slide import Slide, open_slide

log = logging.getLogger(__name__)

#: What ``--mpp`` takes to measure the resolution on the red cells instead of being told it.
AUTO = "auto"
#: The stated and measured resolutions may differ by this share before a run warns (red cells vary ~5%).
MAX_DISAGREEMENT = 0.25
#: Windows of level-0 pixels the red cells are measured in: a grid over the slide, enough for hundreds.
GRID = 7
WINDOW_PX = 1024
#: Single-cell photographs whose red cells check a folder's ``--mpp``: spread over it, several hundred red
#: cells around CellaVision-sized crops in about a second.
CHECKED_IMAGES = 300
#: Resolution a slide is opened at before its red cells are measured (only native pixels are read).
_PROVISIONAL = Mpp(1.0)


def red_cell_diameters_of(slide: Slide) -> np.ndarray:
    """Diameters (level-0 px) of isolated round red cells in windows on a grid over ``slide`` (a photograph
    small enough is measured whole); windows of bare glass give none."""
    width, height = slide.dimensions
    if width * height <= 4 * WINDOW_PX * WINDOW_PX:
        return red_cell_diameters(slide.read_region(0, 0, width, height, slide.mpp))
    side = min(WINDOW_PX, width, height)
    # windows never overlap, so no red cell is measured twice
    xs = np.linspace(0, width - side, min(GRID, width // side)).astype(int)
    ys = np.linspace(0, height - side, min(GRID, height // side)).astype(int)
    found = [red_cell_diameters(slide.read_region(int(x), int(y), side, side, slide.mpp)) for y in ys for x in xs]
    return np.concatenate(found)


def measure_mpp(slide: Slide) -> MppEstimate | None:
    """The slide's level-0 µm/px from its red cells (None: fewer than ``MIN_RED_CELLS`` isolated ones)."""
    return estimate_mpp(red_cell_diameters_of(slide))


def resolution_warning(used: Mpp, source: str, estimate: MppEstimate | None, auto: bool = True) -> str:
    """The warning when the resolution ``used`` (found by ``source``) and the red cells disagree by over
    ``MAX_DISAGREEMENT`` ("" if they agree, or the red cells are too few to tell); ``auto``: the command
    takes ``--mpp auto``, and the warning offers it."""
    if estimate is None:
        return ""
    off = used.um_per_px / estimate.mpp.um_per_px - 1
    if abs(off) <= MAX_DISAGREEMENT:
        return ""
    return (f"The resolution used, {used} ({source}), is {abs(off):.0%} "
            f"{'coarser' if off > 0 else 'finer'} than the red cells measure ({estimate}): a wrong objective, a "
            "resampled export or bad metadata? Cells are then seen at the wrong size and every figure is "
            f"doubtful: check the resolution, or rerun with {'--mpp auto or ' if auto else ''}the right --mpp.")


def resolution_record(used: Mpp, source: str, estimate: MppEstimate | None) -> dict:
    """What ``run.json`` records of a resolution: the one ``used``, how it was found, the red cells' own."""
    return {"resolution": {"um_per_px": used.um_per_px, "source": source,
                           "red_cells": estimate.as_dict() if estimate else None}}


def case_mpp(photos: list[Path]) -> MppEstimate:
    """One resolution for the photographs of a case (one camera), from their red cells pooled; a photograph
    that cannot be read is left to the count to report."""
    found = []
    for path in photos:
        try:
            with open_slide(path, mpp=_PROVISIONAL) as photo:
                found.append(red_cell_diameters_of(photo))
        except SlideError:
            continue
    return measured_mpp(photos[0].parent, np.concatenate(found) if found else np.zeros(0))


def measured_mpp(where: Path, diameters: np.ndarray, error: type[InputError] = SlideError) -> MppEstimate:
    """``--mpp auto``: the resolution the red-cell ``diameters`` give (logged), or ``error`` naming ``where``
    when they are too few to measure it."""
    estimate = estimate_mpp(diameters)
    if estimate is None:
        raise error(where, _too_few(len(diameters)))
    log.info("%s: --mpp auto: %s", where, estimate)
    return estimate


def cell_images_red_cells(images: Sequence[Path]) -> np.ndarray:
    """Diameters (px) of the red cells around the cells of single-cell photographs (one camera), pooled over
    up to ``CHECKED_IMAGES`` of them spread evenly over the list; crops too tight to hold whole red cells give
    few or none. Images that cannot be read are passed over: whoever reads them for their cells reports them."""
    picked = np.unique(np.linspace(0, len(images) - 1, min(CHECKED_IMAGES, len(images))).round().astype(int))
    found = [np.zeros(0)]
    for i in picked:
        try:
            found.append(red_cell_diameters(read_rgb(images[i])))
        except InputError:
            continue
    return np.concatenate(found)


def check_cell_images_mpp(where: Path, images: Sequence[Path], given: Mpp, auto: bool = False) -> str:
    """Single-cell photographs at a ``given`` µm/px checked against their red cells: the warning (logged,
    naming ``where``), or "" where they agree or hold too few whole red cells to tell."""
    diameters = cell_images_red_cells(images)
    estimate = estimate_mpp(diameters)
    if estimate is None:
        log.info("%s: %d isolated round red cells around the cells, too few to check --mpp %s", where,
                 len(diameters), given)
        return ""
    warning = resolution_warning(given, "--mpp", estimate, auto=auto)
    if warning:
        log.warning("%s: %s", where, warning)
    else:
        log.info("%s: --mpp %s agrees with the red cells around the cells (%s)", where, given, estimate)
    return warning


def opening_mpp(mpp: float | str | None) -> Mpp | float | None:
    """What to open a slide with before its resolution is known: ``--mpp auto`` opens it provisionally."""
    return _PROVISIONAL if mpp == AUTO else mpp


def _too_few(n: int) -> str:
    return (f"--mpp auto found {n} isolated round red cells, too few to measure the resolution (needs "
            f"{MIN_RED_CELLS}); give it with --mpp")


@contextmanager
def opened(path: Path, mpp: float | str | None) -> Iterator[tuple[Slide, MppEstimate | None]]:
    """``path`` opened at its resolution (given, stated or, with ``mpp="auto"``, measured) and the red cells'
    own estimate of it, for the record and the cross-check."""
    if mpp == AUTO:
        with open_slide(path, mpp=_PROVISIONAL) as slide:
            estimate = measured_mpp(path, red_cell_diameters_of(slide))
            slide.set_mpp(estimate.mpp, "red cells")
            yield slide, estimate
        return
    with open_slide(path, mpp=mpp) as slide:
        estimate = measure_mpp(slide)
        warning = resolution_warning(slide.mpp, slide.mpp_source, estimate)
        if warning:
            log.warning("%s: %s", path, warning)
        yield slide, estimate
