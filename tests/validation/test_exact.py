"""Tests for :mod:`tokenomy.validation.exact`: the exact checks pass, the ledger stays conserved
while they run, and mistakes (a leak, an overdraft, a wrong target) are caught."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from tokenomy.market.ledger import ConservationError, InsufficientFunds, Ledger
from tokenomy.metrics import gini
from tokenomy.validation.checks import Check, equals
from tokenomy.validation.exact import (
    Split,
    exact_checks,
    exchange_checks,
    gamma_gini,
    geometric_gini,
    korinek_suh_checks,
    random_reshuffle,
    run_exchange,
    saving_propensity,
    sizes,
    unit_transfer,
)

QUICK = settings(max_examples=100, deadline=None)
RULES: dict[str, Split] = {
    "reshuffle": random_reshuffle,
    "unit": unit_transfer(100),
    "saving 0.5": saving_propensity(0.5),
    "saving 0.9": saving_propensity(0.9),
}


@pytest.fixture(scope="module")
def quick_checks() -> list[Check]:
    return exact_checks(seed=0, quick=True)


def _ledger(n: int, cents: int) -> Ledger:
    return Ledger.open(n, np.full(n, cents, dtype=np.int64))


# -- the checks themselves ----------------------------------------------------------------------


def test_every_exact_check_passes_quick(quick_checks: list[Check]) -> None:
    failed = [(c.name, str(c.target), c.measured) for c in quick_checks if not c.passed]
    assert not failed, failed
    assert len(quick_checks) == 12
    assert all(c.kind == "exact" and len(c.per_seed) == 1 and c.source and c.note for c in quick_checks)
    assert len({c.name for c in quick_checks}) == len(quick_checks)


def test_korinek_suh_values() -> None:
    by_name = {c.name: c.measured for c in korinek_suh_checks()}
    assert by_name["K&S: wage = A once phi >= 0.5 (max |w - A|)"] == 0.0  # exactly, not approximately
    assert by_name["K&S: phi at which the wage bill peaks"] == pytest.approx(0.82, abs=1e-4)
    assert by_name["K&S: labour share at the baseline calibration"] == pytest.approx(0.6566, abs=1e-4)


def test_results_are_deterministic_per_seed(quick_checks: list[Check]) -> None:
    again = exact_checks(seed=0, quick=True)
    assert [c.per_seed for c in again] == [c.per_seed for c in quick_checks]
    other = exchange_checks(seed=1, quick=True)
    assert all(c.passed for c in other)
    exchange = [c for c in quick_checks if c.name in {o.name for o in other}]
    assert all(a.per_seed != b.per_seed for a, b in zip(exchange, other, strict=True))


def test_a_wrong_target_fails(quick_checks: list[Check]) -> None:
    """The checks discriminate: the tempting wrong formula m/(1+2m) for unit transfers, or a
    neighbouring saving propensity's Gini, would fail."""
    by_name = {c.name: c for c in quick_checks}
    unit = by_name["DY: unit transfers Gini, m = 1"]
    tol = sizes(quick=True).tol
    assert not equals(1 / 3, tol).holds(unit.measured)  # m/(1+2m) at m = 1
    assert not equals(0.5, tol).holds(unit.measured)  # the continuous-money answer
    assert not by_name["CC: saving propensity 0.9 Gini"].target.holds(
        by_name["CC: saving propensity 0.75 Gini"].measured
    )


# -- closed forms -------------------------------------------------------------------------------


@QUICK
@given(m=st.floats(0.05, 30.0))
def test_geometric_gini_matches_the_pmf(m: float) -> None:
    q = m / (1 + m)
    k = np.arange(int(60 * (1 + m)))  # the tail beyond holds < e^-60 of the mass
    p = (1 - q) * q**k
    cdf = np.cumsum(p)
    # G = 1 - sum_k p_k (S_{k-1} + S_k) / mean, with S the cumulative share of money
    share = np.cumsum(k * p) / m
    lorenz = share + np.concatenate(([0.0], share[:-1]))
    assert 1 - float((p * lorenz).sum()) == pytest.approx(geometric_gini(m), rel=1e-9)
    assert cdf[-1] == pytest.approx(1.0)


def test_gamma_gini_known_values() -> None:
    assert gamma_gini(1.0) == pytest.approx(0.5)  # exponential
    assert gamma_gini(2.0) == pytest.approx(0.375)
    assert gamma_gini(4.0) == pytest.approx(0.2734375)
    # a large gamma sample agrees
    x = np.random.default_rng(7).gamma(10.0, size=400_000)
    assert gini(x) == pytest.approx(gamma_gini(10.0), abs=2e-3)


# -- the rules: exact integer splits ------------------------------------------------------------

