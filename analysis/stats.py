"""Is run B better than run A, or is the difference noise?

Method: Welch's unequal-variance t interval for the difference of two means (B − A), over the
per-repeat values of each run (e.g. the 5 BFCL repeats of each eval). Why Welch and not a bootstrap:
evals are repeated a handful of times (n = 3…5). A percentile bootstrap of a 5-value sample has
only 126 distinct resamples, ignores the t tails and shrinks the spread by √((n−1)/n), so its 95 %
interval covers the truth far less than 95 % of the time at this n; Welch's t interval is exact
for normal repeats, does not assume equal variances, and degrades gracefully. The per-run interval
is the Student-t mean CI of ``registry.stats.mean_ci`` (same assumptions).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from registry.stats import mean_ci as _mean_ci

NAN = float("nan")


@dataclass(frozen=True)
class MeanCI:
    """Mean of repeated measurements with its two-sided Student-t interval."""

    mean: float
    std: float
    low: float
    high: float
    n: int

    @property
    def has_ci(self) -> bool:
        return self.n >= 2 and math.isfinite(self.low) and math.isfinite(self.high)


@dataclass(frozen=True)
class DiffCI:
    """B − A with Welch's interval; ``df``, ``t`` and ``p`` are NaN when either side has n < 2."""

    diff: float
    low: float
    high: float
    df: float
    t: float
    p: float
    confidence: float = 0.95

    @property
    def has_ci(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> MeanCI:
    """Student-t mean CI (NaN dropped; n = 1 has no interval)."""
    r = _mean_ci(values, confidence)
    return MeanCI(r["mean"], r["std"], r["ci_low"], r["ci_high"], int(r["n"]))


def mean_ci_from_interval(mean: float, low: float, high: float, n: int, confidence: float = 0.95) -> MeanCI:
    """Recover the sample std from a logged Student-t interval (half = t·s/√n), for runs whose
    per-repeat values are gone but whose ``*_ci95_low/high`` and repeat count were logged."""
    from scipy import stats

    if n < 2 or not (math.isfinite(low) and math.isfinite(high)):
        return MeanCI(mean, NAN, NAN, NAN, n)
    t = float(stats.t.ppf(0.5 + confidence / 2.0, df=n - 1))
    std = (high - low) / 2.0 / t * math.sqrt(n)
    return MeanCI(mean, std, low, high, n)


def welch_from_summary(a: MeanCI, b: MeanCI, confidence: float = 0.95) -> DiffCI:
    """Welch's interval for b.mean − a.mean from each side's mean, std and n.

    se² = s_a²/n_a + s_b²/n_b; Welch–Satterthwaite df = se⁴ / (Σ (s²/n)² / (n − 1));
    interval = diff ± t_{1−(1−c)/2, df} · se; two-sided p from |diff| / se.
    """
    from scipy import stats

    diff = b.mean - a.mean
    if a.n < 2 or b.n < 2 or not (math.isfinite(a.std) and math.isfinite(b.std)):
        return DiffCI(diff, NAN, NAN, NAN, NAN, NAN, confidence)
    va, vb = a.std**2 / a.n, b.std**2 / b.n
    se2 = va + vb
    if se2 == 0.0:  # both sides constant: no observed noise, the difference is what it is
        return DiffCI(diff, diff, diff, NAN, NAN, 1.0 if diff == 0 else 0.0, confidence)
    se = math.sqrt(se2)
    df = se2**2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    crit = float(stats.t.ppf(0.5 + confidence / 2.0, df))
    t = diff / se
    p = float(2.0 * stats.t.sf(abs(t), df))
    return DiffCI(diff, diff - crit * se, diff + crit * se, df, t, p, confidence)


def welch_diff(a_values: Iterable[float], b_values: Iterable[float], confidence: float = 0.95) -> DiffCI:
    """Welch's interval for mean(b) − mean(a) from raw per-repeat values."""
    return welch_from_summary(mean_ci(a_values, confidence), mean_ci(b_values, confidence), confidence)


def verdict(d: DiffCI, metric: str = "", p_label: str = "p", by_p: bool = False) -> str:
    """A plain reading of the interval. Containing 0 is "no difference detected at this sample
    size (±half-width)": absence of evidence, never "no effect" (``docs/statistics.md``).
    ``by_p``: decide by ``d.p < 1 − confidence`` instead (a multiplicity-adjusted p, whose
    decision the unadjusted interval cannot make)."""
    from analysis.metrics import scale

    if not math.isfinite(d.diff):
        return "not comparable (missing on one side)"
    if not d.has_ci:
        return "equal (single values)" if d.diff == 0 else "single values: noise unknown"
    if d.low == d.high:  # both sides constant
        return "identical" if d.diff == 0 else "differs (no spread in either run)"
    p = f"{p_label} = {d.p:.2g}" if math.isfinite(d.p) else ""
    undetected = (d.p >= 1.0 - d.confidence) if (by_p and math.isfinite(d.p)) else (d.low <= 0.0 <= d.high)
    if undetected:
        factor, _, unit, digits = scale(metric)
        half = (d.high - d.low) / 2.0 * factor
        return f"no difference detected at this sample size (±{format(half, digits)}{unit}{', ' + p if p else ''})"
    return f"{'higher' if d.diff > 0 else 'lower'}{' (' + p + ')' if p else ''}"


def clip_proportion(ci: MeanCI) -> MeanCI:
    """A t-interval of a proportion intersected with [0, 1]. The true value lies in [0, 1], so the
    intersection covers it whenever the interval did: coverage is kept, nothing is invented."""
    if not ci.has_ci:
        return ci
    return MeanCI(ci.mean, ci.std, max(0.0, ci.low), min(1.0, ci.high), ci.n)


def wilson(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion (scipy's ``binomtest(...).proportion_ci``); always in
    [0, 1], sensible at 0 and 1. ``successes`` may be fractional (a mean over repeats × n): it is
    rounded to the nearest count."""
    from scipy import stats

    if n <= 0:
        return (NAN, NAN)
    k = int(round(min(max(successes, 0.0), float(n))))
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def holm(pvalues: Iterable[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (step-down, monotone, capped at 1), in input order; NaN
    stays NaN and does not count as a test. scipy has only BH (``false_discovery_control``)."""
    ps = list(pvalues)
    idx = sorted((i for i, p in enumerate(ps) if math.isfinite(p)), key=lambda i: ps[i])
    m = len(idx)
    out = [NAN] * len(ps)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        out[i] = running
    return out
