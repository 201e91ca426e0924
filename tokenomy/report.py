"""``tokenomy report``: one self-contained HTML page of a run's (or a sweep's) figures.

Figures are PNG files embedded as base64 ``data:`` URLs and the style sheet is inline, so the page
needs no network and no script: it can be mailed, archived or opened from a sandbox. The figures
themselves are the pure functions of :mod:`tokenomy.figures` (``tokenomy.report.figures``); this
module reads what they need from the run directory, cheaply at scale (a 10,000-household run's
payments table has tens of millions of rows: only the rent kinds' rows are read, a few columns, and
only one round's for the market graph), and writes the page.

A sweep directory (``sweep.json`` and ``sweep.parquet``: one row per run and round, a column per
grid field, ``seed`` and ``run``) gets the same time-series figures as means over seeds with 95%
Student-t bands per grid combination; the rent breakdown and the market graph are one chosen run's.
"""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tokenomy import figures, registry
from tokenomy.market.graph import MarketGraph
from tokenomy.store import Run, RunDirError, write_atomic
from tokenomy.sweep import SweepError, open_sweep
from tokenomy.world import World

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["FLOW_OF", "ReportError", "figures", "grouped_graph", "rent_flows", "sweep_frame", "write_report"]

FLOW_OF = {
    "consumption": "goods",
    "investment": "goods",
    "government": "goods",
    "token_trade": "tokens",
    "equity_issue": "tokens",
    "fire_sale": "tokens",
    "wage": "wages",
    "income_tax": "taxes and transfers",
    "robot_tax": "taxes and transfers",
    "ubi": "taxes and transfers",
    "unemployment_benefit": "taxes and transfers",
    "dividend": "capital income",
    "deposit_interest": "capital income",
    "liquidation": "capital income",
    "loan_interest": "credit",
    "loan_repayment": "credit",
    "loan": "credit",
    "cb_advance": "central bank",
    "cb_repayment": "central bank",
    "reserve_interest": "central bank",
    "advance_interest": "central bank",
    "recapitalisation": "central bank",
    "bail_in": "central bank",
}
"""The market graph's edge categories: payment kinds grouped (a kind registered as rent is ``rent (fees)``;
one this table does not name is ``other``)."""
_INTERMEDIARY = {
    ("network", "card"): "card network (card fees)",
    ("network", "chain"): "chain operator (chain fees)",
    ("bank", "bank_transfer"): "banks (bank-transfer fees)",
}
_MARGIN_KINDS = ("loan_interest", "reserve_interest", "deposit_interest")
SUMMARY = (
    ("gdp", "GDP, $ per month", "{:,.0f}"),
    ("potential_output", "potential output, $ per month", "{:,.0f}"),
    ("consumption", "consumption, $ per month", "{:,.0f}"),
    ("wage_mean", "mean wage, $ per month", "{:,.0f}"),
    ("labour_share", "labour share", "{:.3f}"),
    ("unemployment_rate", "unemployment", "{:.1%}"),
    ("inflation", "inflation per month", "{:+.2%}"),
    ("gini_wealth", "Gini (wealth)", "{:.3f}"),
    ("top10_wealth_share", "top-10% wealth share", "{:.1%}"),
    ("rent_share", "rent share of GDP", "{:.2%}"),
)


class ReportError(ValueError):
    """A report that cannot be written as asked (no such round, not a run or sweep directory)."""


