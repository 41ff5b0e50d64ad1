"""Summary statistics over repeated measurements (eval repeats, seeds), shared by runners and analysis.

Why a Student-t interval: an eval is repeated a handful of times (the user runs BFCL 5 times), so
the spread must be estimated from those few values. With n small the normal 1.96·s/√n interval is
too narrow (for n = 5 the right multiplier is t₀.₉₇₅,₄ = 2.776); the t interval is exact when the
per-repeat scores are roughly normal and stays honest for tiny n.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean, sample std (ddof=1) and the two-sided Student-t confidence interval of the mean.

    Returns ``{"mean", "std", "ci_low", "ci_high", "n"}``. NaN values are dropped (a repeat that
    produced no number does not poison the others). With n = 1 the std and the interval are NaN
    (one value says nothing about spread); with n = 0 everything is NaN and ``n`` is 0.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence} (use e.g. 0.95)")
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(xs)
    nan = float("nan")
    if n == 0:
        return {"mean": nan, "std": nan, "ci_low": nan, "ci_high": nan, "n": 0}
    mean = math.fsum(xs) / n
    if n == 1:
        return {"mean": mean, "std": nan, "ci_low": nan, "ci_high": nan, "n": 1}
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    from scipy import stats

    half = float(stats.t.ppf(0.5 + confidence / 2.0, df=n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "n": n}
