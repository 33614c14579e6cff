"""Stain colours as optical densities, and the per-slide stain/illumination model.

Colours are given as they look on a CellaVision peripheral-blood image (the PBC reference set, whose bare
glass reads :data:`REF_ILLUM`) and stored as optical density (OD = -log10 of transmittance relative to the
glass). Working in OD makes overlapping objects darken the way absorbing stain does (densities add), so a
tile is the plain sum of the objects that overlap it, whatever order they are drawn in; and one 3×3 matrix
applied to OD changes hue, saturation and intensity of every stain at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Median RGB of bare background on the PBC neutrophil images (300 ``SNE_*`` files, brightest 10% of
#: green): the illumination the colours below were matched under.
REF_ILLUM = np.array([255.0, 230.0, 202.0], dtype=np.float32)

#: Named colours as seen on :data:`REF_ILLUM` (RGB). Nucleus and neutrophil cytoplasm are calibrated against
#: PBC neutrophils (see tests/test_phantom.py); the others are matched by eye to PBC and SegPC cells.
COLOURS_RGB: dict[str, tuple[float, float, float]] = {
    "chromatin": (86, 40, 138),  # mature, condensed nucleus
    "chromatin_open": (138, 84, 166),  # blast / proerythroblast: fine, open, paler and redder
    "chromatin_smudge": (170, 128, 180),  # spread, broken nucleus of a smudge cell
    "nucleolus": (170, 150, 190),
    "cyto_neutrophil": (222, 186, 184),  # pale pink-lilac ground of neutrophil-series cytoplasm
    "granule_neutrophil": (170, 95, 130),  # fine red-lilac specific granules
    "granule_azurophil": (115, 35, 105),  # coarse red-purple primary granules
    "cyto_blast": (160, 166, 206),  # basophilic (RNA-rich) blue
    "cyto_proerythroblast": (95, 105, 185),  # deep royal blue
    "cyto_plasma": (105, 118, 196),
    "cyto_lymph": (178, 188, 222),  # pale sky blue rim
    "cyto_monocyte": (190, 184, 212),  # grey-blue, ground glass
    "cyto_poly": (176, 156, 184),  # polychromatic erythroblast: grey-lilac
    "cyto_ortho": (206, 170, 176),  # orthochromatic erythroblast: nearly red-cell pink
    "cyto_eosinophil": (238, 215, 196),
    "granule_eosinophil": (214, 112, 96),  # orange-red, large
    "cyto_basophil": (222, 198, 206),
    "granule_basophil": (62, 28, 92),  # purple-black, over the nucleus
    "cyto_megakaryocyte": (212, 186, 206),  # pale pink-lilac, finely granular
    "hyalomere": (210, 200, 222),  # pale blue-lilac platelet rim
    "granulomere": (140, 70, 150),  # purple platelet centre
    "auer_rod": (150, 40, 120),  # red-purple needles of fused azurophil granules (faggot cells)
    "cyto_macrophage": (214, 204, 222),  # pale grey-lilac, abundant, foamy
    "stain_precipitate": (70, 45, 105),  # dark blue-purple stain deposit on an artefact
    "rbc": (206, 160, 156),  # red-cell haemoglobin at the rim (the pale centre is drawn thinner)
    "plasma_film": (236, 222, 226),  # dried plasma of a marrow film: faint lilac
    "film_speckle": (150, 150, 210),  # blue protein/debris specks on the film
}


def od_of(rgb: tuple[float, float, float] | np.ndarray) -> np.ndarray:
    """Optical density (per RGB channel) of a colour seen on :data:`REF_ILLUM`."""
    t = np.clip(np.asarray(rgb, dtype=np.float32) / REF_ILLUM, 1e-3, 1.0)
    return (-np.log10(t)).astype(np.float32)


OD: dict[str, np.ndarray] = {name: od_of(rgb) for name, rgb in COLOURS_RGB.items()}


def compose(layers: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Sum of ``weight (h, w) × OD colour (3,)`` layers as an (h, w, 3) float32 image.

    One OpenCV channel transform per 3 layers instead of numpy broadcasting: ~10× faster, and this is
    the inner loop of every tile and cell."""
    h, w = layers[0][0].shape
    out = None
    for i in range(0, len(layers), 3):
        group = layers[i:i + 3]
        planes = [np.asarray(wt, np.float32) for wt, _ in group]
        cols = [np.asarray(c, np.float32) for _, c in group]
        while len(planes) < 3:
            planes.append(np.zeros((h, w), np.float32))
            cols.append(np.zeros(3, np.float32))
        part = cv2.transform(cv2.merge(planes), np.stack(cols, axis=1))
        out = part if out is None else cv2.add(out, part)
    return out


