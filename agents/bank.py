"""Banks: take deposits, pay deposit interest, lend to firms against a rule, charge interest.

Households' and firms' deposits are their ledger balances, owed by the bank ``h_bank`` (or
``f_loan_bank``) names. A bank holds no money of its own: a loan *creates* money (issued into the
borrower's account) and its repayment *destroys* it; what a bank is paid extinguishes deposits and
what it pays creates them. Its own funds are its net worth, ``World.b_equity``, booked from those
flows and charged with its loan losses (``tokenomy.accounts``).

Rule-based lending: a firm may borrow up to ``max_leverage`` times the value of its capital, at
``loan_rate + loan_spread * leverage``; with ``credit_rule = "expected_return"`` only the part of
its request the bank expects to be repaid (Caiani et al. 2016: a default probability from its cash
flow over the debt service, a recovery from its capital). A bank pays its deposit rate, but never more than its loans
earn per deposit (reserves earn nothing by default, so a bank with more deposits than loans pays
less on them); it lends while its net worth stays above ``capital_ratio`` of its loans (a
capital-adequacy ratio, Basel-style), rationing requests pro rata when they exceed what it may
lend, and pays ``payout_ratio`` of last round's profit as dividends (Caiani et al. 2016), never
more than its net worth above that requirement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from tokenomy import accounts
from tokenomy.agents.base import Batch, DecisionModel, ExampleAnswer, MarketView, expect, note
from tokenomy.market.clearing import pro_rata
from tokenomy.scenario import Bank, Scenario
from tokenomy.world import World

__all__ = [
    "BankBatch",
    "BankDecision",
    "BankObservation",
    "Banks",
    "config",
    "default_probability",
    "expected_return",
    "expected_to_pay",
    "grant_loans",
    "loan_yield_per_deposit",
    "rates",
]


def config(scenario: Scenario) -> Bank:
    """The ``[roles.bank]`` section."""
    return scenario.roles.get("bank", Bank)


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

    def merge(self, world: World, i: int, decision: BaseModel, scenario: Scenario) -> None:
        d = expect(decision, BankDecision)
        self.deposit_rate[i] = d.deposit_rate
        self.loan_rate[i] = d.loan_rate
        self.dividend[i] = round(d.dividend * 100)

    def validated(self, world: World, scenario: Scenario) -> BankBatch:
        notes = self.notes
        dr = np.clip(np.nan_to_num(self.deposit_rate), 0.0, 0.1)
        lr = np.clip(np.nan_to_num(self.loan_rate), 0.0, 0.5)
        note(notes, (dr != self.deposit_rate) | (lr != self.loan_rate), "rates clipped to range")
        div = np.clip(self.dividend, 0, _free_equity(world, scenario))
        note(notes, div < self.dividend, "dividend clipped to net worth above the capital requirement")
        return BankBatch(dr, lr, div, notes)


def _free_equity(world: World, scenario: Scenario) -> NDArray[np.int64]:
    """Net worth above the capital requirement on the loan book: what a bank may pay out, cents."""
    required = np.ceil(config(scenario).capital_ratio * accounts.bank_loans(world))
    free: NDArray[np.int64] = np.maximum(world.b_equity - required, 0).astype(np.int64)
    return free


class Banks:
    decision_model = BankDecision
    share_decision = None
    example_answers: Mapping[str, ExampleAnswer] = {}  # set below

    def observe(self, world: World, view: MarketView, i: int) -> BankObservation:
        return BankObservation(
            round=view.round,
            own_funds=float(world.b_equity[i]) / 100,
            deposits=float(accounts.bank_deposits(world)[i]) / 100,
            loans=float(accounts.bank_loans(world)[i]) / 100,
            depositors=int((world.h_bank == i).sum()),
            borrowers=int(((world.f_loan_bank == i) & (world.f_loan > 0)).sum()),
            price_index=view.price_index / 100,
            unemployment_rate=view.unemployment,
        )

    def heuristic(self, world: World, view: MarketView, scenario: Scenario, rng: np.random.Generator) -> BankBatch:
        p = config(scenario)
        b = world.layout.count("bank")
        deposit_rate, loan_rate = rates(world.policy_rate, p)
        div = np.minimum(np.floor(p.payout_ratio * np.maximum(world.b_profit, 0)), _free_equity(world, scenario))
        notes = np.full(b, "", dtype=object)
        paid = np.minimum(deposit_rate, loan_yield_per_deposit(world))
        return BankBatch(paid, np.full(b, loan_rate), div.astype(np.int64), notes)


def loan_yield_per_deposit(world: World) -> NDArray[np.float64]:
    """Per bank, the interest its loans earn this round per unit of its deposits: the most it can
    pay on deposits without losing money on them. A bank whose deposits far exceed its loans
    (money created by the state's deficits rather than by lending) pays less, as banks do; paying
    the policy rate on every deposit instead needs interest on reserves, which the central bank
    pays with new money, and that fed inflation back into the rate (measured)."""
    earned = np.bincount(
        world.f_loan_bank, weights=world.f_loan * world.f_loan_rate, minlength=world.layout.count("bank")
    )
    out: NDArray[np.float64] = earned / np.maximum(accounts.bank_deposits(world).astype(np.float64), 1.0)
    return out


def rates(policy_rate: float, p: Bank) -> tuple[float, float]:
    """(deposit rate, base loan rate) per round: the annual policy rate over 12 (a round is a month),
    less a markdown and plus a markup (``rates = "policy"``), or the scenario's fixed rates."""
    if p.rates == "fixed":
        return p.deposit_rate, p.loan_rate
    monthly = policy_rate / 12
    return max(monthly - p.deposit_markdown, 0.0), monthly + p.loan_markup


_STEPS = np.linspace(1.0, 0.0, 101)[:-1]  # expected_return: a request is cut in steps of 1% of it


def default_probability(
    cash_flow: NDArray[np.float64], debt_service: NDArray[np.float64], sensitivity: float
) -> NDArray[np.float64]:
    """Caiani et al. (2016), eq. 3.13: ``1 / (1 + exp((OCF - s * ds) / ds))``, with ``OCF`` the
    firm's operating cash flow last round and ``ds`` the debt service the new loan adds, both per
    round (so the ratio, and ``s``, carry over from their quarters; the probability is per round)."""
    ratio = cash_flow / np.maximum(debt_service, 1e-9)
    out: NDArray[np.float64] = 1.0 / (1.0 + np.exp(np.clip(ratio - sensitivity, -50.0, 50.0)))
    return out


def expected_return(
    prob: NDArray[np.float64], recovery: NDArray[np.float64], rate: NDArray[np.float64], amortization: float
) -> NDArray[np.float64]:
    """Expected return per cent lent over the loan's life (``1 / amortization`` rounds, what is
    left then counted at par), defaulting each round with ``prob`` and recovering ``recovery`` of
    what is outstanding: the test Caiani et al.'s banks apply, for our loans' schedule (interest
    and ``amortization`` of the principal each round). Closed form of the geometric sums."""
    a = max(amortization, 1e-6)
    horizon = int(np.ceil(1.0 / a))
    q = (1.0 - prob) * (1.0 - a)
    q_t = q**horizon
    annuity = np.where(q < 1.0, (1.0 - q_t) / np.maximum(1.0 - q, 1e-12), float(horizon))
    out: NDArray[np.float64] = annuity * ((1.0 - prob) * (rate + a) + prob * recovery) + q_t - 1.0
    return out


def _loan_rate(
    base: NDArray[np.float64], p: Bank, loan: NDArray[np.float64], cap_value: NDArray[np.float64]
) -> NDArray[np.float64]:
    """The base rate plus ``loan_spread`` per unit of the borrower's leverage (capped at 10)."""
    out: NDArray[np.float64] = base + p.loan_spread * np.minimum(loan / np.maximum(cap_value, 1.0), 10.0)
    return out


def expected_to_pay(
    world: World, want: NDArray[np.int64], base_rate: NDArray[np.float64], p: Bank
) -> NDArray[np.int64]:
    """``credit_rule = "expected_return"`` (Caiani et al. 2016): the largest share of each request,
    in 1% steps, whose expected return is not negative. A firm whose cash flow barely covers the
    debt service gets little or nothing unless its capital would cover the loss: a loss-making
    firm cannot borrow to carry on."""
    cap_value = world.f_capital * world.capital_price * world.price_index
    L = want[:, None] * _STEPS[None, :]
    rate = _loan_rate(base_rate[:, None], p, world.f_loan[:, None] + L, cap_value[:, None])
    prob = default_probability(world.f_cash_flow[:, None], (rate + p.amortization) * L, p.default_sensitivity)
    recovery = np.minimum(1.0, p.recovery_haircut * cap_value[:, None] / np.maximum(world.f_loan[:, None] + L, 1.0))
    ok = expected_return(prob, recovery, rate, p.amortization) >= 0.0
    first = np.where(ok.any(axis=1), ok.argmax(axis=1), _STEPS.size)  # steps run from the whole request down
    share = np.append(_STEPS, 0.0)[first]
    out: NDArray[np.int64] = np.floor(want * share).astype(np.int64)
    return out


def grant_loans(world: World, request: NDArray[np.int64], banks: BankBatch, scenario: Scenario) -> NDArray[np.int64]:
    """How much each firm's bank lends it this round (cents); also sets the firm's loan rate."""
    p = config(scenario)
    cap_value = world.f_capital * world.capital_price * world.price_index
    headroom = np.maximum(np.floor(p.max_leverage * cap_value) - world.f_loan, 0).astype(np.int64)
    want = np.minimum(np.maximum(request, 0), headroom)
    if p.credit_rule == "expected_return":
        want = expected_to_pay(world, want, banks.loan_rate[world.f_loan_bank], p)
    own = world.b_equity - banks.dividend
    capacity = np.maximum(np.floor(own / p.capital_ratio) - accounts.bank_loans(world), 0).astype(np.int64)
    grant = np.zeros_like(want)
    for b in range(world.layout.count("bank")):  # a handful of banks: the loop is over banks, not firms
        mine = world.f_loan_bank == b
        total = int(want[mine].sum())
        grant[mine] = want[mine] if total <= capacity[b] else pro_rata(int(capacity[b]), want[mine])
    lent = (world.f_loan + grant).astype(np.float64)
    world.f_loan_rate = _loan_rate(banks.loan_rate[world.f_loan_bank], p, lent, cap_value)
    return grant


def example_answer(obs: dict[str, Any], persona: str) -> dict[str, Any]:
    """What the fake OpenAI-compatible server (tokenomy.testing) answers for a bank."""
    return {"deposit_rate": 0.001, "loan_rate": 0.005, "dividend": 0.0, "rationale": "fake rule-based policy"}


Banks.example_answers = {"BankDecision": (example_answer, {"deposit_rate": 5.0})}
