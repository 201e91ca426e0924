"""Settlement: every money movement of a round, posted through the ledger, as named steps.

``STEPS`` is the order payments are made in; each step takes the world, the round's outcome
(what clearing decided) and the scenario, posts transfers (or, for loans and money-financed UBI,
explicit issuance and destruction), and notes income in the outcome. Income taxes are withheld
at source: the payer sends the net to the recipient and the tax to the state, so no household is
ever debited for tax. :func:`settle` runs the steps and closes the round's books.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from tokenomy import registry
from tokenomy.agents.bank import BankBatch
from tokenomy.agents.firm import FirmBatch, debt_service, robot_tax_due
from tokenomy.agents.firm import config as firm_config
from tokenomy.agents.household import HouseholdBatch
from tokenomy.agents.network import NetworkBatch
from tokenomy.market import rails
from tokenomy.market.ledger import Ledger
from tokenomy.market.rails import Rail
from tokenomy.outcome import RoundOutcome
from tokenomy.scenario import Scenario
from tokenomy.world import World

__all__ = [
    "STEPS",
    "pay_deposit_interest",
    "pay_dividends",
    "pay_over_rails",
    "pay_ubi",
    "pay_withholding",
    "service_debt",
    "settle",
]

Step = Callable[[World, RoundOutcome, Scenario], None]


# -- postings -------------------------------------------------------------------------------------
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
    tax: NDArray[np.int64] = np.floor(gross * tax_rate).astype(np.int64)
    net = gross - tax
    ledger.require_funds(kind, np.concatenate([payer, payer]), np.concatenate([net, tax]))
    ledger.transfer(kind, payer, payee, net)
    if tax.any():
        payers, idx = np.unique(payer, return_inverse=True)
        ledger.transfer("income_tax", payers, state, np.bincount(idx, weights=tax).astype(np.int64))
    return tax


def pay_dividends(world: World, dividend: NDArray[np.int64]) -> NDArray[np.int64]:
    """Token ``j``'s issuer pays ``dividend[j]`` cents pro rata to its holders; returns gross per holdings row.

    Each holder's share is floored to the cent; the rounding remainder stays with the issuer.
    """
    H = world.holdings
    out = np.zeros(H.shape[0], dtype=np.int64)
    d = np.where(world.t_outstanding > 0, dividend / np.maximum(world.t_outstanding, 1), 0.0)
    pay_tok = np.flatnonzero(d > 0)
    if pay_tok.size == 0:
        return out
    sub = H[:, pay_tok]
    rows, cols = np.nonzero(sub)
    gross = np.floor(sub[rows, cols] * d[pay_tok][cols]).astype(np.int64)
    issuer = world.t_issuer[pay_tok][cols]
    state = world.layout.first("regulator")
    pay_withholding(world.ledger, "dividend", issuer, world.holder_accounts[rows], gross, world.income_tax, state)
    np.add.at(out, rows, gross)
    return out


def pay_deposit_interest(world: World, rate: NDArray[np.float64], balance: NDArray[np.int64]) -> NDArray[np.int64]:
    """Each bank pays its depositors ``rate`` on their opening balance, pro rata if it is short."""
    bank = world.h_bank
    due = np.floor(balance * rate[bank]).astype(np.int64)
    banks = world.layout.accounts("bank")
    total_due = np.bincount(bank, weights=due, minlength=banks.size)
    can = world.ledger.spendable(banks).astype(np.float64)
    scale = np.where(total_due > can, can / np.maximum(total_due, 1.0), 1.0)
    gross = np.floor(due * scale[bank]).astype(np.int64)
    payee = np.flatnonzero(gross)
    pay_withholding(
        world.ledger,
        "deposit_interest",
        banks[bank[payee]],
        world.layout.first("household") + payee.astype(np.int64),
        gross[payee],
        world.income_tax,
        world.layout.first("regulator"),
    )
    return gross


def service_debt(world: World, interest: NDArray[np.int64], repay: NDArray[np.int64]) -> NDArray[np.int64]:
    """Firms pay loan interest to their bank and repay principal (destroyed).

    A firm that cannot pay in full pays what it can, interest first, and the rest of its loan is
    written off: the bank loses the asset, no money moves. Returns the principal written off.
    """
    ledger, lay = world.ledger, world.layout
    firms = lay.accounts("firm")
    cash = ledger.spendable(firms)
    pay_int = np.minimum(interest, cash)
    pay_rep = np.minimum(repay, cash - pay_int)
    ledger.transfer("loan_interest", firms, lay.accounts("bank")[world.f_loan_bank], pay_int)
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
    households = world.layout.accounts("household")
    if world.ubi_money_financed:
        amount = np.full(n, ubi_cents, dtype=np.int64)
        world.ledger.issue("ubi", households, amount)
        return amount
    state = world.layout.first("regulator")
    can = int(world.ledger.spendable(np.array([state]))[0])
    each = min(ubi_cents, can // n)
    amount = np.full(n, each, dtype=np.int64)
    world.ledger.transfer("ubi", state, households, amount)
    return amount


def pay_over_rails(
    world: World,
    kind: str,
    payer: NDArray[np.int64],
    payee: NDArray[np.int64],
    amount: NDArray[np.int64],
    rail: NDArray[np.int64],
    bank_of_payer: NDArray[np.int64],
) -> NDArray[np.int64]:
    """Payers pay payees over their rail (goods or tokens); each fee goes to the rail's operator
    (a bank transfer's to the payer's bank). Returns the fees."""
    lay = world.layout
    card, chain = lay.first("network"), lay.first("network") + 1  # agents.network.OPERATORS order
    operator = np.select([rail == Rail.CARD, rail == Rail.CHAIN], [card, chain], lay.first("bank") + bank_of_payer)
    return rails.pay(world.ledger, kind, payer, payee, amount, rail, world.rail_fees(), operator)


# -- the steps of a round's settlement ------------------------------------------------------------
def debt_and_credit(w: World, o: RoundOutcome, s: Scenario) -> None:
    """Debt service and robot tax first (reserved in ``fit_to_funds``), then new loans (issued)."""
    firms = w.layout.accounts("firm")
    due = debt_service(w, s)
    interest = np.floor(w.f_loan * w.f_loan_rate).astype(np.int64)
    o.written_off = int(service_debt(w, interest, due - interest).sum())
    w.ledger.transfer("robot_tax", firms, w.layout.first("regulator"), robot_tax_due(w, s))
    assert o.grant is not None, "clear before settle"
    w.ledger.issue("loan", firms, o.grant)
    w.f_loan = w.f_loan + o.grant


def wages(w: World, o: RoundOutcome, s: Scenario) -> None:
    """Every employed household is paid its firm's wage, income tax withheld for the state."""
    emp = np.flatnonzero(w.h_employer >= 0)
    gross = np.floor(w.f_wage[w.h_employer[emp]]).astype(np.int64)
    payer = w.layout.accounts("firm")[w.h_employer[emp]]
    payee = w.layout.first("household") + emp.astype(np.int64)
    pay_withholding(w.ledger, "wage", payer, payee, gross, w.income_tax, w.layout.first("regulator"))
    o.wages = np.zeros(w.n_households, dtype=np.int64)
    o.wages[emp] = gross


