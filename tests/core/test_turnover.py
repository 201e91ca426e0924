"""Firm exit and entry (:mod:`tokenomy.turnover`): who leaves, who pays, and that no cent is lost."""

from __future__ import annotations

import numpy as np
import pytest

from tokenomy import accounts
from tokenomy.outcome import RoundOutcome
from tokenomy.scenario import load_scenario
from tokenomy.simulation import Simulation
from tokenomy.turnover import exiting_firms, firm_turnover

SMALL = ["households=200", "firms=6", "banks=2", "rounds=20", "seed=3"]


def _doom(sim: Simulation, firm: int) -> int:
    """Give ``firm`` a loan far beyond what it owns (booked as its bank's asset, issued as a deposit
    and at once spent elsewhere, so the books stay sound); returns the loan."""
    w = sim.world
    loan = int(10 * (w.f_capital[firm] * w.capital_price * w.price_index + w.firm_balance()[firm]))
    w.f_loan[firm] += loan
    w.ledger.balance[w.layout.first("household")] += loan  # the deposit it created went to a household
    w.ledger.opening_supply += loan
    assert accounts.money_without_counterpart(w) == 0
    return loan


def test_a_firm_with_negative_net_worth_exits_and_an_entrant_takes_its_place() -> None:
    sim = Simulation(load_scenario("baseline", SMALL))
    sim.step()
    w, f = sim.world, 2
    token = w.tokens_of("firm").start + f
    old_holders = np.flatnonzero(w.holdings[:, token])
    bank = int(w.f_loan_bank[f])
    _doom(sim, f)
    o = sim.step()
    w = sim.world
    kinds = [e["kind"] for e in o.events]
    assert "bankruptcy" in kinds and "entry" in kinds
    bankruptcy = next(e for e in o.events if e["kind"] == "bankruptcy")
    assert bankruptcy["agent"] == f"f{f}" and bankruptcy["counterparty"] == f"b{bank}" and bankruptcy["amount"] > 0
    assert w.f_loan[f] == 0 and o.written_off >= bankruptcy["amount"]  # the rest of its loan is charged off
    assert (w.h_employer != f).all()  # no one works there: fired as it shrank, or laid off at exit
    # the old token is cancelled; the new one is held by the households who paid for it
    new_holders = np.flatnonzero(w.holdings[:, token])
    assert w.holdings[:, token].sum() == w.t_outstanding[token] > 0
    assert not np.array_equal(new_holders, old_holders)
    entry = next(e for e in o.events if e["kind"] == "entry")
    # the buyers' stake: new equity, and (exit_recovery) what they paid the bank for the plant
    paid = sum(int(p.amount.sum()) for p in o.postings if p.kind in ("equity_issue", "fire_sale"))
    assert paid == entry["amount"] > 0
    assert w.t_price[token] * w.t_outstanding[token] == paid
    assert w.f_bad_rounds[f] == 0
    # no cent appeared or vanished, and the bank booked the loss
    assert accounts.money_without_counterpart(w) == 0
    holdings_ok = w.holdings.sum(axis=0) == w.t_outstanding
    assert holdings_ok.all()


def test_firms_in_default_for_too_long_exit_and_exit_can_be_switched_off() -> None:
    sc = load_scenario("baseline", [*SMALL, "roles.firm.exit_after_defaults=2"])
    sim = Simulation(sc)
    sim.step()
    w = sim.world
    # the counter runs while a firm misses payments and starts again when it pays
    o = RoundOutcome(w.round, defaulted=np.array([True, True, False, False, False, False]))
    w.f_bad_rounds[:] = [1, 0, 4, 0, 0, 0]
    firm_turnover(w, o, load_scenario("baseline", [*SMALL, "roles.firm.exit_and_entry=false"]))
    assert w.f_bad_rounds.tolist() == [2, 1, 0, 0, 0, 0]
    assert exiting_firms(w, sc, w.price_index).tolist() == [0]  # two rounds running: out
    # an exit with staff lays them all off, and says how many
    staff = np.flatnonzero(w.h_employer == 0)
    assert staff.size > 0
    o = RoundOutcome(w.round, defaulted=np.array([True, False, False, False, False, False]))
    firm_turnover(w, o, sc)
    bankruptcy = next(e for e in o.events if e["kind"] == "bankruptcy")
    assert (w.h_employer[staff] == -1).all() and o.fired == staff.size
    assert bankruptcy["detail"].startswith(f"in default: {staff.size} workers laid off")
    assert accounts.money_without_counterpart(w) == 0

    off = Simulation(load_scenario("baseline", [*SMALL, "roles.firm.exit_and_entry=false"]))
    off.step()
    _doom(off, 2)
    o = off.step()
    assert not [e for e in o.events if e["kind"] in ("bankruptcy", "entry")]
    assert accounts.money_without_counterpart(off.world) == 0


