"""The World: every agent's state as columns, the ledger, and the token register.

Accounts are laid out in one index space so the ledger is a single array, one block per
registered role in registration order (``tokenomy.registry``); for the built-in roles::

    [households 0..N) [firms ..+F) [banks ..+B) [card network, chain operator] [state]

Tokens carry their issuer's account (``t_issuer``) and their asset kind (``t_kind``, an index into
the asset registry). Holdings are a dense ``holders x tokens`` int64 matrix whose rows are the
accounts in ``holder_accounts`` (the roles registered as token holders: households today, funds
next): with a hundred or so tokens even 100,000 holders fit in memory, dividends are one pass over
the non-zero entries, and the mostly-zero matrix compresses to almost nothing in a snapshot.
Registered roles and assets beyond the built-ins keep their columns in ``extra``.

``snapshot()`` returns plain arrays and scalars; ``restore()`` rebuilds an identical world. Resume
and fork rest on that round trip being exact.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from tokenomy.market.ledger import Ledger

__all__ = ["Block", "Layout", "World"]

_MAGIC = b"TKNWORLD3"


@dataclass(frozen=True, slots=True)
class Block:
    """One role's accounts: ``count`` of them from ``start``, named by ``labels``.

    ``labels`` is a prefix (``"h"`` names ``h0, h1, ...``) or one name per account.
    """

    role: str
    start: int
    count: int
    labels: str | tuple[str, ...]

    @property
    def stop(self) -> int:
        return self.start + self.count

    def name(self, i: int) -> str:
        return self.labels[i] if isinstance(self.labels, tuple) else f"{self.labels}{i}"


@dataclass(frozen=True, slots=True)
class Layout:
    """Where each role's accounts sit in the ledger: contiguous blocks, in registration order."""

    blocks: tuple[Block, ...]

    @classmethod
    def of(cls, sizes: list[tuple[str, int, str | tuple[str, ...]]]) -> Layout:
        """Blocks laid end to end from ``(role, count, labels)``."""
        blocks, start = [], 0
        for role, count, labels in sizes:
            if isinstance(labels, tuple) and len(labels) != count:
                raise ValueError(f"role {role}: {count} accounts but {len(labels)} names")
            blocks.append(Block(role, start, count, labels))
            start += count
        return cls(tuple(blocks))

    def block(self, role: str) -> Block:
        for b in self.blocks:
            if b.role == role:
                return b
        raise KeyError(f"no role {role!r} in the layout ({', '.join(self.roles)})")

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(b.role for b in self.blocks)

    @property
    def role_codes(self) -> tuple[str, ...]:
        """Names for :meth:`role_code`: ``mint`` (the issuance/destruction side, account -1), then the roles."""
        return ("mint", *self.roles)

    @property
    def n_accounts(self) -> int:
        return self.blocks[-1].stop if self.blocks else 0

    def count(self, role: str) -> int:
        return self.block(role).count

    def first(self, role: str) -> int:
        """The first account of ``role`` (the only one, for a role with one agent)."""
        return self.block(role).start

    def accounts(self, role: str) -> NDArray[np.int64]:
        b = self.block(role)
        return np.arange(b.start, b.stop, dtype=np.int64)

    def role_code(self, account: NDArray[np.int64]) -> NDArray[np.int64]:
        """Index into :attr:`role_codes` per account (0, ``mint``, for -1)."""
        bounds = np.array([b.start for b in self.blocks], dtype=np.int64)
        return np.searchsorted(bounds, np.asarray(account), side="right").astype(np.int64)

    def role_of(self, account: NDArray[np.int64]) -> NDArray[np.object_]:
        return np.array(self.role_codes, dtype=object)[self.role_code(account)]

    def name_of(self, account: int) -> str:
        """A readable id: ``h12``, ``f3``, ``b0``, ``card_network``, ``chain``, ``state``."""
        if account < 0:
            return "mint"
        for b in self.blocks:
            if account < b.stop:
                return b.name(account - b.start)
        raise IndexError(f"account {account} is outside the layout ({self.n_accounts} accounts)")

    def to_json(self) -> str:
        blocks = [[b.role, b.count, list(b.labels) if isinstance(b.labels, tuple) else b.labels] for b in self.blocks]
        return json.dumps(blocks)

    @classmethod
    def from_json(cls, text: str) -> Layout:
        blocks = json.loads(text)
        return cls.of([(r, int(c), tuple(lab) if isinstance(lab, list) else str(lab)) for r, c, lab in blocks])


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
    h_skill: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))  # efficiency units, mean 1
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
    f_vacancies: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))  # posted last round
    f_expected: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))  # expected sales, units
    f_markup: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))  # over unit cost (markup pricing)
    f_bad_rounds: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))  # rounds in default, running
    f_output: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))  # produced last round
    # operating cash flow last round (sales less wages, interest and robot tax), cents: what a bank
    # weighs debt service against (Caiani et al. 2016)
    f_cash_flow: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    # accounting profit last round, cents: the cash flow plus the change in inventories at unit
    # cost, less the wear of capital at replacement cost (Caiani et al. 2016): what dividends share
    f_profit: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    # that profit averaged over about a quarter (roles.firm.profit_smoothing), cents: what the
    # profit rule pays dividends on (Caiani et al. 2016's period is a quarter)
    f_profit_smoothed: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    f_age: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))  # rounds since entry (or start)
    f_loan: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))  # principal, cents
    f_loan_bank: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    f_loan_rate: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    # banks and the central bank (tokenomy.accounts): net worth registers, the state's debt
    b_equity: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))  # per bank, cents
    b_profit: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))  # last round, cents
    cb_advances: int = 0  # the state's debt to the central bank, cents
    cb_equity: int = 0  # the central bank's net worth, cents
    policy_rate: float = 0.04  # annual, set by the central bank
    inflation_target: float = 0.02  # annual
    price_history: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))  # last 12 price levels
    output_trend: float = 0.0  # units per round: an exponential average of real output
    # tokens
    t_issuer: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))  # issuer's account, ascending
    t_kind: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))  # index into the asset registry
    t_price: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))  # cents per share
    t_outstanding: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    holder_accounts: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))  # row -> account
    holdings: NDArray[np.int64] = field(default_factory=lambda: np.empty((0, 0), np.int64))  # holders x tokens
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
    state_revenue: int = 0  # taxes, last round, cents
    state_transfers: int = 0  # UBI and benefits, last round, cents
    # economy-wide
    phi: float = 0.608
    capital_price: float = 8.0  # goods per unit of automation capital
    price_index: float = 1.0  # cents per unit, sales-weighted, last round
    rng_state: dict[str, Any] = field(default_factory=dict)
    # columns of registered roles and assets beyond the built-ins, by "<role>.<column>"
    extra: dict[str, NDArray[Any]] = field(default_factory=dict)

    # -- size -------------------------------------------------------------------------------------
    @classmethod
    def estimated_nbytes(
        cls, *, accounts: int, households: int, firms: int, banks: int, tokens: int, holders: int
    ) -> int:
        """Bytes a world of this size holds in its arrays, read off the columns' dtypes without
        building one: a population too large for memory is refused before anything is allocated."""
        per = {"h_": households, "f_": firms, "b_": banks, "t_": tokens, "holder_accounts": holders}
        total = accounts * (2 * np.dtype(np.int64).itemsize + np.dtype(bool).itemsize)  # ledger: balance, floor, issuer
        for f in fields(cls):
            if not callable(f.default_factory):
                continue
            column = f.default_factory()
            if not isinstance(column, np.ndarray):
                continue
            if f.name == "holdings":
                n = holders * tokens
            else:  # a column per household, firm, bank or token; the rest (the price history) are fixed size
                n = next((count for prefix, count in per.items() if f.name.startswith(prefix)), 0)
            total += n * column.dtype.itemsize
        return total

    # -- views ------------------------------------------------------------------------------------
    @property
    def n_households(self) -> int:
        return self.layout.count("household")

    @property
    def n_firms(self) -> int:
        return self.layout.count("firm")

    def balance_of(self, role: str) -> NDArray[np.int64]:
        """The ledger balances of a role's accounts (a view)."""
        b = self.layout.block(role)
        return self.ledger.balance[b.start : b.stop]

    def household_balance(self) -> NDArray[np.int64]:
        return self.balance_of("household")

    def firm_balance(self) -> NDArray[np.int64]:
        return self.balance_of("firm")

    def workers(self) -> NDArray[np.int64]:
        emp = self.h_employer
        return np.bincount(emp[emp >= 0], minlength=self.n_firms).astype(np.int64)

    def labour(self) -> NDArray[np.float64]:
        """Each firm's workforce in efficiency units (the sum of its workers' skills): what it
        produces with and pays wages on."""
        emp = self.h_employer
        hired = emp >= 0
        units: NDArray[np.float64] = np.bincount(
            emp[hired], weights=self.h_skill[hired], minlength=self.n_firms
        ).astype(np.float64)
        return units

    def pay(self) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """The employed, and each one's gross wage as settlement pays it: her firm's offer per
        efficiency unit times her skill, floored to the cent."""
        emp = np.flatnonzero(self.h_employer >= 0)
        return emp, np.floor(self.f_wage[self.h_employer[emp]] * self.h_skill[emp]).astype(np.int64)

    def mean_skill(self) -> NDArray[np.float64]:
        """Each firm's efficiency units per worker (1 with no workers: a new hire is average)."""
        heads = self.workers()
        out: NDArray[np.float64] = np.where(heads > 0, self.labour() / np.maximum(heads, 1), 1.0)
        return out

    def holder_rows(self, role: str) -> slice:
        """The rows of ``holdings`` that belong to a role's accounts (a role's rows are contiguous)."""
        b = self.layout.block(role)
        lo, hi = np.searchsorted(self.holder_accounts, [b.start, b.stop])
        return slice(int(lo), int(hi))

    def row_of(self, account: NDArray[np.int64]) -> NDArray[np.int64]:
        """The holdings row of each account (every one must be a holder)."""
        rows = np.searchsorted(self.holder_accounts, account).astype(np.int64)
        found = self.holder_accounts[np.minimum(rows, self.holder_accounts.size - 1)]
        if rows.size and not np.array_equal(found, account):
            raise ValueError("an account that may not hold tokens was asked for its holdings")
        return rows

    def tokens_of(self, role: str) -> slice:
        """The tokens issued by a role's accounts, in account order (contiguous: issuers ascend)."""
        b = self.layout.block(role)
        lo, hi = np.searchsorted(self.t_issuer, [b.start, b.stop])
        return slice(int(lo), int(hi))

    def token_wealth(self) -> NDArray[np.float64]:
        """Market value of each holder's tokens (per row of ``holdings``), cents."""
        return self.holdings @ self.t_price

    def household_holdings(self) -> NDArray[np.int64]:
        """Households' rows of ``holdings`` (a view)."""
        return self.holdings[self.holder_rows("household")]

    def household_token_wealth(self) -> NDArray[np.float64]:
        return self.token_wealth()[self.holder_rows("household")]

    def firm_net_worth(self, price_index: float, stock_cost: NDArray[np.float64] | float) -> NDArray[np.float64]:
        """Each firm's deposits plus capital at replacement cost (``price_index``) and stock at
        ``stock_cost`` a unit, less its loans, cents: what exit tests and what its token is worth."""
        real = self.f_capital * self.capital_price * price_index + self.f_inventory * stock_cost
        worth: NDArray[np.float64] = self.firm_balance() + real - self.f_loan
        return worth

    def book_per_share(self, price_index: float, stock_cost: NDArray[np.float64] | float) -> NDArray[np.float64]:
        """Each token's issuer's book net worth per share, cents: firms' :meth:`firm_net_worth`,
        banks' net worth, any other issuer's deposits. The fundamental a token's last trade can
        drift from."""
        value = np.zeros(self.t_issuer.size)
        value[self.tokens_of("firm")] = self.firm_net_worth(price_index, stock_cost)
        value[self.tokens_of("bank")] = self.b_equity
        other = np.ones(self.t_issuer.size, bool)
        other[self.tokens_of("firm")] = other[self.tokens_of("bank")] = False
        value[other] = self.ledger.balance[self.t_issuer[other]]
        shares = self.t_outstanding
        per_share: NDArray[np.float64] = np.where(shares > 0, value / np.maximum(shares, 1), 0.0)
        return per_share

    def rail_fees(self) -> NDArray[np.float64]:
        """Fee rate per rail in force: card, chain, bank transfer."""
        return np.array([min(self.card_fee, self.card_fee_cap), self.chain_fee, self.bank_transfer_fee])

    # -- snapshot / restore ---------------------------------------------------------------------
    _SKIP = ("layout", "ledger", "rng_state", "extra", "holdings")
    # fields added after snapshots were first written: (a field of the same length, fill, dtype)
    # to restore an older snapshot with (equal skills; no cash flow or age known)
    _ADDED: ClassVar[dict[str, tuple[str, float, type]]] = {
        "h_skill": ("h_employer", 1.0, np.float64),
        "f_cash_flow": ("f_price", 0.0, np.float64),
        "f_age": ("f_price", 0, np.int64),
        "f_profit": ("f_price", 0.0, np.float64),
        "f_profit_smoothed": ("f_price", 0.0, np.float64),
    }

    def snapshot(self) -> dict[str, Any]:
        """Plain arrays and scalars: everything needed to rebuild this world exactly."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self._SKIP}
        # holdings are mostly zeros: store them as coordinates (much less to copy and compress)
        rows, cols = np.nonzero(self.holdings)
        out["holdings"] = np.array(self.holdings.shape, dtype=np.int64)
        out["holdings_rows"], out["holdings_cols"] = rows.astype(np.int64), cols.astype(np.int64)
        out["holdings_qty"] = self.holdings[rows, cols]
        out["layout"] = self.layout.to_json()
        out["balance"] = self.ledger.balance
        out["floor"] = self.ledger.floor
        out["issuer"] = (
            self.ledger.issuer if self.ledger.issuer is not None else np.zeros(self.ledger.balance.size, dtype=bool)
        )
        out["opening_supply"] = self.ledger.opening_supply
        out["rng_state"] = json.dumps(self.rng_state)
        out |= {f"extra.{k}": v for k, v in self.extra.items()}
        return out

    @classmethod
    def restore(cls, snap: dict[str, Any]) -> World:
        ledger = Ledger(
            balance=np.array(snap["balance"], dtype=np.int64),
            floor=np.array(snap["floor"], dtype=np.int64),
            issuer=np.array(snap["issuer"], dtype=bool) if "issuer" in snap else None,
            opening_supply=int(snap["opening_supply"]),
        )
        kwargs: dict[str, Any] = {}
        for fl in fields(cls):
            if fl.name in cls._SKIP:
                continue
            if fl.name not in snap and fl.name in cls._ADDED:  # a snapshot from before the field
                like, fill, dtype = cls._ADDED[fl.name]
                kwargs[fl.name] = np.full(np.asarray(snap[like]).size, fill, dtype=dtype)
                continue
            arr = np.asarray(snap[fl.name])
            kwargs[fl.name] = arr.copy() if arr.ndim > 0 else arr.item()
        holdings = np.zeros(tuple(int(x) for x in np.asarray(snap["holdings"])), dtype=np.int64)
        holdings[np.asarray(snap["holdings_rows"]), np.asarray(snap["holdings_cols"])] = snap["holdings_qty"]
        extra = {k.removeprefix("extra."): np.asarray(v).copy() for k, v in snap.items() if k.startswith("extra.")}
        layout = Layout.from_json(str(np.asarray(snap["layout"])))
        rng_state = json.loads(str(np.asarray(snap["rng_state"])))
        return cls(layout=layout, ledger=ledger, holdings=holdings, rng_state=rng_state, extra=extra, **kwargs)

    def to_bytes(self) -> bytes:
        """A compressed snapshot: an ``.npz`` archive compressed with zstd as a whole.

        zstd (through pyarrow) is ~10x faster than the zlib of ``savez_compressed`` at a similar
        ratio, and snapshots are written every round. The header holds the raw length.
        """
        import pyarrow as pa

        buf = io.BytesIO()
        arrays: dict[str, NDArray[Any]] = {k: np.asarray(v) for k, v in self.snapshot().items()}
        np.savez(buf, allow_pickle=False, **arrays)
        raw = buf.getvalue()
        return _MAGIC + len(raw).to_bytes(8, "little") + bytes(pa.compress(raw, codec="zstd", asbytes=True))

    @classmethod
    def from_bytes(cls, data: bytes) -> World:
        import pyarrow as pa

        if data[: len(_MAGIC)] != _MAGIC:
            raise ValueError("not a tokenomy world snapshot")
        size = int.from_bytes(data[len(_MAGIC) : len(_MAGIC) + 8], "little")
        raw = pa.decompress(data[len(_MAGIC) + 8 :], decompressed_size=size, codec="zstd", asbytes=True)
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            return cls.restore({k: z[k] for k in z.files})
