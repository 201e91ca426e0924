"""Firm exit and entry (:mod:`tokenomy.turnover`): who leaves, who pays, and that no cent is lost."""

from __future__ import annotations

import numpy as np

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
    paid = sum(int(p.amount.sum()) for p in o.postings if p.kind == "equity_issue")
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
    assert bankruptcy["detail"].startswith(f"{staff.size} workers laid off")
    assert accounts.money_without_counterpart(w) == 0

    off = Simulation(load_scenario("baseline", [*SMALL, "roles.firm.exit_and_entry=false"]))
    off.step()
    _doom(off, 2)
    o = off.step()
    assert not [e for e in o.events if e["kind"] in ("bankruptcy", "entry")]
    assert accounts.money_without_counterpart(off.world) == 0
