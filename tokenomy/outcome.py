"""RoundOutcome: what one round did (decisions, market results, income by source), for the record.

The phases fill it in order; the metrics and the recorder read it. It holds no world state: after
``advance`` the world has moved on, and the outcome (with the round's ``MarketView``) is what
still describes the round that settled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from tokenomy.agents.base import Batch
from tokenomy.market.clearing import Purchases
from tokenomy.market.ledger import Posting

__all__ = ["RoundOutcome"]

B = TypeVar("B", bound=Batch)


@dataclass
class RoundOutcome:
    """What one round did. Arrays over households unless named otherwise; money in cents."""

    round: int
    decisions: dict[str, Batch] = field(default_factory=dict)  # per role, after validation
    grant: NDArray[np.int64] | None = None  # new credit per firm
    output: NDArray[np.float64] | None = None  # units produced per firm
    capacity: NDArray[np.float64] | None = None  # units its capital and workforce could have made
    opening_inventory: NDArray[np.float64] | None = None  # units per firm, before production
    inventory_decay: NDArray[np.float64] | None = None  # units of stock lost per firm
    capital_wear: NDArray[np.float64] | None = None  # units of capital worn out per firm
    purchases: Purchases | None = None
    revenue: NDArray[np.float64] | None = None  # cents each firm sold for (settlement's purchases step)
    price_index: float | None = None  # cents per unit sold this round (the last round's when nothing sold)
    trades: list[dict[str, Any]] = field(default_factory=list)  # one row per token auction that traded
    trade_legs: tuple[NDArray[np.int64], ...] = ()  # (token, buyer, seller, shares, amount) per fill
    wages: NDArray[np.int64] | None = None  # gross, per household
    wage_bill: NDArray[np.int64] | None = None  # gross, per firm
    interest_paid: NDArray[np.int64] | None = None  # loan interest, per firm
    robot_tax_paid: NDArray[np.int64] | None = None  # per firm
    illiquid: NDArray[np.bool_] | None = None  # per firm: cannot pay the staff it must keep (exit_on_illiquidity)
    dividends: NDArray[np.int64] | None = None
    interest: NDArray[np.int64] | None = None
    ubi: NDArray[np.int64] | None = None
    benefits: NDArray[np.int64] | None = None  # unemployment benefits, per household
    rent: int = 0  # payments of kinds registered as rent (rail fees today)
    taxes: int = 0
    written_off: int = 0
    defaulted: NDArray[np.bool_] | None = None  # per firm: missed part of its debt service
    opening_loans: NDArray[np.int64] | None = None  # per firm, before this round's new credit
    opening_loan_rate: NDArray[np.float64] | None = None  # per firm: what this round's debt service is at
    opening_balance: NDArray[np.int64] | None = None  # every ledger balance before settlement
    opening_bank_equity: NDArray[np.int64] | None = None  # per bank, before settlement
    opening_reserves: int = 0  # the banks' implied reserves before settlement (tokenomy.accounts)
    events: list[dict[str, Any]] = field(default_factory=list)  # defaults, resolutions: events.parquet
    opening_deposits: NDArray[np.int64] | None = None  # household balances before settlement
    fired: int = 0
    hired: int = 0
    invest_qty: NDArray[np.float64] | None = None  # goods bought as capital per firm
    issued: int = 0
    destroyed: int = 0
    postings: list[Posting] = field(default_factory=list)
    llm_records: list[dict[str, Any]] = field(default_factory=list)

    def batch(self, role: str, kind: type[B]) -> B:
        """The role's validated decisions, as its own batch type."""
        b = self.decisions[role]
        if not isinstance(b, kind):
            raise TypeError(f"decisions of {role!r} are a {type(b).__name__}, not a {kind.__name__}")
        return b
