"""The wealth margins behind issue #8's distribution checks, each on a small economy.

Three were measured there (README, "A sound economy"): opening at the households' steady state
(``initial.deposits = "steady"``), token prices anchored to book value
(``roles.household.value_anchor``) and few positions per portfolio
(``roles.household.portfolio_positions``); and, for the firms that rarely fail, levered opening
balance sheets (``initial.firm_leverage``). These tests pin what each does, not the calibration.
"""

from __future__ import annotations

import numpy as np
import pytest

from tokenomy import accounts
from tokenomy.initial import build_world, opening_deposits, steady_deposit_rounds
from tokenomy.scenario import ScenarioError, load_scenario
from tokenomy.simulation import Simulation

SMALL = ["households=400", "firms=10", "banks=2"]


def test_the_steady_state_is_saving_out_of_income_over_spending_out_of_wealth() -> None:
    s = load_scenario("baseline", [*SMALL, 'initial.deposits="steady"'])
    monthly = 1.02 ** (1 / 12) - 1  # the central bank's 2% target, a round
    assert steady_deposit_rounds(s) == pytest.approx(0.15 / (0.004 + monthly))  # about 26.5 rounds
    assert opening_deposits(s) == pytest.approx(steady_deposit_rounds(s) * 2000 * (1 - 0.2))
    assert load_scenario("baseline", SMALL).initial.deposits == "steady"  # the default
    assert opening_deposits(load_scenario("baseline", [*SMALL, 'initial.deposits="mean"'])) == 4000.0  # as given
    none = load_scenario("baseline", [*SMALL, 'initial.deposits="steady"', "roles.household.mpc_wealth=0",
                                      "roles.central_bank.inflation_target=0"])
    assert np.isfinite(steady_deposit_rounds(none)) and steady_deposit_rounds(none) > 0  # capped, not inf


def test_steady_opening_deposits_follow_each_households_pay() -> None:
    s = load_scenario("baseline", [*SMALL, 'initial.deposits="steady"'])
    w = build_world(s, np.random.default_rng(1))
    bal = w.household_balance().astype(float)
    assert bal.mean() == pytest.approx(opening_deposits(s) * 100, rel=0.1)
    assert np.corrcoef(np.log(bal + 1), np.log(w.h_skill))[0, 1] > 0.5  # the skilled hold more


def _deposits_per_income(sets: list[str], rounds: int) -> tuple[float, float]:
    sim = Simulation(load_scenario("baseline", [*SMALL, *sets], seed=3))
    def ratio() -> float:
        w = sim.world
        return float(w.household_balance().sum()) / max(float(w.h_income.sum()), 1.0)
    first = ratio()
    for _ in range(rounds):
        sim.step()
    return first, ratio()


def test_an_economy_opened_at_the_steady_state_holds_its_deposits_while_one_opened_low_fills_them() -> None:
    """Opened with a few rounds' pay, households save into deposits for hundreds of rounds (the
    transition the wealth Gini fell through: 2.6 to 9.7 rounds of income in 80 rounds here); opened
    at the steady state they stop filling them (26.7 to 17.3: what they hold beyond
    ``invest_threshold`` rounds of spending goes on into tokens)."""
    low0, low1 = _deposits_per_income(['initial.deposits="mean"'], 80)
    steady0, steady1 = _deposits_per_income(['initial.deposits="steady"'], 80)
    assert low1 / low0 > 2.0
    assert 0.4 < steady1 / steady0 < 1.2


def test_anchored_token_prices_keep_up_with_book_value() -> None:
    """Without the anchor a token's price is its last trade's: over a run with inflation the
    households' tokens fall far below their issuers' book value; anchored, they follow it."""
    gaps = {}
    for anchor in (0.0, 0.2):
        sim = Simulation(load_scenario("baseline", [*SMALL, f"roles.household.value_anchor={anchor}"], seed=3))
        for _ in range(120):
            sim.step()
        w = sim.world
        book = w.book_per_share(w.price_index, w.price_index)[w.tokens_of("firm")]
        price = w.t_price[w.tokens_of("firm")]
        live = book > 0
        gaps[anchor] = float(np.median(price[live] / book[live]))
    assert gaps[0.0] < 0.8  # stale
    assert abs(gaps[0.2] - 1.0) < abs(gaps[0.0] - 1.0) and gaps[0.2] > 0.8


def test_firms_can_open_levered_and_every_cent_still_has_a_counterpart() -> None:
    sets = [*SMALL, 'initial.deposits="steady"', "initial.firm_leverage=0.3"]
    s = load_scenario("baseline", sets)
    w = build_world(s, np.random.default_rng(1))
    value = w.f_capital * w.capital_price * w.price_index
    np.testing.assert_allclose(w.f_loan, 0.3 * value, atol=1.0)
    assert accounts.money_without_counterpart(w) == 0
    assert w.cb_advances < int(w.ledger.money_supply)  # the loans back part of the opening money
    sim = Simulation(load_scenario("baseline", sets, seed=3))
    for _ in range(10):
        sim.step()
        assert accounts.money_without_counterpart(sim.world) == 0
    # with a few rounds' pay in deposits the loans would exceed the money they created: refused, named
    with pytest.raises(ScenarioError, match=r"initial\.firm_leverage"):
        build_world(load_scenario("baseline", [*SMALL, "initial.firm_leverage=0.9"]), np.random.default_rng(1))
