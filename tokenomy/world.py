"""The World: every agent's state as columns, the ledger, and the token register.

Accounts are laid out in one index space so the ledger is a single array::

    [households 0..N) [firms ..+F) [banks ..+B) [card network] [chain operator] [state]

Tokens (equity) are issued by firms, banks and the two rail operators; token ``j`` belongs to
the issuer at account ``N + j``. Holdings are a dense ``households x tokens`` int64 matrix: with a
hundred or so issuers even 100,000 holders fit in memory, dividends are one matrix product, and
the mostly-zero matrix compresses to almost nothing in a snapshot.

``snapshot()`` returns plain arrays and scalars; ``restore()`` rebuilds an identical world. Resume
and fork rest on that round trip being exact.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from tokenomy.market.ledger import Ledger

__all__ = ["ROLES", "Layout", "World"]

ROLES = ("household", "firm", "bank", "network", "regulator")
_MAGIC = b"TKNWORLD1"


@dataclass(frozen=True, slots=True)
class Layout:
    """Where each role's accounts sit in the ledger."""

    households: int
    firms: int
    banks: int

    @property
    def firm0(self) -> int:
        return self.households

    @property
    def bank0(self) -> int:
        return self.households + self.firms

    @property
    def card_network(self) -> int:
        return self.bank0 + self.banks

    @property
    def chain_operator(self) -> int:
        return self.card_network + 1

    @property
    def state(self) -> int:
        return self.card_network + 2

    @property
    def n_accounts(self) -> int:
        return self.state + 1

    @property
    def n_tokens(self) -> int:
        """Issuers: firms, banks, card network, chain operator."""
        return self.firms + self.banks + 2

    def firm_accounts(self) -> NDArray[np.int64]:
        return np.arange(self.firm0, self.bank0, dtype=np.int64)

    def bank_accounts(self) -> NDArray[np.int64]:
        return np.arange(self.bank0, self.card_network, dtype=np.int64)

    def issuer_accounts(self) -> NDArray[np.int64]:
        return np.arange(self.firm0, self.firm0 + self.n_tokens, dtype=np.int64)

    ROLE_CODES: ClassVar[tuple[str, ...]] = ("mint", "household", "firm", "bank", "network", "regulator")

    def role_code(self, account: NDArray[np.int64]) -> NDArray[np.int64]:
        """Index into ``ROLE_CODES`` per account (``mint`` for -1, the issuance/destruction side)."""
        a = np.asarray(account)
        bounds = np.array([0, self.firm0, self.bank0, self.card_network, self.chain_operator + 1])
        return np.searchsorted(bounds, a, side="right").astype(np.int64)

    def role_of(self, account: NDArray[np.int64]) -> NDArray[np.object_]:
        return np.array(self.ROLE_CODES, dtype=object)[self.role_code(account)]

    def name_of(self, account: int) -> str:
        """A readable id: ``h12``, ``f3``, ``b0``, ``card_network``, ``chain``, ``state``."""
        if account < 0:
            return "mint"
        if account < self.firm0:
            return f"h{account}"
        if account < self.bank0:
            return f"f{account - self.firm0}"
        if account < self.card_network:
            return f"b{account - self.bank0}"
        return {self.card_network: "card_network", self.chain_operator: "chain", self.state: "state"}[account]


