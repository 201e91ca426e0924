"""Sector accounts in real runs (:mod:`tokenomy.accounts`): every cent of money has a counterpart,
both sector matrices balance, planted bookkeeping bugs show up in them, and the settlement steps
that move the registers (partial default, bank resolution, central-bank advances, snapshots) keep
the books sound.

A planted step is put into ``tokenomy.settlement.STEPS`` with ``monkeypatch`` (``settle`` reads
the tuple when it runs), so settlement itself posts and books everything around it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray

from tokenomy import accounts, metrics, registry, settlement
from tokenomy.agents.bank import BankBatch
from tokenomy.agents.bank import config as bank_config
from tokenomy.agents.firm import FirmBatch
from tokenomy.outcome import RoundOutcome
from tokenomy.scenario import Scenario, load_scenario
from tokenomy.simulation import Simulation
from tokenomy.world import World

SMALL = ["households=150", "firms=6", "banks=2"]
BANKS, CB = accounts.SECTORS.index("banks"), accounts.SECTORS.index("central_bank")

Step = Callable[[World, RoundOutcome, Scenario], None]


def _sim(name: str = "baseline", *overrides: str) -> Simulation:
    return Simulation(load_scenario(name, [*SMALL, *overrides]))


def _flows(world: World, o: RoundOutcome) -> NDArray[np.int64]:
    """The round's transactions-flow matrix, as the metrics and the recorder build it."""
    assert o.opening_balance is not None
    kinds = registry.payment_kinds()
    return accounts.flow_matrix(world, o.postings, kinds, o.opening_balance, o.opening_reserves)[1]


def _assert_sound(world: World, o: RoundOutcome, where: str) -> None:
    """Money has a counterpart; every instrument row and every column of the balance sheet sums
    to zero; every row and column of the flow matrix does."""
    assert accounts.money_without_counterpart(world) == 0, where
    m = accounts.balance_sheet(world)
    assert m[:-1].sum(axis=1).tolist() == [0] * (m.shape[0] - 1), where
    assert m.sum(axis=0).tolist() == [0] * m.shape[1], where
    f = _flows(world, o)
    assert f.sum(axis=1).tolist() == [0] * f.shape[0], where
    assert f.sum(axis=0).tolist() == [0] * f.shape[1], where


def _with(plant: Step, *, before: Step | None = None, after: Step | None = None) -> tuple[Step, ...]:
    """Settlement's ``STEPS`` with ``plant`` inserted just before (or after) one of them, found by
    identity so that a reordering of the other steps does not move it."""
    steps = list(settlement.STEPS)
    anchor = before if before is not None else after
    assert anchor in steps, f"{anchor} is no longer a settlement step"
    steps.insert(steps.index(anchor) + (0 if before is not None else 1), plant)
    return tuple(steps)


def _total(o: RoundOutcome, kind: str, *, payer: int | None = None, payee: int | None = None) -> int:
    """Cents posted under ``kind`` this round (from/to one account if given)."""
    out = 0
    for p in o.postings:
        if p.kind != kind:
            continue
        keep = np.ones(p.amount.size, dtype=bool)
        if payer is not None:
            keep &= p.payer == payer
        if payee is not None:
            keep &= p.payee == payee
        out += int(p.amount[keep].sum())
    return out


def _step_with(sim: Simulation, monkeypatch: pytest.MonkeyPatch, steps: tuple[Step, ...]) -> RoundOutcome:
    with monkeypatch.context() as m:
        m.setattr(settlement, "STEPS", steps)
        return sim.step()


