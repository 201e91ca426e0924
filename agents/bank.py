"""Banks: take deposits, pay deposit interest, lend to firms against a rule, charge interest.

Households' deposits are their ledger balances, held at the bank ``h_bank`` names; a bank's own
balance is its own funds. A loan *creates* money (issued into the borrower's account) and its
repayment *destroys* it, which is where the ledger's ``issued`` and ``destroyed`` come from.

Rule-based lending: a firm may borrow up to ``max_leverage`` times the value of its capital, at
``loan_rate + loan_spread * leverage``; a bank lends while its own funds stay above
``capital_ratio`` of its loans, rationing requests pro rata when they exceed what it may lend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from tokenomy.agents.base import Batch, DecisionModel, MarketView, note
from tokenomy.market.clearing import pro_rata
from tokenomy.scenario import Scenario
from tokenomy.world import World

__all__ = ["BankBatch", "BankDecision", "BankObservation", "Banks", "grant_loans"]


class BankObservation(BaseModel):
    round: int
    own_funds: float
    deposits: float
    loans: float
    depositors: int
    borrowers: int
    price_index: float
    unemployment_rate: float


class BankDecision(DecisionModel):
    deposit_rate: float = Field(ge=0, le=0.1, description="interest per round on deposits")
    loan_rate: float = Field(ge=0, le=0.5, description="base loan rate per round")
    dividend: float = Field(0.0, ge=0, le=1e12)


@dataclass
class BankBatch(Batch):
    money: ClassVar[tuple[str, ...]] = ("dividend",)
    deposit_rate: NDArray[np.float64]
    loan_rate: NDArray[np.float64]
    dividend: NDArray[np.int64]
    notes: NDArray[np.object_]


def _bank_loans(world: World) -> NDArray[np.int64]:
    return np.bincount(world.f_loan_bank, weights=world.f_loan, minlength=world.layout.banks).astype(np.int64)


def _deposits(world: World) -> NDArray[np.int64]:
    return np.bincount(world.h_bank, weights=world.household_balance(), minlength=world.layout.banks).astype(np.int64)


class Banks:
    name = "bank"
    decision_model = BankDecision

    def agent_name(self, world: World, i: int) -> str:
        return world.layout.name_of(world.layout.bank0 + i)

    def merge(self, world: World, batch: BankBatch, i: int, d: BankDecision, scenario: Scenario) -> None:
        batch.deposit_rate[i] = d.deposit_rate
        batch.loan_rate[i] = d.loan_rate
        batch.dividend[i] = round(d.dividend * 100)

    def observe(self, world: World, view: MarketView, i: int) -> BankObservation:
        return BankObservation(
            round=view.round,
            own_funds=float(world.ledger.balance[world.layout.bank0 + i]) / 100,
            deposits=float(_deposits(world)[i]) / 100,
            loans=float(_bank_loans(world)[i]) / 100,
            depositors=int((world.h_bank == i).sum()),
            borrowers=int(((world.f_loan_bank == i) & (world.f_loan > 0)).sum()),
            price_index=view.price_index / 100,
            unemployment_rate=view.unemployment,
        )

    def heuristic(self, world: World, view: MarketView, scenario: Scenario, rng: np.random.Generator) -> BankBatch:
        p = scenario.roles.bank
        b = world.layout.banks
        own = world.ledger.balance[world.layout.bank_accounts()].astype(np.float64)
        interest_due = p.deposit_rate * _deposits(world)
        keep = p.capital_ratio * _bank_loans(world) + interest_due
        div = np.floor(p.payout_ratio * np.maximum(own - keep, 0.0)).astype(np.int64)
        return BankBatch(np.full(b, p.deposit_rate), np.full(b, p.loan_rate), div, np.full(b, "", dtype=object))

    def validate(self, world: World, batch: BankBatch, scenario: Scenario) -> BankBatch:
        notes = batch.notes
        dr = np.clip(np.nan_to_num(batch.deposit_rate), 0.0, 0.1)
        lr = np.clip(np.nan_to_num(batch.loan_rate), 0.0, 0.5)
        note(notes, (dr != batch.deposit_rate) | (lr != batch.loan_rate), "rates clipped to range")
        own = world.ledger.balance[world.layout.bank_accounts()]
        div = np.clip(batch.dividend, 0, own)
        note(notes, div < batch.dividend, "dividend clipped to own funds")
        return BankBatch(dr, lr, div, notes)


def grant_loans(world: World, request: NDArray[np.int64], banks: BankBatch, scenario: Scenario) -> NDArray[np.int64]:
    """How much each firm's bank lends it this round (cents); also sets the firm's loan rate."""
    p = scenario.roles.bank
    cap_value = world.f_capital * world.capital_price * world.price_index
    headroom = np.maximum(np.floor(p.max_leverage * cap_value) - world.f_loan, 0).astype(np.int64)
    want = np.minimum(np.maximum(request, 0), headroom)
    own = world.ledger.balance[world.layout.bank_accounts()] - banks.dividend
    capacity = np.maximum(np.floor(own / p.capital_ratio) - _bank_loans(world), 0).astype(np.int64)
    grant = np.zeros_like(want)
    for b in range(world.layout.banks):  # a handful of banks: the loop is over banks, not firms
        mine = world.f_loan_bank == b
        total = int(want[mine].sum())
        grant[mine] = want[mine] if total <= capacity[b] else pro_rata(int(capacity[b]), want[mine])
    leverage = (world.f_loan + grant) / np.maximum(cap_value, 1.0)
    world.f_loan_rate = banks.loan_rate[world.f_loan_bank] + p.loan_spread * np.minimum(leverage, 10.0)
    return grant