@dataclass
class World:
    """State of the economy between rounds. Money is in the ledger; everything else is here."""

    layout: Layout
    ledger: Ledger
    round: int = 0
    # households
    h_bank: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    h_employer: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))  # firm index or -1
    h_reservation: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))  # cents per round
    h_unemployed_rounds: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    h_rail: NDArray[np.int8] = field(default_factory=lambda: np.empty(0, np.int8))
    h_income: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))  # net, last round
    h_spent: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))  # last round
    # firms
    f_price: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))  # cents per unit
    f_wage: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))  # cents per worker per round
    f_capital: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    f_inventory: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    f_sales: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))  # units sold last round
    f_unmet: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))  # units demanded, not served
    f_unfilled: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))  # vacancies left open
    f_output: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))  # produced last round
    f_loan: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))  # principal, cents
    f_loan_bank: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    f_loan_rate: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    # tokens
    t_price: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))  # cents per share
    t_outstanding: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    holdings: NDArray[np.int64] = field(default_factory=lambda: np.empty((0, 0), np.int64))
    # rails and policy in force (the regulator and network decide these)
    card_fee: float = 0.0224
    chain_fee: float = 0.001
    bank_transfer_fee: float = 0.0
    chain_enabled: bool = True
    income_tax: float = 0.2
    robot_tax: float = 0.0
    ubi_cents: int = 0
    ubi_money_financed: bool = False
    card_fee_cap: float = 1.0
    # economy-wide
    phi: float = 0.608
    capital_price: float = 8.0  # goods per unit of automation capital
    price_index: float = 1.0  # cents per unit, sales-weighted, last round
    rng_state: dict[str, Any] = field(default_factory=dict)

    # -- views ------------------------------------------------------------------------------------
    @property
    def n_households(self) -> int:
        return self.layout.households

    @property
    def n_firms(self) -> int:
        return self.layout.firms

    def household_balance(self) -> NDArray[np.int64]:
        return self.ledger.balance[: self.layout.households]

    def firm_balance(self) -> NDArray[np.int64]:
        return self.ledger.balance[self.layout.firm0 : self.layout.bank0]

    def workers(self) -> NDArray[np.int64]:
        emp = self.h_employer
        return np.bincount(emp[emp >= 0], minlength=self.layout.firms).astype(np.int64)

    def token_wealth(self) -> NDArray[np.float64]:
        """Market value of each household's tokens, cents."""
        return self.holdings @ self.t_price

    def rail_fees(self) -> NDArray[np.float64]:
        """Fee rate per rail in force: card, chain, bank transfer."""
        return np.array([min(self.card_fee, self.card_fee_cap), self.chain_fee, self.bank_transfer_fee])

    # -- snapshot / restore ---------------------------------------------------------------------
    _SKIP = ("layout", "ledger", "rng_state")

    def snapshot(self) -> dict[str, Any]:
        """Plain arrays and scalars: everything needed to rebuild this world exactly."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self._SKIP}
        # holdings are mostly zeros: store them as coordinates (much less to copy and compress)
        rows, cols = np.nonzero(self.holdings)
        out["holdings"] = np.array(self.holdings.shape, dtype=np.int64)
        out["holdings_rows"], out["holdings_cols"] = rows.astype(np.int64), cols.astype(np.int64)
        out["holdings_qty"] = self.holdings[rows, cols]
        out["layout"] = np.array([self.layout.households, self.layout.firms, self.layout.banks])
        out["balance"] = self.ledger.balance
        out["floor"] = self.ledger.floor
        out["opening_supply"] = self.ledger.opening_supply
        out["rng_state"] = repr(self.rng_state)
        return out

    @classmethod
    def restore(cls, snap: dict[str, Any]) -> World:
        import ast

        h, f, b = (int(x) for x in np.asarray(snap["layout"]))
        ledger = Ledger(
            balance=np.array(snap["balance"], dtype=np.int64),
            floor=np.array(snap["floor"], dtype=np.int64),
            opening_supply=int(snap["opening_supply"]),
        )
        kwargs: dict[str, Any] = {}
        for fl in fields(cls):
            if fl.name in cls._SKIP:
                continue
            v = snap[fl.name]
            arr = np.asarray(v)
            kwargs[fl.name] = arr.copy() if arr.ndim > 0 else arr.item()
        holdings = np.zeros(tuple(int(x) for x in np.asarray(snap["holdings"])), dtype=np.int64)
        holdings[np.asarray(snap["holdings_rows"]), np.asarray(snap["holdings_cols"])] = snap["holdings_qty"]
        kwargs["holdings"] = holdings
        kwargs["rng_state"] = ast.literal_eval(str(snap["rng_state"]))
        return cls(layout=Layout(h, f, b), ledger=ledger, **kwargs)

    def to_bytes(self) -> bytes:
        """A compressed snapshot: an ``.npz`` archive compressed with zstd as a whole.

        zstd (through pyarrow) is ~10x faster than the zlib of ``savez_compressed`` at a similar
        ratio, and snapshots are written every round. The header holds the raw length.
        """
        import pyarrow as pa

        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in self.snapshot().items()})
        raw = buf.getvalue()
        return _MAGIC + len(raw).to_bytes(8, "little") + pa.compress(raw, codec="zstd", asbytes=True)

    @classmethod
    def from_bytes(cls, data: bytes) -> World:
        import pyarrow as pa

        if data[: len(_MAGIC)] != _MAGIC:
            raise ValueError("not a tokenomy world snapshot")
        size = int.from_bytes(data[len(_MAGIC) : len(_MAGIC) + 8], "little")
        raw = pa.decompress(data[len(_MAGIC) + 8 :], decompressed_size=size, codec="zstd", asbytes=True)
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            return cls.restore({k: z[k] for k in z.files})
