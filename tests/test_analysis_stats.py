"""Welch's interval and the verdicts, checked by hand and against scipy."""

from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from analysis.stats import (
    DiffCI,
    MeanCI,
    mean_ci,
    mean_ci_from_interval,
    verdict,
    welch_diff,
    welch_from_summary,
)

A = [1.0, 2.0, 3.0]  # mean 2, s² = 1
B = [2.0, 4.0, 6.0, 8.0]  # mean 5, s² = 20/3


def test_welch_hand_computed_case():
    d = welch_diff(A, B)
    # se² = 1/3 + (20/3)/4 = 2;  df = se⁴ / ((1/3)²/2 + (5/3)²/3) = 4 / (53/54) = 216/53
    assert d.diff == pytest.approx(3.0)
    assert d.df == pytest.approx(216 / 53, rel=1e-12)
    assert d.t == pytest.approx(3.0 / math.sqrt(2.0), rel=1e-12)
    crit = sps.t.ppf(0.975, 216 / 53)
    assert 2.571 < crit < 2.777  # between t(5) and t(4), as df ≈ 4.08 says
    assert (d.low, d.high) == pytest.approx((3.0 - crit * math.sqrt(2.0), 3.0 + crit * math.sqrt(2.0)), rel=1e-12)
    assert d.low == pytest.approx(-0.8979754510831279, rel=1e-9)  # the same numbers, written out
    assert d.high == pytest.approx(6.897975451083128, rel=1e-9)


def test_welch_matches_scipy():
    a, b = [0.61, 0.59, 0.63, 0.60, 0.62], [0.64, 0.58, 0.66, 0.61, 0.60, 0.65]
    ref = sps.ttest_ind(b, a, equal_var=False)
    ci = ref.confidence_interval(0.95)
    d = welch_diff(a, b)
    assert d.t == pytest.approx(ref.statistic)
    assert d.p == pytest.approx(ref.pvalue)
    assert d.df == pytest.approx(ref.df)
    assert (d.low, d.high) == pytest.approx((ci.low, ci.high))
    ci90 = sps.ttest_ind(b, a, equal_var=False).confidence_interval(0.90)
    d90 = welch_diff(a, b, confidence=0.90)
    assert (d90.low, d90.high) == pytest.approx((ci90.low, ci90.high))


def test_mean_ci_is_student_t():
    ci = mean_ci([0.60, 0.62, 0.58, 0.61, 0.59])
    half = sps.t.ppf(0.975, 4) * ci.std / math.sqrt(5)
    assert ci.n == 5 and ci.mean == pytest.approx(0.60)
    assert (ci.low, ci.high) == pytest.approx((0.60 - half, 0.60 + half))


def test_std_recovered_from_logged_interval():
    values = [0.55, 0.61, 0.58, 0.66, 0.60]
    ci = mean_ci(values)
    back = mean_ci_from_interval(ci.mean, ci.low, ci.high, ci.n)
    assert back.std == pytest.approx(ci.std)
    assert welch_from_summary(back, mean_ci([0.7, 0.72, 0.69])).low == pytest.approx(
        welch_diff(values, [0.7, 0.72, 0.69]).low)


def test_single_values_have_no_interval():
    d = welch_from_summary(MeanCI(0.5, math.nan, math.nan, math.nan, 1), mean_ci([0.4, 0.6]))
    assert d.diff == pytest.approx(0.0) and not d.has_ci
    assert verdict(d) == "equal (single values)"
    one = MeanCI(0.5, math.nan, math.nan, math.nan, 1)
    assert verdict(welch_from_summary(one, mean_ci([0.4, 0.7]))) == "single values: noise unknown"


def test_constant_groups():
    d = welch_diff([0.5, 0.5, 0.5], [0.7, 0.7])
    assert d.diff == pytest.approx(0.2) and d.low == d.high == pytest.approx(0.2)
    assert verdict(d) == "differs (no spread in either run)"
    assert verdict(welch_diff([0.5, 0.5], [0.5, 0.5])) == "identical"


def test_verdicts():
    assert verdict(DiffCI(0.002, -0.016, 0.020, 8.0, 0.2, 0.84)) == \
        "no difference detected at this sample size (±0.018, p = 0.84)"
    assert verdict(DiffCI(0.05, 0.01, 0.09, 8.0, 3.0, 0.017)) == "higher (p = 0.017)"
    assert verdict(DiffCI(-0.05, -0.09, -0.01, 8.0, -3.0, 0.017)).startswith("lower")
    assert verdict(DiffCI(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)).startswith("not comparable")