#: Bare-glass colours a stain's illumination is mixed from: neutral white (slide scanner), CellaVision cream
#: (PBC), and the grey-lilac of SegPC's marrow camera.
GLASS = np.array([[244.0, 243.0, 246.0], REF_ILLUM, [226.0, 222.0, 236.0]])


def _hue_rotation(angle: float) -> np.ndarray:
    """Rotation by ``angle`` radians about the grey axis (1,1,1): shifts every hue, keeps the lightness."""
    k = np.ones(3) / np.sqrt(3.0)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * (kx @ kx)


@dataclass(frozen=True)
class Stain:
    """One slide's (or field's, or crop's) staining and illumination.

    ``matrix`` maps reference OD to this stain's OD (row vectors: ``od @ matrix.T``); ``illum`` is the
    bare-glass RGB; ``noise`` the sensor noise sigma in 8-bit levels.
    """

    matrix: np.ndarray
    illum: np.ndarray
    noise: float

    @classmethod
    def reference(cls) -> Stain:
        """The calibration stain: PBC-like glass, no colour change, no noise."""
        return cls(np.eye(3, dtype=np.float32), REF_ILLUM.copy(), 0.0)

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Stain:
        """A plausible stain and camera: hue ±0.1 rad, saturation ×0.65-1.2, intensity ×0.82-1.18, and an
        eosin balance that moves the pinks (red cells, granules) up to 60 % toward grey (the grey-tan red
        cells of a more basic buffer, as in SegPC) or 20 % further to pink; glass anywhere between neutral
        white, CellaVision cream and the grey-lilac of a marrow camera."""
        hue = rng.uniform(-0.1, 0.1)
        sat = rng.uniform(0.65, 1.2)
        intensity = rng.uniform(0.82, 1.18)
        grey = np.full((3, 3), 1.0 / 3.0)
        pink = OD["rbc"].astype(np.float64)
        to_grey = np.full(3, pink.sum() / 3.0) - pink
        balance = np.eye(3) + rng.uniform(-0.2, 0.6) * np.outer(to_grey, pink) / (pink @ pink)
        matrix = intensity * _hue_rotation(hue) @ (grey + sat * (np.eye(3) - grey)) @ balance
        illum = rng.dirichlet((1.0, 1.0, 1.0)) @ GLASS * rng.uniform(0.97, 1.02) + rng.normal(0.0, 2.0, 3)
        return cls(matrix.astype(np.float32), np.clip(illum, 200, 255).astype(np.float32),
                   float(rng.uniform(1.0, 3.0)))

    def to_rgb(self, od: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        """RGB uint8 of an OD image (``(h, w, 3)`` float32); ``noise`` is a unit-variance field to add."""
        stained = cv2.transform(np.ascontiguousarray(od, dtype=np.float32),
                                self.matrix * np.float32(-np.log(10.0)))
        rgb = cv2.multiply(cv2.exp(stained), (*(float(v) for v in self.illum), 0.0))
        if noise is not None and self.noise > 0:
            rgb = cv2.scaleAdd(np.ascontiguousarray(noise, dtype=np.float32), self.noise, rgb)
        return cv2.convertScaleAbs(cv2.max(rgb, 0.0))  # rounds and saturates at 255
