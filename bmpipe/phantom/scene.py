"""A scene: placed objects (red cells, cells) over a film, rendered on demand for any window.

Fields, crops and whole slides are all scenes. Objects are placed first (positions only, plus each
cell's plan), indexed on a coarse grid, and a window is rendered from the objects that overlap it. All
layers add in optical density and every object is drawn from its own plan and seed, so a window's pixels
do not depend on how the scene is cut into tiles: an object straddling two tiles is identical on both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bmpipe.bounded_cache import BoundedCache
from bmpipe.phantom.background import Textures, blur_level, rbc_bank
from bmpipe.phantom.cell import CellSpec, Sprite, draw_cell
from bmpipe.phantom.palette import Stain
from bmpipe.resolution import Mpp

#: Bytes of drawn cell sprites kept between tiles (a tile row's worth is far less).
SPRITE_CACHE_BYTES = 256 * 2**20

#: film(x0, y0, w, h) -> relative film thickness (h, w) float32 of that window.
FilmDensity = Callable[[int, int, int, int], np.ndarray]


class GridIndex:
    """Boxes binned on a square grid (CSR layout): which boxes may overlap a window."""

    def __init__(self, boxes: np.ndarray, cell: int = 512) -> None:
        self.cell = cell
        boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        g = boxes // cell
        g[:, 2:] = (boxes[:, 2:] - 1) // cell
        g = np.maximum(g, 0)  # objects hanging over the top/left border live in the first row/column
        self.gw = int(g[:, 2].max()) + 1 if len(g) else 1
        spans_x = g[:, 2] - g[:, 0] + 1
        spans_y = g[:, 3] - g[:, 1] + 1
        counts = spans_x * spans_y
        ids = np.repeat(np.arange(len(boxes)), counts)
        # Enumerate every grid cell each box covers.
        start = np.repeat(np.cumsum(counts) - counts, counts)
        k = np.arange(len(ids)) - start
        sx = np.repeat(spans_x, counts)
        gx = np.repeat(g[:, 0], counts) + k % sx
        gy = np.repeat(g[:, 1], counts) + k // sx
        keys = gy * self.gw + gx
        order = np.argsort(keys, kind="stable")
        self.keys, self.ids = keys[order], ids[order]

    def query(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """Sorted ids of boxes in the grid cells that the window [x0, x1) × [y0, y1) touches."""
        gx0, gx1 = max(x0 // self.cell, 0), min((x1 - 1) // self.cell, self.gw - 1)
        found = []
        for gy in range(max(y0 // self.cell, 0), (y1 - 1) // self.cell + 1):
            lo, hi = np.searchsorted(self.keys, [gy * self.gw + gx0, gy * self.gw + gx1 + 1])
            found.append(self.ids[lo:hi])
        return np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)


def paste(od: np.ndarray, sprite: np.ndarray, left: int, top: int) -> None:
    """od[top:, left:] += sprite, clipped to od."""
    h, w = od.shape[:2]
    sh, sw = sprite.shape[:2]
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + sh, h), min(left + sw, w)
    if y0 < y1 and x0 < x1:
        od[y0:y1, x0:x1] += sprite[y0 - top:y1 - top, x0 - left:x1 - left]


@dataclass
class PlacedCell:
    """A planned cell (or platelet) at a pixel of a scene, with the defocus it is drawn at."""

    spec: CellSpec
    x: int  # centre pixel
    y: int
    blur_um: float
    zone: str = ""

    def box(self, mpp: Mpp) -> tuple[int, int, int, int]:
        bx0, by0, bx1, by1 = self.spec.box_px(mpp)
        return self.x + bx0, self.y + by0, self.x + bx1, self.y + by1


@dataclass
class Scene:
    """Placed red cells (bank indices) and cells (plans) over a film, under one stain; draws any window."""

    width: int
    height: int
    mpp: Mpp
    stain: Stain
    textures: Textures
    film: FilmDensity
    rbc_x: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    rbc_y: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    rbc_variant: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    rbc_level: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    cells: list[PlacedCell] = field(default_factory=list)
    texture_offset: tuple[int, int] = (0, 0)  # where this scene reads the shared periodic textures

    def __post_init__(self) -> None:
        self._index: GridIndex | None = None
        self._sprites: BoundedCache[Sprite] = BoundedCache(SPRITE_CACHE_BYTES, lambda sprite: sprite.od.nbytes)

    def add_rbcs(self, x: np.ndarray, y: np.ndarray, variant: np.ndarray, blur_um: np.ndarray) -> None:
        self.rbc_x = np.concatenate([self.rbc_x, np.asarray(x, np.int64)])
        self.rbc_y = np.concatenate([self.rbc_y, np.asarray(y, np.int64)])
        self.rbc_variant = np.concatenate([self.rbc_variant, np.asarray(variant, np.int64)])
        self.rbc_level = np.concatenate([self.rbc_level, blur_level(blur_um).astype(np.int64)])
        self._index = None

    def add_cell(self, cell: PlacedCell) -> int:
        self.cells.append(cell)
        self._index = None
        return len(self.cells) - 1

    @property
    def n_rbc(self) -> int:
        return len(self.rbc_x)

    def _boxes(self) -> np.ndarray:
        half = rbc_bank(self.mpp.um_per_px).half
        rbc = np.stack([self.rbc_x - half, self.rbc_y - half, self.rbc_x + half + 1, self.rbc_y + half + 1], 1)
        pad = [int(np.ceil(3 * c.blur_um / self.mpp.um_per_px)) + 2 for c in self.cells]
        cells = np.array([(x0 - p, y0 - p, x1 + p, y1 + p) for c, p in zip(self.cells, pad)
                          for x0, y0, x1, y1 in [c.box(self.mpp)]], dtype=np.int64).reshape(-1, 4)
        return np.concatenate([rbc.reshape(-1, 4), cells])

    def index(self) -> GridIndex:
        if self._index is None:
            self._index = GridIndex(self._boxes())
        return self._index

    def sprite(self, i: int) -> Sprite:
        """Drawn cell ``i``. Cached by plan and focus: a cell crossing tile borders is drawn once, and
        objects sharing a plan (platelets come from a small bank) share the drawing."""
        c = self.cells[i]
        return self._sprites.get_or_make((id(c.spec), c.blur_um), lambda: draw_cell(c.spec, self.mpp, c.blur_um))

    def render_od(self, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        """Optical density (h, w, 3) of the window at (x0, y0)."""
        tx, ty = self.texture_offset
        od = self.textures.film_od(self.film(x0, y0, w, h), x0 + tx, y0 + ty)
        bank = rbc_bank(self.mpp.um_per_px)
        n_rbc = self.n_rbc
        for i in self.index().query(x0, y0, x0 + w, y0 + h):
            if i < n_rbc:
                sprite = bank.sprites[self.rbc_level[i]][self.rbc_variant[i]]
                paste(od, sprite, int(self.rbc_x[i]) - bank.half - x0, int(self.rbc_y[i]) - bank.half - y0)
            else:
                c = self.cells[i - n_rbc]
                s = self.sprite(i - n_rbc)
                paste(od, s.od, c.x + s.ox - x0, c.y + s.oy - y0)
        return od

    def render(self, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        """RGB uint8 (h, w, 3) of the window at (x0, y0): the ``render_tile`` of a slide writer."""
        od = self.render_od(x0, y0, w, h)
        tx, ty = self.texture_offset
        return self.stain.to_rgb(od, Textures.window(self.textures.noise, x0 + tx, y0 + ty, w, h))

    def instance_mask(self, ids: list[int]) -> np.ndarray:
        """uint16 (height, width) mask of the whole scene: cell ``ids[k]`` is k + 1 (first come wins)."""
        out = np.zeros((self.height, self.width), np.uint16)
        for k, i in enumerate(ids):
            c, s = self.cells[i], self.sprite(i)
            top, left = c.y + s.oy, c.x + s.ox
            sh, sw = s.mask.shape
            y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + sh, self.height), min(left + sw, self.width)
            if y0 < y1 and x0 < x1:
                region = out[y0:y1, x0:x1]
                m = s.mask[y0 - top:y1 - top, x0 - left:x1 - left] & (region == 0)
                region[m] = k + 1
        return out
