"""Binomial confidence intervals for the percentages and the ratio a differential reports."""

from __future__ import annotations

from scipy.stats import beta


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for a proportion ``k/n``, in percent.

    Exact rather than Wald because marrow findings sit near 0% and thresholds of a few percent, where the
    normal approximation undercovers. ``n == 0`` gives the uninformative interval (0, 100).
    """
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 100.0
    alpha = 1.0 - confidence
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return 100.0 * low, 100.0 * high


def ratio_interval(a: int, b: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Exact interval for the ratio ``a/b`` of two counts (the M:E ratio), or None when ``b == 0``.

    Conditional on ``a + b``, ``a`` is binomial with p = a/(a+b), and the ratio p/(1-p) is monotone in p,
    so the Clopper-Pearson interval of p maps onto an exact interval of the ratio.
    """
    if a < 0 or b < 0:
        raise ValueError(f"need non-negative counts, got a={a}, b={b}")
    if b == 0:
        return None
    low, high = (p / 100.0 for p in clopper_pearson(a, a + b, confidence))
    return low / (1.0 - low), high / (1.0 - high)
