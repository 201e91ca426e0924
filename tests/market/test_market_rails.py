"""Tests for :mod:`tokenomy.market.rails`."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenomy.market.ledger import InsufficientFunds, Ledger, LedgerError
from tokenomy.market.rails import RAIL_NAMES, Rail, fees, net_of_fee, pay

SETTINGS = settings(max_examples=200, deadline=None)  # the central properties
QUICK = settings(max_examples=100, deadline=None)  # secondary properties
budgets = st.integers(0, 10**12)
rates = st.floats(0.0, 0.2)

RATES = [0.015, 0.001, 0.0]  # card, chain, bank transfer


def test_rail_names():
    assert RAIL_NAMES == ("card", "chain", "bank_transfer")
    assert [int(r) for r in Rail] == [0, 1, 2]


def test_fees_are_floored_per_rail():
    f = fees([1000, 1000, 1000, 99, 0], [0, 1, 2, 0, 0], RATES)
    assert f.tolist() == [15, 1, 0, 1, 0]
    assert f.dtype == np.int64


@QUICK
@given(st.integers(0, 10**12), rates)
def test_fee_never_exceeds_its_rate(amount, rate):
    f = int(fees(amount, 0, [rate]))
    assert 0 <= f <= amount * rate
    assert f > amount * rate - 1 - 1e-3  # floored, so at most a cent (plus float slack) below


@SETTINGS
@given(budgets, rates)
def test_net_of_fee_fits_in_budget_and_is_maximal(budget, rate):
    a = int(net_of_fee(budget, 0, [rate]))
    assert 0 <= a <= budget
    assert a + int(fees(a, 0, [rate])) <= budget
    # the largest such payment: one more cent must not fit
    assert a + 1 + int(fees(a + 1, 0, [rate])) > budget


@QUICK
@given(st.lists(st.tuples(budgets, st.integers(0, 2)), min_size=1, max_size=20))
def test_net_of_fee_vectorised_matches_scalar(rows):
    b = np.array([r[0] for r in rows], dtype=np.int64)
    rl = np.array([r[1] for r in rows], dtype=np.int64)
    v = net_of_fee(b, rl, RATES)
    assert v.shape == b.shape
    assert v.tolist() == [int(net_of_fee(x, r, RATES)) for x, r in rows]
    assert np.all(v + fees(v, rl, RATES) <= b)


def test_net_of_fee_is_maximal_when_rate_is_zero_or_fee_is_exact():
    assert int(net_of_fee(12345, 2, RATES)) == 12345  # bank transfer: no fee
    assert int(net_of_fee(1015, 0, RATES)) == 1000  # 1000 + 15 = 1015 exactly
    assert int(net_of_fee(0, 0, RATES)) == 0


@pytest.mark.parametrize(
    ("budget", "rate", "expected"),
    [(12, 0.1, 11), (1000, 0.015, 986), (10**12, 0.2, 833333333334)],
)
def test_net_of_fee_is_maximal_examples(budget, rate, expected):
    # regression: floor(budget / (1 + rate)) is a cent short because the fee itself is floored
    assert int(net_of_fee(budget, 0, [rate])) == expected
    assert expected + int(fees(expected, 0, [rate])) <= budget
    assert expected + 1 + int(fees(expected + 1, 0, [rate])) > budget


# -- pay --------------------------------------------------------------------------------------


@st.composite
def payment_batch(draw):
    n = 6  # accounts 0-3 trade; accounts 4 and 5 are the rail operators
    opening = draw(st.lists(st.integers(0, 10**7), min_size=n, max_size=n))
    # (payer, payee, amount, rail, operator)
    trader = st.integers(0, 3)
    leg = st.tuples(trader, trader, st.integers(0, 4 * 10**6), st.integers(0, 2), st.integers(4, 5))
    legs = draw(st.lists(leg, min_size=1, max_size=8))
    payer, payee, amount, rail, operator = (list(c) for c in zip(*legs, strict=True))
    rts = draw(st.lists(rates, min_size=3, max_size=3))
    return opening, payer, payee, amount, rail, operator, rts


@SETTINGS
@given(payment_batch())
def test_pay_moves_amount_and_fee_or_refuses_whole(batch):
    opening, payer, payee, amount, rail, operator, rts = batch
    led = Ledger.open(len(opening), opening)
    f_exp = [int(np.floor(a * rts[r])) for a, r in zip(amount, rail, strict=True)]
    expected = list(opening)
    debit = [0] * len(opening)
    for p, q, a, o, f in zip(payer, payee, amount, operator, f_exp, strict=True):
        expected[p] -= a + f
        expected[q] += a
        expected[o] += f
        debit[p] += a + f
    supply = led.money_supply

    if any(debit[i] > opening[i] for i in range(len(opening))):
        with pytest.raises(InsufficientFunds):
            pay(led, "buy", payer, payee, amount, rail, rts, operator)
        assert led.balance.tolist() == opening
        assert led.postings == []
    else:
        f = pay(led, "buy", payer, payee, amount, rail, rts, operator)
        assert f.tolist() == f_exp
        assert led.balance.tolist() == expected
        # the payment batch carries its rail and fee annotations; the fee is its own batch
        kinds = [p.kind for p in led.postings]
        assert kinds[0] == "buy" and set(kinds[1:]) <= {"fee"}
        assert sum(int(p.amount.sum()) for p in led.postings if p.kind == "fee") == sum(f_exp)
    assert led.money_supply == supply  # fees are transfers: they never destroy money
    assert (led.balance >= 0).all()
    assert led.close_round(1) == (0, 0)


def test_pay_example_card_fee_to_operator():
    led = Ledger.open(3, [1015, 0, 0])
    f = pay(led, "goods", 0, 1, 1000, Rail.CARD, RATES, 2)
    assert f.tolist() == [15]
    assert led.balance.tolist() == [0, 1000, 15]
    assert led.close_round(1) == (0, 0)


def test_pay_refuses_when_fee_does_not_fit():
    led = Ledger.open(3, [1014, 0, 0])  # covers the 1000 but not the 15 fee on top
    with pytest.raises(InsufficientFunds, match="account 0 "):
        pay(led, "goods", 0, 1, 1000, Rail.CARD, RATES, 2)
    assert led.balance.tolist() == [1014, 0, 0]
    assert led.postings == []


def test_pay_refuses_when_two_payments_with_fees_exceed_balance():
    led = Ledger.open(3, [2020, 0, 0])  # 2 x (1000 + 15) = 2030 > 2020, each alone fits
    with pytest.raises(InsufficientFunds):
        pay(led, "goods", [0, 0], [1, 1], [1000, 1000], Rail.CARD, RATES, 2)
    assert led.balance.tolist() == [2020, 0, 0]


def test_pay_net_of_fee_budget_always_affordable():
    rng = np.random.default_rng(11)
    for _ in range(50):
        budget = int(rng.integers(0, 10**9))
        rail = int(rng.integers(0, 3))
        led = Ledger.open(3, [budget, 0, 0])
        a = int(net_of_fee(budget, rail, RATES))
        f = pay(led, "x", 0, 1, a, rail, RATES, 2)
        assert led.balance[0] == budget - a - int(f[0]) >= 0
        assert led.money_supply == budget


def test_pay_with_bad_operator_leaves_ledger_untouched():
    # regression: the operator index used to be checked only by the second (fee) transfer,
    # after the payment itself had been posted
    led = Ledger.open(3, [100, 0, 0])
    with pytest.raises(LedgerError):
        pay(led, "x", 0, 1, 50, Rail.CARD, [0.1], 7)
    assert led.balance.tolist() == [100, 0, 0]
    assert led.postings == []


def test_net_of_fee_of_a_negative_budget_is_zero() -> None:
    # fee_rates is per rail; all three pay on rail 0 at 10%, and 7 + floor(0.7) = 7 still fits
    out = net_of_fee(np.array([-5, 0, 7]), np.zeros(3, dtype=np.int64), np.array([0.1, 0.0, 0.0]))
    assert out.tolist() == [0, 0, 7]