# -- reading ----------------------------------------------------------------------------------------
def _scan(files: Sequence[Path], columns: Sequence[str], where: Any = None) -> Any:
    """``columns`` of the rows matching ``where`` (a pyarrow expression) of a table's files, as a
    ``pyarrow.Table`` (None when there is no file, or it lacks a column)."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    if not files:
        return None
    schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
    if any(c not in schema.names for c in columns):
        return None
    return ds.dataset([str(f) for f in files], schema=schema, format="parquet").to_table(
        columns=list(columns), filter=where
    )


def _read(files: Sequence[Path], columns: Sequence[str], where: Any = None) -> pd.DataFrame:
    """:func:`_scan` as a DataFrame (empty, with ``columns``, when there is nothing to read)."""
    table = _scan(files, columns, where)
    frame: pd.DataFrame = table.to_pandas() if table is not None else pd.DataFrame(columns=list(columns))
    return frame


def rent_flows(run: Run, layout: Any = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The run's rent and, for comparison, the banks' net interest income, per round, in dollars.

    Rent is every payment of a kind registered as rent (``tokenomy.registry``: the rails' fees
    today), which is what the ``rent`` metric sums; here it is split by who collects it: the
    intermediary kind (payee role and rail: card network, chain operator, banks' transfer fees) and
    the collecting account (its name from ``layout``, or the kind when payments were recorded per
    role). Banks' net interest income (loan and reserve interest received, less deposit interest
    paid) is a margin the metric does not count as rent (only banks are paid loan and reserve
    interest, and only banks pay deposit interest). Returns ``(rent, margin)``: rent has round,
    kind, intermediary, collector, amount; margin has round, amount.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    rent_kinds = sorted(registry.rent_kinds())
    cols = ["round", "kind", "rail", "payee_role", "payee_id", "amount_cents"]
    where = pc.field("kind").isin([*rent_kinds, *_MARGIN_KINDS])
    t = _scan(run.table_files("payments"), cols, where)
    empty = pd.DataFrame({"round": pd.Series(dtype="int64"), "amount": pd.Series(dtype="float64")})
    if t is None or not t.num_rows:
        return pd.DataFrame(columns=["round", "kind", "intermediary", "collector", "amount"]), empty
    # summed in arrow: a few thousand rows of the millions reach pandas
    t = pa.table({c: (t[c].cast(pa.string()) if pa.types.is_dictionary(t[c].type) else t[c]) for c in cols})
    is_rent = pc.is_in(t["kind"], pa.array(rent_kinds, pa.string()))
    keys = ["round", "kind", "rail", "payee_role", "payee_id"]
    r = t.filter(is_rent).group_by(keys).aggregate([("amount_cents", "sum")]).to_pandas()
    r = r.sort_values(keys, kind="stable").reset_index(drop=True)
    rails = r["rail"].fillna("").astype(str)
    intermediary = [
        _INTERMEDIARY.get((role, rail), f"{role}: {kind}" + (f" ({rail})" if rail else ""))
        for role, rail, kind in zip(r["payee_role"].astype(str), rails, r["kind"].astype(str), strict=True)
    ]
    name = layout.name_of if layout is not None else None
    rent = pd.DataFrame(
        {
            "round": r["round"].astype("int64"),
            "kind": r["kind"].astype(str),
            "intermediary": intermediary,
            "collector": [
                name(int(i)) if name is not None and i >= 0 else k
                for i, k in zip(r["payee_id"], intermediary, strict=True)
            ],
            "amount": r["amount_cents_sum"].to_numpy(dtype=np.float64) / 100,
        }
    )
    # the banks' margin: loan and reserve interest are paid to banks, deposit interest by them
    m = t.filter(pc.invert(is_rent)).group_by(["round", "kind"]).aggregate([("amount_cents", "sum")]).to_pandas()
    sign = np.where(m["kind"].astype(str) == "deposit_interest", -1.0, 1.0)
    margin = (
        pd.DataFrame({"round": m["round"], "amount": sign * m["amount_cents_sum"].to_numpy(dtype=np.float64) / 100})
        .groupby("round", as_index=False)["amount"]
        .sum()
    )
    return rent, margin


# -- the market graph, grouped ----------------------------------------------------------------------
def _wealth(world: World) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Net wealth of every account, dollars: households' deposits and tokens at market price; firms'
    deposits and capital at replacement cost less loans; banks' and the central bank's net worth; the
    state's deposits less its central-bank debt; anyone else's deposits."""
    lay = world.layout
    w = world.ledger.balance.astype(np.float64)
    roles = set(lay.roles)

    def put(role: str, values: Any) -> None:
        if role in roles:
            b = lay.block(role)
            w[b.start : b.stop] = values

    put("household", world.household_balance() + world.household_token_wealth())
    put("firm", world.firm_balance() + world.f_capital * world.capital_price * world.price_index - world.f_loan)
    put("bank", world.b_equity)
    put("central_bank", world.cb_equity)
    if "regulator" in roles:
        put("regulator", world.balance_of("regulator") - world.cb_advances)
    out: np.ndarray[Any, np.dtype[np.float64]] = w / 100
    return out


