"""MarketGraph: the economy as a networkx ``MultiDiGraph``, for looking at, not for computing.

Nodes are agents (attribute ``role``: household, firm, bank, network, regulator) and assets
(attribute ``kind``: ``equity_token``). Edges carry ``kind``:

* ``employment``  household -> firm (``wage``)
* ``holding``     household -> token (``quantity``, ``value``)
* ``loan``        bank -> firm (``principal``, ``rate``)
* ``deposit``     household -> bank (``amount``)
* ``delegation``  household -> bank or fund (none yet: reserved for auto-invest and funds)
* ``payment``     payer -> payee, the round's flows aggregated per kind and rail (``amount``, ``fee``)

Money is in currency units. The wrapper stays thin: ``.g`` is the networkx graph itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from tokenomy.world import World

__all__ = ["EDGE_KINDS", "MarketGraph"]

EDGE_KINDS = ("employment", "holding", "loan", "deposit", "delegation", "payment")


class MarketGraph:
    def __init__(self, g: nx.MultiDiGraph | None = None) -> None:
        self.g: nx.MultiDiGraph = g if g is not None else nx.MultiDiGraph()

    def __repr__(self) -> str:
        return f"MarketGraph({self.g.number_of_nodes()} nodes, {self.g.number_of_edges()} edges)"

    def edges(self, kind: str) -> list[tuple[Any, Any, dict[str, Any]]]:
        """All edges of one kind, as ``(u, v, data)``."""
        if kind not in EDGE_KINDS:
            raise ValueError(f"unknown edge kind {kind!r}; kinds: {', '.join(EDGE_KINDS)}")
        return [(u, v, d) for u, v, d in self.g.edges(data=True) if d["kind"] == kind]

    def subgraph(self, kind: str) -> nx.MultiDiGraph:
        """A view with only the edges of one kind (all nodes kept)."""
        return nx.subgraph_view(self.g, filter_edge=lambda u, v, k: self.g.edges[u, v, k]["kind"] == kind)

    @classmethod
    def from_world(cls, world: World, payments: pd.DataFrame | None = None) -> MarketGraph:
        lay = world.layout
        g = nx.MultiDiGraph(round=world.round)
        name = lay.name_of
        for acct in range(lay.n_accounts):
            role = str(lay.role_of(np.array([acct]))[0])
            g.add_node(name(acct), role=role, balance=float(world.ledger.balance[acct]) / 100)
        tokens = [f"token:{name(int(a))}" for a in lay.issuer_accounts()]
        for j, t in enumerate(tokens):
            g.add_node(
                t,
                kind="equity_token",
                issuer=name(lay.firm0 + j),
                price=float(world.t_price[j]) / 100,
                outstanding=int(world.t_outstanding[j]),
            )
        emp = np.flatnonzero(world.h_employer >= 0)
        g.add_edges_from(
            (
                name(int(h)),
                name(lay.firm0 + int(world.h_employer[h])),
                {"kind": "employment", "wage": float(world.f_wage[world.h_employer[h]]) / 100},
            )
            for h in emp
        )
        rows, cols = np.nonzero(world.holdings)
        g.add_edges_from(
            (
                name(int(h)),
                tokens[int(j)],
                {
                    "kind": "holding",
                    "quantity": int(world.holdings[h, j]),
                    "value": float(world.holdings[h, j] * world.t_price[j]) / 100,
                },
            )
            for h, j in zip(rows, cols, strict=True)
        )
        for f in np.flatnonzero(world.f_loan > 0):
            g.add_edge(
                name(lay.bank0 + int(world.f_loan_bank[f])),
                name(lay.firm0 + int(f)),
                kind="loan",
                principal=float(world.f_loan[f]) / 100,
                rate=float(world.f_loan_rate[f]),
            )
        bal = world.household_balance()
        g.add_edges_from(
            (name(h), name(lay.bank0 + int(world.h_bank[h])), {"kind": "deposit", "amount": float(bal[h]) / 100})
            for h in range(lay.households)
        )
        if payments is not None and not payments.empty and (payments["payer_id"] >= 0).any():
            for r in payments.itertuples(index=False):
                g.add_edge(
                    name(int(r.payer_id)),
                    name(int(r.payee_id)),
                    kind="payment",
                    flow=r.kind,
                    rail=r.rail,
                    amount=float(r.amount),
                    fee=float(r.fee_cents) / 100,
                )
        return cls(g)
