"""One patient's differential from the smears of one aspirate: their counted cells pooled, and a test of
whether the smears disagree on blasts beyond chance.

A hematologist counting two smears of one aspirate reports one differential; when the two tell different
stories (one smear's blasts far above the other's), that is worth a look before the pooled figure is
trusted: a smear from a different draw, a mislabelled slide, or a focal infiltrate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import chi2_contingency

from bmpipe.records import Cells
from bmpipe.stages.aggregate import Differential, differential
from bmpipe.taxonomy import Taxonomy, load_taxonomy

#: Below this p-value the smears' blast counts disagree beyond chance (a χ² test of homogeneity).
DISAGREEMENT_P = 0.05
#: When the smears disagree, the one furthest from the pooled share (largest adjusted residual) is named, if
#: its residual is beyond this many standard errors.
RESIDUAL_LIMIT = 2.0


@dataclass
class SlideShare:
    """One smear's part of a patient's count."""

    slide: str
    n_counted: int
    blasts: int
    blast_pct: float
    blast_ci95: tuple[float, float]
    residual: float = 0.0  # adjusted residual of its blast count under homogeneity
    disagrees: bool = False  # the smear furthest from the others, when they disagree


@dataclass
class BlastHeterogeneity:
    """χ² test that every smear has the same blast share (Pearson, no continuity correction)."""

    chi2: float
    df: int
    p: float
    small_counts: bool  # an expected count under 5: the p-value is approximate

    @property
    def disagree(self) -> bool:
        return self.p < DISAGREEMENT_P


@dataclass
class CaseDifferential:
    case: str
    pooled: Differential
    slides: list[SlideShare] = field(default_factory=list)
    heterogeneity: BlastHeterogeneity | None = None  # None: fewer than two smears with cells, or no blasts at all

    def finding(self) -> str:
        """The sentence the case report adds to its findings about the smears' agreement."""
        h = self.heterogeneity
        if h is None:
            return ""
        test = f"χ² = {h.chi2:.1f}, df {h.df}, p = {h.p:.3g}"
        test += ", approximate: small counts" if h.small_counts else ""
        if not h.disagree:
            return f"The smears agree on blasts within chance ({test})."
        named = [s.slide for s in self.slides if s.disagrees]
        where = f"; furthest from the others: {named[0]}" if named else ""
        return (f"The smears disagree on blasts beyond chance ({test}){where}. Check that they come from one "
                "aspirate before using the pooled figure.")


def blast_heterogeneity(blasts: list[int], totals: list[int]) -> tuple[BlastHeterogeneity | None, list[float]]:
    """The χ² test over smears of (blasts, other cells), and each smear's adjusted residual."""
    blasts_a, totals_a = np.asarray(blasts, float), np.asarray(totals, float)
    keep = totals_a > 0
    if keep.sum() < 2 or blasts_a[keep].sum() == 0 or blasts_a[keep].sum() == totals_a[keep].sum():
        return None, [0.0] * len(blasts)
    table = np.stack([blasts_a[keep], totals_a[keep] - blasts_a[keep]])
    chi2, p, df, expected = chi2_contingency(table, correction=False)
    share = table[0].sum() / table.sum()
    residuals = np.zeros(len(blasts))
    spread = expected[0] * (1 - share) * (1 - totals_a[keep] / table.sum())
    residuals[keep] = (table[0] - expected[0]) / np.sqrt(spread)
    return BlastHeterogeneity(float(chi2), int(df), float(p), bool((expected < 5).any())), residuals.tolist()


def pool_case(case: str, slides: list[tuple[str, Cells, Differential]], taxonomy: Taxonomy | None = None
              ) -> CaseDifferential:
    """The pooled differential of ``slides`` (each: its id, its classified cells and its own differential),
    what each contributed, and whether they agree on blasts."""
    tax = taxonomy or load_taxonomy()
    synthetic = tuple(sorted({c for _, _, d in slides for c in d.synthetic_only}))
    pooled = differential(Cells.concat([cells for _, cells, _ in slides]), case, tax, synthetic_only=synthetic,
                          dysplasia_synthetic_only=any(d.dysplasia_synthetic_only for _, _, d in slides))
    blast_codes = tax.codes_of_group("blasts")
    shares = []
    for slide, _, d in slides:
        n_blasts = sum(d.counts.get(c, 0) for c in blast_codes)
        shares.append(SlideShare(slide, d.n_counted, n_blasts, d.blast_pct, tuple(d.blast_ci95)))
    test, residuals = blast_heterogeneity([s.blasts for s in shares], [s.n_counted for s in shares])
    size = sorted(np.abs(residuals), reverse=True) + [0.0, 0.0]
    single = size[0] > size[1] + 1e-6  # two smears always lie equally far from their pool: name neither
    for share, r in zip(shares, residuals):
        share.residual = round(r, 2)
        share.disagrees = bool(test is not None and test.disagree and single and abs(r) == size[0]
                               and abs(r) > RESIDUAL_LIMIT)
    return CaseDifferential(case, pooled, shares, test)