def _equal_groups(key: np.ndarray[Any, Any], groups: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Group index (0 = lowest ``key``) of each member, in ``groups`` groups of (nearly) equal size."""
    order = np.argsort(key, kind="stable")
    g = np.empty(key.size, dtype=np.int64)
    g[order] = np.arange(key.size) * groups // max(key.size, 1)
    return g


@dataclass
class _Node:
    name: str
    role: str
    label: str
    members: np.ndarray[Any, np.dtype[np.int64]]  # accounts
    what: str
    pos: tuple[float, float] = (0.0, 0.0)
    label_side: str = "right"


def _money(x: float) -> str:
    return figures.dollars(x)


GROUPS = {"household": 10, "firm": 5, "bank": 5}
"""How many groups the market graph makes of a role's accounts when it has more than that many."""


def _nodes(world: World, wealth: np.ndarray[Any, Any], *, groups: dict[str, int], by_role: bool) -> list[_Node]:
    """The graph's nodes, a role at a time: households by wealth, firms by workforce and banks by net
    worth, each in ``groups[role]`` groups of equal size when it has more accounts than that (else one
    by one); the other roles' accounts one by one (or one node per role past four); ``by_role``: one
    node per role (payments were recorded per role)."""
    lay = world.layout
    workers = world.workers().astype(np.float64)
    out: list[_Node] = []
    for b in lay.blocks:
        acc = np.arange(b.start, b.stop, dtype=np.int64)
        k = groups.get(b.role, 4)
        if b.count == 0:
            continue
        if by_role or (b.role not in groups and b.count > k):
            out.append(_Node(b.role, b.role, f"{b.role} ({b.count:,})", acc, f"all {b.count:,} {b.role} accounts"))
            continue
        if b.count <= k:
            for a in acc:
                n = lay.name_of(int(a))
                what = {"household": "a household", "firm": "a firm", "bank": "a bank"}.get(b.role, b.role)
                out.append(_Node(n, b.role, n.replace("_", " "), np.array([a]), what))
            continue
        if b.role == "firm":  # by workforce, ties broken by wealth
            key = workers + wealth[acc] / (1 + np.abs(wealth[acc]).max()) * 0.5
        else:
            key = wealth[acc]
        g = _equal_groups(key, k)
        for i in range(k):
            m = acc[g == i]
            if b.role == "household":
                tag = " (poorest)" if i == 0 else " (richest)" if i == k - 1 else ""
                node = _Node(
                    f"households D{i + 1}",
                    "household",
                    f"D{i + 1}{tag}",
                    m,
                    f"wealth decile {i + 1}: {m.size:,} households, {_money(wealth[m].min())} to "
                    f"{_money(wealth[m].max())} each",
                )
            elif b.role == "firm":
                w = workers[m - b.start]
                tag = " (smallest)" if i == 0 else " (largest)" if i == k - 1 else ""
                node = _Node(
                    f"firms F{i + 1}",
                    "firm",
                    f"F{i + 1}{tag}",
                    m,
                    f"{m.size:,} firms with {int(w.min()):,} to {int(w.max()):,} workers each "
                    f"({int(w.sum()):,} in all)",
                )
            else:
                node = _Node(
                    f"banks B{i + 1}",
                    "bank",
                    f"B{i + 1}",
                    m,
                    f"{m.size:,} banks, net worth {_money(wealth[m].min())} to {_money(wealth[m].max())}",
                )
            out.append(node)
    out.append(
        _Node(
            "mint",
            "mint",
            "money issued / destroyed",
            np.empty(0, np.int64),
            "the other side of money created (new loans, central-bank advances) and destroyed (repayments)",
        )
    )
    _place(out)
    return out


def _place(nodes: list[_Node]) -> None:
    """Columns, left to right: households (richest at the top), firms (largest at the top), banks; the
    state, the central bank and the mint along the top; payment operators and other roles at the right."""
    columns = {"household": 0.0, "firm": 1.15, "bank": 2.3}
    for role, x in columns.items():
        mine = [n for n in nodes if n.role == role]
        ys = np.linspace(0.0, 1.0, len(mine)) if len(mine) > 1 else np.array([0.5])
        if role == "bank" and len(mine) > 1:
            ys = np.linspace(0.1, 0.9, len(mine))
        for n, y in zip(mine, ys, strict=True):
            n.pos = (x, float(y))
            n.label_side = "left" if role == "household" else "right"
    top = {"regulator": (0.55, 1.25), "central_bank": (1.75, 1.25), "mint": (2.95, 1.25)}
    rest = [n for n in nodes if n.role not in columns]
    side = [n for n in rest if n.role not in top]
    for n in rest:
        if n.role in top:
            n.pos, n.label_side = top[n.role], "above"
    ys = np.linspace(0.8, 0.2, len(side)) if len(side) > 1 else np.array([0.5])
    for n, y in zip(side, ys, strict=True):
        n.pos, n.label_side = (3.2, float(y)), "right"


def grouped_graph(world: World, payments: pd.DataFrame, *, groups: dict[str, int] | None = None) -> MarketGraph:
    """The market graph of one round with households, firms and banks grouped (``groups``, default
    :data:`GROUPS`), so that it can be drawn at any size: a :class:`MarketGraph` whose nodes carry
    ``role``, ``label``, ``members``, ``wealth`` ($, net), ``pos`` and ``what`` (who is in the node),
    and whose ``payment`` edges are the round's payments between nodes per category of
    :data:`FLOW_OF` (``flow``, ``amount`` in $). ``graph.graph["grouping"]`` says how accounts were
    grouped, ``graph.graph["round"]`` which round it is.

    ``MarketGraph.from_world`` keeps one node per account and token and every stock relation (at
    10,000 households: 736,000 edges, 8 s to build); this reads the same world and payments into a
    few dozen nodes.
    """
    by_role = not payments.empty and bool((payments["payer_id"] < 0).all()) and bool((payments["payee_id"] < 0).all())
    wealth = _wealth(world)
    k = {**GROUPS, **(groups or {})}
    nodes = _nodes(world, wealth, groups=k, by_role=by_role)
    lay = world.layout
    node_of = np.full(lay.n_accounts + 1, len(nodes) - 1, dtype=np.int64)  # index n_accounts: the mint (-1)
    for i, n in enumerate(nodes):
        node_of[n.members] = i
    g = MarketGraph(round=world.round - 1)  # a snapshot's clock has moved on to the next round
    for n in nodes:
        g.add_node(
            n.name,
            role=n.role,
            label=n.label,
            members=int(n.members.size),
            what=n.what,
            pos=n.pos,
            wealth=float(wealth[n.members].sum()) if n.members.size else 0.0,
            label_side=n.label_side,
        )
    rent = registry.rent_kinds()
    if not payments.empty:
        kinds = pd.Categorical(payments["kind"])  # a recorded table's is categorical already: no string per row
        flows = sorted(set(FLOW_OF.values()) | {"rent (fees)", "other"})
        code_of = [flows.index("rent (fees)" if k in rent else FLOW_OF.get(str(k), "other")) for k in kinds.categories]
        flow = np.asarray(code_of, dtype=np.int64)[kinds.codes]
        if by_role:
            index = {n.role: i for i, n in enumerate(nodes)}
            src = payments["payer_role"].astype(str).map(index).to_numpy(dtype=np.int64)
            dst = payments["payee_role"].astype(str).map(index).to_numpy(dtype=np.int64)
        else:
            payer, payee = payments["payer_id"].to_numpy(), payments["payee_id"].to_numpy()
            src = node_of[np.where(payer < 0, lay.n_accounts, payer)]
            dst = node_of[np.where(payee < 0, lay.n_accounts, payee)]
        key = (src * len(nodes) + dst) * len(flows) + flow
        edges, at = np.unique(key, return_inverse=True)
        amount = np.bincount(at, weights=payments["amount"].to_numpy(dtype=np.float64), minlength=edges.size)
        for e, a in zip(edges, amount, strict=True):
            if a > 0:
                pair, f = divmod(int(e), len(flows))
                u, v = divmod(pair, len(nodes))
                g.add_edge(nodes[u].name, nodes[v].name, kind="payment", flow=flows[f], amount=float(a))
    if by_role:
        how = 'one node per role (payments were recorded per role: record.payments = "role")'
    else:
        parts = []
        for role, key in (("household", "wealth"), ("firm", "workforce"), ("bank", "net worth")):
            if role in lay.roles:
                c = lay.count(role)
                parts.append(
                    f"{c:,} {role}s in {k[role]} equal groups by {key}" if c > k[role] else f"{role}s one by one"
                )
        how = ", ".join(parts)
    g.graph["grouping"] = how
    return g


# -- sweeps -----------------------------------------------------------------------------------------
@dataclass
class _Sweep:
    path: Path
    spec: dict[str, Any]
    frame: pd.DataFrame  # sweep.parquet, with a "group" column
    grid: dict[str, list[Any]]
    notes: list[str]


def _label(values: dict[str, Any], fields: Sequence[str]) -> str:
    return ", ".join(f"{f}={values.get(f)}" for f in fields) if fields else "all runs"


def sweep_frame(path: str | Path) -> pd.DataFrame:
    """A sweep's rows (``sweep.parquet``, or its runs' metrics while it has none) with a ``group``
    column naming each row's grid combination (``field=value, ...``; ``all runs`` for a seeds-only sweep)."""
    return _read_sweep(Path(path)).frame


def _read_sweep(path: Path) -> _Sweep:
    """The sweep as ``tokenomy.sweep.open_sweep`` reads it (its runs' rounds so far, if it has not ended)."""
    notes: list[str] = []
    try:
        sw = open_sweep(path)
        frame = sw.table.copy()
    except SweepError as exc:
        raise ReportError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path / 'sweep.parquet'}: cannot be read ({exc})") from None
    if sw.status not in ("finished", "failed"):
        notes.append("no sweep.parquet yet: read from the run directories")
    spec = sw.manifest.model_dump(mode="json")
    grid, entries, fields = dict(sw.grid), spec["runs"], list(sw.grid)
    if frame.empty:
        frame = pd.DataFrame(columns=["round", "run", *fields])
    frame["run"] = frame["run"].astype(str)
    values = {e["path"]: dict(e["values"]) for e in entries}
    # a run's group is named from sweep.json's values (the parquet may store 0 as 0.0); a row of a run
    # sweep.json does not list, from its own columns
    labels = {path: _label(v, fields) for path, v in values.items()}
    for r, *row in frame[["run", *fields]].drop_duplicates("run").itertuples(index=False):
        labels.setdefault(r, _label(dict(zip(fields, row, strict=True)), fields))
    order = list(dict.fromkeys([*(labels[e["path"]] for e in entries), *labels.values()]))
    frame["group"] = pd.Categorical(frame["run"].map(labels), categories=order)
    frame = frame.sort_values(["group", "run", "round"], kind="stable").reset_index(drop=True)
    frame["group"] = frame["group"].astype(str)
    return _Sweep(path, spec, frame, grid, notes)


