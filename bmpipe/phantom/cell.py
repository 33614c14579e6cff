"""One cell: plan its geometry (cheap, exact extent) and draw it as optical density at any resolution.

Planning and drawing are split so that a slide can place 10^4 objects and write their boxes into the
truth without drawing them, then draw each one only when a tile needs it. A plan carries its own texture
seed, so drawing it twice (for two tiles it straddles) gives identical pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bmpipe.phantom.geometry import (
    THETA,
    Disc,
    Lobe,
    Tube,
    coverage_in,
    paint_max,
    periodic_lookup,
    random_harmonics,
    soft,
    wobble,
)
from bmpipe.phantom.morphology import DYSPLASTIC_GRADE, GRADED, GRANULE_FRACTION, MORPHOLOGY, Morph, morph_for
from bmpipe.phantom.palette import OD, Stain, compose
from bmpipe.phantom.texture import blur, field, splat
from bmpipe.resolution import Mpp

#: Chromatin texture recipes (lengths in µm). Condensed chromatin is dark with small pale gaps of
#: parachromatin ("holes": where a fine random field exceeds a threshold); the blast's fine chromatin is an
#: even stipple without gaps. The rim gain darkens a band just inside the nuclear edge (membrane and
#: peripheral heterochromatin), which is what makes real nuclei look sharply outlined.
_TEXTURE_KEYS = ("sigma", "stipple", "holes", "threshold", "coarse_sigma", "coarse", "rim")
TEXTURES: dict[str, dict[str, float]] = {
    kind: dict(zip(_TEXTURE_KEYS, values))
    for kind, values in {
        #          sigma stipple holes threshold coarse_sigma coarse rim
        "fine": (0.11, 0.24, 0.0, 0.0, 0.45, 0.08, 0.2),
        "lacy": (0.18, 0.22, 0.45, 0.5, 0.7, 0.12, 0.35),
        "coarse": (0.2, 0.2, 0.5, 0.6, 0.8, 0.1, 0.5),
        "clumped": (0.24, 0.2, 0.55, 0.8, 1.0, 0.1, 0.6),
        "pyknotic": (0.2, 0.05, 0.2, 1.5, 1.0, 0.04, 0.3),
        "smudge": (0.25, 0.3, 0.3, 0.5, 0.9, 0.2, 0.0),
    }.items()
}
#: Default resolution of phantom slides, fields and single cells: 1000× (100× oil), where counting is done.
SLIDE_MPP = Mpp(0.1)
#: Extra density of a pyknotic (late erythroblast) nucleus.
PYKNOTIC_GAIN = 1.35


@dataclass(frozen=True)
class CellSpec:
    """Everything needed to draw one cell, in µm relative to its centre."""

    code: str
    variant: str
    grade: int
    morph: Morph
    radius_lut: np.ndarray  # outline radius at geometry.THETA
    lobes: tuple
    tubes: tuple
    notches: tuple
    nucleoli: tuple
    vacuoles: tuple
    hof: Disc | None
    chromatin_scale: float
    cyto_scale: float
    granule_scale: float
    fade: float  # OD multiplier: <1 for flattened cells at the feathered edge
    seed: int
    rods: tuple = ()  # Auer rods (thin tubes), bundled in faggot cells

    @property
    def extent_um(self) -> tuple[float, float, float, float]:
        """Outline bounds ``(xmin, ymin, xmax, ymax)``."""
        xs, ys = self.radius_lut * np.cos(THETA), self.radius_lut * np.sin(THETA)
        return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())

    @property
    def radius_um(self) -> float:
        return float(self.radius_lut.mean())

    def box_px(self, mpp: Mpp) -> tuple[int, int, int, int]:
        """Mask bounds in pixels relative to the centre pixel, ``x1``/``y1`` exclusive."""
        xmin, ymin, xmax, ymax = self.extent_um
        u = mpp.um_per_px
        return (int(np.ceil(xmin / u - 1e-6)), int(np.ceil(ymin / u - 1e-6)),
                int(np.floor(xmax / u + 1e-6)) + 1, int(np.floor(ymax / u + 1e-6)) + 1)


@dataclass(frozen=True)
class Sprite:
    """A drawn cell: OD image, coverage masks, and the pixel offset of its top-left from the centre."""

    od: np.ndarray  # (h, w, 3) float32
    mask: np.ndarray  # (h, w) bool
    nucleus: np.ndarray  # (h, w) bool
    ox: int
    oy: int


# ----------------------------------------------------------------------------------------------- planning


def _outline(rng: np.random.Generator, m: Morph, radius: float, torn: float) -> np.ndarray:
    aspect = rng.uniform(*m.aspect)
    a, b, angle = radius * np.sqrt(aspect), radius / np.sqrt(aspect), rng.uniform(0, np.pi)
    t = THETA - angle
    r = a * b / np.sqrt((b * np.cos(t)) ** 2 + (a * np.sin(t)) ** 2)
    r = r * wobble(THETA, random_harmonics(rng, m.irregular, m.hairy))
    if torn > 0:  # a torn cell at the feathered edge: a bite out of one side
        centre, width = rng.uniform(-np.pi, np.pi), rng.uniform(0.35, 0.9)
        gap = np.angle(np.exp(1j * (THETA - centre)))
        r = r * (1.0 - torn * np.exp(-((gap / width) ** 2)))
    return r.astype(np.float64)


def _lobe(rng: np.random.Generator, cx: float, cy: float, r: float, aspect: tuple[float, float] = (1.0, 1.15),
          wob: float = 0.03, angle: float | None = None) -> Lobe:
    asp = rng.uniform(*aspect)
    return Lobe(cx, cy, r * np.sqrt(asp), r / np.sqrt(asp), rng.uniform(0, np.pi) if angle is None else angle,
                random_harmonics(rng, wob))


def _path(rng: np.random.Generator, n: int, step: float, turn: float, s_shape: bool) -> np.ndarray:
    """Centre-line of a band or a chain of lobes: constant turning (C) or reversing halfway (S)."""
    heading, pts = rng.uniform(-np.pi, np.pi), [np.zeros(2)]
    for i in range(1, n):
        bend = turn * (-1 if s_shape and i > n // 2 else 1) + rng.normal(0, 0.15)
        heading += bend
        pts.append(pts[-1] + step * np.array([np.cos(heading), np.sin(heading)]))
    pts = np.array(pts)
    return pts - pts.mean(axis=0)


def _nucleus(rng: np.random.Generator, m: Morph, rn: float) -> tuple[tuple, tuple, tuple]:
    """Lobes, tubes and notches of the nucleus, centred on the origin."""
    kind = m.nucleus
    lobes_n = int(rng.integers(int(m.lobes[0]), int(m.lobes[1]) + 1))
    if kind == "round":
        lobes, tubes, notches = [_lobe(rng, 0, 0, rn)], [], []
        depth = rng.uniform(*m.indent)
        if depth > 0:
            notches = [_notch(rng, rn, depth)]
        return tuple(lobes), (), tuple(notches)
    if kind in ("indented", "folded"):
        wob = 0.09 if kind == "folded" else 0.03
        lobes = [_lobe(rng, 0, 0, rn, (1.0, 1.25), wob)]
        notches = [_notch(rng, rn, rng.uniform(*m.indent))]
        if kind == "folded" and rng.random() < 0.5:
            notches.append(_notch(rng, rn, rng.uniform(0.1, 0.25)))
        return tuple(lobes), (), tuple(notches)
    if kind == "band":
        n = 9
        span = rng.uniform(2.4, 3.8)
        s_shape = rng.random() < 0.3
        width = rn * rng.uniform(0.3, 0.38)
        length = rng.uniform(2.6, 3.4) * rn
        pts = _path(rng, n, length / (n - 1), span / (n - 1) * (0.6 if s_shape else 1.0), s_shape)
        radii = width * (1.0 + 0.18 * np.abs(np.linspace(-1, 1, n)) ** 2) * rng.uniform(0.9, 1.1, n)
        return (), (Tube(pts, radii),), ()
    if kind in ("segmented", "bilobed", "spectacles"):
        if kind == "spectacles" and lobes_n == 1:  # non-segmented pseudo-Pelger: round, dense, small
            return (_lobe(rng, 0, 0, rn * rng.uniform(0.6, 0.72), (1.0, 1.3)),), (), ()
        if kind == "segmented":
            size, gap, turn, aspect = rn * rng.uniform(0.4, 0.5), rng.uniform(0.75, 1.05), 1.3, (1.3, 1.9)
        elif kind == "bilobed":
            lobes_n, size, gap, turn, aspect = 2, rn * rng.uniform(0.48, 0.56), rng.uniform(0.85, 1.1), 0.0, (1.1, 1.5)
        else:
            lobes_n, size, gap, turn, aspect = 2, rn * rng.uniform(0.4, 0.47), rng.uniform(1.05, 1.3), 0.0, (1.0, 1.1)
        centres = _path(rng, lobes_n, 2 * size * gap, turn * rng.uniform(0.6, 1.3), rng.random() < 0.3)
        # Elongated lobes lie along the chain (sausages), some across it.
        tangent = np.gradient(centres, axis=0) if lobes_n > 1 else np.ones((1, 2))
        heads = np.arctan2(tangent[:, 1], tangent[:, 0]) + np.where(rng.random(lobes_n) < 0.25, np.pi / 2, 0.0)
        lobes = tuple(_lobe(rng, x, y, size * rng.uniform(0.88, 1.08), aspect, 0.06, angle=h + rng.normal(0, 0.3))
                      for (x, y), h in zip(centres, heads))
        strand = rng.uniform(0.15, 0.3) if kind != "bilobed" else rng.uniform(0.2, 0.6)
        tubes = tuple(Tube(centres[i:i + 2].copy(), np.full(2, strand)) for i in range(lobes_n - 1))
        return lobes, tubes, ()
    if kind == "multilobed":  # megakaryocyte: a lobulated mass of overlapping lobes
        centres = rng.normal(0, rn * 0.42, (lobes_n, 2))
        return tuple(_lobe(rng, x, y, rn * rng.uniform(0.4, 0.55), (1.0, 1.5), 0.06) for x, y in centres), (), ()
    if kind == "multi":  # separate round nuclei (multinuclear erythroblast, micromegakaryocyte)
        phase = rng.uniform(0, 2 * np.pi)
        ring = rn * (1.05 if lobes_n > 1 else 0.0)
        return tuple(_lobe(rng, ring * np.cos(phase + 2 * np.pi * i / lobes_n),
                           ring * np.sin(phase + 2 * np.pi * i / lobes_n), rn * rng.uniform(0.9, 1.05))
                     for i in range(lobes_n)), (), ()
    if kind == "fragments":  # ruptured cell: dense, irregular nuclear fragments scattered over the debris
        centres = rng.normal(0, rn * 0.45, (lobes_n, 2))
        return tuple(_lobe(rng, x, y, rn * rng.uniform(0.15, 0.35), (1.0, 1.8), 0.15) for x, y in centres), (), ()
    if kind in ("smudge", "none"):
        return (), (), ()
    raise ValueError(f"unknown nucleus shape {kind!r}")


def _notch(rng: np.random.Generator, rn: float, depth: float) -> Disc:
    """A disc bitten out of the nuclear rim, ``depth`` × radius deep: kidney and indented nuclei."""
    r = rn * rng.uniform(0.55, 0.85)
    d = rn + r - depth * rn
    phi = rng.uniform(-np.pi, np.pi)
    return Disc(d * np.cos(phi), d * np.sin(phi), r)


def _shift(items: tuple, dx: float, dy: float) -> tuple:
    out = []
    for it in items:
        if isinstance(it, Lobe):
            out.append(Lobe(it.cx + dx, it.cy + dy, it.a, it.b, it.angle, it.harmonics))
        elif isinstance(it, Tube):
            out.append(Tube(it.points + np.array([dx, dy]), it.radii))
        else:
            out.append(Disc(it.cx + dx, it.cy + dy, it.r))
    return tuple(out)


def _auer_bundles(rng: np.random.Generator, m: Morph, radius_lut: np.ndarray) -> tuple[Tube, ...]:
    """Bundles of near-parallel Auer rods (4-8 needles of 3.5-6 µm each), centred in the cytoplasm.

    The rods are drawn thick and long enough (>= 2 px wide, >= 14 px long at 0.25 µm/px) to stay unmistakable
    after the classifier's resampling and defocus: a faggot cell is named for its conspicuous bundles, and a
    promyelocyte (no rods, only granules) must never look like one.
    """
    rods = []
    for _ in range(int(rng.integers(int(m.auer[0]), int(m.auer[1]) + 1))):
        t = rng.uniform(-np.pi, np.pi)
        r = np.interp(t, THETA, radius_lut, period=2 * np.pi) * rng.uniform(0.35, 0.6)
        centre, heading = np.array([r * np.cos(t), r * np.sin(t)]), rng.uniform(0, np.pi)
        for _ in range(int(rng.integers(4, 9))):
            a = heading + rng.normal(0, 0.1)
            along, across = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
            mid = centre + rng.normal(0, 0.6) * across + rng.normal(0, 0.5) * along
            half = rng.uniform(1.75, 3.0) * along
            rods.append(Tube(np.stack([mid - half, mid + half]), np.full(2, rng.uniform(0.24, 0.3))))
    return tuple(rods)


def _fit_inside(radius_lut: np.ndarray, lobes: tuple, tubes: tuple, margin: float) -> float:
    """Factor (<= 1) to shrink the nucleus about the cell centre so every rim point is inside the cell."""
    pts = [lo.rim_points() for lo in lobes] + [t.rim_points() for t in tubes]
    if not pts:
        return 1.0
    p = np.concatenate(pts)
    rho, th = np.hypot(p[:, 0], p[:, 1]), np.arctan2(p[:, 1], p[:, 0])
    allowed = np.interp(th, THETA, radius_lut, period=2 * np.pi) - margin
    worst = np.max(rho / np.maximum(allowed, 1e-3))
    return 1.0 if worst <= 1.0 else 1.0 / worst


def plan_cell(code: str, rng: np.random.Generator, *, variant: str | None = None, grade: int = -1,
              stage: int | None = None, spread: float = 1.0, torn: float = 0.0) -> CellSpec:
    """Geometry and stain amounts of one cell of class ``code``.

    ``grade`` is the neutrophil granularity grade (0-3, -1 = not graded); ``stage`` picks a maturation
    stage where the class has several (random when None); ``spread`` > 1 flattens the cell (larger, paler)
    as at the feathered edge; ``torn`` (0-1) bites out a piece of the rim.
    """
    stages = MORPHOLOGY[code]
    if stage is None:
        weights = np.array([w for w, _ in stages])
        stage = int(rng.choice(len(stages), p=weights / weights.sum()))
    if code in GRADED and grade >= DYSPLASTIC_GRADE and not variant:
        variant = "hypogranular"
    m = morph_for(code, stage, variant)
    radius = rng.uniform(*m.diameter_um) / 2.0 * spread
    if m.torn[1] > 0:  # drawn only for classes that are torn by nature, so other cells keep their streams
        torn = max(torn, rng.uniform(*m.torn))
    radius_lut = _outline(rng, m, radius, torn)
    rn = radius * rng.uniform(*m.nc)
    lobes, tubes, notches = _nucleus(rng, m, rn)
    # Move the nucleus off-centre (eccentric plasma cells, myelocytes) within the room the outline leaves.
    phi = rng.uniform(-np.pi, np.pi)
    if m.aspect[1] > 1.15:  # elongated cells (plasma cells) carry the nucleus toward one pole
        phi = float(THETA[np.argmax(radius_lut)] + (np.pi if rng.random() < 0.5 else 0.0))
    room = np.interp(phi, THETA, radius_lut, period=2 * np.pi) - rn
    off = rng.uniform(*m.eccentric) * max(room, 0.0)
    dx, dy = off * np.cos(phi), off * np.sin(phi)
    lobes, tubes, notches = _shift(lobes, dx, dy), _shift(tubes, dx, dy), _shift(notches, dx, dy)
    f = _fit_inside(radius_lut, lobes, tubes, margin=0.35 * spread)
    if f < 1.0:
        lobes = tuple(lo.scaled(f) for lo in lobes)
        tubes = tuple(t.scaled(f) for t in tubes)
        notches = tuple(n.scaled(f) for n in notches)
    main = lobes[0] if lobes else None
    nucleoli = ()
    if main is not None and m.nucleoli[1] > 0:
        k = int(rng.integers(int(m.nucleoli[0]), int(m.nucleoli[1]) + 1))
        nucleoli = tuple(Disc(main.cx + main.a * 0.45 * np.cos(t) * u, main.cy + main.b * 0.45 * np.sin(t) * u,
                              rng.uniform(0.45, 0.9)) for t, u in zip(rng.uniform(0, 2 * np.pi, k), rng.random(k)))
    hof = None
    if m.hof > 0 and main is not None:
        # Golgi zone: pale area beside the nucleus, on the side facing the bulk of the cytoplasm.
        away = np.arctan2(-main.cy, -main.cx) if off > 0.2 else rng.uniform(-np.pi, np.pi)
        r = rn * rng.uniform(0.35, 0.5)
        d = max(main.a, main.b) + 0.2 * r
        hof = Disc(main.cx + d * np.cos(away), main.cy + d * np.sin(away), r)
    n_vac = int(rng.integers(int(m.vacuoles[0]), int(m.vacuoles[1]) + 1))
    vac_t = rng.uniform(-np.pi, np.pi, n_vac)
    vac_r = np.interp(vac_t, THETA, radius_lut, period=2 * np.pi) * rng.uniform(0.6, 0.85, n_vac)
    vacuoles = tuple(Disc(r * np.cos(t), r * np.sin(t), rng.uniform(0.3, 0.9)) for t, r in zip(vac_t, vac_r))
    granule_scale = GRANULE_FRACTION[grade] if code in GRADED and grade >= 0 else 1.0
    rods = _auer_bundles(rng, m, radius_lut) if m.auer[1] > 0 else ()
    return CellSpec(
        code=code, variant=variant or "", grade=grade if code in GRADED else -1, morph=m,
        radius_lut=radius_lut, lobes=lobes, tubes=tubes, notches=notches, nucleoli=nucleoli,
        vacuoles=vacuoles, hof=hof, chromatin_scale=rng.uniform(*m.chromatin_od),
        cyto_scale=rng.uniform(*m.cyto_od), granule_scale=granule_scale, fade=spread ** -1.5,
        seed=int(rng.integers(2**31)), rods=rods,
    )


# ------------------------------------------------------------------------------------------------ drawing


def _chromatin(rng: np.random.Generator, kind: str, shape: tuple[int, int], u: float) -> np.ndarray:
    """Multiplier (~1) of the chromatin density: stipple, pale parachromatin gaps, slow variation."""
    t = TEXTURES[kind]
    if kind == "smudge":  # smeared chromatin: a basket of crossing strands, one direction dominant
        w = rng.uniform(0.55, 0.85)
        fine = w * field(rng, shape, (t["sigma"] * 3, t["sigma"]), u) \
            + (1 - w) * field(rng, shape, (t["sigma"], t["sigma"] * 3), u)
    else:
        fine = field(rng, shape, t["sigma"], u)
    out = 1.0 + t["stipple"] * fine + t["coarse"] * field(rng, shape, t["coarse_sigma"], u)
    if t["holes"] > 0:  # pale parachromatin specks, ~0.4 µm across
        specks = field(rng, shape, 0.12, u)
        out -= t["holes"] * np.clip(specks - t["threshold"], 0.0, 1.5)
    return out


def _hex_points(rng: np.random.Generator, w: int, h: int, spacing_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Points of a randomly rotated, jittered hexagonal lattice covering a w×h grid (pixel coordinates)."""
    reach = np.hypot(w, h) / 2 + spacing_px
    n = int(reach / spacing_px) + 1
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1))
    px = (i + 0.5 * (j % 2)) * spacing_px
    py = j * spacing_px * np.sqrt(3.0) / 2
    a = rng.uniform(0, np.pi)
    gx = w / 2 + px * np.cos(a) - py * np.sin(a) + rng.normal(0, 0.12 * spacing_px, px.shape)
    gy = h / 2 + px * np.sin(a) + py * np.cos(a) + rng.normal(0, 0.12 * spacing_px, px.shape)
    inside = (gx >= 0) & (gx <= w - 1) & (gy >= 0) & (gy <= h - 1)
    return gx[inside], gy[inside]