# -- 1. the invariants, every round --------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "overrides"), [("baseline", ()), ("automation_shock", ("roles.central_bank.reserve_remuneration=1",))]
)
def test_every_cent_has_a_counterpart_and_both_matrices_balance_every_round(name: str, overrides: tuple[str]) -> None:
    """30 rounds: money_without_counterpart is 0, balance-sheet instrument rows and columns (the
    central bank's is -money_without_counterpart) and flow-matrix rows and columns sum to zero,
    and the banks' implied reserves add up to the sector's (also with interest on reserves)."""
    sim = _sim(name, *overrides)
    lent = interest = 0
    for r in range(30):
        o = sim.step()
        w = sim.world
        _assert_sound(w, o, f"{name}, round {r}")
        assert accounts.balance_sheet(w)[:, CB].sum() == -accounts.money_without_counterpart(w)
        assert int(accounts.bank_reserves(w).sum()) == accounts.reserves(w), f"{name}, round {r}"
        lent += _total(o, "loan")
        interest += _total(o, "deposit_interest") + _total(o, "reserve_interest")
    assert lent > 0 and interest > 0, "no credit or bank interest: the banks' books went untested"


# -- 2. planted bugs show up -------------------------------------------------------------------------
def test_money_issued_outside_settlement_has_no_counterpart() -> None:
    """100 cents issued to a household by hand: money_without_counterpart is +100, the balance
    sheet's central-bank column sums to -100 and every other column and instrument row to 0."""
    sim = _sim()
    sim.step()
    w = sim.world
    assert accounts.money_without_counterpart(w) == 0
    w.ledger.issue("wage", w.layout.first("household") + 7, 100)
    assert accounts.money_without_counterpart(w) == 100
    m = accounts.balance_sheet(w)
    assert m[:-1].sum(axis=1).tolist() == [0] * (m.shape[0] - 1)
    cols = m.sum(axis=0)
    assert cols[CB] == -100
    assert np.delete(cols, CB).tolist() == [0] * (cols.size - 1)


def test_a_loan_written_off_without_charging_the_bank_leaves_money_without_counterpart() -> None:
    """Cutting a firm's loan by x without charge_loss: money = loans + advances - net worths is
    then short of x on the right, so money_without_counterpart is +x (the central bank's column
    -x); charging the bank the same x restores both to 0."""
    sim = _sim()
    for _ in range(8):
        sim.step()
    w = sim.world
    f = int(np.argmax(w.f_loan))
    x = int(w.f_loan[f]) // 3
    assert x > 0, "no firm borrowed: nothing to write off"
    w.f_loan[f] -= x
    assert accounts.money_without_counterpart(w) == x
    assert accounts.balance_sheet(w)[:, CB].sum() == -x
    accounts.charge_loss(w, w.f_loan_bank[[f]], np.array([x], dtype=np.int64))
    assert accounts.money_without_counterpart(w) == 0
    assert accounts.balance_sheet(w).sum(axis=0).tolist() == [0] * len(accounts.SECTORS)


def test_a_payment_to_a_bank_that_is_not_booked_breaks_the_banks_flow_column(monkeypatch: pytest.MonkeyPatch) -> None:
    """A household pays its bank a fee of x. Posted before ``bank_books`` it is booked into the
    bank's net worth and the books balance; posted after, it is not: the flow matrix's banks
    column sums to +x and the central bank's to -x (rows still balance: it is double entry),
    and money_without_counterpart is -x (money destroyed with no net worth gained)."""
    x = 12_345

    def fee(w: World, o: RoundOutcome, s: Scenario) -> None:
        k = int(np.argmax(w.household_balance()))
        assert w.household_balance()[k] >= x
        w.ledger.transfer("fee", w.layout.first("household") + k, w.layout.first("bank") + int(w.h_bank[k]), x)

    base = _sim()
    base.step()
    booked, unbooked = copy.deepcopy(base), copy.deepcopy(base)

    o = _step_with(booked, monkeypatch, _with(fee, before=settlement.bank_books))
    _assert_sound(booked.world, o, "fee posted before bank_books")
    # against the same round without the fee (posted after every interest flow, it changes no
    # other): the fee is in its bank's net worth to the cent
    plain = copy.deepcopy(base)
    plain.step()
    gained = booked.world.b_equity - plain.world.b_equity
    assert gained.sum() == x and gained.max() == x

    o = _step_with(unbooked, monkeypatch, _with(fee, after=settlement.bank_books))
    w = unbooked.world
    f = _flows(w, o)
    assert f.sum(axis=1).tolist() == [0] * f.shape[0]
    cols = f.sum(axis=0)
    assert cols[BANKS] == x and cols[CB] == -x
    assert np.delete(cols, [BANKS, CB]).tolist() == [0] * (cols.size - 2)
    assert accounts.money_without_counterpart(w) == -x
    assert accounts.balance_sheet(w)[:, CB].sum() == x


