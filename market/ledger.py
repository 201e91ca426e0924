"""Double-entry ledger in integer cents, stored as columns.

Money lives in one ``int64`` balance per account. A *transfer* debits one account and credits
another by the same amount, so it cannot change the money supply; only :meth:`Ledger.issue` and
:meth:`Ledger.destroy` can, and they are counted. :meth:`Ledger.close_round` checks
``money_supply == previous + issued - destroyed`` and raises :class:`ConservationError` otherwise.

Some accounts may be *money issuers* (``issuer[i]``): banks, whose liabilities are the deposits
everybody else holds. A bank does not hold money of its own: what it receives (loan interest, a
fee) extinguishes the payer's deposit, and what it pays (deposit interest, a dividend) creates the
payee's. So its balance is not money (``money_supply`` leaves it out) but the running total of its
receipts less its payments, which may go negative; and a transfer between an issuer and anyone
else is counted as destruction or issuance, so the conservation check still holds to the cent.
Who books the bank's equity for those flows is the caller's business (``tokenomy.accounts``).

Transfers are posted in batches (vectors of payer, payee, amount): one batch of 100,000 payments
is a handful of numpy calls. A batch is all-or-nothing: if any payer would end below its floor the
whole batch is refused with :class:`InsufficientFunds`, naming the first offending account. Callers
clip decisions *before* posting (that is what validation is for); the ledger is the last guard.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["ConservationError", "InsufficientFunds", "Ledger", "LedgerError", "Posting"]


class LedgerError(RuntimeError):
    """A posting the ledger refuses."""


class InsufficientFunds(LedgerError):
    """A batch would take an account below its allowed floor."""


class ConservationError(LedgerError):
    """Money appeared or vanished outside explicit issuance and destruction."""


@dataclass(frozen=True, slots=True)
class Posting:
    """One posted batch, kept for the round's payment record."""

    kind: str
    payer: NDArray[np.int64]
    payee: NDArray[np.int64]
    amount: NDArray[np.int64]
    rail: NDArray[np.int8] | None = None
    fee: NDArray[np.int64] | None = None