def purchases(w: World, o: RoundOutcome, s: Scenario) -> None:
    """Goods bought in ``clear``: households over their rail, firms and the state by bank transfer."""
    hh = o.batch("household", HouseholdBatch)
    p = o.purchases
    assert p is not None, "clear before settle"
    lay = w.layout
    n, m = w.n_households, w.n_firms
    # buyer ids of the goods market: households 0..n, firms n..n+m, the state n+m
    is_hh, is_firm = p.buyer < n, (p.buyer >= n) & (p.buyer < n + m)
    buyer = np.where(
        is_hh,
        lay.first("household") + p.buyer,
        np.where(is_firm, lay.first("firm") + p.buyer - n, lay.first("regulator")),
    )
    rail = np.where(is_hh, hh.rail[np.minimum(p.buyer, n - 1)], int(Rail.BANK_TRANSFER)).astype(np.int64)
    bank = np.where(
        is_hh,
        w.h_bank[np.minimum(p.buyer, n - 1)],
        np.where(is_firm, w.f_loan_bank[np.clip(p.buyer - n, 0, m - 1)], 0),
    )
    seller = lay.accounts("firm")[p.seller]
    for kind, mask in (("consumption", is_hh), ("investment", is_firm), ("government", ~is_hh & ~is_firm)):
        pay_over_rails(w, kind, buyer[mask], seller[mask], p.amount[mask], rail[mask], bank[mask])
    w.h_spent = np.bincount(p.buyer[is_hh], weights=p.amount[is_hh], minlength=n).astype(np.int64)