def draw_cell(spec: CellSpec, mpp: Mpp, blur_um: float = 0.0) -> Sprite:
    """Draw ``spec`` at ``mpp`` as optical density; ``blur_um`` is the defocus (Gaussian sigma, µm)."""
    u = mpp.um_per_px
    m = spec.morph
    rng = np.random.default_rng(spec.seed)
    pad = int(np.ceil(3 * blur_um / u)) + 2
    bx0, by0, bx1, by1 = spec.box_px(mpp)
    ox, oy = bx0 - pad, by0 - pad
    w, h = bx1 - bx0 + 2 * pad, by1 - by0 + 2 * pad
    x = ((np.arange(w, dtype=np.float32) + ox) * u)[None, :]
    y = ((np.arange(h, dtype=np.float32) + oy) * u)[:, None]
    edge = max(0.8 * u, 0.12)
    r, th = np.hypot(x, y), np.arctan2(y, x)
    rim = periodic_lookup(spec.radius_lut, th)
    cell = soft(rim - r, max(edge, m.border_um))  # cell borders are softer than nuclear ones
    shape = (h, w)

    if m.nucleus == "smudge":
        nuc = cell.copy()
    else:
        nuc = np.zeros(shape, np.float32)
        for part in spec.lobes + spec.tubes:
            paint_max(nuc, part, x, y, edge)
        for notch in spec.notches:
            nuc *= 1.0 - coverage_in(shape, notch, x, y, edge)
        nuc *= cell

    layers = []  # (weight map, OD colour), summed at the end
    if m.cytoplasm is not None:
        # Thicker in the middle of the cell than at its flattened rim; a little mottling.
        depth = np.clip((rim - r) / (0.3 * rim + 1e-3), 0.0, 1.0)
        cyto = cell * (0.78 + 0.22 * depth) * (1.0 + 0.07 * field(rng, shape, 0.8, u))
        if spec.hof is not None:
            cyto *= 1.0 - m.hof * blur(coverage_in(shape, spec.hof, x, y, edge), 0.6 / u)
        for vac in spec.vacuoles:
            cyto *= 1.0 - 0.85 * coverage_in(shape, vac, x, y, edge)
        layers.append((cyto * (1.0 - 0.55 * nuc), OD[m.cytoplasm] * spec.cyto_scale))

    if m.nucleus != "none":
        chrom = OD[m.chromatin] * spec.chromatin_scale * (PYKNOTIC_GAIN if m.texture == "pyknotic" else 1.0)
        tex = np.clip(_chromatin(rng, m.texture, shape, u), 0.15, None)
        rim_gain = TEXTURES[m.texture]["rim"]
        if rim_gain > 0:
            tex *= 1.0 + rim_gain * np.clip(2.0 * (nuc - blur(nuc, 0.3 / u)), 0.0, 1.0)
        if spec.nucleoli:  # nucleoli: pale, bluish, sharply bounded
            spots = np.zeros(shape, np.float32)
            for nl in spec.nucleoli:
                paint_max(spots, nl, x, y, edge)
            tex = tex * (1.0 - 0.6 * spots)
            layers.append((0.45 * spots * nuc, OD["nucleolus"]))
        layers.append((nuc * tex, chrom))

    for g in m.granules:
        region = cell if g.over_nucleus else cell * (1.0 - nuc)
        if g.central:
            region = region * soft(0.55 * rim - r, edge)
        density = g.per_um2 * spec.granule_scale
        if density <= 0:
            continue
        if g.packed:  # closely packed beads (eosinophil): a jittered hexagonal lattice, not Poisson clumps
            gx, gy = _hex_points(rng, w, h, np.sqrt(2.0 / (np.sqrt(3.0) * density)) / u)
            n = len(gx)
        else:
            n = rng.poisson(density * w * h * u * u)
            gx, gy = rng.uniform(0, w - 1, n), rng.uniform(0, h - 1, n)
        if n == 0:
            continue
        keep = region[np.rint(gy).astype(int), np.rint(gx).astype(int)] > rng.random(n)
        # Each granule is drawn denser than its cap, then capped: flat-topped, sharply bounded beads.
        weights = g.peak_od * rng.uniform(0.8, 2.2, int(keep.sum()))
        blobs = splat(shape, gy[keep], gx[keep], weights, g.size_um, u)
        layers.append((g.peak_od * np.tanh(blobs / g.peak_od) * region, OD[g.colour]))

    if spec.rods:  # Auer rods: sharp, dense needles; they lie in the cytoplasm, over the nucleus too
        rods = np.zeros(shape, np.float32)
        for rod in spec.rods:
            paint_max(rods, rod, x, y, edge)
        layers.append((2.0 * rods * cell, OD["auer_rod"]))

    od = compose(layers) if layers else np.zeros((h, w, 3), np.float32)
    od *= np.float32(spec.fade)
    if blur_um > 0:
        od = blur(od, blur_um / u)
    return Sprite(od=od, mask=cell >= 0.5, nucleus=nuc >= 0.5, ox=ox, oy=oy)


def render_cell(code: str, rng: np.random.Generator, mpp: Mpp = SLIDE_MPP, dysplasia_grade: int = -1,
                variant: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One cell of class ``code`` on bare glass under the reference stain: ``(rgb uint8, cell mask,
    nucleus mask)``. For graded codes (NGS/NGB/MMZ) ``dysplasia_grade`` 1-3 lowers the granule content
    (2-3 is the hypogranular variant); ``variant`` names a dysplastic variant from ``morphology.DYSPLASIA``."""
    spec = plan_cell(code, rng, variant=variant, grade=dysplasia_grade)
    sprite = draw_cell(spec, mpp)
    return Stain.reference().to_rgb(sprite.od), sprite.mask, sprite.nucleus
