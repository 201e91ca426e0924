"""Sector accounts (Godley & Lavoie): who owes what to whom, and a check that every cent is owed.

Money in tokenomy is deposits: every non-bank account's ledger balance is a claim on a bank (the
state's on the central bank). Each financial asset is someone's liability, read from the
instrument's own register:

| instrument | asset of | liability of | register |
| --- | --- | --- | --- |
| deposits | households, firms, rail operators | their bank | ledger balances |
| state deposit | the state | central bank | the state's ledger balance |
| loans | banks | firms | ``World.f_loan`` by ``f_loan_bank`` |
| advances | central bank | the state | ``World.cb_advances`` |
| reserves | banks | central bank | implied: what a bank's balance sheet needs to balance |
| equity tokens | their holders | their issuers | ``World.holdings`` at the last trade price |

A bank's net worth is its own register (``World.b_equity``), booked from what it is paid and pays
(:func:`book_bank_flows`) and from its losses (:func:`charge_loss`); the central bank's is
``World.cb_equity``. Then money has a counterpart exactly when::

    money (deposits)  ==  loans + advances - banks' net worth - central bank's net worth

:func:`money_without_counterpart` is the difference, 0 in every round of a sound economy: a
payment that bypasses settlement, or a loan written off with no bank charged for it, moves it.
The balance-sheet matrix (:func:`balance_sheet`) shows the same thing as its central-bank
column, which sums to zero only then; the transactions-flow matrix (:func:`flow_matrix`) shows
each round's flows, each row and each column summing to zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tokenomy.market.ledger import Posting
from tokenomy.world import World

__all__ = [
    "BALANCE_ROWS",
    "SECTORS",
    "Stocks",
    "balance_sheet",
    "bank_deposits",
    "bank_loans",
    "bank_reserves",
    "book_bank_flows",
    "charge_loss",
    "flow_matrix",
    "money_without_counterpart",
    "reserves",
    "sector_of",
    "stocks",
]

# The sectors of the matrices. Registered roles map to one each (rail operators are "other
# financial firms"; a role beyond the built-ins counts as a firm unless it is listed here).
SECTORS = ("households", "firms", "banks", "rails", "state", "central_bank")
_ROLE_SECTOR = {
    "household": "households",
    "firm": "firms",
    "bank": "banks",
    "network": "rails",
    "regulator": "state",
    "central_bank": "central_bank",
}


def sector_of(world: World, account: NDArray[np.int64]) -> NDArray[np.int64]:
    """Index into :data:`SECTORS` per ledger account (-1, the mint, is the central bank's side)."""
    codes = world.layout.role_code(np.asarray(account, dtype=np.int64))
    table = np.array(
        [SECTORS.index("central_bank")] + [SECTORS.index(_ROLE_SECTOR.get(r, "firms")) for r in world.layout.roles],
        dtype=np.int64,
    )
    return table[codes]


@dataclass(frozen=True)
class Stocks:
    """The registers' totals at one moment, cents."""

    money: int  # deposits: every non-issuer ledger balance
    loans: int
    advances: int
    bank_equity: int
    cb_equity: int

    @property
    def unbacked(self) -> int:
        return self.money - (self.loans + self.advances - self.bank_equity - self.cb_equity)


def stocks(world: World) -> Stocks:
    return Stocks(
        money=world.ledger.money_supply,
        loans=int(world.f_loan.sum()),
        advances=int(world.cb_advances),
        bank_equity=int(world.b_equity.sum()),
        cb_equity=int(world.cb_equity),
    )


def money_without_counterpart(world: World) -> int:
    """Cents of money that no loan, advance or net worth accounts for (0 when the books are sound)."""
    return stocks(world).unbacked


def book_bank_flows(world: World, postings: list[Posting]) -> NDArray[np.int64]:
    """Book every payment a bank (or the central bank) received or made into its net worth;
    returns the change per bank.

    Interest, fees and recapitalisations received raise it; deposit interest and dividends paid
    lower it. Issuance and destruction (new loans, repayments, advances) are not income: they
    change an instrument and the deposits together. Call once per posting, after settlement's.
    """
    bank = world.layout.block("bank")
    cb = world.layout.first("central_bank") if "central_bank" in world.layout.roles else -2
    delta = np.zeros(bank.count, dtype=np.int64)
    for p in postings:
        if p.amount.size == 0 or (p.payer < 0).any() or (p.payee < 0).any():
            continue  # issuance or destruction: a change of instruments, not of net worth
        into = (p.payee >= bank.start) & (p.payee < bank.stop)
        out = (p.payer >= bank.start) & (p.payer < bank.stop)
        delta += np.bincount(p.payee[into] - bank.start, weights=p.amount[into], minlength=bank.count).astype(np.int64)
        delta -= np.bincount(p.payer[out] - bank.start, weights=p.amount[out], minlength=bank.count).astype(np.int64)
        world.cb_equity += int(p.amount[p.payee == cb].sum()) - int(p.amount[p.payer == cb].sum())
    world.b_equity = world.b_equity + delta
    return delta


def bank_deposits(world: World) -> NDArray[np.int64]:
    """The deposits each bank owes: its households' and firms' (everyone else's but the state's
    banks with the first bank)."""
    lay, bal = world.layout, world.ledger.balance
    nb = lay.count("bank")
    out = np.bincount(world.h_bank, weights=world.household_balance(), minlength=nb)
    out += np.bincount(world.f_loan_bank, weights=world.firm_balance(), minlength=nb)
    holders = _holders(world)
    others = holders[~np.isin(lay.role_of(holders), ["household", "firm", "regulator"])]
    out[0] += float(bal[others].sum())
    return out.astype(np.int64)


def bank_loans(world: World) -> NDArray[np.int64]:
    """Each bank's loan book, cents."""
    n = world.layout.count("bank")
    loans: NDArray[np.int64] = np.bincount(world.f_loan_bank, weights=world.f_loan, minlength=n).astype(np.int64)
    return loans


def bank_reserves(world: World) -> NDArray[np.int64]:
    """Each bank's implied reserves (negative: it borrows them): net worth plus the deposits it
    owes, less its loans. They sum to :func:`reserves`."""
    res: NDArray[np.int64] = world.b_equity + bank_deposits(world) - bank_loans(world)
    return res


def charge_loss(world: World, bank: NDArray[np.int64], amount: NDArray[np.int64]) -> None:
    """A lender's loss (a loan written off) comes out of its net worth."""
    world.b_equity = world.b_equity - np.bincount(
        bank, weights=amount, minlength=world.b_equity.size
    ).astype(np.int64)


# -- the matrices ---------------------------------------------------------------------------------
BALANCE_ROWS = ("deposits", "reserves", "loans", "advances", "net_worth")


def _holders(world: World) -> NDArray[np.int64]:
    led = world.ledger
    return np.flatnonzero(~led.issuer) if led.issuer is not None else np.arange(led.balance.size)


def reserves(world: World) -> int:
    """The banks' claims on the central bank that their balance sheet implies: net worth plus the
    deposits they owe, less their loans (the interbank and reserve positions, consolidated)."""
    holders = _holders(world)
    state = world.layout.first("regulator")
    deposits = int(world.ledger.balance[holders].sum()) - int(world.ledger.balance[state])
    return int(world.b_equity.sum()) + deposits - int(world.f_loan.sum())


def balance_sheet(world: World) -> NDArray[np.int64]:
    """The balance-sheet matrix: rows :data:`BALANCE_ROWS` (financial instruments, then net
    worth), columns :data:`SECTORS`; assets positive, liabilities negative, cents.

    Every instrument row sums to zero (each asset is someone's liability), and each column sums
    to zero with its net worth: a residual for the non-banks, the register for the banks (whose
    column balances through the reserves it implies) and for the central bank, whose column
    therefore sums to ``-money_without_counterpart``: zero exactly when money has a counterpart.
    Real assets (capital, stock) and equity tokens are left out: no one owes them as money (token
    wealth is valued in the metrics).
    """
    S = {name: i for i, name in enumerate(SECTORS)}
    R = {name: i for i, name in enumerate(BALANCE_ROWS)}
    m = np.zeros((len(BALANCE_ROWS), len(SECTORS)), dtype=np.int64)
    holders = _holders(world)
    deposits = np.bincount(
        sector_of(world, holders), weights=world.ledger.balance[holders], minlength=len(SECTORS)
    ).astype(np.int64)
    state, banks, cb = S["state"], S["banks"], S["central_bank"]
    m[R["deposits"]] += deposits
    m[R["deposits"], cb] -= deposits[state]  # the state banks with the central bank
    m[R["deposits"], banks] -= int(deposits.sum() - deposits[state])
    loans = int(world.f_loan.sum())
    m[R["loans"], banks] += loans
    m[R["loans"], S["firms"]] -= loans
    m[R["advances"], cb] += int(world.cb_advances)
    m[R["advances"], state] -= int(world.cb_advances)
    res = reserves(world)
    m[R["reserves"], banks] += res
    m[R["reserves"], cb] -= res
    m[R["net_worth"]] = -m[:-1].sum(axis=0)
    m[R["net_worth"], banks] = -int(world.b_equity.sum())
    m[R["net_worth"], cb] = -int(world.cb_equity)
    return m


def flow_matrix(
    world: World,
    postings: list[Posting],
    kinds: tuple[str, ...],
    opening_balance: NDArray[np.int64],
    opening_reserves: int,
) -> tuple[tuple[str, ...], NDArray[np.int64]]:
    """The round's transactions-flow matrix: one row per payment kind that moved, then the
    changes in deposits and reserves; columns :data:`SECTORS`; sources positive, uses negative, cents.

    Transfers sum to zero along their row by double entry. Issuance and destruction are the
    change in an instrument: a new loan is the borrower's source and its bank's use (a repayment
    the reverse), an advance the state's source and the central bank's use. The last two rows
    are the change in each sector's money (an asset: a use; owed by the banks and, for the state,
    the central bank: their source) and in the banks' reserves (from :func:`reserves`, so from
    their net-worth register). Every column sums to zero when every flow was recorded and booked:
    the banks' when their net worth moved by what they were paid less what they paid and lost,
    the central bank's when no money appeared or vanished without an instrument changing.
    ``kinds`` orders the rows (the payment-kind registry); write-offs are revaluations, not flows.
    """
    S = len(SECTORS)
    banks, cb, state = SECTORS.index("banks"), SECTORS.index("central_bank"), SECTORS.index("state")
    lender = {"loan": banks, "loan_repayment": banks}
    rows: dict[str, NDArray[np.int64]] = {}
    for p in postings:
        if p.amount.size == 0:
            continue
        r = rows.setdefault(p.kind, np.zeros(S, dtype=np.int64))
        minted = (p.payer < 0) | (p.payee < 0)
        t = ~minted
        r -= np.bincount(sector_of(world, p.payer[t]), weights=p.amount[t], minlength=S).astype(np.int64)
        r += np.bincount(sector_of(world, p.payee[t]), weights=p.amount[t], minlength=S).astype(np.int64)
        issue, burn = minted & (p.payer < 0), minted & (p.payee < 0)
        got = np.bincount(sector_of(world, p.payee[issue]), weights=p.amount[issue], minlength=S).astype(np.int64)
        paid = np.bincount(sector_of(world, p.payer[burn]), weights=p.amount[burn], minlength=S).astype(np.int64)
        r += got - paid
        r[lender.get(p.kind, cb)] -= int(got.sum() - paid.sum())
    holders = _holders(world)
    change = np.bincount(
        sector_of(world, holders), weights=world.ledger.balance[holders] - opening_balance[holders], minlength=S
    ).astype(np.int64)
    d_deposits = -change
    d_deposits[banks] += int(change.sum() - change[state])
    d_deposits[cb] += int(change[state])
    d_res = reserves(world) - opening_reserves
    d_reserves = np.zeros(S, dtype=np.int64)
    d_reserves[banks], d_reserves[cb] = -d_res, d_res
    names = tuple(k for k in kinds if k in rows) + tuple(k for k in rows if k not in kinds)
    out = np.vstack([rows[k] for k in names] + [d_deposits, d_reserves])
    return (*names, "change_in_deposits", "change_in_reserves"), out
