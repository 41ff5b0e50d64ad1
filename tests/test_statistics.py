"""Every statistical path against reference values: Wilson, Holm, exact McNemar, the paired
bootstrap / sign-flip test, power (noncentral t), seed-level Welch; the verdict wording; and a
property test that no proportion interval leaves [0, 1]."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from analysis import metrics, paired, power
from analysis.stats import DiffCI, MeanCI, clip_proportion, holm, mean_ci, verdict, welch_diff, wilson
from analysis.verdict import UNIT_PROMPTS, UNIT_SEEDS, paired_diff, seeds_diff


def test_wilson_known_answers():
    # Wilson score interval, closed form: (p + z²/2n ± z√(p(1−p)/n + z²/4n²)) / (1 + z²/n)
    for k, n in [(3, 10), (0, 10), (10, 10), (37, 50)]:
        z, p = sps.norm.ppf(0.975), k / n
        centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        ref = ((centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n))
        assert wilson(k, n) == pytest.approx(ref, abs=1e-12)
    assert wilson(3, 10) == pytest.approx((0.10779127, 0.60322185), abs=1e-8)  # the textbook numbers
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)


def test_holm_known_answer():
    # sorted: .005·4 = .02, .01·3 = .03, .03·2 = .06, .04·1 = .04 → monotone max → .06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = holm([0.5, math.nan, 0.01])
    assert out[0] == pytest.approx(0.5) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    assert holm([0.9, 0.8]) == [1.0, 1.0]  # 0.8·2 capped at 1; monotone: 0.9 cannot drop below it


def test_mcnemar_exact_known_answer_and_equals_sign_flip():
    # 9 prompts only B solves, 1 only A: p = 2·(C(10,0) + C(10,1)) / 2¹⁰ = 22/1024
    assert paired.mcnemar_exact(9, 1) == pytest.approx(22 / 1024)
    assert paired.mcnemar_exact(0, 0) == 1.0
    rng = np.random.default_rng(3)
    for _ in range(5):
        a = (rng.random(14) < 0.5).astype(float)
        b = (rng.random(14) < 0.6).astype(float)
        wins, losses = int(((b - a) > 0).sum()), int(((b - a) < 0).sum())
        # on 0/1 outcomes only discordant prompts carry a sign: the exact sign-flip test IS McNemar
        assert paired.sign_flip_p(b - a) == pytest.approx(paired.mcnemar_exact(wins, losses))


def test_paired_bootstrap_is_scipy_and_reproducible():
    rng = np.random.default_rng(7)
    a = rng.integers(0, 4, 30) / 3.0  # per-prompt correctness averaged over 3 repeats
    b = np.clip(a + rng.integers(-1, 3, 30) / 3.0, 0, 1)
    res = paired.paired_diff(a, b)
    ref = sps.bootstrap((b - a,), np.mean, n_resamples=paired.N_RESAMPLES, method="BCa",
                        random_state=np.random.default_rng(paired.BOOTSTRAP_SEED)).confidence_interval
    assert (res.ci.low, res.ci.high) == pytest.approx((ref.low, ref.high))
    assert res.ci.diff == pytest.approx(float(np.mean(b - a)))
    assert paired.paired_diff(a, b) == res  # fixed seed: the same data, the same interval
    assert res.test == "sign-flip permutation" and 0 < res.ci.p <= 1
    assert res.wins + res.losses + res.ties == res.n == 30
    assert res.sd == pytest.approx(np.std(b - a, ddof=1))


def test_paired_degenerate_cases():
    same = paired.paired_diff([1, 0, 1], [1, 0, 1])
    assert same.ci.diff == 0 and same.ci.low == same.ci.high == 0 and same.ci.p == 1.0
    assert paired.paired_diff([0, 0, 0, 0], [1, 1, 1, 1]).ci.p == pytest.approx(2 / 16)  # McNemar 4 vs 0


def test_power_textbook_sample_sizes():
    # Cohen's tables (two-sided α = .05, power .8): d = .5 → 64 per group, .8 → 26, 1.0 → 17; paired d = .5 → 34
    assert [power.n_needed(d, 1.0) for d in (0.5, 0.8, 1.0)] == [64, 26, 17]
    assert power.n_needed(0.5, 1.0, paired=True) == 34
    assert power.power(0.5, 1.0, 64) == pytest.approx(0.8015, abs=5e-4)  # G*Power: 0.8015
    m = power.mde(2.0, 10)
    assert power.power(m, 2.0, 10) == pytest.approx(0.8, abs=1e-9)
    assert math.isnan(power.mde(0.0, 10)) and power.n_needed(0.0, 1.0) is None


def test_seed_level_welch_matches_scipy_and_states_its_unit():
    grpo, egpo = [0.55, 0.58, 0.52], [0.61, 0.66, 0.59]
    d = seeds_diff("eval/accuracy_mean", "grpo", "egpo", mean_ci(grpo), mean_ci(egpo))
    ref = sps.ttest_ind(egpo, grpo, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert (d.ci.low, d.ci.high, d.ci.p) == pytest.approx((ci.low, ci.high, ref.pvalue))
    assert d.unit == UNIT_SEEDS and d.covers.startswith("training-seed variation: 3 vs 3 seeds")
    assert "seeds per arm" in d.power_note and "to resolve 2.0 pts you need ≈" in d.power_note
    sd = math.sqrt((np.var(grpo, ddof=1) + np.var(egpo, ddof=1)) / 2)
    assert f"≈ {power.n_needed(0.02, sd)} seeds" in d.power_note


def test_paired_verdict_says_seed_variance_is_unknown():
    pr = paired.paired_diff([1, 0, 1, 1, 0, 0, 1, 0], [1, 1, 1, 1, 0, 1, 1, 0])
    d = paired_diff("eval/accuracy_mean", "a", "b", pr, (1, 1), (1, 1))
    assert d.unit == UNIT_PROMPTS and "training-seed variance is unknown" in d.covers
    assert "8 prompts detect ±" in d.power_note and "seeds per arm" in d.power_note
    assert d.test == "paired bootstrap; McNemar exact"
    assert d.sentence().startswith("eval/accuracy_mean: b − a = +25.0 pts [")


def test_verdict_wording():
    inside = DiffCI(0.018, -0.015, 0.051, 8.0, 1.2, 0.24)
    assert verdict(inside, "eval/accuracy_mean") == "no difference detected at this sample size (±3.3 pts, p = 0.24)"
    assert verdict(inside, "actor/entropy_last") == "no difference detected at this sample size (±0.033, p = 0.24)"
    assert verdict(DiffCI(0.05, 0.01, 0.09, 8.0, 3.0, 0.017)) == "higher (p = 0.017)"
    assert verdict(DiffCI(-0.05, -0.09, -0.01, 8.0, -3.0, 0.017), p_label="Holm-adjusted p") == \
        "lower (Holm-adjusted p = 0.017)"
    assert "noise" not in verdict(inside)


def test_formatting_is_a_property_of_the_metric():
    for key in ("eval/accuracy_mean", "eval/tool_name_accuracy_mean", "eval/format_valid_rate",
                "eval/bfcl/live/overall_acc", "eval/simple_python_accuracy"):
        assert metrics.is_proportion(key), key
    for key in ("eval/response_length_mean", "eval/repeats", "train/reward_mean_last", "eval/seconds",
                "actor/entropy"):
        assert not metrics.is_proportion(key), key
    assert metrics.entry_column("eval/accuracy_mean") == "correct"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12))
def test_no_proportion_interval_leaves_unit_interval(values):
    ci = clip_proportion(mean_ci(values))
    if ci.has_ci:
        assert 0.0 <= ci.low <= ci.high <= 1.0
        assert ci.low <= ci.mean + 1e-12 and ci.mean <= ci.high + 1e-12
    n = len(values)
    lo, hi = wilson(sum(v >= 0.5 for v in values), n)
    assert 0.0 <= lo <= hi <= 1.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 1 / 3, 2 / 3, 1.0]), st.sampled_from([0.0, 1 / 3, 2 / 3, 1.0])),
                min_size=2, max_size=25))
def test_paired_difference_interval_stays_in_range(pairs):
    a, b = zip(*pairs)
    res = paired.paired_diff(a, b, n_resamples=999)
    assert -1.0 <= res.ci.low <= res.ci.diff + 1e-12 and res.ci.diff <= res.ci.high + 1e-12 <= 1.0 + 1e-12
    assert 0.0 <= res.ci.p <= 1.0


def test_clip_keeps_mean_and_n():
    ci = clip_proportion(MeanCI(0.02, 0.03, -0.027, 0.067, 3))
    assert (ci.low, ci.high, ci.mean, ci.n) == (0.0, 0.067, 0.02, 3)
    assert welch_diff([0.1, 0.2], [0.3, 0.5]).has_ci


def test_adjusted_p_decides_when_there_is_one():
    from analysis.verdict import Diff

    d = Diff("a", "b", DiffCI(0.15, 0.001, 0.311, math.nan, math.nan, 0.06), "eval/accuracy_mean", "prompts (paired)")
    assert d.verdict == "higher (p = 0.06)"  # unadjusted: the interval decides
    d.p_adjusted = 0.12
    assert d.verdict == "no difference detected at this sample size (±15.5 pts, Holm-adjusted p = 0.12)"


def test_power_stays_defined_where_scipys_noncentral_t_gives_nan():
    """scipy's nct returns NaN for noncentrality ≈ 9.5 at df 99 (the demo's 100 paired prompts):
    power falls back to the normal shift there, so the MDE solve never sees NaN."""
    import math

    from scipy import stats

    from analysis import power

    df, nc = 99, 9.478696741854636
    crit = stats.t.ppf(0.975, df)
    raw = stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)
    sd = 0.3
    effect = nc * sd / math.sqrt(df + 1)
    p = power.power(effect, sd, df + 1, paired=True)
    assert math.isfinite(p) and 0.99 < p <= 1.0, (raw, p)
    m = power.mde(sd, 100, paired=True)
    assert 0 < m < sd and abs(power.power(m, sd, 100, paired=True) - 0.8) < 1e-6
