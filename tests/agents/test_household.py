"""Households' rules, validation and merge, each on its own (:mod:`tokenomy.agents.household`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenomy.agents.base import MarketView
from tokenomy.agents.household import (
    HouseholdBatch,
    HouseholdDecision,
    Households,
    HouseholdShareDecision,
    buy_orders,
    config,
    consumption_budget,
    desired_consumption,
    marginal_propensity,
    rail_choice,
    reference_price,
    reservation_wage,
    sell_orders,
)
from tokenomy.market.rails import Rail, fees
from tokenomy.scenario import Scenario
from tokenomy.world import World

QUICK = settings(max_examples=50, deadline=None)
Build = Callable[..., tuple[Scenario, World, MarketView]]


def _batch(world: World, **fields: object) -> HouseholdBatch:
    """A batch that asks for nothing (last reservation wages and rails) with ``fields`` overwritten."""
    n = world.n_households
    b = HouseholdBatch(
        np.zeros(n, dtype=np.int64),
        world.h_reservation.copy(),
        np.zeros(n, dtype=np.int64),
        np.full(n, -1, dtype=np.int64),
        np.zeros(n),
        np.full(n, -1, dtype=np.int64),
        np.zeros(n, dtype=np.int64),
        np.zeros(n),
        world.h_rail.copy(),
        np.full(n, "", dtype=object),
    )
    for k, v in fields.items():
        setattr(b, k, np.asarray(v, dtype=getattr(b, k).dtype))
    return b


def _rows(world: World, values: dict[int, object], fill: object) -> list[object]:
    return [values.get(i, fill) for i in range(world.n_households)]


# -- consumption ------------------------------------------------------------------------------------
def test_the_rich_consume_less_of_their_income(scenario: Scenario) -> None:
    p = config(scenario)  # 0.85 at the median wealth, 0.4 from 20x the median
    wealth = np.array([100.0, 1000.0, 1000.0, 1000.0, 1000.0 * np.sqrt(20.0), 20_000.0, 1e9])
    mpc = marginal_propensity(wealth, p)
    assert mpc.tolist()[:4] == [0.85] * 4
    assert mpc[4] == pytest.approx(0.625)  # half-way in log wealth
    assert mpc.tolist()[5:] == [pytest.approx(0.4)] * 2


def test_consumption_is_income_and_wealth_with_a_subsistence_floor(scenario: Scenario, world: World) -> None:
    world.holdings[:] = 0  # wealth is deposits only, the same for all: everyone at the median
    world.household_balance()[:] = 1_000_000
    world.household_balance()[2] = 50_000
    world.h_income[:] = _rows(world, {0: 200_000, 1: 0, 2: 200_000, 3: -5_000}, 100_000)
    want = desired_consumption(world, config(scenario))
    # 0.85 * income + 0.004 * wealth (a few percent a year), at least 600 currency units
    assert want[0] == pytest.approx(0.85 * 200_000 + 0.004 * 1_000_000)
    assert want[1] == 60_000 and want[3] == 60_000  # losses count as no income
    budget = consumption_budget(world, want)
    assert budget[0] == int(want[0]) and budget[1] == 60_000
    assert budget[2] == 50_000  # never more than the balance


@QUICK
@given(
    st.lists(st.integers(0, 10**8), min_size=60, max_size=60),
    st.lists(st.integers(-(10**6), 10**7), min_size=60, max_size=60),
)
def test_households_consume_at_least_subsistence_while_money_lasts(
    build: Build, balances: list[int], incomes: list[int]
) -> None:
    sc, world, view = build()
    world.household_balance()[:] = balances
    world.h_income[:] = incomes
    batch = Households().heuristic(world, view, sc, np.random.default_rng(0))
    bal = np.array(balances)
    assert np.all(batch.consumption_budget <= bal)
    assert np.all(batch.consumption_budget >= np.minimum(bal, config(sc).subsistence * 100))


# -- work -------------------------------------------------------------------------------------------
def test_employed_ask_their_wage_and_unemployed_lower_theirs(scenario: Scenario, world: World) -> None:
    world.f_wage[:] = [210_000.0, 190_000.0, 180_000.0, 170_000.0]
    world.h_reservation[:] = np.linspace(100_000, 300_000, world.n_households)
    res = reservation_wage(world, config(scenario))
    employed = world.h_employer >= 0
    assert 0 < (~employed).sum() < world.n_households
    assert res[employed].tolist() == world.f_wage[world.h_employer[employed]].tolist()
    assert res[~employed].tolist() == (world.h_reservation[~employed] * (1.0 - 0.05)).tolist()


def test_reservation_wages_stop_at_the_minimum(build: Build) -> None:
    sc, world, _ = build("roles.household.min_reservation_wage=1950")
    res = reservation_wage(world, config(sc))
    assert set(res[world.h_employer < 0].tolist()) == {195_000.0}  # 2000 * 0.95 = 1900 < 1950


# -- token orders -----------------------------------------------------------------------------------
def test_deposits_beyond_the_threshold_are_partly_bid_for_a_token(build: Build) -> None:
    scenario, world, _ = build("roles.household.value_anchor=0")  # bids around the last price
    p = config(scenario)  # invest_threshold 6 rounds of spending, invest_share 0.2, bid_spread 0.02
    world.household_balance()[:] = _rows(world, {0: 10_000_000, 1: 2_000_000}, 100_000)
    want = desired_consumption(world, p)
    budget = consumption_budget(world, want)
    buy = buy_orders(world, p, want, budget, np.random.default_rng(0))
    excess = world.household_balance() - budget - 6 * want
    assert excess[0] > 0 and np.all(excess[2:] <= 0)
    assert buy.budget[0] == int(0.2 * excess[0])
    assert np.all((buy.token >= 0) == (excess > 0))
    assert np.all(buy.budget[excess <= 0] == 0)
    bidders = buy.token >= 0
    last = world.t_price[buy.token[bidders]]
    assert np.all(buy.limit[bidders] >= last) and np.all(buy.limit[bidders] <= last * (1 + p.bid_spread))


def test_the_reference_price_closes_value_anchor_of_the_gap_to_book_value(build: Build) -> None:
    sc, world, _ = build("roles.household.value_anchor=0.25")
    book = world.book_per_share(world.price_index, world.price_index)
    world.t_price[:] = book * np.linspace(0.5, 1.5, book.size)  # some below book value, some above
    ref = reference_price(world, config(sc))
    assert np.allclose(ref, world.t_price + 0.25 * (book - world.t_price))
    below = world.t_price < book
    assert np.all(ref[below] > world.t_price[below]) and np.all(ref[~below] <= world.t_price[~below])
    world.f_loan[:] = 10**15  # every firm under water: its book value counts as nothing, not less
    firms = world.tokens_of("firm")
    assert np.allclose(reference_price(world, config(sc))[firms], 0.75 * world.t_price[firms])


def test_without_an_anchor_households_trade_at_the_last_price(build: Build) -> None:
    scenario, world, _ = build("roles.household.value_anchor=0")
    assert config(scenario).value_anchor == 0.0
    world.t_price[:] *= 3.0  # far above book value
    assert np.array_equal(reference_price(world, config(scenario)), world.t_price)


def test_bids_and_offers_straddle_the_reference_price(build: Build) -> None:
    sc, world, _ = build("roles.household.value_anchor=1.0", "roles.household.turnover=1.0")
    p = config(sc)
    world.t_price[:] = 1.0  # stale: a cent a share, far below book value
    ref = reference_price(world, p)
    world.household_balance()[:] = 10**9
    want = desired_consumption(world, p)
    buy = buy_orders(world, p, want, consumption_budget(world, want), np.random.default_rng(0))
    sell = sell_orders(world, p, want, np.random.default_rng(0))
    b, a = buy.token >= 0, sell.token >= 0
    assert b.any() and a.any()
    rb, ra = ref[buy.token[b]], ref[sell.token[a]]
    assert np.all(buy.limit[b] >= rb) and np.all(buy.limit[b] <= rb * (1 + p.bid_spread))
    assert np.all(sell.limit[a] <= ra) and np.all(sell.limit[a] >= ra * (1 - p.bid_spread))
    worth = ref > 50.0  # issuers worth more than 50 cents a share trade near that, not at a cent
    assert worth.sum() > worth.size / 2
    assert np.all(buy.limit[b & worth[buy.token]] > 50.0) and np.all(sell.limit[a & worth[sell.token]] > 50.0)


def test_a_household_at_its_portfolio_limit_adds_to_a_position_it_holds(build: Build) -> None:
    sc, world, _ = build("roles.household.portfolio_positions=2")
    p = config(sc)
    world.household_balance()[:] = 10**9  # everyone invests
    held = world.household_holdings() > 0
    full = held.sum(axis=1) >= 2
    assert full.any() and (~full).any()
    want = desired_consumption(world, p)
    buy = buy_orders(world, p, want, consumption_budget(world, want), np.random.default_rng(0))
    assert np.all(buy.token >= 0)
    rows = np.flatnonzero(full)
    assert np.all(held[rows, buy.token[rows]])
    # below the limit a household still picks any token: over 200 draws, some it does not hold
    rng = np.random.default_rng(1)
    new = [
        not held[i, t]
        for _ in range(200)
        for i, t in enumerate(buy_orders(world, p, want, consumption_budget(world, want), rng).token)
        if not full[i]
    ]
    assert any(new)


def test_households_short_of_cash_sell_enough_to_cover_it(scenario: Scenario, world: World) -> None:
    p = config(scenario)
    holders = np.flatnonzero(world.household_holdings().sum(axis=1) > 0)
    world.household_balance()[holders] = 0  # every holder is short of its whole spending
    want = desired_consumption(world, p)
    sell = sell_orders(world, p, want, np.random.default_rng(0))
    assert np.all(sell.token[holders] >= 0)
    h = world.household_holdings()[holders, sell.token[holders]]
    last = world.t_price[sell.token[holders]]
    limit = sell.limit[holders]
    assert np.all(limit <= last) and np.all(limit >= last * (1 - p.bid_spread))
    shares = sell.shares[holders]
    assert np.all((shares * limit >= want[holders]) | (shares == h))
    assert np.all((shares - 1) * limit < want[holders])  # no more than needed
    others = np.setdiff1d(np.arange(world.n_households), holders)
    assert np.all(sell.token[others] == -1) and np.all(sell.shares[others] == 0)


def test_with_full_turnover_holders_sell_a_tenth_to_a_half_of_a_position(build: Build) -> None:
    sc, world, _ = build("roles.household.turnover=1.0")
    p = config(sc)
    world.household_balance()[:] = 10**9  # nobody is short of cash
    want = desired_consumption(world, p)
    sell = sell_orders(world, p, want, np.random.default_rng(0))
    sellers = np.flatnonzero(sell.token >= 0)
    assert sellers.tolist() == np.flatnonzero(world.household_holdings().sum(axis=1) > 0).tolist()
    held = world.household_holdings()[sellers, sell.token[sellers]]
    assert np.all(held > 0)  # a position it holds, picked by value
    assert np.all(sell.shares[sellers] >= np.ceil(0.1 * held)) and np.all(sell.shares[sellers] <= np.ceil(0.5 * held))


@QUICK
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 1.0), st.integers(0, 10**7))
def test_sell_orders_never_exceed_holdings(build: Build, seed: int, turnover: float, cash: int) -> None:
    sc, world, _ = build()
    g = np.random.default_rng(seed)
    held = world.household_holdings()
    held[:] = g.integers(0, 50, held.shape) * (g.random(held.shape) < 0.3)
    world.household_balance()[:] = g.integers(0, cash + 1, world.n_households)
    p = config(sc).model_copy(update={"turnover": turnover})
    sell = sell_orders(world, p, desired_consumption(world, p), g)
    mine = held[np.arange(world.n_households), np.maximum(sell.token, 0)]
    assert np.all(sell.shares <= np.where(sell.token >= 0, mine, 0))
    assert np.all((sell.shares > 0) <= (sell.token >= 0))


# -- rail -------------------------------------------------------------------------------------------
def test_switchers_move_to_the_cheaper_of_card_and_chain(build: Build) -> None:
    sc, world, _ = build("rails.switch_rate=1.0")
    before = world.h_rail.copy()
    on_bank = before == Rail.BANK_TRANSFER
    assert on_bank.any() and (before == Rail.CARD).any()
    rail = rail_choice(world, sc.rails, np.random.default_rng(0))
    assert np.all(rail[~on_bank] == Rail.CHAIN) and np.all(rail[on_bank] == Rail.BANK_TRANSFER)
    world.chain_fee = 0.5
    rail = rail_choice(world, sc.rails, np.random.default_rng(0))
    assert np.all(rail[~on_bank] == Rail.CARD)
    assert np.array_equal(world.h_rail, before)  # a choice, not a change to the world


@pytest.mark.parametrize("sets", [["rails.switch_rate=0.0"], ["rails.switch_rate=1.0", "rails.chain_enabled=false"]])
def test_no_switching_draws_nothing(build: Build, sets: list[str]) -> None:
    sc, world, _ = build(*sets)
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert np.array_equal(rail_choice(world, sc.rails, rng), world.h_rail)
    assert rng.bit_generator.state == state


def test_heuristic_is_seeded(scenario: Scenario, world: World, view: MarketView) -> None:
    a = Households().heuristic(world, view, scenario, np.random.default_rng(4))
    b = Households().heuristic(world, view, scenario, np.random.default_rng(4))
    for name, col in vars(a).items():
        assert np.array_equal(col, getattr(b, name)), name
    assert a.notes.tolist() == [""] * world.n_households


# -- validation and merge ---------------------------------------------------------------------------
def test_consumption_beyond_the_balance_is_clipped_with_a_note(scenario: Scenario, world: World) -> None:
    bal = world.household_balance().copy()
    world.h_rail[:3] = [Rail.CARD, Rail.CHAIN, Rail.BANK_TRANSFER]
    ask = bal.copy()
    ask[:3] = bal[:3] * 2
    ask[3:] = bal[3:] // 2
    out = _batch(world, consumption_budget=ask, rail=world.h_rail).validated(world, scenario)
    f = world.rail_fees()
    for i in range(3):
        c = int(out.consumption_budget[i])
        assert c + int(fees(c, world.h_rail[i], f)) <= bal[i] < c + 1 + int(fees(c + 1, world.h_rail[i], f))
    assert out.notes.tolist()[:3] == ["consumption clipped to balance"] * 3
    assert out.consumption_budget[3:].tolist() == ask[3:].tolist() and set(out.notes[3:]) == {""}


def test_chain_rail_when_the_chain_is_disabled_becomes_bank_transfer(build: Build) -> None:
    sc, world, _ = build("rails.chain_enabled=false")
    rail = world.h_rail.copy()
    rail[:3] = [Rail.CHAIN, 7, Rail.CARD]
    out = _batch(world, rail=rail).validated(world, sc)
    assert out.rail[:3].tolist() == [Rail.BANK_TRANSFER, Rail.BANK_TRANSFER, Rail.CARD]
    assert out.notes.tolist()[:3] == ["rail not available: bank_transfer used"] * 2 + [""]


def test_orders_are_clipped_to_what_the_household_owns(scenario: Scenario, world: World) -> None:
    own = world.household_holdings()
    holds = own.sum(axis=1) > 0
    i = int(np.flatnonzero(holds)[0])  # a holder: sells more than it has, bids more than its balance
    j, k, x, y = np.flatnonzero(~holds)[:4].tolist()  # j sells what it has not, k bids for no token
    tok = int(np.argmax(own[i]))
    bal = int(world.household_balance()[i])
    out = _batch(
        world,
        token_sell=_rows(world, {i: tok, j: tok}, -1),
        token_sell_shares=_rows(world, {i: own[i, tok] + 10, j: 3}, 0),
        token_sell_limit=np.full(world.n_households, 50.0),
        token_buy=_rows(world, {i: 0, k: 99}, -1),
        token_buy_budget=_rows(world, {i: 10 * bal, k: 1000}, 0),
        token_buy_limit=np.full(world.n_households, 120.0),
        reservation_wage=_rows(world, {x: -1.0, y: np.nan}, 100.0),
    ).validated(world, scenario)
    assert out.token_sell_shares[i] == own[i, tok] and out.token_buy_budget[i] == bal  # bank transfer: no fee
    assert out.notes[i] == "token bid clipped to balance; sell order clipped to holdings"
    assert out.token_sell[j] == -1 and out.token_sell_shares[j] == 0
    assert out.notes[j] == "sell order clipped to holdings"
    assert out.token_buy[k] == -1 and out.token_buy_budget[k] == 0  # no such token: no bid
    assert out.reservation_wage[[x, y]].tolist() == [0.0, 0.0]


@QUICK
@given(
    st.lists(
        st.tuples(st.integers(-(10**6), 10**9), st.integers(-(10**6), 10**9), st.integers(0, 2)),
        min_size=60,
        max_size=60,
    ),
    st.floats(0.0, 0.2),
    st.floats(0.0, 0.2),
)
def test_validated_budgets_plus_fees_never_exceed_balances(
    build: Build, rows: list[tuple[int, int, int]], card_fee: float, transfer_fee: float
) -> None:
    sc, world, _ = build()
    world.card_fee, world.bank_transfer_fee = card_fee, transfer_fee
    out = _batch(
        world,
        consumption_budget=[r[0] for r in rows],
        token_buy_budget=[r[1] for r in rows],
        token_buy=np.arange(world.n_households) % world.t_price.size,
        token_buy_limit=np.full(world.n_households, 100.0),
        rail=[r[2] for r in rows],
    ).validated(world, sc)
    f = world.rail_fees()
    spent = out.consumption_budget + fees(out.consumption_budget, out.rail, f)
    spent = spent + out.token_buy_budget + fees(out.token_buy_budget, Rail.BANK_TRANSFER, f)
    assert np.all(spent <= world.household_balance())
    assert np.all(out.consumption_budget >= 0) and np.all(out.token_buy_budget >= 0)


def test_merge_writes_currency_units_as_cents(build: Build) -> None:
    scenario, world, _ = build("roles.household.value_anchor=0")  # limits around the last price
    batch = _batch(world)
    d = HouseholdDecision(
        consumption_budget=12.34,
        reservation_wage=1500.5,
        token_buy_budget=3.21,
        token_buy=1,
        token_sell=0,
        token_sell_shares=5,
        rail="chain",
    )
    batch.merge(world, 4, d, scenario)
    assert batch.consumption_budget[4] == 1234 and batch.reservation_wage[4] == 150_050.0
    assert batch.token_buy_budget[4] == 321 and batch.token_buy[4] == 1 and batch.rail[4] == Rail.CHAIN
    assert batch.token_buy_limit[4] == world.t_price[1] * 1.02
    assert batch.token_sell_limit[4] == world.t_price[0] * 0.98 and batch.token_sell_shares[4] == 5
    assert batch.as_dict(4)["consumption_budget"] == pytest.approx(12.34)
    batch.merge(world, 5, d.model_copy(update={"token_buy": 99}), scenario)
    assert batch.token_buy_limit[5] == 0.0  # no such token: no price to bid at


def test_merge_shares_scales_an_archetype_answer_by_each_members_accounts(scenario: Scenario, world: World) -> None:
    batch = _batch(world)
    holders = np.flatnonzero(world.household_holdings().sum(axis=1) > 0)
    idle = np.setdiff1d(np.arange(world.n_households), holders)
    owner = int(holders[0])  # a member who holds tokens, and two who hold none
    members = np.array(sorted([int(idle[1]), int(idle[2]), owner]))
    d = HouseholdShareDecision(consume_share=0.5, invest_share=0.1, sell_share=0.5, reservation_wage_factor=0.9)
    batch.merge_shares(world, members, d, scenario)
    bal = world.household_balance()[members]
    assert batch.consumption_budget[members].tolist() == (bal // 2).tolist()
    assert batch.token_buy_budget[members].tolist() == np.floor(0.1 * bal).astype(np.int64).tolist()
    assert batch.reservation_wage[members].tolist() == (world.h_reservation[members] * 0.9).tolist()
    held = world.household_holdings()[owner]  # the owner sells half its largest position
    largest = int(np.argmax(held * world.t_price))
    assert held[largest] > 0
    assert batch.token_sell[owner] == largest and batch.token_sell_shares[owner] == held[largest] // 2
    assert batch.token_sell[int(idle[1])] == -1  # a member with nothing to sell sells nothing
    assert batch.consumption_budget[int(idle[0])] == 0  # non-members untouched


def test_token_wealth_can_be_spent_from_at_its_own_rate(build: Build) -> None:
    sc, world, _ = build()
    tokens = world.household_token_wealth()
    holders = tokens > 0
    assert holders.any()
    base = desired_consumption(world, config(sc))
    sc2, world2, _ = build("roles.household.mpc_token_wealth=0.0")
    none = desired_consumption(world2, config(sc2))
    floor = config(sc).subsistence * 100
    above = holders & (none > floor)  # where the subsistence floor does not hide the difference
    assert above.any()
    assert config(sc).mpc_token_wealth == 0.0025  # Di Maggio, Kermani & Majlesi 2020, the default
    np.testing.assert_allclose(base[above] - none[above], 0.0025 * tokens[above], rtol=1e-9)
    assert np.array_equal(base[~holders], none[~holders])  # deposits are spent from as before


def test_hand_to_mouth_households_spend_their_income_and_deposits_beyond_their_buffer(build: Build) -> None:
    """Kaplan, Violante & Weidner (2014): a share of households keep only their pay cycle liquid."""
    from tokenomy.agents.household import hand_to_mouth

    mask = hand_to_mouth(9, 1 / 3)
    assert mask.sum() == 3 and mask.tolist() == [False, False, True] * 3  # evenly over the index
    assert not hand_to_mouth(10, 0.0).any() and hand_to_mouth(10, 1.0).all()
    sc, world, _ = build("roles.household.hand_to_mouth=0.5", "roles.household.hand_to_mouth_buffer=1")
    htm = hand_to_mouth(world.n_households, 0.5)
    world.h_income[:] = 300_000
    world.household_balance()[:] = 1_000_000
    want = desired_consumption(world, config(sc))
    assert np.all(want[htm] == 300_000 + 700_000)  # all its income, and what it holds beyond one round of it
    rest = desired_consumption(world, config(build()[0]))
    assert np.array_equal(want[~htm], rest[~htm])  # the others follow the rule as before
    opened = build("roles.household.hand_to_mouth=0.5")[1]  # at the steady opening they hold one round's net pay
    net = 2000 * 100 * 0.8 * opened.h_skill[htm]
    assert np.allclose(opened.household_balance()[htm], np.floor(net), atol=1)
    assert opened.household_balance()[~htm].mean() > 10 * opened.household_balance()[htm].mean()
