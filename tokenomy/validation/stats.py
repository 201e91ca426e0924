"""The time-series statistics the stylized-fact checks are measured with (numpy only, no scipy).

The business-cycle facts of the agent-based macro literature (Dosi et al. 2010; Caiani et al. 2016)
are stated on quarterly data, detrended with the Hodrick-Prescott filter at lambda = 1600; this
module holds exactly those steps, so each check in :mod:`tokenomy.validation.stylized` is one line.

Statistics that are undefined on the data (a correlation with a constant series, the skewness of a
constant sample) return ``nan`` instead of raising: a check measured as ``nan`` fails visibly in the
table rather than stopping the whole validation run.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "Aggregation",
    "corr",
    "cross_corr",
    "hp_filter",
    "linear_trend",
    "log_cycle",
    "peak_cross_corr",
    "skewness",
    "to_quarters",
]

Aggregation = Literal["sum", "mean", "last"]
_SECOND_DIFFERENCE = (1.0, -2.0, 1.0)


def _series(x: ArrayLike) -> NDArray[np.float64]:
    v = np.asarray(x, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"expected a 1-D series, got shape {v.shape}")
    return v


def hp_filter(y: ArrayLike, lamb: float = 1600.0) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Hodrick-Prescott ``(trend, cycle)``: the exact solution of ``(I + lamb D'D) trend = y``.

    ``D`` is the ``(n-2) x n`` second-difference operator, so the system is symmetric, positive
    definite and pentadiagonal; it is solved by a banded LDL' factorisation in O(n), which is exact
    (no iterative or one-sided approximation) and needs no scipy.
    """
    v = _series(y)
    n = v.size
    if n < 4:
        raise ValueError(f"the HP filter needs at least 4 points, got {n}")
    if not np.all(np.isfinite(v)):
        raise ValueError("the HP filter needs finite values")
    if not (math.isfinite(lamb) and lamb >= 0):
        raise ValueError(f"lamb must be finite and >= 0, got {lamb}")
    # the three distinct diagonals of A = I + lamb D'D, summed row by row of D
    m, c = n - 2, _SECOND_DIFFERENCE
    a0, a1, a2 = np.ones(n), np.zeros(n - 1), np.zeros(n - 2)
    for k in range(3):
        a0[k : k + m] += lamb * c[k] ** 2
    for k in range(2):
        a1[k : k + m] += lamb * c[k] * c[k + 1]
    a2 += lamb * c[0] * c[2]
    # A = L diag(d) L', L unit lower triangular with sub-diagonals l1 (L[i+1, i]) and l2 (L[i+2, i])
    d, l1, l2 = np.zeros(n), np.zeros(n - 1), np.zeros(n - 2)
    for i in range(n):
        di = a0[i]
        if i >= 1:
            di -= l1[i - 1] ** 2 * d[i - 1]
        if i >= 2:
            di -= l2[i - 2] ** 2 * d[i - 2]
        d[i] = di
        if i < n - 1:
            l1[i] = (a1[i] - (l2[i - 1] * l1[i - 1] * d[i - 1] if i >= 1 else 0.0)) / di
        if i < n - 2:
            l2[i] = a2[i] / di
    z = v.copy()  # forward: L z = y
    for i in range(1, n):
        z[i] -= l1[i - 1] * z[i - 1] + (l2[i - 2] * z[i - 2] if i >= 2 else 0.0)
    trend = z / d  # back: L' trend = z / d
    for i in range(n - 2, -1, -1):
        trend[i] -= l1[i] * trend[i + 1] + (l2[i] * trend[i + 2] if i < n - 2 else 0.0)
    return trend, v - trend