# -- 3. partial default ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def indebted() -> Simulation:
    """The baseline after 8 rounds, when some firms carry loans (copied by each use)."""
    sim = _sim()
    for _ in range(8):
        sim.step()
    assert sim.world.f_loan.max() > 0, "no firm borrowed: nothing to default on"
    return sim


class DebtRound:
    """One round from ``indebted`` in which the most indebted firm is left, just before debt
    service, with its interest and half its principal (``serviced``: all it owes plus its
    dividend), the rest of its cash paid to the state; it declares a dividend, the banks none."""

    def __init__(self, base: Simulation, monkeypatch: pytest.MonkeyPatch, *, serviced: bool) -> None:
        sim = copy.deepcopy(base)
        lay = sim.world.layout
        self.f = f = int(np.argmax(sim.world.f_loan))
        self.bank = int(sim.world.f_loan_bank[f])
        self.firm_acct, self.bank_acct = lay.first("firm") + f, lay.first("bank") + self.bank
        amort = bank_config(sim.scenario).amortization
        self.due: dict[str, int] = {}
        self.start: dict[str, NDArray[np.int64]] = {}

        def mark(w: World, o: RoundOutcome, sc: Scenario) -> None:
            self.start["b_equity"], self.start["bank_balance"] = w.b_equity.copy(), w.balance_of("bank").copy()

        def squeeze(w: World, o: RoundOutcome, sc: Scenario) -> None:
            assert o.opening_loans is not None and o.grant is not None
            owed = int(o.opening_loans[f])
            d = self.due
            assert o.opening_loan_rate is not None  # this round's debt service is at the rate planned with
            d["interest"] = int(np.floor(owed * o.opening_loan_rate[f]))
            d["principal"] = int(min(np.ceil(owed * amort), owed))
            d["owed"], d["grant"] = owed, int(o.grant[f])
            fm = o.batch("firm", FirmBatch)
            fm.dividend[f] = max(int(fm.dividend[f]), 10_000)
            d["dividend"] = int(fm.dividend[f])
            o.batch("bank", BankBatch).dividend[:] = 0
            keep = d["interest"] + (d["principal"] + d["dividend"] if serviced else d["principal"] // 2)
            cash = int(w.ledger.spendable(np.array([self.firm_acct]))[0])
            assert cash > keep, "the firm is already short: pick a later round"
            w.ledger.transfer("planted_transfer", self.firm_acct, lay.first("regulator"), cash - keep)

        self.outcome = _step_with(sim, monkeypatch, (mark, *_with(squeeze, before=settlement.debt)))
        self.world = sim.world

    def net_worth_change(self) -> list[int]:
        return [int(x) for x in self.world.b_equity - self.start["b_equity"]]

    def receipts(self) -> NDArray[np.int64]:
        """Each bank's receipts less its payments this round: the change in its ledger balance."""
        out: NDArray[np.int64] = self.world.balance_of("bank") - self.start["bank_balance"]
        return out


def test_partial_default_writes_off_only_the_unpaid_principal(
    indebted: Simulation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A firm left with its interest and half its principal: it pays the interest in full and what
    it has of the principal; only the unpaid principal is written off, exactly that comes off its
    bank's net worth beyond the bank's receipts and payments, the rest of the loan stays owed, a
    ``loan_default`` event names firm and bank, and the firm pays no dividend. The control, the
    same round with the debt serviced, writes off nothing and pays the dividend."""
    r = DebtRound(indebted, monkeypatch, serviced=False)
    w, o, due, lay = r.world, r.outcome, r.due, r.world.layout
    assert o.defaulted is not None and o.interest_paid is not None
    assert np.flatnonzero(o.defaulted).tolist() == [r.f]
    repaid = _total(o, "loan_repayment", payer=r.firm_acct)
    assert due["principal"] >= 2 and repaid == due["principal"] // 2  # all it had after the interest
    assert int(o.interest_paid[r.f]) == due["interest"] == _total(o, "loan_interest", payer=r.firm_acct)
    assert o.written_off == due["principal"] - repaid > 0
    assert w.f_loan[r.f] == due["owed"] + due["grant"] - due["principal"]  # the rest stays owed
    charged = np.zeros_like(r.receipts())
    charged[r.bank] = o.written_off
    assert r.net_worth_change() == (r.receipts() - charged).tolist()
    defaults = [e for e in o.events if e["kind"] == "loan_default"]
    assert [(e["agent"], e["counterparty"], e["amount"]) for e in defaults] == [
        (lay.name_of(r.firm_acct), lay.name_of(r.bank_acct), o.written_off)
    ]
    assert defaults[0]["round"] == o.round
    assert _total(o, "dividend", payer=r.firm_acct) == 0  # declared, but never by a firm in default
    _assert_sound(w, o, "partial default")

    c = DebtRound(indebted, monkeypatch, serviced=True)
    assert c.due == due and c.outcome.defaulted is not None
    assert not c.outcome.defaulted.any() and c.outcome.written_off == 0
    assert not [e for e in c.outcome.events if e["kind"] == "loan_default"]
    assert _total(c.outcome, "loan_repayment", payer=c.firm_acct) == due["principal"]
    assert _total(c.outcome, "dividend", payer=c.firm_acct) > 0
    assert c.net_worth_change() == c.receipts().tolist()
    _assert_sound(c.world, c.outcome, "serviced control")


def test_a_banks_profit_is_net_of_its_loan_losses(indebted: Simulation, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no bank dividend declared, a bank's profit is the round's change in its net worth:
    receipts less payments less the loans it wrote off."""
    r = DebtRound(indebted, monkeypatch, serviced=False)
    assert r.outcome.written_off > 0
    assert r.world.b_profit.tolist() == r.net_worth_change()


# -- 4. bank resolution ----------------------------------------------------------------------------
Seen = dict[str, NDArray[np.int64]]


def _resolve(rule: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Simulation, RoundOutcome, Seen]:
    """A round in which bank 0 lends a firm that banks there three times its net worth and writes
    off two thirds of it (issued into the firm's deposits, charged to the bank: the books stay
    sound), so it ends below zero with a loan book to hold capital against, and is resolved by
    ``rule``; returns the simulation, the outcome and the registers just before ``bank_books``."""
    sim = _sim("baseline", f'roles.bank.resolution="{rule}"')
    for _ in range(3):
        sim.step()
    seen: Seen = {}

    def wreck(w: World, o: RoundOutcome, s: Scenario) -> None:
        f = int(np.flatnonzero(w.f_loan_bank == 0)[0])
        x = int(w.b_equity[0])
        w.ledger.issue("loan", w.layout.first("firm") + f, 3 * x)
        w.f_loan[f] += 3 * x
        w.f_loan[f] -= 2 * x  # ... two thirds of it written off
        accounts.charge_loss(w, np.array([0]), np.array([2 * x], dtype=np.int64))

    def mark(w: World, o: RoundOutcome, s: Scenario) -> None:
        seen["balance"], seen["b_equity"] = w.ledger.balance.copy(), w.b_equity.copy()
        assert o.opening_balance is not None
        seen["opening_banks"] = o.opening_balance[w.layout.accounts("bank")].copy()
        seen["loans"] = np.bincount(w.f_loan_bank, weights=w.f_loan, minlength=w.b_equity.size).astype(np.int64)

    steps = list(_with(wreck, before=settlement.bank_books))
    steps.insert(steps.index(settlement.bank_books), mark)  # wreck, mark, bank_books
    return sim, _step_with(sim, monkeypatch, tuple(steps)), seen


def _need(sim: Simulation, seen: Seen) -> tuple[int, int]:
    """(what bank 0 needs to reach its capital requirement, the requirement), from its net worth
    once the round's flows are booked (its ledger balance's change) and its loans."""
    w = sim.world
    ratio = bank_config(sim.scenario).capital_ratio
    booked = seen["b_equity"][0] + (seen["balance"][w.layout.first("bank")] - seen["opening_banks"][0])
    required = int(np.ceil(ratio * seen["loans"][0]))
    assert booked < 0, "bank 0 did not fall below zero: the resolution went untested"
    assert required > 0
    return required - int(booked), required


def test_a_failed_bank_is_recapitalised_by_the_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """resolution = "state": the bank ends exactly at its capital requirement (capital_ratio times
    its loans), the state paid the difference as a ``recapitalisation``, a ``bank_resolution``
    event says so, no depositor lost a cent, and money still has a counterpart."""
    sim, o, seen = _resolve("state", monkeypatch)
    w, lay = sim.world, sim.world.layout
    need, required = _need(sim, seen)
    assert int(w.b_equity[0]) == required >= 0
    assert w.b_equity[1] >= 0
    state, b0 = lay.first("regulator"), lay.first("bank")
    assert _total(o, "recapitalisation") == _total(o, "recapitalisation", payer=state, payee=b0) == need
    res = [e for e in o.events if e["kind"] == "bank_resolution"]
    assert [(e["agent"], e["counterparty"], e["amount"]) for e in res] == [(lay.name_of(b0), "state", need)]
    depositors = np.concatenate([lay.accounts("household"), lay.accounts("firm")])
    np.testing.assert_array_equal(w.ledger.balance[depositors], seen["balance"][depositors])
    assert _total(o, "bail_in") == 0
    _assert_sound(w, o, "state resolution")
    o = sim.step()  # and the economy goes on with the books sound
    _assert_sound(sim.world, o, "the round after")


def test_a_failed_bank_is_bailed_in_pro_rata_by_its_own_depositors(monkeypatch: pytest.MonkeyPatch) -> None:
    """resolution = "bail_in": the bank's depositors (households with h_bank 0, firms with
    f_loan_bank 0) lose deposits pro rata to their balances (to the cent), depositors at the
    other bank lose nothing, the bank ends at its capital requirement, the state pays nothing,
    and money still has a counterpart."""
    sim, o, seen = _resolve("bail_in", monkeypatch)
    w, lay = sim.world, sim.world.layout
    need, required = _need(sim, seen)
    hh, firms = lay.accounts("household"), lay.accounts("firm")
    mine = np.concatenate([hh[w.h_bank == 0], firms[w.f_loan_bank == 0]])
    others = np.concatenate([hh[w.h_bank != 0], firms[w.f_loan_bank != 0]])
    lost = seen["balance"] - w.ledger.balance
    bal = seen["balance"][mine].astype(np.float64)
    assert need < bal.sum(), "the depositors could not cover it: the state's share went untested"
    assert lost[mine].sum() == need
    assert np.abs(lost[mine] - need * bal / bal.sum()).max() < 1.0  # pro rata, integer rounding aside
    assert (lost[mine] > 0).sum() > 10
    assert lost[others].tolist() == [0] * others.size
    assert int(w.b_equity[0]) == required
    res = [e for e in o.events if e["kind"] == "bank_resolution"]
    b0 = lay.name_of(lay.first("bank"))
    assert [(e["agent"], e["counterparty"], e["amount"]) for e in res] == [(b0, "depositors", need)]
    assert _total(o, "recapitalisation") == 0
    _assert_sound(w, o, "bail-in")
    o = sim.step()
    _assert_sound(sim.world, o, "the round after")


# -- 5. money-financed spending ---------------------------------------------------------------------
UBI = ("roles.regulator.ubi=1000", 'roles.regulator.ubi_financing="money"')


@pytest.mark.parametrize(
    ("overrides", "rounds"),
    [(UBI, 12), (("roles.regulator.income_tax=0.3",), 60)],
    ids=["money_financed_ubi", "deficits_and_surpluses"],
)
def test_central_bank_advances_are_the_change_in_the_states_debt_round_by_round(
    overrides: tuple[str, ...], rounds: int
) -> None:
    """Each round the ``cb_advance`` postings equal the increase of ``World.cb_advances`` plus the
    ``cb_repayment`` postings; with a large money-financed UBI every household gets it and the
    state borrows; with a higher income tax than the baseline's its later surpluses repay (both
    flows are exercised; at the baseline's 0.2 the small economy's state borrows for 60 rounds)."""
    sim = _sim("baseline", *overrides)
    advanced = repaid = 0
    for r in range(rounds):
        debt = sim.world.cb_advances
        o = sim.step()
        adv, rep = _total(o, "cb_advance"), _total(o, "cb_repayment")
        assert adv - rep == sim.world.cb_advances - debt, f"round {r}"
        assert accounts.money_without_counterpart(sim.world) == 0, f"round {r}"
        if overrides == UBI:
            assert o.ubi is not None and o.ubi.tolist() == [100_000] * sim.world.n_households, f"round {r}"
        advanced, repaid = advanced + adv, repaid + rep
    assert advanced > 0, "the state never borrowed: the test went untested"
    assert repaid > 0 or overrides == UBI, "the state never repaid: the test went untested"


# -- 6. snapshots ----------------------------------------------------------------------------------
def test_a_snapshot_keeps_the_registers_and_the_future() -> None:
    """World.from_bytes(world.to_bytes()) restores the net-worth registers, the state's debt, the
    issuer mask and the money supply exactly, and 5 more rounds from it give identical metrics."""
    sim = _sim("automation_shock", "roles.central_bank.reserve_remuneration=1")
    for _ in range(6):
        sim.step()
    w = sim.world
    assert w.cb_equity != 0, "the central bank's net worth never moved: the test went untested"
    back = World.from_bytes(w.to_bytes())
    assert back.b_equity.dtype == np.int64 and back.b_equity.tolist() == w.b_equity.tolist()
    assert type(back.cb_advances) is int and back.cb_advances == w.cb_advances
    assert type(back.cb_equity) is int and back.cb_equity == w.cb_equity
    assert back.ledger.issuer is not None and w.ledger.issuer is not None
    assert back.ledger.issuer.tolist() == w.ledger.issuer.tolist() and back.ledger.issuer.any()
    assert back.ledger.money_supply == w.ledger.money_supply
    assert accounts.money_without_counterpart(back) == 0
    restored = Simulation(sim.scenario, world=back)
    rows: tuple[list[dict[str, object]], list[dict[str, object]]] = ([], [])
    for _ in range(5):
        for s, out in ((sim, rows[0]), (restored, rows[1])):
            o = s.step()
            assert s.view is not None
            out.append(metrics.round_metrics(s.world, s.view, o, s.scenario))
    pd.testing.assert_frame_equal(pd.DataFrame(rows[0]), pd.DataFrame(rows[1]), check_exact=True)
    assert restored.world.b_equity.tolist() == sim.world.b_equity.tolist()
    assert restored.world.cb_advances == sim.world.cb_advances and restored.world.cb_equity == sim.world.cb_equity


def test_the_state_is_advanced_its_purchases_fees_too() -> None:
    """A bank-transfer fee is paid on top of what the state buys: the central bank's advance
    covers both (before, a 20% fee made the state short of its own purchases and the round failed
    with InsufficientFunds)."""
    sim = _sim("baseline", "rails.bank_transfer_fee=0.2")
    for r in range(15):
        o = sim.step()
        _assert_sound(sim.world, o, f"round {r}")
    assert sim.world.cb_advances > 0
