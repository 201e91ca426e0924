"""The statistics under the stylized-fact checks: HP filter, quarters, correlations, moments."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tokenomy.validation.stats import (
    corr,
    cross_corr,
    hp_filter,
    linear_trend,
    log_cycle,
    peak_cross_corr,
    skewness,
    to_quarters,
)


def _dense_hp(y: np.ndarray, lamb: float) -> np.ndarray:
    """The textbook definition, solved densely: an independent reference for the banded solve."""
    n = y.size
    D = np.diff(np.eye(n), 2, axis=0)
    trend: np.ndarray = np.linalg.solve(np.eye(n) + lamb * D.T @ D, y)
    return trend


def test_hp_keeps_a_linear_trend_whole_with_no_cycle() -> None:
    y = 3.0 + 0.25 * np.arange(120)
    trend, cycle = hp_filter(y)
    np.testing.assert_allclose(trend, y, rtol=0, atol=1e-9)
    np.testing.assert_allclose(cycle, 0.0, atol=1e-9)


def test_hp_with_lambda_zero_is_the_series() -> None:
    y = np.random.default_rng(0).normal(size=40)
    trend, cycle = hp_filter(y, lamb=0.0)
    np.testing.assert_array_equal(trend, y)
    np.testing.assert_array_equal(cycle, 0.0)


@pytest.mark.parametrize(("n", "lamb"), [(4, 1600.0), (5, 1.0), (9, 1600.0), (60, 1600.0), (250, 129600.0)])
def test_hp_matches_a_dense_solve(n: int, lamb: float) -> None:
    y = np.random.default_rng(n).normal(size=n).cumsum()
    trend, cycle = hp_filter(y, lamb)
    np.testing.assert_allclose(trend, _dense_hp(y, lamb), rtol=0, atol=1e-8)
    np.testing.assert_allclose(trend + cycle, y)


def test_hp_known_small_example() -> None:
    # n = 4, lamb = 1: (I + D'D) has rows [2 -2 1 0], [-2 6 -4 1], [1 -4 6 -2], [0 1 -2 2]
    y = np.array([1.0, 0.0, 0.0, 0.0])
    A = np.array([[2, -2, 1, 0], [-2, 6, -4, 1], [1, -4, 6, -2], [0, 1, -2, 2]], dtype=float)
    trend, _ = hp_filter(y, lamb=1.0)
    np.testing.assert_allclose(A @ trend, y, atol=1e-12)
    np.testing.assert_allclose(trend, _dense_hp(y, 1.0), atol=1e-12)


@pytest.mark.parametrize("bad", [[1.0, 2.0, 3.0], [1.0, 2.0, np.nan, 4.0, 5.0], [1.0, np.inf, 3.0, 4.0]])
def test_hp_refuses_short_or_non_finite_series(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        hp_filter(bad)


def test_to_quarters_sums_flows_averages_rates_and_takes_the_last_level() -> None:
    x = np.arange(1.0, 12.0)  # 11 months: three whole quarters, the last two months dropped
    np.testing.assert_array_equal(to_quarters(x, "sum"), [6.0, 15.0, 24.0])
    np.testing.assert_array_equal(to_quarters(x, "mean"), [2.0, 5.0, 8.0])
    np.testing.assert_array_equal(to_quarters(x, "last"), [3.0, 6.0, 9.0])
    assert to_quarters([1.0, 2.0], "sum").size == 0
    with pytest.raises(ValueError):
        to_quarters(x, "median")  # type: ignore[arg-type]


def test_log_cycle_is_the_relative_deviation_and_needs_positive_values() -> None:
    t = np.arange(80)
    x = 100.0 * np.exp(0.01 * t)  # a constant growth rate is a linear log: no cycle
    np.testing.assert_allclose(log_cycle(x), 0.0, atol=1e-9)
    np.testing.assert_allclose(log_cycle(3 * x), log_cycle(x), atol=1e-9)  # scale-free
    with pytest.raises(ValueError):
        log_cycle([1.0, 2.0, 0.0, 3.0, 4.0])


def test_corr_is_pearson_and_nan_when_undefined() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=50), rng.normal(size=50)
    assert corr(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1])
    assert corr(a, 2 * a + 1) == pytest.approx(1.0)
    assert math.isnan(corr(a, np.full(50, 0.1)))  # constant: no correlation, not 0, not an error
    assert math.isnan(corr([1.0], [2.0]))
    with pytest.raises(ValueError):
        corr(a, b[:10])


def test_cross_corr_sign_convention_on_a_shifted_sine() -> None:
    t = np.arange(200)
    a = np.sin(2 * np.pi * t / 40)
    b = np.roll(a, 3)  # b_t = a_{t-3}: b is a, 3 steps later, so corr(a_t, b_{t+3}) = 1
    cc = cross_corr(a, b, 5)
    assert sorted(cc) == list(range(-5, 6))
    assert cc[3] == pytest.approx(1.0)
    assert cc[-3] < 0.9
    lag, value = peak_cross_corr(a, b, 5)
    assert lag == 3 and value == pytest.approx(1.0)
    lag, value = peak_cross_corr(b, a, 5)
    assert lag == -3 and value == pytest.approx(1.0)  # swapping the series flips the lag


def test_peak_cross_corr_is_the_largest_signed_value() -> None:
    t = np.arange(200)
    a = np.sin(2 * np.pi * t / 40)
    lag, value = peak_cross_corr(a, -a, 2)  # perfectly countercyclical: |corr| peaks at 0, the value does not
    assert value < 0 and lag in (-2, 2)
    lag, value = peak_cross_corr(a, np.ones(200), 2)  # undefined at every lag
    assert lag == 0 and math.isnan(value)


def test_skewness_of_symmetric_and_exponential_samples() -> None:
    rng = np.random.default_rng(2)
    assert skewness(rng.normal(size=100_000)) == pytest.approx(0.0, abs=0.05)
    assert skewness(np.array([-2.0, -1.0, 0.0, 1.0, 2.0])) == pytest.approx(0.0, abs=1e-12)
    assert skewness(rng.exponential(size=200_000)) == pytest.approx(2.0, abs=0.1)
    assert math.isnan(skewness(np.full(10, 3.0)))


def test_linear_trend_is_the_slope_per_step() -> None:
    assert linear_trend(5.0 - 0.3 * np.arange(30)) == pytest.approx(-0.3)
    assert linear_trend(np.full(10, 2.0)) == 0.0
    assert math.isnan(linear_trend([1.0]))
