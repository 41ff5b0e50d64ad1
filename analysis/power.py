"""How big a difference could this many seeds (or prompts) detect, and how many would you need?

Exact power of the two-sided t-test from the noncentral t distribution (scipy.stats.nct), not the
normal approximation, because n is small (3–5 seeds): two independent arms with ``n`` each (Welch
with equal n and sd is the pooled test) or ``n`` paired units (prompts, paired across models).
"""

from __future__ import annotations

import math

NAN = float("nan")


def power(effect: float, sd: float, n: int, paired: bool = False, alpha: float = 0.05) -> float:
    """Probability that the two-sided level-``alpha`` t-test detects a true difference ``effect``."""
    from scipy import stats

    if n < 2 or not (sd > 0) or not math.isfinite(sd):
        return NAN
    if paired:
        df, nc = n - 1, effect / (sd / math.sqrt(n))
    else:
        df, nc = 2 * n - 2, effect / (sd * math.sqrt(2.0 / n))
    crit = float(stats.t.ppf(1 - alpha / 2, df))
    p = float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))
    if not math.isfinite(p):
        # scipy's noncentral t returns NaN for large noncentrality (many paired prompts); there
        # the t is close to normal, so shift the normal by nc around the same critical value
        p = float(stats.norm.sf(crit - nc) + stats.norm.cdf(-crit - nc))
    return min(1.0, max(0.0, p))


def n_needed(effect: float, sd: float, paired: bool = False, target: float = 0.8, alpha: float = 0.05,
             limit: int = 10_000_000) -> int | None:
    """Smallest n (per arm, or paired units) with power ≥ ``target``; None if beyond ``limit``."""
    if not (sd > 0) or not math.isfinite(sd) or effect == 0:
        return None
    lo, hi = 2, 2
    while power(effect, sd, hi, paired, alpha) < target:
        lo, hi = hi, hi * 2
        if hi > limit:
            return None
    while lo < hi:  # power grows with n: bisect for the first n that reaches the target
        mid = (lo + hi) // 2
        if power(effect, sd, mid, paired, alpha) >= target:
            hi = mid
        else:
            lo = mid + 1
    return hi


def mde(sd: float, n: int, paired: bool = False, target: float = 0.8, alpha: float = 0.05) -> float:
    """Minimum detectable effect: the difference detected with probability ``target`` at this n."""
    from scipy import optimize

    if n < 2 or not (sd > 0) or not math.isfinite(sd):
        return NAN
    hi = sd
    while power(hi, sd, n, paired, alpha) < target:
        hi *= 2
    return float(optimize.brentq(lambda e: power(e, sd, n, paired, alpha) - target, 0.0, hi, xtol=1e-12 * sd))
