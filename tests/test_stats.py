"""mean_ci: the Student-t interval over repeats (registry/stats.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from registry.stats import mean_ci


def test_matches_scipy_t_interval():
    values = [61.7, 59.9, 63.1, 60.2, 62.5]
    out = mean_ci(values)
    lo, hi = stats.t.interval(0.95, df=4, loc=np.mean(values), scale=stats.sem(values))
    assert out["n"] == 5
    assert out["mean"] == pytest.approx(np.mean(values))
    assert out["std"] == pytest.approx(np.std(values, ddof=1))
    assert out["ci_low"] == pytest.approx(lo) and out["ci_high"] == pytest.approx(hi)


def test_t_interval_wider_than_normal_for_few_repeats():
    values = [0.5, 0.6, 0.55]
    out = mean_ci(values)
    normal_half = 1.959964 * np.std(values, ddof=1) / math.sqrt(3)
    assert (out["ci_high"] - out["ci_low"]) / 2 > 2 * normal_half  # t(0.975, 2) = 4.30


def test_confidence_level_changes_width():
    values = [1.0, 2.0, 3.0, 4.0]
    w90 = mean_ci(values, 0.90)
    w99 = mean_ci(values, 0.99)
    assert w99["ci_high"] - w99["ci_low"] > w90["ci_high"] - w90["ci_low"]


def test_constant_values_have_zero_width():
    out = mean_ci([0.25, 0.25, 0.25])
    assert out["std"] == 0.0 and out["ci_low"] == out["ci_high"] == 0.25


def test_single_and_empty_and_nan():
    one = mean_ci([0.4])
    assert one["mean"] == 0.4 and one["n"] == 1 and math.isnan(one["std"]) and math.isnan(one["ci_low"])
    empty = mean_ci([])
    assert empty["n"] == 0 and math.isnan(empty["mean"])
    dropped = mean_ci([1.0, float("nan"), 3.0])
    assert dropped["n"] == 2 and dropped["mean"] == 2.0


def test_bad_confidence():
    with pytest.raises(ValueError, match="confidence"):
        mean_ci([1.0, 2.0], confidence=95)
