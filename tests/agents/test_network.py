"""The rail operators' rules, validation, merge and effect (:mod:`tokenomy.agents.network`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tokenomy.agents.base import MarketView
from tokenomy.agents.network import NetworkBatch, NetworkDecision, Networks
from tokenomy.scenario import Scenario
from tokenomy.world import World

Build = Callable[..., tuple[Scenario, World, MarketView]]


def _batch(fee: list[float], dividend: list[int] | None = None) -> NetworkBatch:
    return NetworkBatch(np.array(fee), np.array(dividend or [0, 0], dtype=np.int64), np.full(2, "", dtype=object))


def test_rule_asks_the_scenarios_fee_and_pays_out_everything(
    scenario: Scenario, world: World, view: MarketView
) -> None:
    world.balance_of("network")[:] = [12_345, 67]
    batch = Networks().heuristic(world, view, scenario, np.random.default_rng(0))
    assert batch.fee_rate.tolist() == [0.0224, world.chain_fee]
    assert batch.dividend.tolist() == [12_345, 67]
    world.balance_of("network")[0] = 0
    assert batch.dividend[0] == 12_345  # a copy, not a view of the ledger


def test_rent_seeking_operator_asks_for_the_cap(build: Build) -> None:
    sc, world, view = build("roles.network.strategy=max", "roles.regulator.card_fee_cap=0.015")
    assert world.card_fee_cap == 0.015
    assert Networks().heuristic(world, view, sc, np.random.default_rng(0)).fee_rate.tolist() == [0.015, 0.001]


def test_validation_clips_the_card_fee_to_the_cap_and_fixes_the_chain_fee(scenario: Scenario, world: World) -> None:
    world.card_fee_cap = 0.01
    out = _batch([0.05, 0.05], [10, 0]).validated(world, scenario)
    assert out.fee_rate.tolist() == [0.01, world.chain_fee]  # the protocol, not the operator, sets the chain fee
    assert out.notes.tolist() == ["fee clipped to the cap; dividend clipped to balance", "fee clipped to the cap"]
    out = _batch([np.nan, 0.001]).validated(world, scenario)
    assert out.fee_rate.tolist() == [0.0, 0.001] and out.notes.tolist() == ["fee clipped to the cap", ""]
    assert _batch([0.5, 0.001]).validated(world, scenario).fee_rate[0] == 0.01  # above the 0.2 range, then the cap


def test_validation_keeps_what_is_allowed(scenario: Scenario, world: World) -> None:
    world.balance_of("network")[:] = [500, 500]
    out = _batch([0.02, world.chain_fee], [500, 499]).validated(world, scenario)
    assert out.fee_rate.tolist() == [0.02, world.chain_fee] and out.dividend.tolist() == [500, 499]
    assert out.notes.tolist() == ["", ""]


def test_merge_writes_currency_units_as_cents(scenario: Scenario, world: World) -> None:
    batch = _batch([0.0224, 0.001])
    batch.merge(world, 0, NetworkDecision(fee_rate=0.01, dividend=2.5), scenario)
    assert batch.fee_rate.tolist() == [0.01, 0.001] and batch.dividend.tolist() == [250, 0]


def test_apply_sets_the_card_fee_this_round(world: World) -> None:
    assert NetworkBatch.takes_effect == "this_round"
    chain = world.chain_fee
    _batch([0.013, 0.05]).apply(world)
    assert world.card_fee == 0.013 and world.chain_fee == chain
    assert world.rail_fees().tolist() == [0.013, chain, 0.0]
