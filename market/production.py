"""Task-based production after Korinek & Suh (2024, NBER w32255).

A share ``phi`` of tasks can be done by automation capital ``K``; the rest only by labour ``L``.
Where capital is scarce (``K/L <= phi/(1-phi)``) labour also does automatable tasks and the two are
perfect substitutes, so output is linear, ``Y = A(K+L)``. Beyond that the CES aggregate binds:

    Y = A [K^((s-1)/s) phi^(1/s) + L^((s-1)/s) (1-phi)^(1/s)]^(s/(s-1)),   s < 1

Everything here is a pure function vectorised over numpy arrays, so one call prices a whole
population of firms.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "cost_minimising_ratio",
    "labour_at_marginal_product",
    "labour_required",
    "marginal_products",
    "output",
    "output_per_worker",
]

_EPS = 1e-12
_Floats = NDArray[np.float64]


def _check_sigma(sigma: float) -> None:
    # s < 1: tasks are complements (K&S); s = 1 divides by zero in (s-1)/s, s > 1 is another model
    if not 0.0 < sigma < 1.0:
        raise ValueError(f"sigma must be in (0, 1), got {sigma}")


def _ces_terms(
    K: NDArray[np.float64], L: NDArray[np.float64], phi: NDArray[np.float64], sigma: float
) -> tuple[float, _Floats, _Floats, _Floats, _Floats, _Floats]:
    """``(rho, K, L, wk, wl, s)``: the CES exponent, inputs floored at ``_EPS``, task weights and the inner sum."""
    rho = (sigma - 1.0) / sigma
    k = np.maximum(K, _EPS)
    lab = np.maximum(L, _EPS)
    wk = np.clip(phi, _EPS, 1.0) ** (1.0 / sigma)
    wl = np.clip(1.0 - phi, 0.0, 1.0) ** (1.0 / sigma)
    s = k**rho * wk + lab**rho * wl
    return rho, k, lab, wk, wl, s


def _linear_region(K: NDArray[np.float64], L: NDArray[np.float64], phi: NDArray[np.float64]) -> NDArray[np.bool_]:
    # K/L <= phi/(1-phi)  <=>  K (1-phi) <= phi L, written without division so phi = 1 is safe.
    return K * (1.0 - phi) <= phi * L


def output(K: ArrayLike, L: ArrayLike, phi: ArrayLike, A: float, sigma: float) -> NDArray[np.float64] | float:
    """Output from capital ``K`` and labour ``L`` at automation frontier ``phi`` (``sigma < 1``)."""
    _check_sigma(sigma)
    K_, L_, phi_ = (np.asarray(x, dtype=np.float64) for x in (K, L, phi))
    K_, L_, phi_ = np.broadcast_arrays(K_, L_, phi_)
    linear = _linear_region(K_, L_, phi_)
    rho, _, _, _, _, s = _ces_terms(K_, L_, phi_, sigma)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        ces = A * s ** (1.0 / rho)
    y = np.where(linear, A * (K_ + L_), ces)
    y = np.where((K_ <= 0) & (L_ <= 0), 0.0, y)
    return float(y) if y.ndim == 0 else y


def marginal_products(
    K: ArrayLike, L: ArrayLike, phi: ArrayLike, A: float, sigma: float
) -> tuple[NDArray[np.float64] | float, NDArray[np.float64] | float]:
    """Return ``(R, w)``: the marginal products of capital and of labour.

    In the linear region both equal ``A``; in the CES region
    ``R = A s^(1/rho - 1) K^(rho-1) phi^(1/s)`` and likewise for labour.
    """
    _check_sigma(sigma)
    K_, L_, phi_ = (np.asarray(x, dtype=np.float64) for x in (K, L, phi))
    K_, L_, phi_ = np.broadcast_arrays(K_, L_, phi_)
    linear = _linear_region(K_, L_, phi_)
    rho, k, lab, wk, wl, s = _ces_terms(K_, L_, phi_, sigma)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        common = A * s ** (1.0 / rho - 1.0)
        R = common * k ** (rho - 1.0) * wk
        w = common * lab ** (rho - 1.0) * wl
    R = np.where(linear, A, R)
    w = np.where(linear, A, w)
    if R.ndim == 0:
        return float(R), float(w)
    return R, w


def cost_minimising_ratio(
    phi: ArrayLike, wage: ArrayLike, capital_cost: ArrayLike, sigma: float
) -> NDArray[np.float64]:
    """Capital per worker that minimises cost at the given input prices.

    Where capital is no cheaper than labour the linear region makes labour weakly better, so the
    firm holds no more capital than it already needs (ratio 0). Where capital is cheaper, the CES
    first-order condition ``MPK/MPL = c_K/w`` gives ``K/L = phi/(1-phi) * (w/c_K)^sigma``; at
    ``phi = 1`` no task needs labour and the ratio is unbounded (``inf``).
    """
    phi_ = np.asarray(phi, dtype=np.float64)
    w = np.asarray(wage, dtype=np.float64)
    c = np.maximum(np.asarray(capital_cost, dtype=np.float64), _EPS)
    with np.errstate(divide="ignore"):
        base = np.where(phi_ >= 1.0, np.inf, phi_ / np.maximum(1.0 - phi_, 0.0))
    return np.where(w > c, base * (w / c) ** sigma, 0.0)


def output_per_worker(ratio: ArrayLike, phi: ArrayLike, A: float, sigma: float) -> NDArray[np.float64]:
    """Output of one worker equipped with ``ratio`` units of capital (CES is homogeneous of degree 1)."""
    return np.asarray(output(ratio, 1.0, phi, A, sigma), dtype=np.float64)


def labour_required(Y: ArrayLike, K: ArrayLike, phi: ArrayLike, A: float, sigma: float) -> NDArray[np.float64]:
    """Least labour that, with installed capital ``K``, produces ``Y`` (``inf`` if none can).

    Inverts the production function: ``L = Y/A - K`` where that lands in the linear region,
    else ``L^rho (1-phi)^(1/s) = (Y/A)^rho - K^rho phi^(1/s)`` from the CES branch. The answer is
    finite for any ``Y``: labour can also do automatable tasks, so enough of it always reaches the
    linear region. (``inf`` is only a guard against float edge cases.)
    """
    _check_sigma(sigma)
    Y_, K_, phi_ = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (Y, K, phi)))
    rho = (sigma - 1.0) / sigma
    lin = np.maximum(Y_ / A - K_, 0.0)
    in_linear = K_ * (1.0 - phi_) <= phi_ * lin
    wk = np.clip(phi_, _EPS, 1.0) ** (1.0 / sigma)
    wl = np.clip(1.0 - phi_, 0.0, 1.0) ** (1.0 / sigma)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rest = (np.maximum(Y_, _EPS) / A) ** rho - np.maximum(K_, _EPS) ** rho * wk
        ces = np.where((rest > 0) & (wl > 0), (rest / np.where(wl > 0, wl, 1.0)) ** (1.0 / rho), np.inf)
    out = np.where(in_linear, lin, ces)
    return np.where(Y_ <= 0, 0.0, out)


def labour_at_marginal_product(
    m: ArrayLike, K: ArrayLike, phi: ArrayLike, A: float, sigma: float
) -> NDArray[np.float64]:
    """Labour at which, with installed capital ``K``, the marginal product of labour falls to ``m``
    (a real wage: the wage over the price), Korinek & Suh's labour demand ``w = p MPL``.

    The marginal product depends on ``K/L`` alone, falls as labour is added and reaches ``A`` where
    labour starts doing automatable tasks (the linear region), where it stays: so where ``m <= A``
    every worker pays for herself (``inf``), and otherwise the CES first-order condition
    ``A wl (wk k^rho + wl)^(1/rho - 1) = m`` gives the capital per worker ``k`` and ``L = K / k``.
    """
    _check_sigma(sigma)
    m_, K_, phi_ = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (m, K, phi)))
    rho = (sigma - 1.0) / sigma
    wk = np.clip(phi_, _EPS, 1.0) ** (1.0 / sigma)
    wl = np.clip(1.0 - phi_, 0.0, 1.0) ** (1.0 / sigma)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inner = (m_ / (A * np.where(wl > 0, wl, 1.0))) ** (rho / (1.0 - rho)) - wl
        k = (inner / wk) ** (1.0 / rho)
        L = np.where((inner > 0) & np.isfinite(k) & (k > 0), K_ / k, 0.0)
    # at phi = 1 (wl = 0) labour's marginal product is A everywhere: above it no worker pays (the
    # limit of the CES branch as wl -> 0), not every worker
    return np.where(m_ <= A, np.inf, np.where(wl > 0, np.maximum(L, 0.0), 0.0))