# -- the page ---------------------------------------------------------------------------------------
_CSS = "".join(
    (
        'body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1160px;',
        "padding:0 18px 40px;color:#222}",
        "h1{font-size:26px;margin:22px 0 4px}",
        "h2{font-size:19px;margin:34px 0 6px;border-bottom:1px solid #ddd;padding-bottom:3px}",
        ".question{color:#555;margin:0 0 12px;font-style:italic}",
        ".banner{padding:12px 16px;border-radius:6px;margin:12px 0;font-weight:600;font-size:17px}",
        ".bad{background:#fde2e1;border:2px solid #c62828;color:#8e0000}",
        ".warn{background:#fff4d6;border:1px solid #e0b100;color:#6b5200;font-size:14px;font-weight:500}",
        "table{border-collapse:collapse;font-size:13px;margin:6px 0}",
        "td,th{border:1px solid #ddd;padding:3px 8px;vertical-align:top;text-align:left}th{background:#f5f5f5}",
        "td.n{text-align:right;font-variant-numeric:tabular-nums}",
        ".facts td:first-child{font-weight:600;white-space:nowrap}",
        "img{max-width:100%;height:auto;display:block;border:1px solid #eee}",
        ".caption{color:#444;font-size:14px;margin:6px 0 0}.note{color:#666;font-size:14px}",
        "nav ul{columns:2;font-size:14px;list-style:none;padding-left:0}",
        "code{font-size:13px;background:#f4f4f4;padding:0 3px}",
        "footer{margin-top:40px;color:#777;font-size:12px}",
    )
)


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


