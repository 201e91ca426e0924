"""MarketGraph from a stand-in world: built through the protocols only, and a networkx graph in full.

The stand-in is a tiny dataclass (not ``tokenomy.world.World``), so these tests pin what
``from_world`` reads and nothing else.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray

from tokenomy.market.graph import EDGE_KINDS, MarketGraph, WorldLike
from tokenomy.market.ledger import Ledger


@dataclass(frozen=True)
class FakeLayout:
    roles: tuple[str, ...]  # one per account
    names: tuple[str, ...]

    @property
    def n_accounts(self) -> int:
        return len(self.roles)

    def name_of(self, account: int) -> str:
        return self.names[account]

    def role_of(self, accounts: NDArray[np.int64]) -> NDArray[np.object_]:
        return np.array(self.roles, dtype=object)[accounts]

    def first(self, role: str) -> int:
        return self.roles.index(role)


def i64(*xs: int) -> NDArray[np.int64]:
    return np.array(xs, dtype=np.int64)


def f64(*xs: float) -> NDArray[np.float64]:
    return np.array(xs, dtype=np.float64)


@dataclass
class FakeWorld:
    """Three households, two firms (each with a token), one bank, one fund that holds tokens too."""

    layout: FakeLayout = field(
        default_factory=lambda: FakeLayout(
            ("household", "household", "household", "firm", "firm", "bank", "fund"),
            ("h0", "h1", "h2", "f0", "f1", "b0", "u0"),
        )
    )
    ledger: Ledger = field(default_factory=lambda: Ledger.open(7, [10_000, 20_000, 0, 50_000, 0, 100_000, 7_000]))
    round: int = 3
    t_issuer: NDArray[np.int64] = field(default_factory=lambda: i64(3, 4))
    t_price: NDArray[np.float64] = field(default_factory=lambda: f64(250.0, 100.0))
    t_outstanding: NDArray[np.int64] = field(default_factory=lambda: i64(100, 50))
    holder_accounts: NDArray[np.int64] = field(default_factory=lambda: i64(0, 1, 6))
    holdings: NDArray[np.int64] = field(default_factory=lambda: np.array([[10, 0], [0, 5], [3, 0]], dtype=np.int64))
    h_employer: NDArray[np.int64] = field(default_factory=lambda: i64(0, -1, 1))
    f_wage: NDArray[np.float64] = field(default_factory=lambda: f64(3_000.0, 2_500.0))
    h_skill: NDArray[np.float64] = field(default_factory=lambda: f64(1.0, 1.0, 1.0))
    f_loan: NDArray[np.int64] = field(default_factory=lambda: i64(0, 40_000))
    f_loan_bank: NDArray[np.int64] = field(default_factory=lambda: i64(0, 0))
    f_loan_rate: NDArray[np.float64] = field(default_factory=lambda: f64(0.0, 0.05))
    h_bank: NDArray[np.int64] = field(default_factory=lambda: i64(0, 0, 0))

    def household_balance(self) -> NDArray[np.int64]:
        return self.ledger.balance[:3]


PAYMENTS = pd.DataFrame(
    {"payer_id": [0], "payee_id": [3], "kind": ["consumption"], "rail": ["card"], "amount": [12.5], "fee_cents": [28]}
)


@pytest.fixture
def graph() -> MarketGraph:
    world: WorldLike = FakeWorld()  # the annotation states that the stand-in fits the protocol
    return MarketGraph.from_world(world, PAYMENTS)


def test_from_world_reads_accounts_tokens_and_every_edge_kind(graph: MarketGraph) -> None:
    assert graph.graph["round"] == 3
    assert graph.nodes["h1"] == {"role": "household", "balance": 200.0}
    assert graph.nodes["u0"]["role"] == "fund"
    assert graph.nodes["token:f1"] == {"kind": "equity_token", "issuer": "f1", "price": 1.0, "outstanding": 50}
    strip = {k: sorted((u, v) for u, v, _ in graph.edges_of(k)) for k in EDGE_KINDS}
    assert strip == {
        "employment": [("h0", "f0"), ("h2", "f1")],
        "holding": [("h0", "token:f0"), ("h1", "token:f1"), ("u0", "token:f0")],  # rows via holder_accounts
        "loan": [("b0", "f1")],
        "deposit": [("h0", "b0"), ("h1", "b0"), ("h2", "b0")],
        "delegation": [],
        "payment": [("h0", "f0")],
    }
    (_, _, held), *_ = (e for e in graph.edges_of("holding") if e[0] == "u0")
    assert held == {"kind": "holding", "quantity": 3, "value": 7.5}
    (_, _, loan), *_ = graph.edges_of("loan")
    assert loan == {"kind": "loan", "principal": 400.0, "rate": 0.05}
    (_, _, pay), *_ = graph.edges_of("payment")
    assert pay["flow"] == "consumption" and pay["fee"] == 0.28


def test_it_is_a_networkx_graph_that_algorithms_take_as_is(graph: MarketGraph) -> None:
    assert isinstance(graph, nx.MultiDiGraph) and graph.g is graph
    centrality = nx.degree_centrality(graph)
    assert set(centrality) == set(graph.nodes)
    n = graph.number_of_nodes() - 1
    assert centrality["h0"] == pytest.approx(4 / n)  # employment, holding, deposit, payment
    assert centrality["b0"] == pytest.approx(4 / n)  # three deposits in, one loan out
    assert nx.has_path(graph, "b0", "f1") and not nx.has_path(graph, "f1", "b0")


def test_subgraph_of_keeps_all_nodes_and_one_edge_kind(graph: MarketGraph) -> None:
    loans = graph.subgraph_of("loan")
    assert isinstance(loans, MarketGraph) and nx.is_frozen(loans)
    assert loans.number_of_nodes() == graph.number_of_nodes()
    assert list(loans.edges()) == [("b0", "f1")]
    assert loans.edges_of("loan") == graph.edges_of("loan")
    assert nx.degree_centrality(loans)["b0"] == pytest.approx(1 / (graph.number_of_nodes() - 1))
    with pytest.raises(ValueError, match="unknown edge kind 'loans'"):
        graph.subgraph_of("loans")
    with pytest.raises(ValueError, match="unknown edge kind"):
        graph.edges_of("holdings")


def test_graphs_networkx_makes_from_it_stay_market_graphs(graph: MarketGraph) -> None:
    """networkx builds copies and views with ``self.__class__()``: the helpers must come along."""
    copy = graph.copy()
    assert type(copy) is MarketGraph and copy.graph == graph.graph
    assert sorted(copy.edges(keys=True)) == sorted(graph.edges(keys=True))
    copy.remove_node("b0")
    assert graph.has_node("b0") and copy.edges_of("loan") == []
    assert type(graph.subgraph(["h0", "f0", "token:f0"])) is MarketGraph
    assert len(graph.subgraph(["h0", "f0", "token:f0"]).edges_of("holding")) == 1
    assert type(graph.reverse()) is MarketGraph
    assert graph.reverse().edges_of("loan")[0][:2] == ("f1", "b0")
    assert graph.to_directed().number_of_edges() == graph.number_of_edges()
    assert graph.subgraph_of("deposit").copy().edges_of("deposit") == graph.edges_of("deposit")
    assert MarketGraph(graph).number_of_edges() == graph.number_of_edges()  # networkx's own constructor
    again = pickle.loads(pickle.dumps(graph))
    assert type(again) is MarketGraph and nx.utils.edges_equal(again.edges(data=True), graph.edges(data=True))


def test_an_empty_payments_table_adds_no_flows() -> None:
    g = MarketGraph.from_world(FakeWorld(), pd.DataFrame())
    assert g.edges_of("payment") == [] and repr(g) == "MarketGraph(9 nodes, 9 edges)"
