"""Banks' rules, validation, merge and lending, each on its own (:mod:`tokenomy.agents.bank`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from tokenomy import accounts
from tokenomy.agents.bank import (
    BankBatch,
    BankDecision,
    Banks,
    config,
    default_probability,
    expected_return,
    grant_loans,
)
from tokenomy.agents.base import MarketView
from tokenomy.scenario import Scenario
from tokenomy.world import World

Build = Callable[..., tuple[Scenario, World, MarketView]]


def _batch(**fields: list[float] | list[int]) -> BankBatch:
    """Two banks at the default rates and no dividend, with ``fields`` overwritten."""
    b = BankBatch(np.full(2, 0.001), np.full(2, 0.005), np.zeros(2, dtype=np.int64), np.full(2, "", dtype=object))
    for k, v in fields.items():
        setattr(b, k, np.asarray(v, dtype=getattr(b, k).dtype))
    return b


def test_rule_rates_follow_the_policy_rate_and_dividends_share_profit_above_the_requirement(
    scenario: Scenario, world: World, view: MarketView
) -> None:
    p = config(scenario)  # capital_ratio 0.08, payout_ratio 0.5, rates off the policy rate
    world.f_loan[:] = [500_000_000, 0, 0, 0]  # firm 0 borrows from bank 0 (firms 0 and 2 bank there)
    world.policy_rate = 0.06  # annual: 0.5% a month
    world.b_profit[:] = [2_000_000, -5]
    world.f_loan_rate[:] = 0.01
    batch = Banks().heuristic(world, view, scenario, np.random.default_rng(0))
    deposit, loan = 0.005 - p.deposit_markdown, 0.005 + p.loan_markup
    yield0 = 500_000_000 * 0.01 / accounts.bank_deposits(world)[0]
    assert yield0 > deposit  # bank 0's loans earn more than the rule's deposit rate: it pays the rule's
    assert batch.deposit_rate == pytest.approx([deposit, 0.0])  # bank 1 lends nothing: it pays nothing
    assert batch.loan_rate == pytest.approx([loan] * 2)
    assert batch.dividend.tolist() == [1_000_000, 0]  # half of last round's profit; a loss pays nothing
    world.b_equity[0] = int(0.08 * 500_000_000) + 300  # barely above its capital requirement
    assert Banks().heuristic(world, view, scenario, np.random.default_rng(0)).dividend[0] == 300


def test_fixed_rates_are_the_scenarios(build: Build) -> None:
    sc, world, view = build('roles.bank.rates="fixed"')
    world.f_loan[:] = 10**10  # every bank's loans earn more than the fixed deposit rate costs
    world.f_loan_rate[:] = 0.005
    batch = Banks().heuristic(world, view, sc, np.random.default_rng(0))
    assert batch.deposit_rate.tolist() == [0.001] * 2 and batch.loan_rate.tolist() == [0.005] * 2


def test_a_bank_pays_on_deposits_no_more_than_its_loans_earn(build: Build) -> None:
    sc, world, view = build('roles.bank.rates="fixed"', "roles.bank.deposit_rate=0.01")
    world.f_loan[:] = [10_000_000, 0, 30_000_000, 0]  # firms 0 and 2 borrow from bank 0
    world.f_loan_rate[:] = 0.004
    earned = (10_000_000 + 30_000_000) * 0.004
    paid = Banks().heuristic(world, view, sc, np.random.default_rng(0)).deposit_rate
    deposits = accounts.bank_deposits(world)
    assert paid[0] == pytest.approx(earned / deposits[0]) and paid[0] < 0.01
    assert paid[1] == 0.0  # no loans, nothing earned: its deposits earn nothing
    assert paid[0] * deposits[0] <= earned + 1e-6  # its deposit interest never exceeds its loan interest


def test_no_dividend_when_own_funds_are_below_what_must_be_kept(
    scenario: Scenario, world: World, view: MarketView
) -> None:
    world.f_loan[:] = [2_000_000_000, 0, 0, 0]  # bank 0 must keep 160m of its 100m
    assert Banks().heuristic(world, view, scenario, np.random.default_rng(0)).dividend[0] == 0


def test_validation_clips_rates_to_range_and_dividends_to_own_funds(scenario: Scenario, world: World) -> None:
    out = _batch(deposit_rate=[0.5, -0.1], loan_rate=[np.nan, 0.7], dividend=[10**12, 5]).validated(world, scenario)
    assert out.deposit_rate.tolist() == [0.1, 0.0] and out.loan_rate.tolist() == [0.0, 0.5]
    assert out.dividend.tolist() == [100_000_000, 5]
    assert out.notes.tolist() == [
        "rates clipped to range; dividend clipped to net worth above the capital requirement",
        "rates clipped to range",
    ]
    ok = _batch(deposit_rate=[0.002, 0.0], loan_rate=[0.01, 0.5]).validated(world, scenario)
    assert ok.notes.tolist() == ["", ""]


def test_merge_writes_currency_units_as_cents(scenario: Scenario, world: World) -> None:
    batch = _batch()
    batch.merge(world, 1, BankDecision(deposit_rate=0.002, loan_rate=0.01, dividend=12.34), scenario)
    assert batch.dividend.tolist() == [0, 1234]
    assert batch.deposit_rate[1] == 0.002 and batch.loan_rate[1] == 0.01
    assert batch.as_dict(1) == {"deposit_rate": 0.002, "loan_rate": 0.01, "dividend": 12.34}
    assert BankBatch.takes_effect == "this_round"


def test_loans_stop_at_the_leverage_limit_and_price_leverage(build: Build) -> None:
    scenario, world, _ = build('roles.bank.credit_rule="leverage"')
    world.b_equity[:] = 10**12  # no bank short of capital
    p = config(scenario)  # max_leverage 2, loan_spread 0.01
    value = world.f_capital * world.capital_price * world.price_index
    limit = np.floor(2 * value).astype(np.int64)
    request = np.array([10**12, 1_000_000, 0, -5])
    grant = grant_loans(world, request, _batch(), scenario)
    assert grant.tolist() == [limit[0], 1_000_000, 0, 0]
    assert world.f_loan_rate == pytest.approx(0.005 + p.loan_spread * grant / np.maximum(value, 1.0))


def test_a_bank_short_of_capital_rations_pro_rata(build: Build) -> None:
    sc, world, _ = build()
    world.b_equity[0] = 800_000  # net worth: bank 0 may lend 800k / 0.08 = 10m in all
    grant = grant_loans(world, np.array([10_000_000, 3_000_000, 10_000_000, 3_000_000]), _batch(), sc)
    assert grant.tolist() == [5_000_000, 3_000_000, 5_000_000, 3_000_000]  # firms 0 and 2 bank at bank 0
    paid_out = _batch(dividend=[400_000, 0])  # what it pays out this round is not capital
    world.b_equity[0] = 800_000
    assert grant_loans(world, np.array([10_000_000, 0, 10_000_000, 0]), paid_out, sc).tolist()[::2] == [
        2_500_000,
        2_500_000,
    ]


def test_default_probability_is_caianis_logistic_in_cash_flow_over_debt_service() -> None:
    ds = np.full(4, 100.0)
    prob = default_probability(np.array([392.245, 852.0, 0.0, -500.0]), ds, 3.92245)
    assert prob[0] == pytest.approx(0.5)  # cash flow at sensitivity x debt service: even odds
    assert prob[1] == pytest.approx(0.01, rel=0.02)  # Caiani et al.'s steady state: 1%
    assert prob[2] > 0.98 and prob[3] > prob[2]  # no cash flow, or a loss: near-certain default


def test_expected_return_of_a_safe_loan_is_its_interest_and_a_risky_uncovered_one_loses() -> None:
    a, rate = 0.02, 0.005
    safe = expected_return(np.zeros(1), np.zeros(1), np.full(1, rate), a)
    assert safe[0] == pytest.approx((1 - (1 - a) ** 50) * rate / a)  # 50 rounds of interest on what is left
    covered = expected_return(np.full(1, 0.9), np.ones(1), np.full(1, rate), a)
    assert covered[0] >= 0  # full recovery: the bank never loses, however likely the default
    risky = expected_return(np.full(1, 0.05), np.full(1, 0.2), np.full(1, rate), a)
    assert risky[0] < 0  # 5% a round, 20% recovered: the interest does not pay for the losses


def test_expected_return_rule_lends_to_cash_flow_or_collateral_and_not_to_a_loss_maker(build: Build) -> None:
    sc, world, _ = build()  # the default rule
    assert config(sc).credit_rule == "expected_return"
    world.b_equity[:] = 10**12  # no bank short of capital
    value = world.f_capital * world.capital_price * world.price_index
    request = np.floor(0.8 * value).astype(np.int64)  # more than half the plant: not fully covered
    world.f_cash_flow[:] = [-1_000_000.0, 0.0, 1e9, -1_000_000.0]
    world.f_loan[:] = 0
    grant = grant_loans(world, request, _batch(), sc)
    assert grant[2] == request[2]  # cash flow far above the debt service: all of it
    # a loss-maker (certain to default) gets only what half its plant recovers: the largest 1% step below it
    for f in (0, 3):
        assert 0.5 * value[f] - 0.01 * request[f] <= grant[f] <= 0.5 * value[f] < request[f]
    small = np.floor(0.4 * value).astype(np.int64)  # within half the plant's value: covered, lent
    assert grant_loans(world, small, _batch(), sc).tolist() == small.tolist()
    leverage = build('roles.bank.credit_rule="leverage"')[0]  # the leverage rule lends the loss-maker all of it
    assert grant_loans(world, request, _batch(), leverage).tolist() == request.tolist()