def to_quarters(x: ArrayLike, how: Aggregation) -> NDArray[np.float64]:
    """Monthly rounds -> quarters of 3, dropping an incomplete last quarter.

    ``how``: ``"sum"`` for flows (GDP, consumption, investment), ``"mean"`` for rates (unemployment,
    vacancy rate), ``"last"`` for stocks and price levels (the end-of-quarter value).
    """
    v = _series(x)
    q = v[: v.size // 3 * 3].reshape(-1, 3)
    if how == "sum":
        out: NDArray[np.float64] = q.sum(axis=1)
    elif how == "mean":
        out = q.mean(axis=1)
    elif how == "last":
        out = q[:, -1].copy()
    else:
        raise ValueError(f"how must be 'sum', 'mean' or 'last', got {how!r}")
    return out


def log_cycle(x: ArrayLike, lamb: float = 1600.0) -> NDArray[np.float64]:
    """HP cycle of ``log(x)``: percentage deviations from trend, so volatilities of series of
    different sizes (Y, C, I) compare as relative volatilities."""
    v = _series(x)
    if not np.all(v > 0):
        raise ValueError("log_cycle needs a strictly positive series")
    return hp_filter(np.log(v), lamb)[1]


def corr(a: ArrayLike, b: ArrayLike) -> float:
    """Pearson correlation; ``nan`` when undefined (fewer than 2 points, a constant series, a nan)."""
    x, y = _series(a), _series(b)
    if x.size != y.size:
        raise ValueError(f"series of different lengths: {x.size} and {y.size}")
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:  # exact test: a constant's rounding noise is no signal
        return math.nan
    dx, dy = x - x.mean(), y - y.mean()
    den = math.sqrt(float(dx @ dx) * float(dy @ dy))
    return float(dx @ dy) / den if den > 0 else math.nan


def cross_corr(a: ArrayLike, b: ArrayLike, max_lag: int) -> dict[int, float]:
    """``{lag: corr(a_t, b_{t+lag})}`` for ``lag`` in ``-max_lag..max_lag``, on the overlapping points.

    A peak at a positive lag means ``a`` leads ``b`` (a today moves with b later); at a negative
    lag, ``a`` lags ``b``.
    """
    x, y = _series(a), _series(b)
    if x.size != y.size:
        raise ValueError(f"series of different lengths: {x.size} and {y.size}")
    if max_lag < 0:
        raise ValueError(f"max_lag must be >= 0, got {max_lag}")
    n, out = x.size, {}
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            out[lag] = corr(x[: max(n - lag, 0)], y[lag:])
        else:
            out[lag] = corr(x[-lag:], y[: max(n + lag, 0)])
    return out


def peak_cross_corr(a: ArrayLike, b: ArrayLike, max_lag: int) -> tuple[int, float]:
    """The lag with the largest (signed, not absolute) :func:`cross_corr` value, and that value.

    Signed because the facts it serves are procyclicality facts: a strongly negative correlation
    is a failure, not a peak. Ties go to the lag nearest zero; ``(0, nan)`` when none is defined.
    """
    best_lag, best = 0, math.nan
    for lag, c in sorted(cross_corr(a, b, max_lag).items(), key=lambda kv: (abs(kv[0]), kv[0])):
        if math.isfinite(c) and not c <= best:  # `not <=` so the first finite value beats nan
            best_lag, best = lag, c
    return best_lag, best


def skewness(x: ArrayLike) -> float:
    """Moment skewness ``m3 / m2**1.5`` (population moments, no small-sample correction);
    ``nan`` for a constant or empty sample."""
    v = _series(x)
    if v.size == 0 or np.ptp(v) == 0:
        return math.nan
    dev = v - v.mean()
    m2, m3 = float(np.mean(dev**2)), float(np.mean(dev**3))
    return m3 / m2**1.5 if m2 > 0 else math.nan


def linear_trend(y: ArrayLike) -> float:
    """OLS slope of ``y`` on its index ``0..n-1``: the change per step; ``nan`` for fewer than 2 points."""
    v = _series(y)
    if v.size < 2:
        return math.nan
    t = np.arange(v.size, dtype=np.float64)
    t -= t.mean()
    return float(t @ (v - v.mean())) / float(t @ t)
