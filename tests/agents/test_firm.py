"""Firms' rules, validation, merge and effect, each on its own (:mod:`tokenomy.agents.firm`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenomy.agents.base import MarketView
from tokenomy.agents.firm import (
    FirmBatch,
    FirmDecision,
    Firms,
    capital_user_cost,
    cash_need,
    config,
    desired_inputs,
    dividends,
    fit_to_funds,
    fixed_payments,
    hoard_labour,
    investment_budget,
    loan_request,
    output_plan,
    posted_price,
    price_or_quantity,
    profitable_workforce,
    share_issue,
    target_workforce,
    unit_cost,
    wage_offer,
)
from tokenomy.agents.household import HouseholdDecision
from tokenomy.market import production
from tokenomy.scenario import Scenario
from tokenomy.world import World

QUICK = settings(max_examples=50, deadline=None)
Build = Callable[..., tuple[Scenario, World, MarketView]]


def _seeds(n: int = 20) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in range(n)]


def _batch(world: World, **fields: object) -> FirmBatch:
    """A plain batch (last prices and wages, nothing else) with ``fields`` overwritten."""
    m = world.n_firms
    b = FirmBatch(
        world.f_price.copy(),
        world.f_wage.copy(),
        *(np.zeros(m, dtype=np.int64) for _ in range(5)),
        np.full(m, "", dtype=object),
    )
    for k, v in fields.items():
        setattr(b, k, np.asarray(v))
    return b


# -- price or quantity ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("unmet", "inventory", "above_mean", "unfilled", "case"),
    [
        (5.0, 0.0, False, 0, "raise_price"),  # sold out, cheap: raise the price
        (5.0, 0.0, True, 0, "expand"),  # sold out, dear: sell more instead
        (5.0, 0.0, True, 3, "expand"),  # short of workers too: as published, vacancies are the wage's signal
        (0.0, 4.0, True, 0, "cut_price"),  # unsold stock, dear: cut the price
        (0.0, 4.0, False, 0, "shrink"),  # unsold stock, cheap: sell less instead
        (0.0, 0.0, True, 0, None),  # sold exactly what it made: move nothing
    ],
)
def test_price_or_quantity_picks_one_margin(
    world: World,
    view: MarketView,
    unmet: float,
    inventory: float,
    above_mean: bool,
    unfilled: int,
    case: str | None,
) -> None:
    world.f_unmet[:] = unmet
    world.f_inventory[:] = inventory
    world.f_unfilled[:] = unfilled
    mean = world.f_price.min() * 0.5 if above_mean else world.f_price.max() * 2.0
    moves = price_or_quantity(world, replace(view, mean_price=mean))
    for name in ("raise_price", "cut_price", "expand", "shrink"):
        assert getattr(moves, name).tolist() == [name == case] * world.n_firms, name


def test_sold_out_below_the_mean_raises_price_by_at_most_eta_price(
    scenario: Scenario, world: World, view: MarketView
) -> None:
    p = config(scenario)
    world.f_unmet[:] = 10.0
    view = replace(view, mean_price=2 * world.f_price.max())
    moves = price_or_quantity(world, view)
    old = world.f_price.copy()
    for rng in _seeds():
        new = posted_price(world, p, moves, np.zeros(world.n_firms), rng)
        assert np.all(new > old)
        assert np.all(new <= old * (1 + p.eta_price))


def test_unsold_above_the_mean_cuts_price_but_never_below_unit_cost(
    scenario: Scenario, world: World, view: MarketView
) -> None:
    p = config(scenario)
    world.f_inventory[:] = 5.0
    moves = price_or_quantity(world, replace(view, mean_price=0.5 * world.f_price.min()))
    old = world.f_price.copy()
    cost = old * np.array([0.0, 0.0, 0.999, 2.0])  # firm 3's costs rose above its price
    for rng in _seeds():
        new = posted_price(world, p, moves, cost, rng)
        assert np.all(new[:2] < old[:2]) and np.all(new[:2] >= old[:2] * (1 - p.eta_price))
        assert np.all(new >= cost)
        assert new[3] == cost[3]  # rising costs pass into prices, even for a firm cutting


def test_rule_prices_never_sit_below_marginal_cost_at_the_cheaper_margin(
    scenario: Scenario, world: World, view: MarketView
) -> None:
    workforce = world.labour()  # efficiency units: what the firm produces with and pays for
    c_k = capital_user_cost(world, scenario)
    cost = unit_cost(world, scenario.production, workforce, c_k)
    prod = scenario.production
    mpk, mpl = production.marginal_products(world.f_capital, workforce, world.phi, prod.A, prod.sigma)
    assert np.allclose(cost, np.minimum(world.f_wage / mpl, c_k / mpk), rtol=1e-12)
    world.f_inventory[:] = 5.0  # everyone cuts, as far as eta_price allows
    world.f_price[:] = cost * 1.001
    price = Firms().heuristic(world, replace(view, mean_price=0.5 * cost.min()), scenario, np.random.default_rng(3))
    assert np.all(price.price >= cost)
    assert np.any(price.price == cost)  # the floor binds where the cut would go below it


def test_unit_cost_stays_bounded_without_workers(scenario: Scenario, world: World) -> None:
    cost = unit_cost(world, scenario.production, np.zeros(world.n_firms), capital_user_cost(world, scenario))
    assert np.all(np.isfinite(cost)) and np.all(cost > 0)


# -- output plan ------------------------------------------------------------------------------------
def test_output_plan_moves_sales_by_a_bounded_step(scenario: Scenario, world: World, view: MarketView) -> None:
    p = config(scenario)
    sales = world.f_sales.copy()
    world.f_unmet[:] = np.array([1e9, 1e9, 0.5, 0.5])  # two ask for a lot more, two for a little
    moves = price_or_quantity(world, replace(view, mean_price=0.5 * world.f_price.min()))
    assert moves.expand.all()
    for rng in _seeds():
        plan = output_plan(world, p, moves, rng)
        assert np.all(plan.expected >= sales)
        assert np.all(plan.expected <= sales * (1 + p.eta_output))  # not the whole unmet demand
        assert np.all(plan.expected[2:] <= sales[2:] + 0.5)  # nor more than was unmet
        stock = world.f_inventory  # round 0 starts at the buffer-stock target
        assert np.allclose(plan.planned, np.maximum(plan.expected * (1 + p.inventory_target) - stock, 0.0))


def test_output_plan_shrinks_and_restocks_only_the_shortfall(
    scenario: Scenario, world: World, view: MarketView
) -> None:
    p = config(scenario)
    sales = world.f_sales.copy()
    world.f_inventory[:] = np.array([1.0, 1.0, 1e6, 1e6])  # the last two hold more than they sell
    moves = price_or_quantity(world, replace(view, mean_price=2 * world.f_price.max()))
    assert moves.shrink.all()
    plan = output_plan(world, p, moves, np.random.default_rng(0))
    assert np.all(plan.expected <= sales) and np.all(plan.expected >= sales * (1 - p.eta_output))
    assert np.allclose(plan.planned[:2], plan.expected[:2] * (1 + p.inventory_target) - 1.0)
    assert plan.planned[2:].tolist() == [0.0, 0.0]


# -- inputs -----------------------------------------------------------------------------------------
def test_desired_capital_per_worker_is_cost_minimising_at_calibration(scenario: Scenario, world: World) -> None:
    """The round-0 capital price is calibrated so that K0 = 4.6 per worker minimises cost."""
    expected = np.array([10.0, 20.0, 30.0, 40.0])
    labour, capital = desired_inputs(world, scenario.production, capital_user_cost(world, scenario), expected)
    assert np.allclose(capital / labour, scenario.initial.capital_per_worker, rtol=1e-9)
    made = production.output(capital, labour, world.phi, scenario.production.A, scenario.production.sigma)
    assert np.allclose(made, expected, rtol=1e-9)  # sized to expected sales


def test_when_every_task_is_automatable_capital_alone_does_the_work(scenario: Scenario, world: World) -> None:
    world.phi = 1.0
    expected = np.array([10.0, 20.0, 30.0, 40.0])
    labour, capital = desired_inputs(world, scenario.production, capital_user_cost(world, scenario), expected)
    assert labour.tolist() == [0.0] * 4
    assert np.allclose(capital, expected / scenario.production.A)


def test_investment_replaces_wear_and_closes_part_of_the_gap(
    scenario: Scenario, world: World, view: MarketView
) -> None:
    a = scenario.automation
    assert config(scenario).investment_rule == "gap"
    K = world.f_capital
    unit = world.capital_price * view.mean_price  # cents per unit of capital
    keep = investment_budget(world, view, scenario, K.copy())
    assert np.all(np.abs(keep - a.depreciation * K * unit) <= 1)
    grow = investment_budget(world, view, scenario, 2 * K)
    assert np.allclose(grow, (a.adjustment + a.depreciation) * K * unit, atol=1)
    assert investment_budget(world, view, scenario, np.zeros_like(K)).tolist() == [0] * 4  # capital is never sold


def test_utilisation_rule_grows_capital_with_expected_utilisation_above_target(
    build: Build,
) -> None:
    """Caiani et al. 2016: capital grows by sensitivity * (u - target) / target, u the capital
    expected sales need over the capital held; at the target it only replaces wear."""
    sc, world, view = build('roles.firm.investment_rule="utilisation"')
    p, a = config(sc), sc.automation
    K = world.f_capital.copy()
    unit = world.capital_price * view.mean_price
    need = K * np.array([p.utilisation_target, 1.0, 0.4, 2.0])  # u = 0.8, 1.0, 0.4, 2.0
    got = investment_budget(world, view, sc, need)
    g = p.investment_sensitivity * (need / K - p.utilisation_target) / p.utilisation_target
    want = np.floor(np.maximum(K * (1 + g) - K * (1 - a.depreciation), 0.0) * unit)
    assert got.tolist() == want.astype(np.int64).tolist()
    assert abs(got[0] - a.depreciation * K[0] * unit) <= 1  # at the target: replacement only
    assert got[1] > got[0] and got[3] > got[1]  # more so the further above it
    assert got[2] < got[0]  # below it: less than replacement, capital shrinks by wear


# -- hiring -----------------------------------------------------------------------------------------
def test_target_workforce_is_the_least_labour_that_meets_planned_output(scenario: Scenario, world: World) -> None:
    prod = scenario.production
    planned = np.array([0.0, 20.0, 35.5, 50.0])
    target = target_workforce(world, prod, planned, np.zeros(4))
    assert target[0] == 0
    assert np.all(production.output(world.f_capital, target, world.phi, prod.A, prod.sigma) >= planned - 1e-9)
    short = production.output(world.f_capital, np.maximum(target - 1, 0), world.phi, prod.A, prod.sigma)
    assert np.all(short[1:] < planned[1:])
    huge = target_workforce(world, prod, np.full(4, 1e9), np.zeros(4))
    assert huge.tolist() == [world.n_households] * 4


def test_no_worker_is_hired_whose_marginal_product_is_worth_less_than_her_wage(
    scenario: Scenario, world: World
) -> None:
    """Korinek & Suh's labour demand as a cap on the plan: the target stops where the value of the
    marginal product at this round's price falls below the wage; a wage at most ``p * A`` (labour
    doing automatable tasks still pays) leaves the plan alone."""
    prod = scenario.production
    plan = np.full(4, 50, dtype=np.int64)  # the small economy: 60 households
    price = np.full(4, 100.0)
    wage = np.array([40.0, 60.0, 80.0, 200.0])  # real wages 0.4, 0.6, 0.8, 2.0 (A = 0.5)
    got = profitable_workforce(world, prod, plan, price, wage)
    assert got[0] == 50  # 0.4 <= A: every planned worker pays for herself
    assert np.all(got[1:] < 50) and got[1] > got[2] > got[3]  # dearer labour, fewer workers
    K = world.f_capital[1:]
    _, mpl = production.marginal_products(K, got[1:].astype(float), world.phi, prod.A, prod.sigma)
    assert np.all(price[1:] * mpl >= wage[1:] - 1e-9)  # the last worker hired still pays
    _, mpl_next = production.marginal_products(K, got[1:] + 1.0, world.phi, prod.A, prod.sigma)
    assert np.all(price[1:] * mpl_next < wage[1:])  # one more would not
    small = profitable_workforce(world, prod, np.array([3, 0, 1, 2]), price, wage)
    assert np.all(small <= [3, 0, 1, 2])  # the cap never raises a plan


def test_labour_hoarding_example(scenario: Scenario) -> None:
    p = config(scenario)  # max_fire_share = 0.1
    target = hoard_labour(np.array([0, 0, 20, 1]), np.array([10.0, 15.0, 3.0, 0.0]), p)
    # the workforce kept is rounded down, so a firm may shed a whole worker beyond the share (15 -> 13)
    assert target.tolist() == [9, 13, 20, 1]
    assert target.dtype == np.int64


@QUICK
@given(
    st.lists(st.tuples(st.integers(0, 500), st.integers(0, 500)), min_size=1, max_size=10),
    st.floats(0.0, 1.0),
)
def test_labour_hoarding_never_sheds_more_than_max_fire_share(
    build: Build, rows: list[tuple[int, int]], share: float
) -> None:
    p = config(build()[0]).model_copy(update={"max_fire_share": share})
    target = np.array([t for t, _ in rows], dtype=np.int64)
    workforce = np.array([w for _, w in rows], dtype=np.float64)
    out = hoard_labour(target, workforce, p)
    assert np.all(out >= target)  # hoarding never cuts a plan to hire
    assert np.all(workforce - out < share * workforce + 1 + 1e-9)  # the share, rounded to a whole worker
    assert np.all((out == target) | (out <= workforce))  # it only keeps workers it has


# -- wages ------------------------------------------------------------------------------------------
def test_rigid_wages_rise_with_unfilled_vacancies_and_never_fall(
    scenario: Scenario, world: World, view: MarketView
) -> None:
    p = config(scenario)
    assert p.wage_rule == "rigid"  # the default: Delli Gatti et al.'s rule as published
    world.f_unfilled[:] = [2, 0, 1, 0]
    old = world.f_wage.copy()
    for u in (0.0, 0.05, 0.5):  # unemployment plays no part: the signal is the firm's own vacancies
        for rng in _seeds():
            change = wage_offer(world, replace(view, unemployment=u), p, rng) / old - 1
            assert np.all(change[[0, 2]] > 0) and np.all(change[[0, 2]] <= p.eta_wage)
            assert change[[1, 3]].tolist() == [0.0, 0.0]
    world.f_wage[:] = [100.0, 100.0, 5_000.0, 100.0]
    floored = wage_offer(world, view, p.model_copy(update={"min_wage": 20.0}), np.random.default_rng(1))
    assert floored[[0, 1, 3]].tolist() == [2_000.0, 2_000.0, 2_000.0] and floored[2] > 5_000.0


def test_wage_offers_rise_with_unfilled_vacancies_and_fall_otherwise(
    scenario: Scenario, world: World, view: MarketView
) -> None:
    p = config(scenario).model_copy(update={"wage_rule": "vacancies"})
    world.f_unfilled[:] = [2, 0, 1, 0]
    old = world.f_wage.copy()
    tight = replace(view, unemployment=0.0)
    for rng in _seeds():
        change = wage_offer(world, tight, p, rng) / old - 1
        assert np.all(change[[0, 2]] > 0) and np.all(change[[0, 2]] <= p.eta_wage)
        assert np.all(change[[1, 3]] < 0) and np.all(change[[1, 3]] >= -0.5 * p.eta_wage)


def test_unemployment_damps_wage_rises_and_deepens_cuts(scenario: Scenario, world: World, view: MarketView) -> None:
    p = config(scenario).model_copy(update={"wage_rule": "vacancies"})
    world.f_unfilled[:] = [2, 0, 1, 0]
    old = world.f_wage.copy()
    low = wage_offer(world, replace(view, unemployment=0.02), p, np.random.default_rng(5)) / old - 1
    high = wage_offer(world, replace(view, unemployment=0.06), p, np.random.default_rng(5)) / old - 1
    assert np.all(high[[0, 2]] < low[[0, 2]]) and np.all(high[[0, 2]] > 0)
    assert np.all(high[[1, 3]] < low[[1, 3]])
    slack = replace(view, unemployment=p.unemployment_norm)
    at_norm = wage_offer(world, slack, p, np.random.default_rng(5)) / old - 1
    assert at_norm[[0, 2]].tolist() == [0.0, 0.0]  # at the norm vacancies no longer raise wages
    assert np.all(at_norm[[1, 3]] >= -p.eta_wage)


# -- cash -------------------------------------------------------------------------------------------
def test_cash_rules_example(build: Build) -> None:
    scenario, world, _ = build('roles.firm.dividend_rule="cash"')
    p = config(scenario)  # payout_ratio 0.03, cash_buffer_rounds 1, max_issue_share 0.02
    world.f_loan[:] = 0  # under the leverage target
    world.firm_balance()[:] = [10_000_000, 1_000_000, 0, 5_000_000]
    wage_bill = np.array([1_000_000.5, 1_000_000.0, 200_000.0, 2_000_000.0])
    need = cash_need(wage_bill, np.array([100, 0, 50, 0]), np.array([0, 500_000, 0, 1_000_000]))
    assert need.tolist() == [1_000_100.5, 1_500_000.0, 200_050.0, 3_000_000.0]
    loan = loan_request(world, need)
    assert loan.tolist() == [0, 500_000, 200_050, 0]
    div = dividends(world, p, need, wage_bill)
    assert p.payout_ratio == 0.03
    assert div.tolist() == [np.floor(0.03 * (10_000_000 - 1_000_100.5 - 1_000_000.5)), 0, 0, 0]
    shares = share_issue(world, p, loan)
    tp = world.t_price[world.tokens_of("firm")]
    assert shares.tolist() == [0, int(np.ceil(500_000 / tp[1])), int(np.ceil(200_050 / tp[2])), 0]
    cap = int(0.02 * world.t_outstanding[world.tokens_of("firm")][0])
    assert share_issue(world, p, np.full(4, 10**12)).tolist() == [cap] * 4  # at most max_issue_share a round


@QUICK
@given(
    st.lists(st.integers(0, 10**9), min_size=4, max_size=4),
    st.lists(st.floats(0, 1e8), min_size=4, max_size=4),
    st.lists(st.integers(0, 10**7), min_size=4, max_size=4),
)
def test_loans_cover_the_shortfall_and_dividends_need_spare_cash(
    build: Build, balance: list[int], wage_bill: list[float], invest: list[int]
) -> None:
    sc, world, _ = build()
    p = config(sc)
    world.firm_balance()[:] = balance
    bill = np.array(wage_bill)
    need = cash_need(bill, fixed_payments(world, sc), np.array(invest, dtype=np.int64))
    loan, div = loan_request(world, need), dividends(world, p, need, bill)
    bal = np.array(balance, dtype=np.float64)
    assert np.all(bal + loan > need - 1)  # whole cents: at most a fraction of a cent short
    assert np.all(loan >= 0) and np.all((loan == 0) | (bal + loan <= need))
    assert np.all(div[bal < need] == 0)  # no dividend while cash is below needs
    assert np.all(div[loan > 0] == 0)
    assert np.all(div <= np.maximum(bal - need, 0))  # profit rule: at most the cash beyond needs
    cash_rule = dividends(world, p.model_copy(update={"dividend_rule": "cash"}), need, bill)
    assert np.all(cash_rule <= p.payout_ratio * np.maximum(bal - need, 0))


def test_no_share_issue_without_equity_issuance(build: Build) -> None:
    sc, world, _ = build("roles.firm.equity_issuance=false")
    assert share_issue(world, config(sc), np.full(4, 10**9)).tolist() == [0] * 4


def test_heuristic_is_seeded_and_plans_within_bounds(scenario: Scenario, world: World, view: MarketView) -> None:
    world.firm_balance()[1] = 0  # one firm has no cash
    a = Firms().heuristic(world, view, scenario, np.random.default_rng(11))
    b = Firms().heuristic(world, view, scenario, np.random.default_rng(11))
    for name in ("price", "wage_offer", "target_workers", "investment_budget", "dividend", "loan_request"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.loan_request[1] > 0 and a.dividend[1] == 0 and a.issue_shares[1] > 0
    assert np.all(a.target_workers >= np.floor(0.9 * world.workers()))
    assert np.all(a.target_workers <= world.n_households)
    assert a.notes.tolist() == [""] * 4


# -- validation, merge, effect --------------------------------------------------------------------
def test_validation_keeps_last_price_and_wage_for_impossible_values(world: World, scenario: Scenario) -> None:
    bad = _batch(
        world,
        price=[-5.0, np.nan, 0.0, 150_000.0],
        wage_offer=[100.0, -1.0, np.inf, 0.0],
        target_workers=[-3, 5, 10**6, 2],
    )
    out = bad.validated(world, scenario)
    assert out.price.tolist() == [*world.f_price[:3].tolist(), 150_000.0]
    assert out.wage_offer.tolist() == [100.0, world.f_wage[1], world.f_wage[2], 0.0]
    assert out.target_workers.tolist() == [0, 5, world.n_households, 2]
    assert out.notes.tolist() == [
        "price must be positive: kept last price",
        "price must be positive: kept last price; wage must be non-negative: kept last wage",
        "price must be positive: kept last price; wage must be non-negative: kept last wage",
        "",
    ]


def test_validation_clips_share_issues_to_the_allowed_maximum(build: Build, world: World, scenario: Scenario) -> None:
    cap = int(0.02 * world.t_outstanding[world.tokens_of("firm")][0])
    out = _batch(world, issue_shares=[10**9, cap, 0, -5]).validated(world, scenario)
    assert out.issue_shares.tolist() == [cap, cap, 0, 0]
    assert out.notes.tolist() == ["share issue clipped to the allowed maximum", "", "", ""]
    off = build("roles.firm.equity_issuance=false")[0]
    out = _batch(world, issue_shares=[7, 0, 0, 0]).validated(world, off)
    assert out.issue_shares.tolist() == [0] * 4 and out.notes[0] == "share issue clipped to the allowed maximum"


def test_merge_writes_currency_units_as_cents(world: World, scenario: Scenario) -> None:
    batch = _batch(world)
    decision = FirmDecision(
        price=12.34,
        wage_offer=2000.5,
        target_workers=7,
        investment_budget=10.25,
        dividend=1.5,
        loan_request=99.99,
        issue_shares=3,
    )
    batch.merge(world, 2, decision, scenario)
    assert batch.as_dict(2) == pytest.approx(
        {
            "price": 12.34,
            "wage_offer": 2000.5,
            "target_workers": 7,
            "investment_budget": 10.25,
            "dividend": 1.5,
            "loan_request": 99.99,
            "issue_shares": 3,
        }
    )
    assert batch.price[2] == pytest.approx(1234.0) and batch.wage_offer[2] == 200_050.0
    assert batch.investment_budget[2] == 1025 and batch.dividend[2] == 150 and batch.loan_request[2] == 9999
    assert batch.price[1] == world.f_price[1]  # the others keep the rules' decisions
    with pytest.raises(TypeError, match="expected a FirmDecision"):
        batch.merge(world, 0, HouseholdDecision(consumption_budget=1.0, reservation_wage=1.0), scenario)


def test_apply_posts_prices_and_wages_this_round(world: World) -> None:
    batch = _batch(world, price=[1.0, 2.0, 3.0, 4.0], wage_offer=[5.0, 6.0, 7.0, 8.0])
    assert FirmBatch.takes_effect == "this_round"
    batch.apply(world)
    assert world.f_price.tolist() == [1.0, 2.0, 3.0, 4.0] and world.f_wage.tolist() == [5.0, 6.0, 7.0, 8.0]
    batch.price[0] = 99.0
    assert world.f_price[0] == 1.0  # the world keeps its own copy


def test_fit_to_funds_pays_wages_then_investment_then_dividends(world: World, scenario: Scenario) -> None:
    world.h_skill[:] = 1.0  # every worker costs the offer (skills are priced in the next test)
    batch = _batch(
        world,
        wage_offer=np.full(4, 1000.0),
        target_workers=[10, 10, 10, 10],
        investment_budget=[500, 500, 500, 500],
        dividend=[300, 300, 300, 300],
    )
    out = fit_to_funds(world, batch, np.array([20_000, 10_600, 10_000, 5_500]), scenario)
    assert out.target_workers.tolist() == [10, 10, 10, 5]
    assert out.investment_budget.tolist() == [500, 500, 0, 500]
    assert out.dividend.tolist() == [300, 100, 0, 0]
    assert out.notes.tolist() == [
        "",
        "dividend cut to funds",
        "investment cut to funds; dividend cut to funds",
        "workforce cut to what the firm can pay; dividend cut to funds",
    ]


def test_fit_to_funds_prices_a_worker_at_the_staffs_skill(world: World, scenario: Scenario) -> None:
    world.h_skill[:] = 1.0
    world.h_skill[world.h_employer == 1] = 2.0  # firm 1's staff supply two units each
    batch = _batch(world, wage_offer=np.full(4, 1000.0), target_workers=[10, 10, 10, 10])
    out = fit_to_funds(world, batch, np.full(4, 10_000), scenario)
    assert out.target_workers[0] == 10 and out.target_workers[1] == 5  # a worker there costs 2,000


def test_observe_shows_the_world_in_currency_units(world: World, view: MarketView) -> None:
    obs = Firms().observe(world, view, 0)
    assert obs.price == pytest.approx(world.f_price[0] / 100)
    assert obs.workers == world.workers()[0]
    assert obs.mean_price == pytest.approx(view.mean_price / 100)


def test_profit_dividends_pay_a_share_of_the_recent_profit_from_spare_cash(build: Build) -> None:
    sc, world, _ = build('roles.firm.dividend_rule="profit"', "roles.firm.profit_payout=0.9")
    p = config(sc)
    value = world.f_capital * world.capital_price * world.price_index
    world.f_loan[:] = 0
    world.firm_balance()[:] = 10**12  # plenty of spare cash
    world.f_profit_smoothed[:] = [1_000_000.0, 0.0, -5e6, 2_000_000.0]
    world.f_profit[:] = -1e9  # last round's alone is not what is paid on
    none = np.zeros(4)
    div = dividends(world, p, none, none)
    assert div.tolist() == pytest.approx([900_000, 0, 0, 1_800_000], abs=1)  # 0.9 of profit; none of a loss
    world.firm_balance()[:] = 500_000  # the cash beyond needs and buffer caps it
    assert dividends(world, p, none, none).tolist() == [500_000, 0, 0, 500_000]
    world.firm_balance()[:] = 10**12
    world.f_loan[:] = np.ceil(value)  # above the leverage target: earnings retained
    assert dividends(world, p, none, none).tolist() == [0] * 4


def test_a_firm_granted_its_whole_request_keeps_its_whole_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loan rate the new credit sets applies from the next round: this round's debt service is
    the one the firm planned with (charged at once, it cut a worker from many a borrower's plan)."""
    from tokenomy import markets
    from tokenomy.agents.firm import FirmBatch
    from tokenomy.outcome import RoundOutcome
    from tokenomy.scenario import load_scenario
    from tokenomy.simulation import Simulation

    sim = Simulation(load_scenario("baseline", ["households=400", "firms=10", "banks=2", "rounds=60", "seed=2"]))
    seen = 0
    original = markets.credit

    def credit(w: World, o: RoundOutcome, s: Scenario, rng: np.random.Generator) -> None:
        nonlocal seen
        plan = o.batch("firm", FirmBatch)
        rate = w.f_loan_rate.copy()
        original(w, o, s, rng)
        full = (plan.loan_request > 0) & (o.grant == plan.loan_request)
        seen += int(full.sum())
        fitted = o.batch("firm", FirmBatch)
        assert (fitted.target_workers[full] == plan.target_workers[full]).all()
        assert o.opening_loan_rate is not None and np.array_equal(o.opening_loan_rate, rate)

    monkeypatch.setattr(markets, "STEPS", tuple(credit if st is original else st for st in markets.STEPS))
    for _ in range(60):
        sim.step()
    assert seen > 20  # many borrowers, every one of them kept its plan


def test_a_firm_that_had_nothing_to_sell_keeps_its_expectation(
    scenario: Scenario, world: World, view: MarketView
) -> None:
    """No output, no stock, no sales: it learnt nothing about demand (an entrant before it has
    hired). Expecting its zero sales left such firms planning nothing, for good."""
    p = config(scenario)
    world.f_expected[:] = 50.0
    world.f_sales[:] = [0.0, 0.0, 30.0, 0.0]
    world.f_output[:] = [0.0, 0.0, 30.0, 20.0]  # firm 3 made something and sold none of it
    world.f_inventory[:] = [0.0, 0.0, 0.0, 0.0]
    world.f_unmet[:] = 0.0
    moves = price_or_quantity(world, view)
    plan = output_plan(world, p, moves, np.random.default_rng(0))
    assert plan.expected[:2].tolist() == [50.0, 50.0]  # idle: kept
    assert plan.expected[2] == 30.0 and plan.expected[3] == 0.0  # sold exactly what it made: expects that
    assert plan.planned[0] == pytest.approx(50.0 * (1 + p.inventory_target))