def token_trades(w: World, o: RoundOutcome, s: Scenario) -> None:
    """Buyers pay sellers (an issuer sells newly minted tokens); then the holdings move."""
    if not o.trade_legs:
        return
    tok, buyer, seller, shares, amount = o.trade_legs
    bt = np.full(buyer.size, int(Rail.BANK_TRANSFER))
    buyer_bank = w.h_bank[buyer - w.layout.first("household")]
    pay_over_rails(w, "token_trade", buyer, seller, amount, bt, buyer_bank)
    np.add.at(w.holdings, (w.row_of(buyer), tok), shares)
    new = seller == w.t_issuer[tok]  # the issuer sells new tokens; anyone else sells holdings
    np.subtract.at(w.holdings, (w.row_of(seller[~new]), tok[~new]), shares[~new])
    np.add.at(w.t_outstanding, tok[new], shares[new])


def capital_income_and_transfers(w: World, o: RoundOutcome, s: Scenario) -> None:
    """Dividends of every issuer, deposit interest on opening balances, UBI."""
    fm, bk = o.batch("firm", FirmBatch), o.batch("bank", BankBatch)
    nw = o.batch("network", NetworkBatch)
    assert o.opening_deposits is not None
    declared = {"firm": fm.dividend, "bank": bk.dividend, "network": nw.dividend}
    per_token = [  # in token order: issuing roles in registration order
        declared.get(spec.name, np.zeros(w.layout.count(spec.name), np.int64))
        for spec in registry.roles()
        if spec.issues is not None
    ]
    paid = pay_dividends(w, np.concatenate(per_token))
    o.dividends = paid[w.holder_rows("household")]
    o.interest = pay_deposit_interest(w, bk.deposit_rate, o.opening_deposits)
    o.ubi = pay_ubi(w, w.ubi_cents)


def stocks(w: World, o: RoundOutcome, s: Scenario) -> None:
    """Stocks that follow from the round's flows: capital, inventory, households' net income."""
    assert o.invest_qty is not None and o.output is not None
    assert o.wages is not None and o.dividends is not None and o.interest is not None and o.ubi is not None
    w.f_capital = w.f_capital * (1.0 - s.automation.depreciation) + o.invest_qty / max(w.capital_price, 1e-12)
    w.f_inventory = w.f_inventory * (1.0 - firm_config(s).inventory_decay)
    w.f_output = o.output
    capital_income = o.dividends + o.interest
    w.h_income = (
        (o.wages - np.floor(o.wages * w.income_tax)).astype(np.int64)
        + (capital_income - np.floor(capital_income * w.income_tax)).astype(np.int64)
        + o.ubi
    )


STEPS: tuple[Step, ...] = (debt_and_credit, wages, purchases, token_trades, capital_income_and_transfers, stocks)


def settle(w: World, o: RoundOutcome, s: Scenario) -> None:
    """Post every payment of the round (``STEPS`` in order), then check conservation.

    Raises :class:`~tokenomy.market.ledger.ConservationError` if money appeared or vanished.
    """
    o.opening_deposits = w.household_balance().copy()
    for step in STEPS:
        step(w, o, s)
    o.postings = list(w.ledger.postings)
    rent = registry.rent_kinds()
    o.rent = sum(int(x.amount.sum()) for x in o.postings if x.kind in rent)
    o.taxes = sum(int(x.amount.sum()) for x in o.postings if x.kind in ("income_tax", "robot_tax"))
    o.issued, o.destroyed = w.ledger.close_round(w.round)