def test_a_fire_sale_pays_the_bank_what_households_pay_for_the_plant_and_they_own_the_entrant() -> None:
    """``exit_recovery`` (Caiani et al. 2016): the plant the entrant takes over is bought for the
    creditors at that share of its value; the bank's loss falls by exactly what was paid."""
    results = {}
    for recovery in (0.0, 0.5):
        sim = Simulation(load_scenario("baseline", [*SMALL, f"roles.firm.exit_recovery={recovery}"]))
        sim.step()
        w, f = sim.world, 2
        _doom(sim, f)
        o = sim.step()
        paid = sum(int(p.amount.sum()) for p in o.postings if p.kind == "fire_sale")
        bankruptcy = next(e for e in o.events if e["kind"] == "bankruptcy")
        entry = next(e for e in o.events if e["kind"] == "entry")
        token = w.tokens_of("firm").start + f
        results[recovery] = (paid, bankruptcy["amount"], entry["amount"], w.t_price[token] * w.t_outstanding[token])
        assert accounts.money_without_counterpart(sim.world) == 0
        assert (w.holdings.sum(axis=0) == w.t_outstanding).all()
    (paid0, lost0, _, _), (paid, lost, stake, value) = results[0.0], results[0.5]
    assert paid0 == 0 and paid > 0
    assert lost0 - lost == pytest.approx(paid, abs=2)  # the same doomed firm; what was paid is not lost
    assert stake == pytest.approx(value) and stake > paid  # the buyers' stake: the plant and the new equity


def test_a_firm_out_of_cash_for_the_staff_it_keeps_exits_only_with_exit_on_illiquidity() -> None:
    for on in (False, True):
        # without opening loans, so that only illiquidity (not a plant worth less than its loans) is tested
        flag = f"roles.firm.exit_on_illiquidity={str(on).lower()}"
        sim = Simulation(load_scenario("baseline", [*SMALL, flag, "initial.firm_leverage=0"]))
        sim.step()
        w, f = sim.world, 1
        staff = int((w.h_employer == f).sum())
        assert staff > 2
        cash = int(w.firm_balance()[f])  # its deposits go to a household: nothing to pay wages with,
        acct, hh = w.layout.first("firm") + f, w.layout.first("household")
        w.ledger.balance[acct] -= cash
        w.ledger.balance[hh] += cash
        w.f_capital[f] = 1e-9  # and no plant to borrow against
        o = sim.step()
        assert o.illiquid is not None and bool(o.illiquid[f]) is on
        exits = [e["agent"] for e in o.events if e["kind"] == "bankruptcy"]
        assert (f"f{f}" in exits) is on
        assert accounts.money_without_counterpart(sim.world) == 0


def test_a_firm_that_sells_next_to_nothing_exits_after_its_grace_with_exit_share() -> None:
    """Dosi et al. (2010): a firm whose market share is near zero exits; an entrant is spared for
    ``exit_grace`` rounds, and the age counts from entry."""
    sc = load_scenario("baseline", [*SMALL, "roles.firm.exit_share=1e-5", "roles.firm.exit_grace=3"])
    sim = Simulation(sc)
    sim.step()
    w = sim.world
    assert w.f_age.tolist() == [1] * 6
    sales = np.array([5e6, 0.0, 4e6, 1.0, 3e6, 2e6])  # firm 1 sold nothing, firm 3 a cent in 14 million
    assert exiting_firms(w, sc, w.price_index, sales=sales).tolist() == []  # all within their grace
    w.f_age[:] = [9, 9, 9, 9, 2, 9]
    assert exiting_firms(w, sc, w.price_index, sales=sales).tolist() == [1, 3]
    assert exiting_firms(w, load_scenario("baseline", SMALL), w.price_index, sales=sales).tolist() == []
    # in a round: take firm 1's staff and stock away, and it leaves once its grace is over
    w.f_age[:] = 9
    for _ in range(4):
        w.f_capital[1] = 1e-9
        w.f_inventory[1] = 0.0
        w.h_employer[w.h_employer == 1] = -1
        o = sim.step()
        if any(e["agent"] == "f1" for e in o.events if e["kind"] == "bankruptcy"):
            break
    else:
        raise AssertionError("a firm that sold nothing never exited")
    assert sim.world.f_age[1] == 0  # the entrant's age starts again
    assert accounts.money_without_counterpart(sim.world) == 0


def test_an_entrant_raises_the_plant_it_lacks_with_entry_capital_and_starts_as_if_it_sold_its_expectation() -> None:
    raised = {}
    for share in (0.0, 0.5):
        sim = Simulation(load_scenario("baseline", [*SMALL, f"roles.firm.entry_capital={share}"]))
        sim.step()
        f = 2
        _doom(sim, f)
        o = sim.step()
        w = sim.world
        raised[share] = next(e["amount"] for e in o.events if e["kind"] == "entry")
        assert w.f_sales[f] == w.f_expected[f] > 0  # not a shrinking market: it has not sold yet
        assert w.f_age[f] == 0
        assert accounts.money_without_counterpart(w) == 0
    assert raised[0.5] > raised[0.0] > 0  # half the incumbents' mean plant, less the half it kept
