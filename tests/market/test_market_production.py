"""Tests for :mod:`tokenomy.market.production` (Korinek & Suh 2024 task-based production)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tokenomy.market.production import (
    cost_minimising_ratio,
    labour_at_marginal_product,
    labour_required,
    marginal_products,
    output,
    output_per_worker,
)

SETTINGS = settings(max_examples=200, deadline=None)  # the central properties
QUICK = settings(max_examples=100, deadline=None)  # secondary properties

pos = st.floats(0.05, 50.0)
phis = st.floats(0.01, 0.99)
sigmas = st.floats(0.1, 0.9)
As = st.floats(0.1, 3.0)


# -- the paper's figures ----------------------------------------------------------------------


def test_wage_rises_then_equals_a_once_phi_reaches_half():
    """K = L = 1, sigma = 0.5, A = 0.5: automating a few tasks raises the wage; at phi >= 0.5
    capital is no longer scarce relative to the automatable tasks and the wage is exactly A."""
    A = 0.5
    small = np.linspace(0.0, 0.2, 41)
    _, w_small = marginal_products(1.0, 1.0, small, A, 0.5)
    assert np.all(np.diff(w_small) > 0), "wage must rise with phi for small phi"
    assert w_small[-1] > A + 0.1

    interior = np.linspace(0.01, 0.49, 49)
    _, w_int = marginal_products(1.0, 1.0, interior, A, 0.5)
    assert np.all(w_int > A)

    high = np.linspace(0.5, 1.0, 51)
    _, w_high = marginal_products(1.0, 1.0, high, A, 0.5)
    assert np.all(w_high == A)  # exactly, not approximately
    R_high, _ = marginal_products(1.0, 1.0, high, A, 0.5)
    assert np.all(R_high == A)


def test_wage_bill_peaks_near_082_then_collapses():
    """K = 10, L = 1, sigma = 0.2, A = 0.5: the wage bill over phi in [0.5, 0.999] peaks near
    phi = 0.82, then falls by about 85% as automation completes."""
    phi = np.linspace(0.5, 0.999, 4991)
    L = 1.0
    _, w = marginal_products(10.0, L, phi, 0.5, 0.2)
    bill = w * L
    i = int(np.argmax(bill))
    assert 0.80 <= phi[i] <= 0.84
    assert 0 < i < phi.size - 1  # an interior peak, not an endpoint
    drop = 1.0 - bill[-1] / bill[i]
    assert 0.80 <= drop <= 0.90
    # rising before the peak, non-increasing after it
    assert np.all(np.diff(bill[: i + 1]) > 0)
    assert np.all(np.diff(bill[i:]) <= 1e-12)


def test_baseline_labour_share_and_euler():
    A, sigma, phi, K, L = 0.5, 0.5, 0.608, 4.6, 1.0
    Y = output(K, L, phi, A, sigma)
    R, w = marginal_products(K, L, phi, A, sigma)
    assert isinstance(Y, float) and isinstance(R, float) and isinstance(w, float)
    assert w * L / Y == pytest.approx(0.657, abs=0.002)
    assert abs(R * K + w * L - Y) <= 1e-9 * Y


# -- structure --------------------------------------------------------------------------------


@SETTINGS
@given(K=pos, L=pos, phi=phis, A=As, sigma=sigmas)
def test_euler_theorem_everywhere(K, L, phi, A, sigma):
    Y = output(K, L, phi, A, sigma)
    R, w = marginal_products(K, L, phi, A, sigma)
    assert Y > 0
    assert abs(R * K + w * L - Y) <= 1e-9 * Y


@QUICK
@given(L=pos, phi=phis, frac=st.floats(0.0, 0.999), A=As, sigma=sigmas)
def test_linear_region_is_perfect_substitutes(L, phi, frac, A, sigma):
    # K/L <= phi/(1-phi), kept a hair inside the kink so float rounding cannot push it across
    K = frac * L * phi / (1.0 - phi)
    Y = output(K, L, phi, A, sigma)
    assert Y == pytest.approx(A * (K + L), rel=1e-12)
    R, w = marginal_products(K, L, phi, A, sigma)
    assert R == A and w == A


@QUICK
@given(L=pos, phi=phis, over=st.floats(1.01, 20.0), A=As, sigma=sigmas)
def test_ces_region_below_linear_and_wage_above_a(L, phi, over, A, sigma):
    """Past the kink capital is abundant: output falls short of A(K+L), capital earns less than
    A and labour more (labour is the scarce factor)."""
    K = over * L * phi / (1.0 - phi)
    Y = output(K, L, phi, A, sigma)
    R, w = marginal_products(K, L, phi, A, sigma)
    assert Y < A * (K + L)
    assert R < A < w


@QUICK
@given(L=pos, phi=phis, A=As, sigma=sigmas)
def test_output_continuous_at_the_kink(L, phi, A, sigma):
    K = L * phi / (1.0 - phi)
    eps = 1e-7
    inside = output(K * (1 - eps), L, phi, A, sigma)
    outside = output(K * (1 + eps), L, phi, A, sigma)
    assert inside == pytest.approx(A * (K + L), rel=1e-6)
    assert outside == pytest.approx(A * (K + L), rel=1e-6)


@QUICK
@given(K=pos, L=pos, phi=phis, A=As, sigma=sigmas, t=st.floats(0.1, 10.0))
def test_constant_returns_to_scale(K, L, phi, A, sigma, t):
    assert output(t * K, t * L, phi, A, sigma) == pytest.approx(t * output(K, L, phi, A, sigma), rel=1e-9)
    assert output_per_worker(K / L, phi, A, sigma) * L == pytest.approx(output(K, L, phi, A, sigma), rel=1e-9)


@QUICK
@given(L=pos, phi=phis, over=st.floats(1.05, 20.0), A=As, sigma=sigmas)
def test_marginal_products_match_finite_differences_in_ces_region(L, phi, over, A, sigma):
    K = over * L * phi / (1.0 - phi)
    R, w = marginal_products(K, L, phi, A, sigma)
    hK, hL = 1e-4 * K, 1e-4 * L
    dK = (output(K + hK, L, phi, A, sigma) - output(K - hK, L, phi, A, sigma)) / (2 * hK)
    dL = (output(K, L + hL, phi, A, sigma) - output(K, L - hL, phi, A, sigma)) / (2 * hL)
    assert R == pytest.approx(dK, rel=1e-5, abs=1e-9)
    assert w == pytest.approx(dL, rel=1e-5, abs=1e-9)


def test_vectorised_calls_agree_with_scalar_calls():
    rng = np.random.default_rng(42)
    n = 300
    K = rng.uniform(0.0, 30.0, n)
    L = rng.uniform(0.0, 5.0, n)
    phi = rng.uniform(0.0, 1.0, n)
    K[:5] = 0.0
    L[3:8] = 0.0
    phi[10:13] = [0.0, 1.0, 0.5]
    A, sigma = 0.7, 0.35
    Y = output(K, L, phi, A, sigma)
    R, w = marginal_products(K, L, phi, A, sigma)
    assert isinstance(Y, np.ndarray) and Y.shape == (n,)
    for i in range(n):
        assert Y[i] == pytest.approx(output(K[i], L[i], phi[i], A, sigma), rel=1e-12, abs=0)
        Ri, wi = marginal_products(K[i], L[i], phi[i], A, sigma)
        assert R[i] == pytest.approx(Ri, rel=1e-12) and w[i] == pytest.approx(wi, rel=1e-12)
    # broadcasting a scalar K over a vector of phi matches element-wise calls too
    Yb = output(4.0, 1.0, phi, A, sigma)
    assert np.allclose(Yb, [output(4.0, 1.0, p, A, sigma) for p in phi], rtol=1e-12, atol=0)
    # a 2-d grid
    KK, PP = np.meshgrid([0.5, 2.0, 8.0], [0.1, 0.6, 0.95])
    Y2 = output(KK, 1.0, PP, A, sigma)
    assert Y2.shape == (3, 3)
    assert Y2[1, 2] == pytest.approx(output(8.0, 1.0, 0.6, A, sigma), rel=1e-12)


def test_zero_inputs():
    assert output(0.0, 0.0, 0.5, 1.0, 0.5) == 0.0
    # labour alone is linear (no capital: K/L = 0 <= phi/(1-phi))
    assert output(0.0, 3.0, 0.5, 2.0, 0.5) == 6.0
    # capital alone with phi < 1 and sigma < 1 produces (next to) nothing: labour is essential
    assert output(5.0, 0.0, 0.5, 1.0, 0.5) < 1e-6
    # complete automation: capital alone is enough
    assert output(5.0, 0.0, 1.0, 1.0, 0.5) == 5.0


# -- labour_required --------------------------------------------------------------------------


@SETTINGS
@given(K=st.floats(0.01, 100.0), L=st.floats(0.01, 100.0), phi=st.floats(0.0, 1.0), A=As, sigma=sigmas)
def test_labour_required_inverts_output(K, L, phi, A, sigma):
    Y = output(K, L, phi, A, sigma)
    Lr = float(labour_required(Y, K, phi, A, sigma))
    assert math.isfinite(Lr) and Lr >= 0
    assert output(K, Lr, phi, A, sigma) == pytest.approx(Y, rel=1e-9)
    if phi < 1.0:  # output strictly increases in L, so the inverse is L itself
        assert Lr == pytest.approx(L, rel=1e-6)
    else:  # phi = 1: capital does every task; only the labour beyond it is needed
        assert Lr <= L * (1 + 1e-12)


def test_labour_required_edges():
    A, sigma, phi, K = 1.0, 0.5, 0.5, 4.0
    # labour can do automatable tasks too, so any output is reachable: past the kink
    # (Y = A K / phi = 8 here) the answer is the linear one, L = Y/A - K
    kink = A * K / phi
    assert labour_required(kink, K, phi, A, sigma) == pytest.approx(kink / A - K)
    assert labour_required(1e6, K, phi, A, sigma) == pytest.approx(1e6 - K)
    # just below the kink the CES inverse joins the linear one continuously
    assert labour_required(kink * (1 - 1e-9), K, phi, A, sigma) == pytest.approx(kink / A - K, rel=1e-6)
    assert labour_required(0.0, K, phi, A, sigma) == 0.0
    assert labour_required(-1.0, K, phi, A, sigma) == 0.0
    # complete automation: linear with L = max(Y/A - K, 0)
    assert labour_required(10.0, K, 1.0, A, sigma) == pytest.approx(6.0)
    assert labour_required(3.0, K, 1.0, A, sigma) == 0.0
    # vectorised, and increasing in Y
    Ys = np.array([0.5, 1.0, 5.0, 7.9, 8.0, 9.0, 100.0])
    Lv = labour_required(Ys, K, phi, A, sigma)
    assert Lv.shape == Ys.shape
    assert np.all(np.isfinite(Lv))
    assert np.all(np.diff(Lv) > 0)
    assert np.allclose(output(K, Lv, phi, A, sigma), Ys, rtol=1e-9)


# -- cost_minimising_ratio --------------------------------------------------------------------


@QUICK
@given(phi=phis, c=st.floats(0.1, 5.0), markup=st.floats(1.01, 10.0), A=As, sigma=sigmas)
def test_cost_minimising_ratio_equates_mrts_to_price_ratio(phi, c, markup, A, sigma):
    w = c * markup  # labour dearer than capital
    ratio = float(cost_minimising_ratio(phi, w, c, sigma))
    assert ratio > phi / (1.0 - phi)  # lands in the CES region
    R, wage = marginal_products(ratio, 1.0, phi, A, sigma)
    assert R / wage == pytest.approx(c / w, rel=1e-9)


def test_cost_minimising_ratio_corner_cases():
    phi = np.array([0.2, 0.5, 0.9, 1.0])
    # capital no cheaper than labour: hold none
    assert cost_minimising_ratio(phi, 1.0, 1.0, 0.5).tolist() == [0.0] * 4
    assert cost_minimising_ratio(phi, 1.0, 2.0, 0.5).tolist() == [0.0] * 4
    r = cost_minimising_ratio(phi, 4.0, 1.0, 0.5)
    assert r[:3] == pytest.approx(phi[:3] / (1 - phi[:3]) * 2.0)
    assert np.isinf(r[3])


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.0, 1.0, 1.5, -0.5, 2.0])
def test_sigma_outside_unit_interval_raises(sigma):
    with pytest.raises(ValueError, match="sigma"):
        output(1.0, 1.0, 0.5, 1.0, sigma)
    with pytest.raises(ValueError, match="sigma"):
        marginal_products(1.0, 1.0, 0.5, 1.0, sigma)
    with pytest.raises(ValueError, match="sigma"):
        output_per_worker(1.0, 0.5, 1.0, sigma)


@pytest.mark.parametrize("sigma", [0.0, 1.0, 1.5, -0.5])
def test_labour_required_rejects_sigma_outside_unit_interval(sigma):
    # regression: sigma in {0, 1} used to raise ZeroDivisionError and other values returned numbers
    with pytest.raises(ValueError, match="sigma"):
        labour_required(1.0, 1.0, 0.5, 1.0, sigma)


@SETTINGS
@given(K=pos, phi=phis, frac=st.floats(0.001, 0.999), A=As, sigma=sigmas)
def test_labour_at_marginal_product_inverts_the_marginal_product(K, phi, frac, A, sigma):
    """Between ``A`` and the marginal product of the first worker (bounded, as tasks are
    complements: ``A (1-phi)^(-1/(1-sigma))``) the marginal product of labour equals ``m`` exactly
    there, and one more worker would earn less; above that bound no worker pays (0)."""
    top = A * (1.0 - phi) ** (-1.0 / (1.0 - sigma))
    m = A + frac * (min(top, 5.0 * A) - A)  # real wages up to 5 A: beyond, labour vanishes below float precision
    L = float(labour_at_marginal_product(m, K, phi, A, sigma))
    assert 0.0 < L < math.inf
    assume(L > 1e-6 * K)  # near the bound labour vanishes below what marginal_products resolves
    assert marginal_products(K, L, phi, A, sigma)[1] == pytest.approx(m, rel=1e-6)
    assert marginal_products(K, L * 1.01, phi, A, sigma)[1] < m
    assert float(labour_at_marginal_product(top * 1.01, K, phi, A, sigma)) == 0.0


def test_labour_at_marginal_product_edges():
    """At or below ``A`` every worker pays for herself (labour's marginal product never falls below
    ``A``: it can do automatable tasks one for one); vectorised; no capital, no profitable worker
    beyond the linear region."""
    K = np.array([10.0, 10.0, 10.0, 0.0])
    got = labour_at_marginal_product(np.array([0.5, 0.3, 0.8, 0.8]), K, 0.608, 0.5, 0.5)
    assert np.isinf(got[0]) and np.isinf(got[1])
    assert 0.0 < got[2] < 10.0 * (1 - 0.608) / 0.608  # inside the CES region, short of the kink
    assert got[3] == 0.0


@pytest.mark.parametrize("sigma", [0.3, 0.5, 0.9])
def test_labour_at_marginal_product_is_continuous_at_full_automation(sigma):
    """At ``phi = 1`` labour's marginal product is ``A`` at any ``K/L``: above ``A`` no worker pays,
    the limit of the CES branch as ``phi -> 1``. (Regression: ``phi = 1`` returned ``inf``, every
    worker profitable, at any real wage, while ``phi = 1 - 1e-7`` returned almost none, so firms
    hired to plan at a loss once automation was complete.)"""
    A, K = 0.5, 10.0
    m = np.array([0.4, 0.5, 0.6, 3.0])  # below, at and above A
    at_one = labour_at_marginal_product(m, K, 1.0, A, sigma)
    assert np.isinf(at_one[0]) and np.isinf(at_one[1])
    assert np.all(at_one[2:] == 0.0)
    near = labour_at_marginal_product(m[2:], K, 1.0 - 1e-7, A, sigma)
    assert np.all(near < 1e-2 * K)  # the limit from below: vanishing labour, not unbounded
