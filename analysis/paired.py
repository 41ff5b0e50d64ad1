"""Two models on the same eval records: compare them prompt by prompt, not run against run.

Unit of replication: the prompt. Each prompt's correctness is first averaged over the eval
repeats (so repeat noise is inside the per-prompt value), then B − A is taken per prompt. The
interval is a paired bootstrap over prompts (scipy.stats.bootstrap, BCa, fixed seed: the same
data always gives the same interval); the p-value is the exact McNemar test when every per-prompt
value is 0/1 (one repeat, or repeats that agree) and otherwise the paired sign-flip permutation
test (exact up to 2¹⁶ sign patterns, else Monte Carlo with the same fixed seed). For 0/1 data the
two tests are the same test (only discordant prompts carry signs), which the tests check.

What it covers: which prompts happen to be in the eval set, and eval sampling. What it does not
cover: training-seed variation — with one training run per arm that variance is unknown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from analysis.stats import NAN, DiffCI

BOOTSTRAP_SEED = 20240501
N_RESAMPLES = 9999


@dataclass(frozen=True)
class Paired:
    ci: DiffCI
    n: int  # prompts in both runs
    wins: int  # prompts where B is better than A
    losses: int
    ties: int
    sd: float  # sd of the per-prompt differences (for the power calculation)
    test: str  # "McNemar exact" or "sign-flip permutation"


def mcnemar_exact(b_only: int, a_only: int) -> float:
    """Two-sided exact McNemar p: discordant pairs ~ Binomial(b_only + a_only, 1/2)."""
    from scipy import stats

    m = b_only + a_only
    if m == 0:
        return 1.0
    return float(stats.binomtest(b_only, m, 0.5).pvalue)


def paired_diff(a: Sequence[float], b: Sequence[float], confidence: float = 0.95,
                seed: int = BOOTSTRAP_SEED, n_resamples: int = N_RESAMPLES) -> Paired:
    """mean(b − a) over paired values (one per prompt), its bootstrap interval and p-value."""
    from scipy import stats

    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.shape != xb.shape:
        raise ValueError(f"paired values need equal lengths, got {xa.size} and {xb.size}")
    d = xb - xa
    n = int(d.size)
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    sd = float(np.std(d, ddof=1)) if n >= 2 else NAN
    if n < 2:
        diff = float(d.mean()) if n else NAN
        return Paired(DiffCI(diff, NAN, NAN, NAN, NAN, NAN, confidence), n, wins, losses, n - wins - losses, sd, "")
    diff = float(d.mean())
    binary = bool(np.isin(xa, (0.0, 1.0)).all() and np.isin(xb, (0.0, 1.0)).all())
    if np.all(d == d[0]):  # no spread: the bootstrap is degenerate, the difference is what it is
        low = high = diff
    else:
        rng = np.random.default_rng(seed)
        res = stats.bootstrap((d,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                              method="BCa", random_state=rng)
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if not (math.isfinite(low) and math.isfinite(high)):  # BCa undefined (e.g. one non-zero diff)
            res = stats.bootstrap((d,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                                  method="percentile", random_state=np.random.default_rng(seed))
            low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if binary:
        p, test = mcnemar_exact(wins, losses), "McNemar exact"
    else:
        p, test = sign_flip_p(d, seed), "sign-flip permutation"
    return Paired(DiffCI(diff, low, high, NAN, NAN, p, confidence), n, wins, losses, n - wins - losses, sd, test)


def sign_flip_p(d: Sequence[float], seed: int = BOOTSTRAP_SEED, n_resamples: int = N_RESAMPLES) -> float:
    """Two-sided paired permutation p for mean(d) = 0 (each prompt's sign flipped at random)."""
    from scipy import stats

    d = np.asarray(d, dtype=float)
    if not np.any(d):
        return 1.0
    nz = d[d != 0]  # zero differences flip to themselves; dropping them makes exact enumeration reach further
    if nz.size == 1:  # both sign patterns are as extreme as the observed one
        return 1.0
    res = stats.permutation_test((nz, np.zeros_like(nz)), lambda x, y: np.mean(x - y), permutation_type="samples",
                                 n_resamples=max(n_resamples, 2 ** min(nz.size, 16)), alternative="two-sided",
                                 random_state=np.random.default_rng(seed))
    return float(min(1.0, res.pvalue))


def per_prompt(rows: Sequence[Mapping], column: str) -> dict[str, float]:
    """``{entry_id: mean of column over repeats}`` from ``eval/entries.json`` rows."""
    acc: dict[str, list[float]] = {}
    for row in rows:
        value = row.get(column)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        acc.setdefault(str(row["entry_id"]), []).append(float(value))
    return {k: sum(v) / len(v) for k, v in acc.items()}


def align(a: Mapping[str, float], b: Mapping[str, float]) -> tuple[list[str], list[float], list[float]]:
    """Entry ids present in both, in a stable order, with their values."""
    ids = sorted(set(a) & set(b))
    return ids, [a[i] for i in ids], [b[i] for i in ids]