@dataclass
class Ledger:
    """Balances of ``n`` accounts plus the round's issuance, destruction and postings.

    ``floor[i]`` is the lowest balance account ``i`` may reach (0 for everybody by default; a
    negative floor is an explicit overdraft line).
    """

    balance: NDArray[np.int64]
    floor: NDArray[np.int64]
    issuer: NDArray[np.bool_] | None = None  # money issuers (banks); None = nobody
    issued: int = 0
    destroyed: int = 0
    opening_supply: int = 0
    postings: list[Posting] = field(default_factory=list)

    @classmethod
    def open(cls, n_accounts: int, opening: ArrayLike | None = None) -> Ledger:
        bal = np.zeros(n_accounts, dtype=np.int64) if opening is None else np.array(opening, dtype=np.int64)
        if bal.shape != (n_accounts,):
            raise ValueError("opening balances must have one entry per account")
        if (bal < 0).any():
            raise LedgerError("opening balances must be non-negative")
        return cls(balance=bal, floor=np.zeros(n_accounts, dtype=np.int64), opening_supply=int(bal.sum()))

    @property
    def money_supply(self) -> int:
        """Money held outside the issuers (every balance, when there are none), cents."""
        if self.issuer is None:
            return int(self.balance.sum())
        return int(self.balance[~self.issuer].sum())

    def set_issuers(self, accounts: ArrayLike) -> None:
        """Make ``accounts`` money issuers: their balances leave the money supply, they may run
        their balance below zero (their solvency is their equity, booked elsewhere), and their
        transfers to and from others are issuance and destruction."""
        acc = np.asarray(accounts, dtype=np.int64).ravel()
        mask = np.zeros(self.balance.size, dtype=bool)
        mask[acc] = True
        self.issuer = mask
        self.floor[acc] = np.iinfo(np.int64).min // 4
        self.opening_supply = self.money_supply

    # -- postings -------------------------------------------------------------------------------
    def transfer(
        self,
        kind: str,
        payer: ArrayLike,
        payee: ArrayLike,
        amount: ArrayLike,
        *,
        rail: ArrayLike | None = None,
        fee: ArrayLike | None = None,
    ) -> None:
        """Post a batch of transfers ``payer[i] -> payee[i]`` of ``amount[i]`` cents.

        ``rail`` and ``fee`` only annotate the record (the fee is posted as its own batch by the
        rails module, so it too is a transfer).
        """
        p = np.asarray(payer, dtype=np.int64).ravel()
        q = np.asarray(payee, dtype=np.int64).ravel()
        a = np.asarray(amount, dtype=np.int64).ravel()
        p, q, a = np.broadcast_arrays(p, q, a)
        if a.size == 0:
            return
        if (a < 0).any():
            raise LedgerError(f"{kind}: negative transfer amount {int(a.min())}")
        n = self.balance.size
        if p.min() < 0 or q.min() < 0 or p.max() >= n or q.max() >= n:
            raise LedgerError(f"{kind}: account index out of range")
        self.require_funds(kind, p, a)
        self.balance -= np.bincount(p, weights=a, minlength=n).astype(np.int64)
        self.balance += np.bincount(q, weights=a, minlength=n).astype(np.int64)
        if self.issuer is not None:
            from_issuer, to_issuer = self.issuer[p], self.issuer[q]
            self.issued += int(a[from_issuer & ~to_issuer].sum())
            self.destroyed += int(a[to_issuer & ~from_issuer].sum())
        keep = a > 0
        self.postings.append(
            Posting(
                kind,
                p[keep].copy(),
                q[keep].copy(),
                a[keep].copy(),
                None if rail is None else np.broadcast_to(np.asarray(rail, dtype=np.int8), a.shape)[keep].copy(),
                None if fee is None else np.broadcast_to(np.asarray(fee, dtype=np.int64), a.shape)[keep].copy(),
            )
        )

    def issue(self, kind: str, account: ArrayLike, amount: ArrayLike) -> int:
        """Create money into ``account`` (bank credit, money-financed transfers). Returns the total."""
        acc, a = self._vec(kind, account, amount)
        np.add.at(self.balance, acc, a)
        total = int(a.sum())
        self.issued += total
        self._record_flow(kind, acc, a, into=True)
        return total

    def destroy(self, kind: str, account: ArrayLike, amount: ArrayLike) -> int:
        """Destroy money held by ``account`` (loan repayment, burning). Returns the total."""
        acc, a = self._vec(kind, account, amount)
        self.require_funds(kind, acc, a)
        np.subtract.at(self.balance, acc, a)
        total = int(a.sum())
        self.destroyed += total
        self._record_flow(kind, acc, a, into=False)
        return total

    def spendable(self, account: ArrayLike) -> NDArray[np.int64]:
        """Cents an account can pay out now without breaching its floor."""
        acc = np.asarray(account, dtype=np.int64)
        free: NDArray[np.int64] = np.maximum(self.balance[acc] - self.floor[acc], 0)  # numpy's stubs say Any
        return free

    # -- the round's check ----------------------------------------------------------------------
    def close_round(self, round_no: int) -> tuple[int, int]:
        """Verify conservation for the round, then start the next one.

        Returns ``(issued, destroyed)`` for the round that closed.
        """
        expected = self.opening_supply + self.issued - self.destroyed
        actual = self.money_supply
        if actual != expected:
            raise ConservationError(
                f"round {round_no}: money supply is {actual} cents but previous {self.opening_supply}"
                f" + issued {self.issued} - destroyed {self.destroyed} = {expected} cents"
                f" (difference {actual - expected})"
            )
        if (self.balance < self.floor).any():
            bad = int(np.flatnonzero(self.balance < self.floor)[0])
            raise ConservationError(f"round {round_no}: account {bad} is below its floor")
        out = (self.issued, self.destroyed)
        self.opening_supply, self.issued, self.destroyed = actual, 0, 0
        self.postings = []
        return out

    # -- helpers --------------------------------------------------------------------------------
    def _vec(self, kind: str, account: ArrayLike, amount: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        acc = np.asarray(account, dtype=np.int64).ravel()
        a = np.asarray(amount, dtype=np.int64).ravel()
        acc, a = np.broadcast_arrays(acc, a)
        if a.size and (a < 0).any():
            raise LedgerError(f"{kind}: negative amount")
        if acc.size and (acc.min() < 0 or acc.max() >= self.balance.size):
            raise LedgerError(f"{kind}: account index out of range")
        return acc, a

    def require_funds(self, kind: str, payer: ArrayLike, amount: ArrayLike) -> None:
        """Raise :class:`InsufficientFunds` unless every payer can cover its total debit."""
        payer = np.asarray(payer, dtype=np.int64).ravel()
        amount = np.asarray(amount, dtype=np.int64).ravel()
        debit = np.bincount(payer, weights=amount, minlength=self.balance.size)
        # float64 bincount is exact below 2**53 cents (~90 trillion currency units).
        short = (self.balance - debit.astype(np.int64)) < self.floor
        if short.any():
            i = int(np.flatnonzero(short)[0])
            raise InsufficientFunds(
                f"{kind}: account {i} would pay {int(debit[i])} cents but may spend only"
                f" {int(self.balance[i] - self.floor[i])}"
            )

    def _record_flow(self, kind: str, acc: NDArray[np.int64], a: NDArray[np.int64], *, into: bool) -> None:
        keep = a > 0
        src = np.full(int(keep.sum()), -1, dtype=np.int64)
        if into:
            self.postings.append(Posting(kind, src, acc[keep].copy(), a[keep].copy()))
        else:
            self.postings.append(Posting(kind, acc[keep].copy(), src, a[keep].copy()))