@dataclass
class _Page:
    title: str
    head: list[str] = field(default_factory=list)
    sections: list[tuple[str, str, str]] = field(default_factory=list)  # id, heading, body

    def section(self, sid: str, heading: str, body: str) -> None:
        self.sections.append((sid, heading, body))

    def render(self, footer: str) -> str:
        toc = "".join(f'<li><a href="#{sid}">{_e(h)}</a></li>' for sid, h, _ in self.sections)
        body = "".join(f'<section id="{sid}"><h2>{_e(h)}</h2>{b}</section>' for sid, h, b in self.sections)
        return (
            f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(self.title)}</title><style>{_CSS}</style></head><body>"
            f"{''.join(self.head)}<nav><ul>{toc}</ul></nav>{body}<footer>{footer}</footer></body></html>\n"
        )


def _img(fig: Figure, alt: str, caption: str) -> str:
    data = base64.b64encode(figures.png(fig)).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}"><p class="caption">{caption}</p>'


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str] | None = None, cls: str = "") -> str:
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}">{head}{body}</table>'


def _summary(metrics: pd.DataFrame) -> str:
    """Means of the first and last ten rounds (or halves, for a short run), as the ``run`` command prints."""
    if metrics.empty:
        return ""
    per_round = metrics.groupby("round").mean(numeric_only=True).reset_index()
    k = max(1, min(10, len(per_round) // 2))
    first, last = per_round.head(k), per_round.tail(k)
    rows = []
    for col, label, fmt in SUMMARY:
        if col not in per_round:
            continue
        cells = []
        for part in (first, last):
            v = part[col][part["gdp"] >= 1.0] if col in ("labour_share", "rent_share") else part[col]
            cells.append(f'<td class="n">{_e(fmt.format(v.mean()) if len(v) else "n/a")}</td>')
        rows.append(f"<tr><td>{_e(label)}</td>{''.join(cells)}</tr>")
    r0, r1 = first["round"], last["round"]
    head = (
        f"<tr><th>mean of</th><th>rounds {r0.iloc[0]}-{r0.iloc[-1]}</th><th>rounds {r1.iloc[0]}-{r1.iloc[-1]}</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _status_banner(run: Run) -> str:
    status = run.status
    if status == "finished":
        return ""
    if status == "running" and run.active:
        what = "STILL RUNNING: this report shows the rounds written so far"
    elif status == "running":
        what = "STOPPED WITHOUT FINISHING (its process was killed)"
    else:
        what = f"{status.upper()}"
        if err := run.manifest.get("error"):
            what += f": {err}"
    return f'<div class="banner bad">This run did not finish. {_e(what)}.<br>{_e(run.describe())}</div>'


def _llm_roles(manifest: dict[str, Any]) -> list[str]:
    roles = (manifest.get("llm") or {}).get("roles")
    if isinstance(roles, dict) and roles:
        return list(roles)
    return [r for r, p in (manifest.get("policies") or {}).items() if p == "llm"]


def _facts(run: Run, metrics: pd.DataFrame) -> str:
    m, sc = run.manifest, run.manifest["scenario"]
    planned = m.get("rounds", sc.get("rounds"))
    recorded = run.rounds_recorded
    held = f"{len(recorded)} of {planned} recorded" + (f" (rounds {recorded[0]}-{recorded[-1]})" if recorded else "")
    rows: list[tuple[str, str]] = [
        ("scenario", f"<b>{_e(sc.get('name'))}</b>"),
        ("status", _e(run.status) + ("" if run.finished else " <b>(not finished)</b>")),
        ("seed", _e(m.get("seed", sc.get("seed")))),
        ("rounds", _e(held) + " (one round = one month)"),
        (
            "population",
            _e(f"{sc.get('households', 0):,} households, {sc.get('firms', 0):,} firms, {sc.get('banks', 0):,} banks"),
        ),
    ]
    llm = _llm_roles(m)
    rows.append(("policies", _e(", ".join(f"{r}: {p}" for r, p in (m.get("policies") or {}).items()))))
    if llm:
        cfg = m.get("llm") or {}
        usage = m.get("llm_usage") or {}
        share = usage.get("model_share")
        rows.append(
            (
                "LLM",
                _e(
                    f"model {cfg.get('model')} at {cfg.get('base_url') or 'api.openai.com'}; "
                    f"structured output {usage.get('structured_output_method') or cfg.get('structured_output')};"
                    f" on_invalid {cfg.get('on_invalid')}"
                    + (f"; decisions from the model {share:.1%}" if isinstance(share, float) else "")
                ),
            )
        )
    a = sc.get("automation") or {}
    if a:
        rows.append(
            (
                "automation",
                _e(
                    f"{a.get('schedule')} phi {a.get('phi0')} to {a.get('phi_end')} over "
                    f"{a.get('ramp_rounds')} rounds from round {a.get('start')}; capital price "
                    f"decline {a.get('capital_price_decline')} a round"
                ),
            )
        )
    reg = (sc.get("roles") or {}).get("regulator") or {}
    if reg:
        keys = ("income_tax", "ubi", "ubi_financing", "robot_tax", "card_fee_cap")
        rows.append(("regulator", _e(", ".join(f"{k} {reg[k]}" for k in keys if k in reg))))
    if not metrics.empty and {"money_without_counterpart_cents", "sfc_residual_cents"} <= set(metrics.columns):
        worst = int(
            max(metrics["money_without_counterpart_cents"].abs().max(), metrics["sfc_residual_cents"].abs().max())
        )
        books = (
            "sound in every round (money without counterpart and matrix residuals 0)"
            if worst == 0
            else f"<b>NOT sound: off by up to {worst:,} cents</b>"
        )
        rows.append(("books", books))
    if isinstance(m.get("fork"), dict):  # a fork: its parent and round, what it changed
        rows.append(("forked", _e(", ".join(f"{k} {v}" for k, v in m["fork"].items()))))
    if m.get("changes"):
        rows.append(
            ("changed mid-run", _e("; ".join(f"from round {c.get('round')}: {c.get('set')}" for c in m["changes"])))
        )
    rows.append(("started / ended", _e(f"{m.get('started', '?')} / {m.get('finished', '-')}")))
    if m.get("resumed"):
        rows.append(
            ("resumed", _e("; ".join(f"after round {r.get('after_round')} at {r.get('at')}" for r in m["resumed"])))
        )
    v = m.get("versions") or {}
    rows.append(("versions", _e(", ".join(f"{k} {x}" for k, x in v.items()))))
    if m.get("git_revision"):
        rows.append(("git revision", f"<code>{_e(m['git_revision'])}</code>"))
    if m.get("command"):
        rows.append(("command", f"<code>{_e(' '.join(str(c) for c in m['command']))}</code>"))
    rows.append(("run directory", f"<code>{_e(run.path)}</code>"))
    return _table(rows, cls="facts")


@dataclass(frozen=True)
class _At:
    """The market graph's round and the world at its end, or why that world cannot be read."""

    round: int
    world: World | None
    problem: str | None = None


def _ranges(xs: Sequence[int]) -> str:
    """``0-5, 9, 11``."""
    out: list[str] = []
    for x in sorted(xs):
        if out and x == int(out[-1].rsplit("-", 1)[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{x}"
        else:
            out.append(str(x))
    return ", ".join(out)


def _graph_world(run: Run, round_no: int | None) -> _At | None:
    """The graph's round (default: the last snapshot's) and the world at its end; None without any
    snapshot. A round without a snapshot is an error; a snapshot that cannot be read (damaged, or from
    a version whose world had other columns) is the graph section's note, not the report's end."""
    snaps = run.snapshot_rounds()
    if not snaps:
        if round_no is not None:
            raise ReportError(f"--round {round_no}: {run.path} has no snapshot of any round")
        return None
    r = snaps[-1] if round_no is None else round_no
    if r not in snaps:
        raise ReportError(f"--round {r}: no snapshot for round {r}; snapshots exist for rounds {_ranges(snaps)}")
    try:
        return _At(r, run.world(r))
    except (KeyError, ValueError, OSError) as exc:
        what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        return _At(r, None, f"the snapshot of round {r} cannot be read ({type(exc).__name__}: {what})")


def _graph_section(run: Run, at: _At | None) -> str:
    if at is None:
        return '<p class="note">No snapshot was written (no round finished), so there is no graph to draw.</p>'
    if at.world is None:
        return f'<p class="note">No graph: {_e(at.problem)}.</p>'
    r, world = at.round, at.world
    pay = _read(
        run.table_files("payments"),
        ["round", "payer_id", "payee_id", "payer_role", "payee_role", "kind", "amount"],
        _round_is(r),
    )
    g = grouped_graph(world, pay)
    fig = figures.market_graph(g, title=f"The market graph of round {r}")
    edges = [d for u, v, d in g.edges(data=True) if u != v]
    biggest = max((d["amount"] for d in edges), default=0.0)
    small = [d for d in edges if d["amount"] < figures.MIN_EDGE_SHARE * biggest]
    inner = sum(d["amount"] for u, v, d in g.edges(data=True) if u == v)
    caption = (
        f"Round {r}: {_e(g.graph['grouping'])}. Node colour: role; node area: net wealth at the end of the round "
        f"(households: deposits and tokens at market price; firms: deposits and capital at replacement cost less "
        f"loans; banks and the central bank: net worth; the state: deposits less its central-bank debt; dashed: "
        f"none or negative). Edges: that round's payments between nodes, by category, width proportional to the "
        f"flow (widest: {_e(_money(biggest))}); {len(small)} flows under {figures.MIN_EDGE_SHARE:.1%} of the widest"
        f" are not drawn, nor are flows within a node ({_e(_money(inner))}, e.g. investment goods bought from a"
        f" firm of the same group)."
    )
    rows = [
        (
            f"<b>{_e(g.nodes[n]['label'])}</b>",
            _e(g.nodes[n]["role"]),
            _e(g.nodes[n]["what"]),
            f'<span class="n">{_e(_money(g.nodes[n]["wealth"]))}</span>',
        )
        for n in g.nodes
    ]
    table = _table(rows, ("node", "role", "who", "net wealth"))
    return _img(fig, f"market graph of round {r}", caption) + f"<details><summary>the nodes</summary>{table}</details>"


def _round_is(r: int) -> Any:
    import pyarrow.compute as pc

    return pc.field("round") == r


def _rent_section(run: Run, metrics: pd.DataFrame, at: _At | None) -> str:
    rent, margin = rent_flows(run, at.world.layout if at is not None and at.world is not None else None)
    kinds = ", ".join(sorted(registry.rent_kinds()))
    fig = figures.rent_by_intermediary(rent, metrics, margin=margin, counted=f"payment kind {kinds}, the rails' fees")
    total = float(rent["amount"].sum()) if not rent.empty else 0.0
    caption = (
        f"What counts as rent: payments of the kinds registered as rent in <code>tokenomy.registry</code> "
        f"(<code>{_e(kinds)}</code>: the rails' fees, paid to each rail's operator), which is what the"
        f" <code>rent</code> metric sums (dotted line: <code>rent_share</code>, the same total). They are split by"
        f" the intermediary that collects them (payee role and rail, from <code>payments.parquet</code>):"
        f" ${total:,.0f} in all. The banks' net interest "
        f"income (loan and reserve interest received, less deposit interest paid; dashed) is shown for comparison "
        f"and is not counted as rent. Shares of GDP leave out rounds whose GDP was under $1."
    )
    return _img(fig, "rent by intermediary", caption)


def _llm_section(run: Run, metrics: pd.DataFrame) -> str:
    roles = _llm_roles(run.manifest)
    if not roles:
        return '<p class="note">No role was LLM-driven in this run (every decision came from the rules).</p>'
    import pyarrow.compute as pc

    d = _read(run.table_files("decisions"), ["round", "role", "policy", "fallback_reason"], pc.field("policy") == "llm")
    fig = figures.llm_usage(metrics, d, roles=roles)
    u = run.manifest.get("llm_usage") or {}
    facts = []
    for k in (
        "calls",
        "input_tokens",
        "output_tokens",
        "cache_hits",
        "fallbacks",
        "decisions",
        "from_model",
        "repaired",
        "failed",
        "estimated_cost_usd",
    ):
        if k in u:
            facts.append((k.replace("_", " "), f'<span class="n">{_e(f"{u[k]:,}")}</span>'))
    if "model_share" in u and u["model_share"] is not None:
        facts.append(("decisions from the model", _e(f"{u['model_share']:.1%}")))
    reasons = u.get("top_failure_reasons") or []
    if reasons:
        facts.append(("why answers failed", "<br>".join(_e(f"{r['count']} x {r['reason'][:200]}") for r in reasons)))
    caption = (
        f"LLM-driven roles: {_e(', '.join(roles))}. Calls are requests sent (a cache hit sends none; re-asks and "
        f"structured-output probing send more); a fallback is a decision the model was asked for that the rules "
        f"made instead (its reason is in <code>decisions.parquet</code>). Totals from the manifest's "
        f"<code>llm_usage</code>:"
    )
    return _img(fig, "LLM usage", caption) + _table(facts, cls="facts")


_SERIES: tuple[tuple[str, str, Callable[..., Figure], str], ...] = (
    (
        "output",
        "1. Output and potential output",
        figures.output_vs_potential,
        "GDP is output valued at the round's transaction price index; potential output is what the installed "
        "capital and the whole labour force could produce at those prices. The right panel is their ratio.",
    ),
    (
        "wages",
        "2. Wages and the labour share",
        figures.wages_labour_share,
        "The mean monthly wage of the employed, nominal and deflated to the first round's price level, and the "
        "wage bill as a share of GDP.",
    ),
    (
        "income",
        "3. Consumption and household income",
        figures.consumption_income,
        "Household consumption against household income from all sources, and income by source, stacked "
        "(wages, dividends and deposit interest before income tax; UBI and unemployment benefits).",
    ),
    (
        "labour",
        "4. Unemployment and inflation",
        figures.unemployment_inflation,
        "Share of households without work, and the month-on-month change of the transaction price index (right "
        "axis: the annual rate it compounds to).",
    ),
    (
        "inequality",
        "5. Inequality",
        figures.inequality,
        "Gini coefficients of household wealth (deposits and tokens at market price) and of household income in "
        "the round, and the share of household wealth held by the richest tenth.",
    ),
)


def _run_report(run: Run, round_no: int | None, page: _Page) -> None:
    at = _graph_world(run, round_no)  # first: a --round without a snapshot fails before any figure is drawn
    metrics = run.metrics
    sc = run.manifest["scenario"]
    page.head.append(
        f"<h1>tokenomy report: {_e(sc.get('name'))}, seed {_e(run.manifest.get('seed', sc.get('seed')))}</h1>"
    )
    if sc.get("question"):
        page.head.append(f'<p class="question">{_e(sc["question"])}</p>')
    page.head.append(_status_banner(run))
    page.head.append(_facts(run, metrics))
    if summary := _summary(metrics):
        page.head.append(f"<h2>Summary</h2>{summary}")
    for sid, heading, draw, caption in _SERIES:
        page.section(sid, heading, _img(draw(metrics), heading, _e(caption)))
    page.section("rent", "6. Rent by intermediary", _rent_section(run, metrics, at))
    page.section("llm", "7. LLM usage", _llm_section(run, metrics))
    page.section("graph", "8. The market graph", _graph_section(run, at))


def _sweep_report(sweep: _Sweep, round_no: int | None, chosen: str | None, page: _Page) -> None:
    spec, f = sweep.spec, sweep.frame
    entries = [dict(e) for e in spec["runs"]]
    paths = [str(e["path"]) for e in entries]
    if chosen is not None and chosen not in paths:
        raise ReportError(
            f"--run {chosen}: not a run of this sweep (its runs: {', '.join(paths[:5])}"
            f"{', ...' if len(paths) > 5 else ''})"
        )
    statuses: dict[str, str] = {}
    for e in entries:
        try:
            statuses[e["path"]] = str(Run(sweep.path / e["path"]).status)
        except RunDirError:
            statuses[e["path"]] = "missing"
    scenario = spec.get("scenario")
    name = scenario.get("name") if isinstance(scenario, dict) else scenario
    page.head.append(f"<h1>tokenomy sweep report: {_e(name)}</h1>")
    if spec.get("status") not in (None, "finished"):
        page.head.append(f'<div class="banner bad">The sweep did not finish: its status is {_e(spec["status"])}.</div>')
    bad = {p: s for p, s in statuses.items() if s != "finished"}
    if bad:
        shown = ", ".join(f"{p} ({s})" for p, s in list(bad.items())[:8])
        page.head.append(
            f'<div class="banner bad">{len(bad)} of {len(entries)} runs did not finish: {_e(shown)}'
            f"{' ...' if len(bad) > 8 else ''}. Their rounds so far are in the means.</div>"
        )
    for n in sweep.notes:
        page.head.append(f'<div class="banner warn">{_e(n)}</div>')
    groups = list(dict.fromkeys(f["group"])) if not f.empty else []
    per_group = f.groupby("group")["run"].nunique().to_dict() if not f.empty else {}
    rows = [
        ("scenario", f"<b>{_e(name)}</b>"),
        ("grid", "<br>".join(_e(f"{k}: {v}") for k, v in sweep.grid.items()) or "none (seeds only)"),
        ("seeds", _e(", ".join(str(s) for s in spec.get("seeds", [])))),
        ("--set", _e(" ".join(str(x) for x in spec.get("sets", []))) or "none"),
        ("runs", _e(f"{len(entries)} ({sum(s == 'finished' for s in statuses.values())} finished)")),
        ("groups", "<br>".join(_e(f"{g}: {per_group.get(g, 0)} runs") for g in groups)),
        ("sweep directory", f"<code>{_e(sweep.path)}</code>"),
    ]
    page.head.append(_table(rows, cls="facts"))
    if not f.empty:
        summ = "".join(f"<h3>{_e(g)}</h3>{_summary(f[f['group'] == g])}" for g in groups[:12])
        page.head.append(f"<details><summary>Summary per group (means over seeds)</summary>{summ}</details>")
    pick = chosen if chosen is not None else next((p for p in paths if statuses[p] != "missing"), None)
    run, at = None, None
    if pick is not None:
        run = Run(sweep.path / pick)
        at = _graph_world(run, round_no)  # before any figure: a --round without a snapshot fails at once
    band = " Lines are means over the seeds of each group, bands their 95% Student-t intervals (n - 1 df)."
    for sid, heading, draw, caption in _SERIES:
        page.section(sid, heading, _img(draw(f, by="group"), heading, _e(caption + band)))
    rent = _img(figures.rent_share(f, by="group"), "rent share", _e("The rent share of GDP and rent per group." + band))
    if run is not None:
        rent += f"<h3>By intermediary: run {_e(pick)}</h3>" + _rent_section(run, run.metrics, at)
    page.section("rent", "6. Rent", rent)
    llm_cols = [c for c in ("llm_calls", "llm_input_tokens", "llm_fallbacks") if c in f.columns]
    if llm_cols and not f.empty and float(f[llm_cols].abs().sum().sum()) > 0:
        body = _img(figures.llm_usage(f, by="group"), "LLM usage", _e("LLM calls, tokens and fallbacks." + band))
    else:
        body = '<p class="note">No role was LLM-driven in these runs.</p>'
    page.section("llm", "7. LLM usage", body)
    if run is None:
        page.section("graph", "8. The market graph", '<p class="note">No run of the sweep has a directory yet.</p>')
    else:
        page.section("graph", f"8. The market graph of run {pick}", _graph_section(run, at))


def write_report(
    path: str | Path, out: str | Path | None = None, *, round: int | None = None, run: str | None = None
) -> Path:
    """Write the HTML report of a run directory, or of a sweep directory (one with ``sweep.json``), to
    ``out`` (default ``<path>/report.html``); returns its path.

    ``round``: the round whose market graph is drawn (a snapshot's; default the last). ``run``: for a
    sweep, the run (its path in ``sweep.json``) whose rent breakdown and market graph are drawn
    (default the first). Raises :class:`ReportError` or :class:`~tokenomy.store.RunDirError` naming
    what is wrong. A run that did not finish gets a report too, saying so at the top.
    """
    started = time.perf_counter()
    src = Path(path)
    target = Path(out) if out is not None else src / "report.html"
    if not src.is_dir():
        raise ReportError(f"{src}: not a directory (a run directory or a sweep directory)")
    if (src / "sweep.json").is_file():
        sweep = _read_sweep(src)
        page = _Page(f"tokenomy sweep report: {src.name}")
        _sweep_report(sweep, round, run, page)
    else:
        if run is not None:
            raise ReportError(f"--run {run}: {src} is a run directory, not a sweep (no sweep.json)")
        r = Run(src)  # RunDirError naming the manifest if it is missing or damaged
        page = _Page(f"tokenomy report: {r.manifest['scenario'].get('name')} ({src.name})")
        _run_report(r, round, page)
    try:
        version = metadata.version("tokenomy")
    except metadata.PackageNotFoundError:
        version = "?"
    when = datetime.now(UTC).isoformat(timespec="seconds")
    footer = _e(f"written by tokenomy {version} at {when} in {time.perf_counter() - started:.1f} s")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, page.render(footer).encode("utf-8"))
    return target
