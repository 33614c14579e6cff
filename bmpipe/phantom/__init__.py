"""Synthetic bone-marrow smears with exact ground truth: the project's test oracle and demo source.

Every object is drawn from a declarative per-class morphology (``morphology``) in optical density, so
colours add like stain does and any window of a slide renders the same however it is tiled.

Public entry points:

- :func:`render_cell` one cell of a class (and dysplastic variant) as RGB + cell and nucleus masks
- :func:`write_fields` monolayer fields with YOLO labels, instance masks and per-cell truth
- :func:`cell_crops` fast in-memory single-cell crops for classifier training
- :func:`make_slide` a pyramidal TIFF smear (thick zone, monolayer, feathered edge) + ``.truth.json``
- :func:`plan_slide` the same slide planned but not drawn (its ``scene.render`` draws any window)
"""

from bmpipe.phantom.cell import render_cell
from bmpipe.phantom.crops import cell_crops
from bmpipe.phantom.fields import write_fields
from bmpipe.phantom.smear import make_slide, plan_slide, truth_path

__all__ = ["cell_crops", "make_slide", "plan_slide", "render_cell", "truth_path", "write_fields"]
