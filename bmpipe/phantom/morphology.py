"""Declarative per-class morphology: what each cell class looks like, in micrometres and stain names.

One :class:`Morph` per class (or per maturation stage, for the erythroblast), plus the dysplastic variants
as overrides of it. Sizes are diameters on a dried, flattened smear (larger than in suspension), taken from
standard atlases (Bain, *Blood Cells* 6th ed.; Matek 2021 Fig. 1) and checked against the PBC reference
images at ~0.1 µm/px (neutrophil ≈ 12-13 µm, red cell ≈ 7.3 µm, small lymphocyte ≈ 9 µm). ``nc`` is the
nuclear diameter as a fraction of the cell diameter (linear N:C); ``eccentric`` how far the nucleus sits
from the centre, as a fraction of the room it has.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bmpipe.criteria import load_criteria

Range = tuple[float, float]


@dataclass(frozen=True)
class Granules:
    colour: str  # key of palette.OD
    per_um2: float  # mean count per µm² of the region they fill
    size_um: float  # granule diameter
    peak_od: float = 1.0  # density of one granule, in units of its colour's OD
    over_nucleus: bool = False  # basophil and promyelocyte granules also overlie the nucleus
    central: bool = False  # platelet granulomere: only the middle of the cell
    packed: bool = False  # closely packed, evenly spaced beads (eosinophil) rather than random dust


@dataclass(frozen=True)
class Morph:
    diameter_um: Range
    nucleus: str  # round | indented | folded | band | segmented | bilobed | spectacles | multilobed |
    #               multi | fragments | smudge | none
    nc: Range = (0.6, 0.7)
    chromatin: str = "chromatin"  # palette key
    texture: str = "coarse"  # fine | lacy | coarse | clumped | pyknotic | smudge
    chromatin_od: Range = (0.95, 1.05)
    cytoplasm: str | None = "cyto_neutrophil"  # palette key; None: no cytoplasm left (smudge cell)
    cyto_od: Range = (0.9, 1.1)
    granules: tuple[Granules, ...] = ()
    aspect: Range = (1.0, 1.12)
    irregular: float = 0.02  # amplitude of low-order outline wobble (fraction of radius)
    hairy: float = 0.0  # amplitude of high-order outline wobble (hairy cells, platelets)
    eccentric: Range = (0.0, 0.3)
    indent: Range = (0.0, 0.0)  # depth of the nuclear notch (kidney/indented shapes), fraction of radius
    lobes: Range = (3, 3)  # lobe count for segmented/multilobed/multi nuclei (inclusive)
    nucleoli: Range = (0, 0)
    vacuoles: Range = (0, 0)
    hof: float = 0.0  # paleness of the perinuclear Golgi zone (0 none, 1 white)
    border_um: float = 0.25  # softness of the cell border (a smudge cell's is frayed)
    torn: Range = (0.0, 0.0)  # depth of a bite out of the rim, fraction of radius (ruptured artefacts)
    auer: Range = (0, 0)  # bundles of Auer rods (faggot cell), inclusive count


NEUTROPHIL_GRANULES = Granules("granule_neutrophil", 5.0, 0.24, 0.45)
AZUROPHIL = Granules("granule_azurophil", 1.1, 0.5, 0.9, over_nucleus=True)

#: Class -> list of (weight, Morph): several entries are maturation stages drawn at random.
MORPHOLOGY: dict[str, list[tuple[float, Morph]]] = {
    "BLA": [(1.0, Morph((12.5, 18.0), "round", nc=(0.74, 0.86), chromatin="chromatin_open", texture="fine",
                        cytoplasm="cyto_blast", eccentric=(0.0, 0.3), nucleoli=(1, 3), aspect=(1.0, 1.15),
                        granules=(Granules("granule_azurophil", 0.05, 0.4, 0.8),)))],
    "PMO": [(1.0, Morph((16.0, 23.0), "round", nc=(0.55, 0.68), chromatin="chromatin_open", texture="lacy",
                        cytoplasm="cyto_blast", cyto_od=(0.65, 0.85), eccentric=(0.25, 0.6), nucleoli=(0, 2),
                        granules=(AZUROPHIL,), hof=0.45))],
    "MYB": [(1.0, Morph((13.5, 18.0), "indented", nc=(0.55, 0.66), texture="coarse", chromatin_od=(0.8, 0.9),
                        eccentric=(0.2, 0.5), indent=(0.0, 0.15), hof=0.35,
                        granules=(NEUTROPHIL_GRANULES, Granules("granule_azurophil", 0.25, 0.45, 0.8))))],
    "MMZ": [(1.0, Morph((12.0, 16.0), "indented", nc=(0.56, 0.66), texture="coarse", eccentric=(0.1, 0.35),
                        indent=(0.3, 0.5), granules=(NEUTROPHIL_GRANULES,)))],
    "NGB": [(1.0, Morph((11.5, 14.5), "band", nc=(0.62, 0.72), texture="clumped",
                        granules=(NEUTROPHIL_GRANULES,)))],
    "NGS": [(1.0, Morph((11.5, 14.5), "segmented", nc=(0.62, 0.74), texture="clumped", lobes=(2, 5),
                        granules=(NEUTROPHIL_GRANULES,)))],
    "EOS": [(1.0, Morph((12.5, 16.0), "bilobed", nc=(0.55, 0.66), texture="clumped", chromatin_od=(0.85, 0.95),
                        cytoplasm="cyto_eosinophil", lobes=(2, 2),
                        granules=(Granules("granule_eosinophil", 2.4, 0.5, 0.75, packed=True),)))],
    "ABE": [(1.0, Morph((13.0, 17.0), "indented", nc=(0.55, 0.66), texture="coarse", indent=(0.1, 0.35),
                        cytoplasm="cyto_eosinophil", eccentric=(0.1, 0.4),
                        granules=(Granules("granule_eosinophil", 1.8, 0.5, 0.75, packed=True),
                                  Granules("granule_basophil", 0.5, 0.75, 0.7))))],
    "BAS": [(1.0, Morph((10.5, 13.5), "indented", nc=(0.55, 0.68), texture="coarse", chromatin_od=(0.6, 0.75),
                        cytoplasm="cyto_basophil", indent=(0.1, 0.4),
                        granules=(Granules("granule_basophil", 1.4, 0.7, 1.1, over_nucleus=True),)))],
    "MON": [(1.0, Morph((14.0, 20.0), "folded", nc=(0.56, 0.7), chromatin="chromatin_open", texture="lacy",
                        chromatin_od=(0.85, 1.0), cytoplasm="cyto_monocyte", aspect=(1.0, 1.3), irregular=0.06,
                        eccentric=(0.0, 0.35), indent=(0.15, 0.45), vacuoles=(0, 7),
                        granules=(Granules("granule_azurophil", 0.6, 0.22, 0.35),)))],
    "LYT": [(1.0, Morph((8.5, 11.0), "round", nc=(0.82, 0.92), texture="clumped", chromatin_od=(1.0, 1.1),
                        cytoplasm="cyto_lymph", eccentric=(0.0, 0.5), indent=(0.0, 0.1)))],
    "LYI": [(1.0, Morph((10.0, 13.5), "round", nc=(0.8, 0.88), chromatin="chromatin_open", texture="lacy",
                        cytoplasm="cyto_blast", cyto_od=(1.0, 1.2), nucleoli=(0, 1), eccentric=(0.0, 0.4)))],
    "HAC": [(1.0, Morph((12.0, 16.0), "indented", nc=(0.55, 0.66), chromatin="chromatin_open", texture="lacy",
                        cytoplasm="cyto_monocyte", cyto_od=(0.7, 0.9), hairy=0.07, indent=(0.1, 0.3)))],
    "PLM": [(1.0, Morph((10.0, 16.0), "round", nc=(0.48, 0.6), texture="clumped", cytoplasm="cyto_plasma",
                        aspect=(1.15, 1.6), eccentric=(0.6, 0.9), hof=0.55, vacuoles=(0, 2)))],
    "PEB": [(1.0, Morph((14.0, 20.0), "round", nc=(0.72, 0.82), chromatin="chromatin_open", texture="fine",
                        chromatin_od=(1.05, 1.2), cytoplasm="cyto_proerythroblast", irregular=0.04,
                        nucleoli=(1, 2)))],
    "EBO": [
        (0.25, Morph((11.0, 14.5), "round", nc=(0.66, 0.76), texture="coarse", cytoplasm="cyto_proerythroblast",
                     cyto_od=(0.8, 0.95))),  # basophilic normoblast
        (0.45, Morph((8.5, 12.0), "round", nc=(0.52, 0.64), texture="clumped", cytoplasm="cyto_poly")),
        (0.30, Morph((7.0, 9.5), "round", nc=(0.38, 0.5), texture="pyknotic", cytoplasm="cyto_ortho",
                     eccentric=(0.0, 0.6))),  # orthochromatic
    ],
    "MGK": [(1.0, Morph((35.0, 60.0), "multilobed", nc=(0.45, 0.6), texture="coarse", chromatin_od=(0.9, 1.0),
                        cytoplasm="cyto_megakaryocyte", irregular=0.05, lobes=(6, 14),
                        granules=(Granules("granule_azurophil", 1.4, 0.28, 0.5),)))],
    "KSC": [(1.0, Morph((10.0, 22.0), "smudge", nc=(0.85, 1.0), chromatin="chromatin_smudge", texture="smudge",
                        cytoplasm=None, aspect=(1.2, 1.9), irregular=0.18, hairy=0.015, border_um=0.9))],
    # Faggot cell (Matek 2021 FGC; APL): an abnormal promyelocyte, nucleus often folded or bilobed, heavy
    # azurophil granulation, and bundles of Auer rods ("faggots" of sticks) crossing the cytoplasm.
    "FGC": [(1.0, Morph((15.0, 22.0), "folded", nc=(0.55, 0.68), chromatin="chromatin_open", texture="lacy",
                        cytoplasm="cyto_blast", cyto_od=(0.65, 0.85), eccentric=(0.1, 0.4), indent=(0.15, 0.4),
                        granules=(Granules("granule_azurophil", 1.6, 0.5, 0.9, over_nucleus=True),),
                        auer=(2, 3)))],
    # Other cells (Matek 2021 OTH: rare kinds outside the scheme); drawn as its two commonest members.
    "OTH": [
        (0.5, Morph((12.0, 18.0), "round", nc=(0.4, 0.52), texture="coarse", cytoplasm="cyto_basophil",
                    eccentric=(0.0, 0.3),  # mast cell: dark granules packed in the cytoplasm, not over the nucleus
                    granules=(Granules("granule_basophil", 2.2, 0.55, 1.0, packed=True),))),
        (0.5, Morph((18.0, 24.0), "round", nc=(0.3, 0.4), chromatin="chromatin_open", texture="lacy",
                    cytoplasm="cyto_macrophage", cyto_od=(0.7, 0.95), aspect=(1.0, 1.35), irregular=0.1,
                    eccentric=(0.3, 0.7), vacuoles=(6, 14),  # macrophage: foamy cytoplasm, ingested debris
                    granules=(Granules("granule_azurophil", 0.04, 0.9, 0.9),))),
    ],
    # Artefact (Matek 2021 ART): a ruptured cell, its nucleus in dense fragments, the rim torn, stain deposit.
    "ART": [(1.0, Morph((9.0, 20.0), "fragments", nc=(0.6, 0.85), texture="pyknotic", chromatin_od=(0.7, 1.0),
                        cytoplasm="cyto_monocyte", cyto_od=(0.35, 0.65), aspect=(1.0, 1.5), irregular=0.22,
                        hairy=0.03, border_um=0.6, lobes=(2, 6), torn=(0.15, 0.45),
                        granules=(Granules("stain_precipitate", 0.12, 0.7, 1.2, over_nucleus=True),)))],
    "PLT": [(1.0, Morph((2.0, 3.6), "none", cytoplasm="hyalomere", aspect=(1.0, 1.4), irregular=0.1,
                        hairy=0.04, granules=(Granules("granulomere", 9.0, 0.35, 0.7, central=True),)))],
}

#: Dysplastic variants: the classes they apply to, and the morphology changes (WHO 2016 / ICC 2022
#: dysplasia list). Hypogranularity is graded separately (see :data:`GRANULE_FRACTION`).
DYSPLASIA: dict[str, tuple[tuple[str, ...], dict]] = {
    "hypogranular": (("NGS", "NGB", "MMZ"), {}),
    "pseudo_pelger": (("NGS", "NGB"), {"nucleus": "spectacles", "lobes": (1, 2), "texture": "clumped",
                                       "chromatin_od": (1.1, 1.2)}),
    "megaloblastoid": (("EBO",), {"diameter_um": (12.0, 17.0), "nc": (0.6, 0.7), "texture": "fine",
                                  "chromatin": "chromatin_open", "cytoplasm": "cyto_poly"}),
    "multinuclear": (("EBO",), {"nucleus": "multi", "lobes": (2, 4), "diameter_um": (11.0, 16.0),
                                "nc": (0.34, 0.42), "texture": "clumped", "cytoplasm": "cyto_poly"}),
    "micromegakaryocyte": (("MGK",), {"diameter_um": (9.0, 16.0), "nucleus": "multi", "lobes": (1, 2),
                                      "nc": (0.42, 0.55), "texture": "pyknotic", "chromatin_od": (0.9, 1.0)}),
}

#: Mori et al. Sci Rep 2020;10:14734 grade neutrophil granularity 0 (normal), 1 (intermediate),
#: 2 (dysplastic), 3 (severe); WHO calls a neutrophil hypogranular at a >= 2/3 loss of granules. Fraction of
#: the normal granule content kept at each grade:
GRANULE_FRACTION = (1.0, 0.55, 0.25, 0.04)
#: Lowest grade that counts as dysplastic: the project's rule (data/criteria.yaml), not a phantom choice.
DYSPLASTIC_GRADE = int(load_criteria()["dysplasia"]["granule_grade"])

#: Codes whose cells carry a granularity grade (all others report -1); the classifier grades these too.
GRADED = ("NGS", "NGB", "MMZ")


def variants_for(code: str) -> tuple[str, ...]:
    return tuple(v for v, (codes, _) in DYSPLASIA.items() if code in codes)


def morph_for(code: str, stage: int, variant: str | None) -> Morph:
    """The morphology of ``code`` at maturation ``stage`` with an optional dysplastic ``variant``."""
    if code not in MORPHOLOGY:
        raise KeyError(f"no phantom morphology for {code!r}; drawable: {', '.join(MORPHOLOGY)}")
    morph = MORPHOLOGY[code][stage][1]
    if variant:
        codes, overrides = DYSPLASIA[variant]
        if code not in codes:
            raise ValueError(f"variant {variant!r} applies to {codes}, not {code!r}")
        morph = replace(morph, **overrides)
    return morph
