"""The difference between two arms on one metric, with its unit of replication, what its interval
covers, the test, multiplicity and power — and the sentence that says it.

Which path, in order (docs/statistics.md):
1. both arms have ≥ 2 training seeds → paired t over the per-seed differences when ≥ 2 seeds are
   common to both arms (unit: training seeds (paired by seed); the unpaired Welch goes along as
   ``Diff.unpaired``), else Welch over the per-seed values (unit: training seeds);
2. the metric has per-entry outcomes and both arms have ``eval/entries.json`` → paired per prompt
   (unit: prompts; training-seed variance unknown);
3. eval repeats on both sides → Welch over repeats (unit: eval repeats; covers eval sampling only);
4. single values → no interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from analysis import power
from analysis.metrics import is_proportion, scale
from analysis.paired import Paired
from analysis.stats import DiffCI, MeanCI, verdict, welch_from_summary

UNIT_SEEDS = "training seeds"
UNIT_SEED_PAIRS = "training seeds (paired by seed)"
UNIT_PROMPTS = "prompts (paired)"
UNIT_REPEATS = "eval repeats"
RESOLVE_PTS = 0.02  # "to resolve 2 points": the step the power line is stated for, on proportions


@dataclass
class Diff:
    a: str
    b: str
    ci: DiffCI
    metric: str = ""
    unit: str = ""
    covers: str = ""
    test: str = ""
    n: tuple[int, int] = (0, 0)
    p_adjusted: float = math.nan
    role: str = "secondary"  # "primary" (the study's primary_metric) or "secondary"
    power_note: str = ""
    paired: Paired | None = None
    notes: list[str] = field(default_factory=list)
    unpaired: Diff | None = None  # a seed-paired verdict's Welch over the same arms' seeds, shown too

    @property
    def p(self) -> float:
        return self.p_adjusted if math.isfinite(self.p_adjusted) else self.ci.p

    @property
    def verdict(self) -> str:
        label = "Holm-adjusted p" if math.isfinite(self.p_adjusted) else "p"
        d = DiffCI(self.ci.diff, self.ci.low, self.ci.high, self.ci.df, self.ci.t, self.p, self.ci.confidence)
        # paired: the exact test decides (McNemar / sign-flip); the BCa interval is approximate at
        # a few dozen discrete per-prompt values and may graze 0 on the other side
        return verdict(d, self.metric, label, by_p=math.isfinite(self.p_adjusted) or self.paired is not None)

    def sentence(self) -> str:
        """``eval/accuracy: egpo − grpo = +1.8 pts [−1.5, +5.1] (95% CI over training seeds, 3 vs 3, Welch):
        no difference detected at this sample size (±3.3 pts, p = 0.24).``"""
        from analysis.render import diff_parts

        value, interval = diff_parts(self, is_proportion(self.metric))
        n = (f"n = {self.n[0]} prompts" if self.paired is not None else
             f"n = {self.n[0]} seed pairs" if self.unit == UNIT_SEED_PAIRS else f"n = {self.n[0]} vs {self.n[1]}")
        how = f"{self.ci.confidence:.0%} CI over {self.unit}, {n}" if self.unit else ""
        if self.test:
            how += f", {self.test}"
        return (f"{self.metric}: {self.b} − {self.a} = {value}{' ' + interval if interval else ''}"
                f"{' (' + how + ')' if how else ''}: {self.verdict}.")


def _fmt(metric: str, x: float) -> str:
    factor, _, unit, digits = scale(metric)
    return f"{format(x * factor, digits)}{unit}"


def seeds_diff(metric: str, a: str, b: str, sa: MeanCI, sb: MeanCI, spread: str = "training-seed variation") -> Diff:
    """Welch over the per-seed values; ``spread`` says what the seeds vary (``analysis.seedpair``)."""
    ci = welch_from_summary(sa, sb)
    d = Diff(a, b, ci, metric, UNIT_SEEDS, test="Welch",
             covers=(f"{spread}: {sa.n} vs {sb.n} seeds, each seed's value already averaged over "
                     "its prompts and eval repeats"), n=(sa.n, sb.n))
    sd = math.sqrt((sa.std**2 + sb.std**2) / 2.0) if math.isfinite(sa.std) and math.isfinite(sb.std) else math.nan
    n = min(sa.n, sb.n)
    m = power.mde(sd, n)
    target = RESOLVE_PTS if is_proportion(metric) else abs(ci.diff)
    need = power.n_needed(target, sd) if target else None
    if math.isfinite(m):
        d.power_note = (f"With {n} seeds per arm the smallest difference detected with 80% power is ±{_fmt(metric, m)}"
                        + (f"; to resolve {_fmt(metric, target)} you need ≈ {need} seeds per arm." if need else "."))
    return d


def seed_paired_diff(metric: str, a: str, b: str, xa: list[float], xb: list[float], *, seeds: list[str],
                     spread: str = "training-seed variation", shares: list[str] | None = None,
                     left_out: str = "") -> Diff:
    """B − A paired by seed: the mean of the per-seed differences with its Student-t interval
    (``scipy.stats.ttest_rel``); the power line uses the sd of those differences."""
    from scipy import stats

    diffs = [y - x for x, y in zip(xa, xb)]
    n = len(diffs)
    mean = sum(diffs) / n
    tol = 1e-12 * max(1.0, *(abs(v) for v in (*xa, *xb)))  # float noise of equal values is no spread
    if all(abs(x - diffs[0]) <= tol for x in diffs):  # no spread in the differences: it is what it is
        mean = 0.0 if abs(mean) <= tol else mean
        ci = DiffCI(mean, mean, mean, math.nan, math.nan, 1.0 if mean == 0 else 0.0)
        sd = 0.0
    else:
        res = stats.ttest_rel(xb, xa)
        interval = res.confidence_interval(0.95)
        ci = DiffCI(mean, float(interval.low), float(interval.high), float(res.df), float(res.statistic),
                    float(res.pvalue))
        sd = float(stats.tstd(diffs))
    share = f"a seed's two cells share {', '.join(shares)}, so what they share cancels in its difference; " if shares else ""
    on = f"paired by seed on the {n} seeds both arms ran ({', '.join(seeds)})"
    head = (f"{spread} of the difference, {on}" if spread == "training-seed variation" else
            f"variation over seeds of the difference, {on}: {spread}")
    covers = (f"{head}; {share}"
              "each seed's value already averaged over its prompts and eval repeats" + (f"; {left_out}" if left_out else ""))
    d = Diff(a, b, ci, metric, UNIT_SEED_PAIRS, covers=covers, test="paired t", n=(n, n))
    m = power.mde(sd, n, paired=True)
    target = RESOLVE_PTS if is_proportion(metric) else abs(ci.diff)
    need = power.n_needed(target, sd, paired=True) if target else None
    if math.isfinite(m):
        d.power_note = (f"With {n} paired seeds (sd of the per-seed differences {_fmt(metric, sd)}) the smallest "
                        f"difference detected with 80% power is ±{_fmt(metric, m)}"
                        + (f"; to resolve {_fmt(metric, target)} you need ≈ {need} seeds in both arms." if need else "."))
    return d


def paired_diff(metric: str, a: str, b: str, pr: Paired, repeats: tuple[int, int], seeds: tuple[int, int]) -> Diff:
    reps = "/".join(str(r) for r in dict.fromkeys(repeats))
    d = Diff(a, b, pr.ci, metric, UNIT_PROMPTS, test=f"paired bootstrap; {pr.test}", n=(pr.n, pr.n), paired=pr,
             covers=(f"which prompts are in the eval set, on the {pr.n} prompts both arms answered (paired), each "
                     f"prompt's outcome averaged over its {reps} eval repeat(s); training-seed variance is unknown "
                     f"({'one training run' if max(seeds) == 1 else 'fewer than 2 seeds'} per arm)"))
    m = power.mde(pr.sd, pr.n, paired=True)
    if math.isfinite(m):
        per_run = pr.sd / math.sqrt(pr.n) / math.sqrt(2.0)  # one run's share of the paired noise
        need = power.n_needed(RESOLVE_PTS if is_proportion(metric) else abs(pr.ci.diff), per_run)
        d.power_note = (f"These {pr.n} prompts detect ±{_fmt(metric, m)} with 80% power. Training-seed variance "
                        f"is unknown; even if it were no larger than this eval noise, resolving "
                        f"{_fmt(metric, RESOLVE_PTS) if is_proportion(metric) else 'this difference'} would need "
                        f"≈ {need or 'too many'} seeds per arm (more with real seed variance).")
    return d


def repeats_diff(metric: str, a: str, b: str, sa: MeanCI, sb: MeanCI) -> Diff:
    ci = welch_from_summary(sa, sb)
    if sa.n >= 2 and sb.n >= 2:
        return Diff(a, b, ci, metric, UNIT_REPEATS, test="Welch", n=(sa.n, sb.n),
                    covers=(f"eval sampling only: {sa.n} vs {sb.n} repeats of the same prompts on one trained model "
                            "each; not which prompts were drawn, not training seeds"))
    return Diff(a, b, ci, metric, n=(sa.n, sb.n), covers="single values: no noise estimate")
