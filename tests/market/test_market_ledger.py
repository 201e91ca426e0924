"""Property and example tests for :mod:`tokenomy.market.ledger`."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenomy.market.ledger import ConservationError, InsufficientFunds, Ledger, LedgerError

SETTINGS = settings(max_examples=200, deadline=None)  # the central properties
QUICK = settings(max_examples=100, deadline=None)  # secondary properties

MAX_BAL = 10**9


@st.composite
def ledger_and_batch(draw, max_batch: int = 20):
    """A ledger (random opening balances and non-positive floors) and a batch of transfers."""
    accounts = draw(st.lists(st.tuples(st.integers(0, MAX_BAL), st.integers(-1000, 0)), min_size=1, max_size=8))
    n = len(accounts)
    opening = [a[0] for a in accounts]
    floors = [a[1] for a in accounts]
    # one amount scale per batch: small scales mostly fit, large ones mostly overdraw
    cap = draw(st.sampled_from([1000, MAX_BAL // 10, 2 * MAX_BAL]))
    leg = st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.integers(0, cap))
    legs = draw(st.lists(leg, max_size=max_batch))
    payer = [leg[0] for leg in legs]
    payee = [leg[1] for leg in legs]
    amount = [leg[2] for leg in legs]
    return opening, floors, payer, payee, amount


def _make(opening, floors) -> Ledger:
    led = Ledger.open(len(opening), opening)
    led.floor[:] = floors
    return led


def _model(opening, payer, payee, amount):
    """Pure-Python reference: the balances after the batch, and the total debit per payer."""
    bal = list(opening)
    debit = [0] * len(opening)
    for p, q, a in zip(payer, payee, amount, strict=True):
        bal[p] -= a
        bal[q] += a
        debit[p] += a
    return bal, debit


@SETTINGS
@given(ledger_and_batch())
def test_transfer_batch_conserves_money_or_is_refused_whole(case):
    opening, floors, payer, payee, amount = case
    led = _make(opening, floors)
    supply0 = led.money_supply
    assert supply0 == sum(opening)
    expected, debit = _model(opening, payer, payee, amount)
    offenders = [i for i in range(len(opening)) if opening[i] - debit[i] < floors[i]]

    if offenders:
        with pytest.raises(InsufficientFunds) as exc:
            led.transfer("t", payer, payee, amount)
        # all-or-nothing: nothing moved, nothing recorded
        assert led.balance.tolist() == list(opening)
        assert led.postings == []
        # the message names the first offending account
        assert f"account {offenders[0]} " in str(exc.value)
    else:
        led.transfer("t", payer, payee, amount)
        assert led.balance.tolist() == expected
        assert led.balance.dtype == np.int64
        n_pos = sum(1 for a in amount if a > 0)
        if amount:
            assert len(led.postings) == 1
            assert led.postings[0].amount.tolist() == [a for a in amount if a > 0]
            assert led.postings[0].payer.size == n_pos
    assert led.money_supply == supply0
    assert (led.balance >= led.floor).all()
    assert led.close_round(1) == (0, 0)


@st.composite
def ledger_and_batches(draw):
    """One ledger and a short sequence of batches posted to it one after another."""
    opening, floors, payer, payee, amount = draw(ledger_and_batch(max_batch=6))
    n = len(opening)
    batches = [(payer, payee, amount)]
    for _ in range(draw(st.integers(0, 4))):
        cap = draw(st.sampled_from([1000, MAX_BAL // 10, 2 * MAX_BAL]))
        leg = st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.integers(0, cap))
        legs = draw(st.lists(leg, max_size=6))
        batches.append(([g[0] for g in legs], [g[1] for g in legs], [g[2] for g in legs]))
    return opening, floors, batches


@QUICK
@given(ledger_and_batches(), st.integers(0, 10**6))
def test_sequence_of_batches_tracks_reference_and_closes(case, round_no):
    """Several batches on one ledger: each either applies exactly or is refused with no effect."""
    opening, floors, batches = case
    n = len(opening)
    led = _make(opening, floors)
    bal = list(opening)
    for payer, payee, amount in batches:
        after, debit = _model(bal, payer, payee, amount)
        if any(bal[i] - debit[i] < floors[i] for i in range(n)):
            with pytest.raises(InsufficientFunds):
                led.transfer("seq", payer, payee, amount)
        else:
            led.transfer("seq", payer, payee, amount)
            bal = after
        assert led.balance.tolist() == bal
        assert (led.balance >= led.floor).all()
    assert led.money_supply == sum(opening)
    assert led.close_round(round_no) == (0, 0)


@QUICK
@given(
    st.lists(st.integers(0, MAX_BAL), min_size=1, max_size=6),
    st.data(),
)
def test_negative_amount_raises_ledger_error_and_changes_nothing(opening, data):
    n = len(opening)
    k = data.draw(st.integers(1, 6))
    payer = data.draw(st.lists(st.integers(0, n - 1), min_size=k, max_size=k))
    payee = data.draw(st.lists(st.integers(0, n - 1), min_size=k, max_size=k))
    amount = data.draw(st.lists(st.integers(0, 10), min_size=k, max_size=k))
    amount[data.draw(st.integers(0, k - 1))] = -data.draw(st.integers(1, MAX_BAL))
    led = Ledger.open(n, opening)
    with pytest.raises(LedgerError, match="negative"):
        led.transfer("neg", payer, payee, amount)
    assert led.balance.tolist() == opening
    assert led.postings == []
    with pytest.raises(LedgerError):
        led.issue("neg", 0, -1)
    with pytest.raises(LedgerError):
        led.destroy("neg", 0, -1)
    assert led.balance.tolist() == opening
    assert led.issued == 0 and led.destroyed == 0


@QUICK
@given(
    st.lists(st.integers(0, MAX_BAL), min_size=1, max_size=6),
    st.data(),
)
def test_issue_and_destroy_change_supply_by_their_totals(opening, data):
    n = len(opening)
    led = Ledger.open(n, opening)
    k = data.draw(st.integers(0, 6))
    acc = data.draw(st.lists(st.integers(0, n - 1), min_size=k, max_size=k))
    amt = data.draw(st.lists(st.integers(0, MAX_BAL), min_size=k, max_size=k))
    s0 = led.money_supply
    issued = led.issue("credit", acc, amt)
    assert issued == sum(amt)
    assert led.money_supply == s0 + sum(amt)
    expected = list(opening)
    for a, x in zip(acc, amt, strict=True):  # repeated accounts accumulate (np.add.at)
        expected[a] += x
    assert led.balance.tolist() == expected

    # destroy part of what each account now holds
    j = data.draw(st.integers(0, 6))
    dacc = data.draw(st.lists(st.integers(0, n - 1), min_size=j, max_size=j))
    held = list(expected)
    damt = []
    for a in dacc:
        x = data.draw(st.integers(0, held[a]))
        held[a] -= x
        damt.append(x)
    s1 = led.money_supply
    destroyed = led.destroy("repay", dacc, damt)
    assert destroyed == sum(damt)
    assert led.money_supply == s1 - sum(damt)
    assert led.balance.tolist() == held

    assert led.close_round(3) == (sum(amt), sum(damt))
    # the next round starts from the new supply with clean counters
    assert led.opening_supply == led.money_supply == sum(opening) + sum(amt) - sum(damt)
    assert led.issued == 0 and led.destroyed == 0 and led.postings == []
    assert led.close_round(4) == (0, 0)


def test_destroy_more_than_held_is_refused_whole():
    led = Ledger.open(2, [10, 5])
    with pytest.raises(InsufficientFunds, match="account 1 "):
        led.destroy("burn", [0, 1, 1], [10, 3, 3])  # account 1 burns 6 > 5 in total
    assert led.balance.tolist() == [10, 5]
    assert led.destroyed == 0
    assert led.postings == []


@pytest.mark.parametrize("delta", [1, -1, 12345, -7])
def test_tampering_with_balance_breaks_close_round(delta):
    led = Ledger.open(3, [100, 200, 300])
    led.issue("credit", 1, 50)
    led.destroy("repay", 2, 20)
    led.balance[0] += delta
    with pytest.raises(ConservationError) as exc:
        led.close_round(17)
    msg = str(exc.value)
    assert "round 17" in msg
    actual = 630 + delta
    assert f"money supply is {actual} cents" in msg
    assert "previous 600 + issued 50 - destroyed 20 = 630 cents" in msg
    assert f"difference {delta}" in msg
    # a failed close does not roll the round over
    assert led.issued == 50 and led.destroyed == 20 and led.opening_supply == 600


def test_close_round_catches_balance_below_floor_even_when_conserved():
    led = Ledger.open(2, [0, 0])
    led.balance[0] -= 5  # move 5 out of account 0 behind the ledger's back: supply unchanged
    led.balance[1] += 5
    with pytest.raises(ConservationError, match=r"round 2: account 0 is below its floor"):
        led.close_round(2)


def test_close_round_resets_counters_and_postings():
    led = Ledger.open(3, [100, 0, 0])
    led.transfer("wage", [0, 0], [1, 2], [30, 0])
    led.issue("loan", 2, 40)
    led.destroy("repay", 1, 10)
    assert [p.kind for p in led.postings] == ["wage", "loan", "repay"]
    # zero-amount legs are not recorded
    assert led.postings[0].amount.tolist() == [30]
    assert led.postings[1].payer.tolist() == [-1]  # issuance comes from outside
    assert led.postings[2].payee.tolist() == [-1]  # destruction goes outside
    assert led.close_round(1) == (40, 10)
    assert led.postings == []
    assert (led.issued, led.destroyed) == (0, 0)
    assert led.opening_supply == 130
    led.balance[2] -= 1
    with pytest.raises(ConservationError, match="round 2"):
        led.close_round(2)


def test_require_funds_checks_the_sum_of_debits_per_payer():
    led = Ledger.open(3, [100, 0, 0])
    # each payment alone is affordable
    led.require_funds("x", [0], [60])
    led.require_funds("x", [0], [50])
    with pytest.raises(InsufficientFunds, match="account 0 would pay 110 cents but may spend only 100"):
        led.require_funds("x", [0, 0], [60, 50])
    with pytest.raises(InsufficientFunds):
        led.transfer("x", [0, 0], [1, 2], [60, 50])
    assert led.balance.tolist() == [100, 0, 0]
    # incoming money in the same batch does not fund outgoing payments
    with pytest.raises(InsufficientFunds, match="account 1 "):
        led.transfer("x", [0, 1], [1, 2], [100, 1])
    assert led.balance.tolist() == [100, 0, 0]
    led.transfer("x", [0, 0], [1, 2], [60, 40])
    assert led.balance.tolist() == [0, 60, 40]


def test_overdraft_floor_allows_negative_balance_down_to_the_line():
    led = Ledger.open(2, [10, 0])
    led.floor[0] = -50
    assert led.spendable([0, 1]).tolist() == [60, 0]
    led.transfer("x", 0, 1, 60)
    assert led.balance.tolist() == [-50, 60]
    with pytest.raises(InsufficientFunds):
        led.transfer("x", 0, 1, 1)
    assert led.close_round(1) == (0, 0)


@pytest.mark.parametrize(
    ("payer", "payee"),
    [([0, 3], [1, 1]), ([0], [-1]), ([-1], [0]), ([0], [3])],
)
def test_out_of_range_accounts_are_refused(payer, payee):
    led = Ledger.open(3, [5, 5, 5])
    with pytest.raises(LedgerError, match="out of range"):
        led.transfer("x", payer, payee, [1] * len(payer))
    assert led.balance.tolist() == [5, 5, 5]


def test_open_validates_opening_balances():
    with pytest.raises(LedgerError):
        Ledger.open(2, [1, -1])
    with pytest.raises(ValueError):
        Ledger.open(3, [1, 2])
    led = Ledger.open(4)
    assert led.balance.tolist() == [0, 0, 0, 0] and led.money_supply == 0


def test_empty_batch_is_a_no_op():
    led = Ledger.open(2, [3, 4])
    led.transfer("x", [], [], [])
    assert led.balance.tolist() == [3, 4]
    assert led.postings == []
