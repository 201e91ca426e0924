"""Settlement: every money movement of a round, posted through the ledger.

Each function takes what clearing decided and posts it as transfers (or, for loans and
money-financed UBI, as explicit issuance and destruction). Income taxes are withheld at source:
the payer sends the net to the recipient and the tax to the state, so no household is ever
debited for tax. The functions return per-household income so the engine can record it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from tokenomy.market import rails
from tokenomy.market.ledger import Ledger
from tokenomy.market.rails import Rail
from tokenomy.world import World

__all__ = ["pay_deposit_interest", "pay_dividends", "pay_ubi", "pay_withholding", "service_debt"]


def pay_withholding(
    ledger: Ledger,
    kind: str,
    payer: NDArray[np.int64],
    payee: NDArray[np.int64],
    gross: NDArray[np.int64],
    tax_rate: float,
    state: int,
) -> NDArray[np.int64]:
    """Pay ``gross`` from payer to payee, withholding ``tax_rate`` for the state. Returns the tax."""
    tax = np.floor(gross * tax_rate).astype(np.int64)
    net = gross - tax
    ledger.require_funds(kind, np.concatenate([payer, payer]), np.concatenate([net, tax]))
    ledger.transfer(kind, payer, payee, net)
    if tax.any():
        payers, idx = np.unique(payer, return_inverse=True)
        ledger.transfer("income_tax", payers, state, np.bincount(idx, weights=tax).astype(np.int64))
    return tax


def pay_dividends(world: World, dividend: NDArray[np.int64]) -> NDArray[np.int64]:
    """Issuer ``j`` pays ``dividend[j]`` cents pro rata to its token holders; returns gross per household.

    Each holder's share is floored to the cent; the rounding remainder stays with the issuer.
    """
    H = world.holdings
    n = world.n_households
    out = np.zeros(n, dtype=np.int64)
    d = np.where(world.t_outstanding > 0, dividend / np.maximum(world.t_outstanding, 1), 0.0)
    pay_tok = np.flatnonzero(d > 0)
    if pay_tok.size == 0:
        return out
    sub = H[:, pay_tok]
    rows, cols = np.nonzero(sub)
    gross = np.floor(sub[rows, cols] * d[pay_tok][cols]).astype(np.int64)
    issuer = world.layout.issuer_accounts()[pay_tok][cols]
    pay_withholding(
        world.ledger, "dividend", issuer, rows.astype(np.int64), gross, world.income_tax, world.layout.state
    )
    np.add.at(out, rows, gross)
    return out


def pay_deposit_interest(world: World, rate: NDArray[np.float64], balance: NDArray[np.int64]) -> NDArray[np.int64]:
    """Each bank pays its depositors ``rate`` on their opening balance, pro rata if it is short."""
    bank = world.h_bank
    due = np.floor(balance * rate[bank]).astype(np.int64)
    banks = world.layout.bank_accounts()
    total_due = np.bincount(bank, weights=due, minlength=banks.size)
    can = world.ledger.spendable(banks).astype(np.float64)
    scale = np.where(total_due > can, can / np.maximum(total_due, 1.0), 1.0)
    gross = np.floor(due * scale[bank]).astype(np.int64)
    payee = np.flatnonzero(gross)
    pay_withholding(
        world.ledger,
        "deposit_interest",
        banks[bank[payee]],
        payee.astype(np.int64),
        gross[payee],
        world.income_tax,
        world.layout.state,
    )
    return gross


def service_debt(world: World, interest: NDArray[np.int64], repay: NDArray[np.int64]) -> NDArray[np.int64]:
    """Firms pay loan interest to their bank and repay principal (destroyed).

    A firm that cannot pay in full pays what it can, interest first, and the rest of its loan is
    written off: the bank loses the asset, no money moves. Returns the principal written off.
    """
    ledger, lay = world.ledger, world.layout
    firms = lay.firm_accounts()
    cash = ledger.spendable(firms)
    pay_int = np.minimum(interest, cash)
    pay_rep = np.minimum(repay, cash - pay_int)
    ledger.transfer("loan_interest", firms, lay.bank_accounts()[world.f_loan_bank], pay_int)
    ledger.destroy("loan_repayment", firms, pay_rep)
    world.f_loan = world.f_loan - pay_rep
    default = (pay_int < interest) | (pay_rep < repay)
    written_off = np.where(default, world.f_loan, 0)
    world.f_loan = np.where(default, 0, world.f_loan)
    return written_off


def pay_ubi(world: World, ubi_cents: int) -> NDArray[np.int64]:
    """UBI to every household: issued (money-financed) or paid from the state's balance, pro rata if short."""
    n = world.n_households
    if ubi_cents <= 0:
        return np.zeros(n, dtype=np.int64)
    if world.ubi_money_financed:
        amount = np.full(n, ubi_cents, dtype=np.int64)
        world.ledger.issue("ubi", np.arange(n), amount)
        return amount
    can = int(world.ledger.spendable(np.array([world.layout.state]))[0])
    each = min(ubi_cents, can // n)
    amount = np.full(n, each, dtype=np.int64)
    world.ledger.transfer("ubi", world.layout.state, np.arange(n), amount)
    return amount


def pay_goods(
    world: World,
    kind: str,
    buyer: NDArray[np.int64],
    seller: NDArray[np.int64],
    amount: NDArray[np.int64],
    rail: NDArray[np.int64],
    bank_of_buyer: NDArray[np.int64],
) -> NDArray[np.int64]:
    """Buyers pay sellers over their rail; fees go to the rail's operator. Returns the fees."""
    lay = world.layout
    operator = np.select(
        [rail == Rail.CARD, rail == Rail.CHAIN], [lay.card_network, lay.chain_operator], lay.bank0 + bank_of_buyer
    )
    return rails.pay(world.ledger, kind, buyer, seller, amount, rail, world.rail_fees(), operator)