cents = st.lists(st.integers(0, 10**9), min_size=1, max_size=50)


@QUICK
@given(a=cents, b=cents, seed=st.integers(0, 2**32 - 1), rule=st.sampled_from(sorted(RULES)))
def test_rules_split_each_pair_within_its_total(a: list[int], b: list[int], seed: int, rule: str) -> None:
    n = min(len(a), len(b))
    aa, bb = np.array(a[:n], dtype=np.int64), np.array(b[:n], dtype=np.int64)
    new = RULES[rule](np.random.default_rng(seed), aa, bb)
    assert new.dtype == np.int64 and new.shape == aa.shape
    assert np.all(new >= 0) and np.all(new <= aa + bb)  # the second member's a + b - new is >= 0 too


def test_saving_propensity_keeps_the_saved_share() -> None:
    a = np.array([1000, 0, 999, 10**9], dtype=np.int64)
    b = np.array([0, 1000, 1, 10**9], dtype=np.int64)
    new = saving_propensity(0.75)(np.random.default_rng(0), a, b)
    assert np.all(new >= np.floor(0.75 * a))
    assert np.all(a + b - new >= np.floor(0.75 * b))


def test_unit_transfer_moves_one_unit_or_nothing() -> None:
    a = np.array([0, 0, 100, 250] * 250, dtype=np.int64)
    b = np.array([0, 100, 0, 50] * 250, dtype=np.int64)
    new = unit_transfer(100)(np.random.default_rng(0), a, b)
    assert set(np.unique(new - a).tolist()) <= {-100, 0, 100}
    assert np.all(new[0::4] == 0)  # nobody can pay
    assert np.all(new[1::4] >= 0) and np.all(new[2::4] <= 100)


@pytest.mark.parametrize("bad", [lambda: unit_transfer(0), lambda: saving_propensity(1.0)])
def test_rules_reject_bad_parameters(bad: Callable[[], Split]) -> None:
    with pytest.raises(ValueError):
        bad()


# -- the engine: every move through the ledger, conserved ---------------------------------------


@pytest.mark.parametrize("rule", sorted(RULES))
def test_run_is_conserved_and_batched(rule: str, monkeypatch: pytest.MonkeyPatch) -> None:
    n, opening, steps = 501, 300, 120  # odd: one account sits out each step
    ledger = _ledger(n, opening)
    calls: list[int] = []
    real = ledger.transfer

    def counting(kind: str, payer: Any, payee: Any, amount: Any, **kw: Any) -> None:
        p = np.asarray(payer)
        calls.append(p.size)
        assert np.unique(p).size == p.size  # disjoint pairs: each account pays at most once a step
        real(kind, payer, payee, amount, **kw)

    monkeypatch.setattr(ledger, "transfer", counting)
    run = run_exchange(ledger, RULES[rule], np.random.default_rng(3), steps=steps, burn_in=20, close_every=7)
    assert ledger.money_supply == n * opening == ledger.opening_supply  # close_round accepted every round
    assert run.rounds_closed == math.ceil(steps / 7)
    assert 0 < run.batches == len(calls) <= steps  # one batch per step, never one call per transfer
    assert run.transfers == sum(calls) and max(calls) <= n // 2
    assert len(run.gini) == (steps - 20) // 10 and all(0 <= g < 1 for g in run.gini)
    assert np.all(ledger.balance >= 0)


def test_a_model_that_leaks_a_cent_is_caught() -> None:
    ledger = _ledger(100, 1000)

    def leaky(rng: np.random.Generator, a: NDArray[np.int64], b: NDArray[np.int64]) -> NDArray[np.int64]:
        ledger.balance[0] -= 1  # money vanishing outside the ledger's postings
        return random_reshuffle(rng, a, b)

    with pytest.raises(ConservationError, match="difference -5"):
        run_exchange(ledger, leaky, np.random.default_rng(0), steps=20, burn_in=0, close_every=5)


@pytest.mark.parametrize(
    "rule",
    [
        lambda rng, a, b: a + b + 1,  # creates a cent: the second member would pay more than it holds
        lambda rng, a, b: a - b - 1,  # the first member would pay more than it holds
    ],
)
def test_a_model_that_overdraws_is_refused_whole(rule: Split) -> None:
    ledger = _ledger(10, 50)
    before = ledger.balance.copy()
    with pytest.raises(InsufficientFunds):
        run_exchange(ledger, rule, np.random.default_rng(0), steps=5, burn_in=0)
    assert np.array_equal(ledger.balance, before)  # the batch was all-or-nothing


def test_run_exchange_rejects_bad_schedules() -> None:
    with pytest.raises(ValueError):
        run_exchange(_ledger(4, 10), random_reshuffle, np.random.default_rng(0), steps=10, burn_in=10)
