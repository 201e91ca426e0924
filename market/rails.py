"""Payment rails: how a payment travels, and who takes a cut.

A payer chooses a rail; the rail's operator charges ``fee_rate * amount`` *on top* of the
payment, paid by the payer. Incidence is a modelling choice (real card fees are billed to the
merchant and passed into prices); charging the payer keeps the payer's budget the single place
where the fee bites, and the fee is counted as rent either way. Fees are ordinary transfers to the
operator's account: they never destroy money.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tokenomy.market.ledger import Ledger, LedgerError

__all__ = ["RAIL_NAMES", "Rail", "fees", "net_of_fee", "pay"]


class Rail(IntEnum):
    CARD = 0
    CHAIN = 1
    BANK_TRANSFER = 2


RAIL_NAMES: tuple[str, ...] = tuple(r.name.lower() for r in Rail)


def fees(amount: ArrayLike, rail: ArrayLike, fee_rates: ArrayLike) -> NDArray[np.int64]:
    """Fee in cents for each payment (floored, so a fee never exceeds its rate)."""
    a = np.asarray(amount, dtype=np.int64)
    r = np.asarray(fee_rates, dtype=np.float64)[np.asarray(rail, dtype=np.int64)]
    return np.floor(a * r).astype(np.int64)


def net_of_fee(budget: ArrayLike, rail: ArrayLike, fee_rates: ArrayLike) -> NDArray[np.int64]:
    """The largest payment whose amount plus fee fits within ``budget`` cents."""
    b = np.maximum(np.asarray(budget, dtype=np.int64), 0)  # no budget, no payment
    r = np.asarray(fee_rates, dtype=np.float64)[np.asarray(rail, dtype=np.int64)]
    a = np.floor(b / (1.0 + r)).astype(np.int64)
    # b/(1+r) is within a cent or two of the answer: floats can overshoot, and a floored fee can
    # leave room for one or two more cents. amount + fee is non-decreasing, so test the neighbours.
    a = np.where(a + fees(a, rail, fee_rates) > b, np.maximum(a - 1, 0), a)
    for step in (1, 1):
        up = a + step
        a = np.where(up + fees(up, rail, fee_rates) <= b, up, a)
    return a


def pay(
    ledger: Ledger,
    kind: str,
    payer: ArrayLike,
    payee: ArrayLike,
    amount: ArrayLike,
    rail: ArrayLike,
    fee_rates: ArrayLike,
    operator: ArrayLike,
) -> NDArray[np.int64]:
    """Post payments and their fees; ``operator[i]`` is the account that earns payment i's fee.

    Returns the fees charged. Both batches are checked together so a payer short of the fee
    does not leave a half-posted payment.
    """
    p = np.asarray(payer, dtype=np.int64).ravel()
    q = np.asarray(payee, dtype=np.int64).ravel()
    a = np.asarray(amount, dtype=np.int64).ravel()
    rl = np.broadcast_to(np.asarray(rail, dtype=np.int64), a.shape)
    op = np.broadcast_to(np.asarray(operator, dtype=np.int64), a.shape)
    f = fees(a, rl, fee_rates)
    n = ledger.balance.size
    if op.size and (op.min() < 0 or op.max() >= n):  # checked up front: never a half-posted payment
        raise LedgerError(f"{kind}: fee operator account out of range")
    ledger.require_funds(kind, np.concatenate([p, p]), np.concatenate([a, f]))
    ledger.transfer(kind, p, q, a, rail=rl, fee=f)
    ledger.transfer("fee", p, op, f, rail=rl)
    return f
