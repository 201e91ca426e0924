"""Heterogeneous skills: workers supply efficiency units, firms pay and produce by them.

Without them every worker earned the same wage to half a percent and the income Gini was 0.2
(the target is 0.3-0.5); these tests pin the mechanism, not the calibration.
"""

from __future__ import annotations

import numpy as np
import pytest

from tokenomy import markets
from tokenomy.initial import build_world, household_skills
from tokenomy.market import production
from tokenomy.markets import wage_bill, within_cash
from tokenomy.metrics import gini
from tokenomy.outcome import RoundOutcome
from tokenomy.scenario import load_scenario
from tokenomy.simulation import Simulation

SMALL = ["households=300", "firms=10", "banks=2"]


def test_skills_have_mean_one_and_the_drawn_dispersion() -> None:
    s = household_skills(0.5, 200_000, np.random.default_rng(3))
    assert s.mean() == pytest.approx(1.0, abs=1e-12)  # an efficiency unit is the average worker
    assert np.log(s).std() == pytest.approx(0.5, abs=0.01)
    assert (household_skills(0.0, 10, np.random.default_rng(3)) == 1.0).all()


def test_each_worker_is_paid_the_offer_per_unit_times_her_skill_and_firms_produce_by_units() -> None:
    sim = Simulation(load_scenario("baseline", SMALL, seed=2))
    for _ in range(3):
        o = sim.step()
    w = sim.world
    assert o.wages is not None and o.output is not None
    emp = np.flatnonzero(w.h_employer >= 0)
    # wages are paid in settlement after the labour market: to whoever is employed now
    np.testing.assert_array_equal(o.wages[emp], np.floor(w.f_wage[w.h_employer[emp]] * w.h_skill[emp]))
    assert (o.wages[w.h_employer < 0] == 0).all()
    assert gini(o.wages[emp]) > 0.2  # skills make wages unequal within and across firms


def test_firms_produce_with_efficiency_units_not_heads() -> None:
    sc = load_scenario("baseline", SMALL)
    w = build_world(sc, np.random.default_rng(1))
    o = RoundOutcome(round=0)
    markets.production(w, o, sc, np.random.default_rng(0))
    s = sc.production
    assert o.capacity is not None
    np.testing.assert_allclose(o.capacity, production.output(w.f_capital, w.labour(), w.phi, s.A, s.sigma))
    by_heads = production.output(w.f_capital, w.workers().astype(float), w.phi, s.A, s.sigma)
    assert not np.allclose(o.capacity, by_heads)  # the same heads with other skills make other amounts


def test_equal_skills_give_equal_wages_within_a_firm() -> None:
    sim = Simulation(load_scenario("baseline", [*SMALL, "roles.household.skill_dispersion=0"], seed=2))
    o = sim.step()
    w = sim.world
    assert o.wages is not None
    emp = np.flatnonzero(w.h_employer >= 0)
    for f in np.unique(w.h_employer[emp]):
        assert np.unique(o.wages[emp][w.h_employer[emp] == f]).size == 1


def test_a_firm_whose_hires_cost_more_than_its_cash_lets_the_newest_go_first() -> None:
    sc = load_scenario("baseline", SMALL)
    w = build_world(sc, np.random.default_rng(1))
    staff = np.flatnonzero(w.h_employer == 0)
    idle = np.flatnonzero(w.h_employer < 0)[:5]
    w.h_employer[idle] = 0
    w.h_skill[idle] = 4.0  # the draws came out far above the staff's skill
    bill = wage_bill(w)
    cash = bill.copy()
    cash[0] -= int(np.floor(w.f_wage[0] * 4.0)) * 2 + 1  # short by a little over two new hires
    gone = within_cash(w, cash, bill, idle, np.random.default_rng(0))
    assert gone.size == 3 and np.isin(gone, idle).all()  # only new hires, as few as it takes
    assert (wage_bill(w) <= cash).all()
    assert (w.h_employer[staff] == 0).all()
    fits = wage_bill(w)
    assert within_cash(w, fits, fits, idle, np.random.default_rng(0)).size == 0  # a bill that fits: no one


def test_skills_raise_income_inequality_and_money_is_still_conserved() -> None:
    ginis = {}
    for disp in (0.0, 0.5):
        sim = Simulation(load_scenario("baseline", [*SMALL, f"roles.household.skill_dispersion={disp}"], seed=4))
        values = []
        for _ in range(30):
            o = sim.step()
            assert o.wages is not None
            values.append(gini(o.wages[o.wages > 0]))
        ginis[disp] = float(np.mean(values[10:]))
    assert ginis[0.0] < 0.05 < 0.2 < ginis[0.5]


def test_a_snapshot_from_before_skills_restores_with_equal_skills() -> None:
    from tokenomy.world import World

    w = build_world(load_scenario("baseline", SMALL), np.random.default_rng(1))
    snap = w.snapshot()
    del snap["h_skill"]  # what a run recorded before skills existed holds
    old = World.restore(snap)
    assert (old.h_skill == 1.0).all() and old.h_skill.size == w.n_households
