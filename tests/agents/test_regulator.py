"""The state's rules, validation, merge and effect (:mod:`tokenomy.agents.regulator`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from tokenomy.agents.base import MarketView
from tokenomy.agents.regulator import Regulator, RegulatorBatch, RegulatorDecision
from tokenomy.scenario import Scenario
from tokenomy.world import World

Build = Callable[..., tuple[Scenario, World, MarketView]]


def _batch(tax: float = 0.2, robot: float = 0.0, ubi: int = 0, cap: float = 1.0, spending: int = 0) -> RegulatorBatch:
    return RegulatorBatch(
        np.array([tax]),
        np.array([robot]),
        np.array([ubi], dtype=np.int64),
        np.array([cap]),
        np.array([spending], dtype=np.int64),
        np.array([""], dtype=object),
    )


def test_rule_spends_a_share_of_trend_gdp_and_pays_ubi_from_its_start(build: Build) -> None:
    sc, world, view = build("roles.regulator.ubi=100", "roles.regulator.ubi_start=3", "roles.regulator.robot_tax=0.01")
    world.output_trend, world.price_index = 1_000.0, 250.0  # trend nominal GDP: 250,000 cents a round
    world.balance_of("regulator")[0] = 0  # spending does not wait for taxes: a deficit is advanced
    before = Regulator().heuristic(world, view, sc, np.random.default_rng(0))
    assert before.ubi.tolist() == [0] and before.spending.tolist() == [int(0.2 * 250_000)]
    after = Regulator().heuristic(world, replace(view, round=3), sc, np.random.default_rng(0))
    assert after.ubi.tolist() == [10_000] and after.spending.tolist() == [50_000]
    assert after.income_tax.tolist() == [0.2] and after.robot_tax.tolist() == [0.01]


def test_a_deficit_limit_cuts_spending_to_last_rounds_taxes_plus_the_limit(build: Build) -> None:
    sc, world, view = build("roles.regulator.deficit_limit=0.01")
    world.output_trend, world.price_index = 1_000.0, 250.0
    world.state_revenue, world.state_transfers = 30_000, 5_000
    spend = Regulator().heuristic(world, view, sc, np.random.default_rng(0)).spending
    assert spend.tolist() == [30_000 - 5_000 + int(0.01 * 250_000)]


def test_surplus_rule_pays_ubi_first_and_spends_the_rest(build: Build) -> None:
    sc, world, view = build(
        "roles.regulator.ubi=100", "roles.regulator.ubi_start=3", 'roles.regulator.spending_rule="surplus"'
    )
    world.balance_of("regulator")[0] = 10_000_000
    before = Regulator().heuristic(world, view, sc, np.random.default_rng(0))
    assert before.ubi.tolist() == [0] and before.spending.tolist() == [10_000_000]
    after = Regulator().heuristic(world, replace(view, round=3), sc, np.random.default_rng(0))
    assert after.spending.tolist() == [10_000_000 - 10_000 * 60]  # next round's UBI is kept back


def test_money_financed_ubi_keeps_nothing_back_and_spending_share_applies(build: Build) -> None:
    sc, world, view = build(
        "roles.regulator.ubi=100",
        "roles.regulator.ubi_financing=money",
        "roles.regulator.spending_share=0.5",
        'roles.regulator.spending_rule="surplus"',
    )
    world.balance_of("regulator")[0] = 1_000_001
    assert Regulator().heuristic(world, view, sc, np.random.default_rng(0)).spending.tolist() == [500_000]


def test_validation_clips_spending_to_what_the_state_may_spend(build: Build) -> None:
    sc, world, _ = build('roles.regulator.deficit_financing="none"')
    world.balance_of("regulator")[0] = 5_000
    out = _batch(spending=7_000).validated(world, sc)
    assert out.spending.tolist() == [5_000] and out.notes.tolist() == ["spending clipped to what the state may spend"]
    out = _batch(spending=5_000).validated(world, sc)
    assert out.spending.tolist() == [5_000] and out.notes.tolist() == [""]
    # money-financed: the central bank advances up to four rounds of trend GDP
    sc, world, _ = build()
    world.output_trend, world.price_index = 1_000.0, 250.0
    assert _batch(spending=10**9).validated(world, sc).spending.tolist() == [1_000_000]


def test_validation_clips_instruments_to_their_range(scenario: Scenario, world: World) -> None:
    out = _batch(tax=1.5, robot=-0.2, ubi=-100, cap=np.nan).validated(world, scenario)
    assert out.income_tax.tolist() == [1.0] and out.robot_tax.tolist() == [0.0]
    assert out.ubi.tolist() == [0] and out.card_fee_cap.tolist() == [1.0]
    assert out.spending.tolist() == [0]


def test_merge_writes_currency_units_as_cents(scenario: Scenario, world: World) -> None:
    batch = _batch()
    d = RegulatorDecision(income_tax=0.3, robot_tax=0.01, ubi=12.5, card_fee_cap=0.015, spending=100.25)
    batch.merge(world, 0, d, scenario)
    assert batch.ubi.tolist() == [1250] and batch.spending.tolist() == [10_025]
    assert batch.as_dict(0) == {
        "income_tax": 0.3,
        "robot_tax": 0.01,
        "ubi": 12.5,
        "card_fee_cap": 0.015,
        "spending": 100.25,
    }


def test_apply_sets_taxes_ubi_and_the_fee_cap_from_the_next_round(world: World) -> None:
    assert RegulatorBatch.takes_effect == "next_round"
    _batch(tax=0.35, robot=0.02, ubi=5_000, cap=0.01, spending=123).apply(world)
    assert (world.income_tax, world.robot_tax, world.ubi_cents, world.card_fee_cap) == (0.35, 0.02, 5_000, 0.01)
    assert world.rail_fees()[0] == 0.01  # the cap binds on the card fee in force
