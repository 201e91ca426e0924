"""Accounting profit (Caiani et al. 2016): stock built is not a loss, stock sold is not a gain."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest

import tokenomy
from tokenomy.settlement import accounting_profit
from tokenomy.simulation import Simulation


def _profit(output: list[float], sales: list[float], wages: list[int], revenue: list[float]) -> np.ndarray:
    made, sold = np.array(output), np.array(sales)
    cash_flow = np.array(revenue) - np.array(wages, dtype=float)
    w = SimpleNamespace(f_sales=sold, f_cash_flow=cash_flow, capital_price=1.0, price_index=100.0)
    o = SimpleNamespace(output=made, wage_bill=np.array(wages, dtype=np.int64), inventory_decay=np.zeros(made.size))
    return accounting_profit(cast(Any, w), cast(Any, o), np.array([0.5] * made.size))


def test_stock_is_valued_at_unit_cost_and_wear_is_charged() -> None:
    # firm 0 makes 100 units for 1,000 cents of wages and sells none: it built stock worth what it
    # cost, so its profit is only the wear (0.5 units at 100 cents); firm 1 sells all it made at
    # 15 cents; firm 2 made nothing and sold 10 units from stock for 150 cents, valued at the
    # median unit cost of the others (10 cents), so it earned 50, not 150
    got = _profit([100.0, 100.0, 0.0], [0.0, 100.0, 10.0], [1000, 1000, 0], [0.0, 1500.0, 150.0])
    assert got.tolist() == pytest.approx([-50.0, 450.0, 150.0 - 100.0 - 50.0])


def test_a_run_books_profit_as_cash_flow_plus_the_change_in_stock() -> None:
    """Through the real round: accounting profit less (cash flow less wear) is the stock built,
    valued at a non-negative unit cost, so it is positive exactly where a firm's stock grew and
    negative where it shrank."""
    s = tokenomy.load_scenario("baseline", ["households=300", "firms=12", "banks=2", "rounds=20"], seed=3)
    sim = Simulation(s)
    grew_seen = shrank_seen = 0
    for _ in range(20):
        w = sim.world
        before, price_index, capital_price = w.f_inventory.copy(), w.price_index, w.capital_price
        outcome = sim.step()
        assert outcome.capital_wear is not None
        built = w.f_inventory - before
        term = w.f_profit - w.f_cash_flow + outcome.capital_wear * capital_price * price_index
        grew, shrank = built > 1e-6, built < -1e-6
        assert np.all(term[grew] > 0) and np.all(term[shrank] < 0)
        assert np.allclose(term[~grew & ~shrank], 0.0, atol=1.0)
        grew_seen, shrank_seen = grew_seen + int(grew.sum()), shrank_seen + int(shrank.sum())
    assert grew_seen > 0 and shrank_seen > 0


@pytest.mark.parametrize("rounds", [1.0, 3.0])
def test_dividends_are_paid_on_profit_averaged_over_profit_smoothing_rounds(rounds: float) -> None:
    """The profit rule's base is the exponential average of each round's profit over
    ``profit_smoothing`` rounds (a quarter by default); at 1 it is last round's profit alone."""
    s = tokenomy.load_scenario(
        "baseline",
        ["households=300", "firms=12", "banks=2", "rounds=12", "roles.firm.exit_and_entry=false",
         f"roles.firm.profit_smoothing={rounds}"],
        seed=4,
    )
    sim = Simulation(s)
    moved = 0.0
    for _ in range(12):
        before = sim.world.f_profit_smoothed.copy()
        sim.step()
        w = sim.world
        assert w.f_profit_smoothed == pytest.approx(before + (w.f_profit - before) / rounds, rel=1e-12, abs=1e-6)
        moved = max(moved, float(np.abs(w.f_profit_smoothed - w.f_profit).max()))
    assert (moved < 1e-3) == (rounds == 1.0)  # cents: equal up to rounding, or a real average
