"""Which cells a phantom contains: a normal adult marrow differential with a chosen blast percentage,
the objects outside the differential, and seeded dysplasia.

Counts are apportioned exactly (largest remainder), so a slide asked for N cells at P % blasts holds
round(N·P/100) blasts among exactly N counted cells and its truth differential is known without sampling
error.
"""

from __future__ import annotations

import numpy as np

from bmpipe.phantom.morphology import DYSPLASTIC_GRADE, GRADED, variants_for
from bmpipe.taxonomy import load_taxonomy

#: Normal adult marrow differential, % of nucleated cells other than blasts. Rounded from the healthy-adult
#: ranges of Bain BJ, "The bone marrow aspirate of healthy subjects", Br J Haematol 1996;94:206-209, and the
#: reference intervals quoted by ICSH (Lee SH et al., Int J Lab Hematol 2008;30:349-364): granulocytic
#: series incl. precursors 59 %, erythroid 25.5 %, lymphocytes 12 %, monocytes 2 %, plasma cells 1.5 %,
#: eosinophils 2.5 %, basophils 0.5 %.
NORMAL_DIFFERENTIAL: dict[str, float] = {
    "PMO": 4.0, "MYB": 10.0, "MMZ": 10.0, "NGB": 12.0, "NGS": 20.0, "EOS": 2.5, "BAS": 0.5,
    "PEB": 1.0, "EBO": 24.5,
    "LYT": 12.0, "MON": 2.0, "PLM": 1.5,
}

#: Objects outside the differential, per counted cell: smudge cells (~3 %, more at the feathered edge) and
#: megakaryocytes (a few per slide; ICSH: count them separately).
SMUDGE_PER_CELL = 0.03
MEGAKARYOCYTE_PER_CELL = 1 / 400

#: Granularity of normal neutrophils: mostly grade 0, some "intermediate" grade 1 (not dysplastic).
NORMAL_GRADES = {0: 0.85, 1: 0.15}
#: Grade of a hypogranular (dysplastic) neutrophil: Mori 2020 saw DG2 about 7× as often as DG3.
HYPOGRANULAR_GRADES = {2: 0.8, 3: 0.2}
#: Variant drawn when a mature neutrophil is made dysplastic.
NEUTROPHIL_VARIANTS = {"hypogranular": 0.6, "pseudo_pelger": 0.4}


def apportion(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Integer counts summing to ``total`` in proportion to ``weights`` (largest remainder)."""
    keys = list(weights)
    w = np.array([weights[k] for k in keys], dtype=float)
    exact = total * w / w.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    return dict(zip(keys, counts.tolist()))


def differential_counts(n: int, blast_pct: float) -> dict[str, int]:
    """Counts of the ``n`` counted (denominator) cells: round(n·P/100) blasts, the rest normal marrow."""
    if not 0 <= blast_pct <= 100:
        raise ValueError(f"blast_pct must be within 0-100, got {blast_pct}")
    blasts = round(n * blast_pct / 100.0)
    return {"BLA": blasts, **apportion(n - blasts, NORMAL_DIFFERENTIAL)}


def extra_counts(n: int) -> dict[str, int]:
    """Smudge cells and megakaryocytes that accompany ``n`` counted cells (at least one megakaryocyte)."""
    return {"KSC": round(n * SMUDGE_PER_CELL), "MGK": max(1, round(n * MEGAKARYOCYTE_PER_CELL))}


def shuffled_codes(counts: dict[str, int], rng: np.random.Generator) -> list[str]:
    codes = [c for c, k in counts.items() for _ in range(k)]
    rng.shuffle(codes)
    return codes


def dysplasia_for(code: str, rng: np.random.Generator, rate: float) -> tuple[int, bool, str]:
    """(grade, dysplastic, variant) of one cell: with probability ``rate`` an eligible cell gets one of its
    dysplastic variants. Graded cells (neutrophil series) always carry a granularity grade; a hypogranular
    one has a grade of at least ``DYSPLASTIC_GRADE``, so ``dysplastic`` agrees with the project's rule."""
    grade = _pick(NORMAL_GRADES, rng) if code in GRADED else -1
    variants = variants_for(code)
    if not variants or rng.random() >= rate:
        return grade, False, ""
    if len(variants) > 1 and set(variants) == set(NEUTROPHIL_VARIANTS):
        variant = _pick(NEUTROPHIL_VARIANTS, rng)
    else:
        variant = variants[int(rng.integers(len(variants)))]
    if variant == "hypogranular":
        grade = _pick({g: w for g, w in HYPOGRANULAR_GRADES.items() if g >= DYSPLASTIC_GRADE}, rng)
    elif code in GRADED:
        grade = 0
    return grade, True, variant


def _pick(weights: dict, rng: np.random.Generator):
    keys = list(weights)
    return keys[int(rng.choice(len(keys), p=_p(weights)))]


def _p(weights: dict) -> np.ndarray:
    w = np.array(list(weights.values()), dtype=float)
    return w / w.sum()


def check_codes() -> None:
    """Fail loudly if the differential names a code the taxonomy does not count (or does not know)."""
    tax = load_taxonomy()
    wrong = [c for c in ["BLA", *NORMAL_DIFFERENTIAL] if not tax[c].denominator]
    wrong += [c for c in extra_counts(1) if tax[c].denominator]
    if wrong:
        raise ValueError(f"phantom composition disagrees with taxonomy.yaml on: {wrong}")
