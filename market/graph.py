"""MarketGraph: the economy as a networkx ``MultiDiGraph``, for looking at, not for computing.

Nodes are accounts (attribute ``role``: household, firm, bank, network, regulator, ...) and
assets (attribute ``kind``: ``equity_token``). Edges carry ``kind``:

* ``employment``  household -> firm (``wage``)
* ``holding``     holder -> token (``quantity``, ``value``)
* ``loan``        bank -> firm (``principal``, ``rate``)
* ``deposit``     household -> bank (``amount``)
* ``delegation``  household -> bank or fund (none yet: reserved for auto-invest and funds)
* ``payment``     payer -> payee, the round's flows aggregated per kind and rail (``amount``, ``fee``)

Money is in currency units. ``MarketGraph`` *is* a ``MultiDiGraph``, so every networkx function
takes it as it is; it only adds ``edges_of(kind)``, ``subgraph_of(kind)`` and ``from_world``.
``from_world`` reads a world through the two small protocols below, so this package imports
nothing from the rest of tokenomy, not even for types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import networkx as nx
import numpy as np
from numpy.typing import NDArray

from tokenomy.market.ledger import Ledger

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["EDGE_KINDS", "AccountLayout", "MarketGraph", "WorldLike"]

EDGE_KINDS = ("employment", "holding", "loan", "deposit", "delegation", "payment")


class AccountLayout(Protocol):
    """What ``from_world`` reads of a world's account layout."""

    @property
    def n_accounts(self) -> int: ...

    def name_of(self, account: int, /) -> str: ...

    def role_of(self, accounts: NDArray[np.int64], /) -> NDArray[np.object_]: ...

    def first(self, role: str, /) -> int:
        """The first account of ``role``'s block (accounts of one role are contiguous)."""
        ...


class WorldLike(Protocol):
    """What ``from_world`` reads of a world: ``tokenomy.world.World`` fits, and so does a test's stand-in.

    Token ``j`` is issued by account ``t_issuer[j]``; row ``r`` of ``holdings`` belongs to account
    ``holder_accounts[r]``; households, firms and banks are indexed from their role's first account.
    """

    @property
    def round(self) -> int: ...
    @property
    def layout(self) -> AccountLayout: ...
    @property
    def ledger(self) -> Ledger: ...
    @property
    def t_price(self) -> NDArray[np.float64]: ...
    @property
    def t_outstanding(self) -> NDArray[np.int64]: ...
    @property
    def t_issuer(self) -> NDArray[np.int64]: ...
    @property
    def holdings(self) -> NDArray[np.int64]: ...
    @property
    def holder_accounts(self) -> NDArray[np.int64]: ...
    @property
    def h_employer(self) -> NDArray[np.int64]: ...
    @property
    def f_wage(self) -> NDArray[np.float64]: ...
    @property
    def h_skill(self) -> NDArray[np.float64]: ...
    @property
    def f_loan(self) -> NDArray[np.int64]: ...
    @property
    def f_loan_bank(self) -> NDArray[np.int64]: ...
    @property
    def f_loan_rate(self) -> NDArray[np.float64]: ...
    @property
    def h_bank(self) -> NDArray[np.int64]: ...
    def household_balance(self) -> NDArray[np.int64]: ...


class MarketGraph(nx.MultiDiGraph):  # type: ignore[misc]  # networkx has no stubs here: its classes are Any to mypy
    """A ``MultiDiGraph`` of accounts, tokens and their relations; networkx's constructor, unchanged.

    networkx builds new graphs of the same class with ``self.__class__()`` (``copy``, ``subgraph``,
    ``reverse``, views), which is why this class adds no constructor arguments.
    """

    def __repr__(self) -> str:
        return f"MarketGraph({self.number_of_nodes()} nodes, {self.number_of_edges()} edges)"

    @property
    def g(self) -> MarketGraph:
        """The graph itself, for code written when ``MarketGraph`` wrapped a networkx graph in ``.g``."""
        return self

    def edges_of(self, kind: str) -> list[tuple[Any, Any, dict[str, Any]]]:
        """All edges of one kind, as ``(u, v, data)``."""
        _check_kind(kind)
        return [(u, v, d) for u, v, d in self.edges(data=True) if d["kind"] == kind]

    def subgraph_of(self, kind: str) -> MarketGraph:
        """A read-only view with only the edges of one kind (all nodes kept)."""
        _check_kind(kind)
        view: MarketGraph = nx.subgraph_view(self, filter_edge=lambda u, v, k: self.edges[u, v, k]["kind"] == kind)
        return view

    @classmethod
    def from_world(cls, world: WorldLike, payments: pd.DataFrame | None = None) -> MarketGraph:
        """Stocks (employment, holdings, loans, deposits) from ``world``; flows from one round's ``payments``."""
        lay = world.layout
        g = cls(round=world.round)
        name = lay.name_of
        household0, firm0, bank0 = lay.first("household"), lay.first("firm"), lay.first("bank")
        for acct in range(lay.n_accounts):
            role = str(lay.role_of(np.array([acct], dtype=np.int64))[0])
            g.add_node(name(acct), role=role, balance=float(world.ledger.balance[acct]) / 100)
        tokens = [f"token:{name(int(a))}" for a in world.t_issuer]
        for j, t in enumerate(tokens):
            g.add_node(
                t,
                kind="equity_token",
                issuer=name(int(world.t_issuer[j])),
                price=float(world.t_price[j]) / 100,
                outstanding=int(world.t_outstanding[j]),
            )
        emp = np.flatnonzero(world.h_employer >= 0)
        g.add_edges_from(
            (
                name(household0 + int(h)),
                name(firm0 + int(world.h_employer[h])),
                {"kind": "employment", "wage": float(world.f_wage[world.h_employer[h]] * world.h_skill[h]) / 100},
            )
            for h in emp
        )
        rows, cols = np.nonzero(world.holdings)
        g.add_edges_from(
            (
                name(int(world.holder_accounts[r])),
                tokens[int(j)],
                {
                    "kind": "holding",
                    "quantity": int(world.holdings[r, j]),
                    "value": float(world.holdings[r, j] * world.t_price[j]) / 100,
                },
            )
            for r, j in zip(rows, cols, strict=True)
        )
        for f in np.flatnonzero(world.f_loan > 0):
            g.add_edge(
                name(bank0 + int(world.f_loan_bank[f])),
                name(firm0 + int(f)),
                kind="loan",
                principal=float(world.f_loan[f]) / 100,
                rate=float(world.f_loan_rate[f]),
            )
        bal = world.household_balance()
        g.add_edges_from(
            (
                name(household0 + h),
                name(bank0 + int(world.h_bank[h])),
                {"kind": "deposit", "amount": float(bal[h]) / 100},
            )
            for h in range(bal.size)
        )
        if payments is not None and not payments.empty and (payments["payer_id"] >= 0).any():
            for p in payments.itertuples(index=False):
                g.add_edge(
                    name(int(p.payer_id)),
                    name(int(p.payee_id)),
                    kind="payment",
                    flow=p.kind,
                    rail=p.rail,
                    amount=float(p.amount),
                    fee=float(p.fee_cents) / 100,
                )
        return g


def _check_kind(kind: str) -> None:
    if kind not in EDGE_KINDS:
        raise ValueError(f"unknown edge kind {kind!r}; kinds: {', '.join(EDGE_KINDS)}")
