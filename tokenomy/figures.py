"""The report's figures: pure functions from DataFrames to matplotlib Figures, for notebooks too.

Each time-series figure takes a run's ``metrics`` (one row per round) or a sweep's frame (one row per
run and round) with ``by`` naming the column that groups its runs: a group is drawn as its mean over
runs with a 95% Student-t band (n - 1 degrees of freedom; no band for a group of one run), one
colour per group (the legend under the panels), one line style per series. Money is in dollars and
flows are per round; one round is one month.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas, never through pyplot,
so drawing one changes no backend or state of the caller's session and nothing has to be closed:
a figure is freed with its last reference. Margins are fixed rather than computed by a layout
engine, which would draw every figure twice. matplotlib is imported only here.

``market_graph`` draws a :class:`~tokenomy.market.graph.MarketGraph` whose nodes are already few
(``tokenomy.report.grouped_graph`` makes one from a round's world and payments).
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from tokenomy.market.graph import MarketGraph

__all__ = [
    "EDGE_COLOURS",
    "INCOME_SOURCES",
    "MIN_EDGE_SHARE",
    "ROLE_COLOURS",
    "consumption_income",
    "dollars",
    "inequality",
    "llm_usage",
    "market_graph",
    "output_vs_potential",
    "png",
    "rent_by_intermediary",
    "rent_share",
    "summarise",
    "unemployment_inflation",
    "wages_labour_share",
]

LEVEL = 0.95
MIN_EDGE_SHARE = 0.005  # market graph: flows under this share of the largest are not drawn
WIDTH = 11.0  # inches; at 100 dpi a figure is 1,100 pixels wide
HEIGHT = 3.7
INCOME_SOURCES = (
    ("income_wages", "wages"),
    ("income_dividends", "dividends"),
    ("income_interest", "deposit interest"),
    ("income_ubi", "UBI"),
    ("income_benefits", "unemployment benefits"),
)
ROLE_COLOURS = {
    "household": "#4c72b0",
    "firm": "#dd8452",
    "bank": "#55a868",
    "network": "#c44e52",
    "regulator": "#8172b3",
    "central_bank": "#937860",
    "mint": "#b0b0b0",
}
EDGE_COLOURS = {
    "wages": "#1f77b4",
    "goods": "#ff7f0e",
    "capital income": "#2ca02c",
    "credit": "#8c564b",
    "taxes and transfers": "#9467bd",
    "rent (fees)": "#d62728",
    "tokens": "#17becf",
    "central bank": "#7f7f7f",
    "other": "#bcbd22",
}
_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
    "#aec7e8",
    "#ffbb78",
)
_STYLES = ("-", "--", ":", "-.")
_GROUP_COLUMNS = 4  # entries per row of a sweep's group legend


# -- small helpers ----------------------------------------------------------------------------------
def png(fig: Figure, dpi: int = 100, compress_level: int = 1) -> bytes:
    """The figure as PNG bytes (the Agg canvas; no pyplot). zlib level 1: a fifth faster to encode
    than the default 6, for files 5% larger."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, pil_kwargs={"compress_level": compress_level})
    return buf.getvalue()


def _group_names(frame: pd.DataFrame, by: str | None) -> list[str]:
    return [str(g) for g in dict.fromkeys(frame[by])] if by is not None and not frame.empty else []


def _legend_rows(frame: pd.DataFrame, by: str | None) -> int:
    return math.ceil(len(_group_names(frame, by)) / _GROUP_COLUMNS)


def _figure(
    panels: int,
    title: str,
    *,
    height: float = HEIGHT,
    ratios: Sequence[float] | None = None,
    legend_rows: int = 0,
    right: float = 0.985,
    wspace: float = 0.2,
) -> Figure:
    """A row of ``panels`` axes with fixed margins (in inches, so they hold at any height), room under
    them for ``legend_rows`` rows of a group legend."""
    from matplotlib.figure import Figure

    h = height + 0.22 * legend_rows
    fig = Figure(figsize=(WIDTH, h), dpi=100)
    fig.subplots(1, panels, squeeze=False, width_ratios=ratios)
    bottom = 0.58 + (0.22 * legend_rows + 0.12 if legend_rows else 0.0)
    fig.subplots_adjust(left=0.07, right=right, top=1 - 0.62 / h, bottom=bottom / h, wspace=wspace)
    fig.suptitle(title, fontsize=12, x=0.01, y=1 - 0.08 / h, ha="left", va="top")
    return fig


def _group_legend(fig: Figure, frame: pd.DataFrame, by: str | None) -> None:
    """The colour of each group, under the panels (a sweep's figures)."""
    names = _group_names(frame, by)
    if not names:
        return
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=_COLOURS[i % len(_COLOURS)], lw=2.5, label=n) for i, n in enumerate(names)]
    fig.legend(
        handles=handles,
        loc="lower left",
        bbox_to_anchor=(0.01, 0.0),
        ncol=_GROUP_COLUMNS,
        fontsize=8,
        frameon=False,
        title=f"{by} (colour): mean over seeds, band: 95% Student-t interval",
        title_fontsize=8,
        alignment="left",
    )


def dollars(x: float, _pos: int | None = None) -> str:
    """``$1.2M``, ``$350k``, ``$1,950``."""
    a = abs(x)
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= scale and (scale > 1e3 or a >= 1e4):
            return f"${x / scale:,.{1 if a < 10 * scale else 0}f}{suffix}"
    return f"${x:,.0f}"


def _money_formatter() -> Any:
    """Dollar tick labels in one unit per axis ($k, $M, ...), with as many decimals as it takes to tell
    neighbouring ticks apart."""
    from matplotlib.ticker import Formatter

    class Dollars(Formatter):
        def __call__(self, x: float, pos: int | None = None) -> str:
            return dollars(x)

        def format_ticks(self, values: Sequence[float]) -> list[str]:
            top = max((abs(v) for v in values), default=0.0)
            scale, suffix = next(
                ((s, u) for s, u in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e4, "k")) if top >= s), (1.0, "")
            )
            scale = 1e3 if suffix == "k" else scale
            labels: list[str] = []
            for d in range(4):
                labels = [f"${v / scale:,.{d}f}{suffix}" if v != 0 else "$0" for v in values]
                if len(set(labels)) == len(labels):
                    break
            return labels

    return Dollars()


def _money_axis(ax: Axes, axis: str = "y") -> None:
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(_money_formatter())


def _count_axis(ax: Axes) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:,.0f}"))


def _setup(ax: Axes, title: str, unit: str) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole months
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_xlabel("round (one round = one month)", fontsize=9)
    ax.set_ylabel(unit, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)


def _note(ax: Axes, text: str) -> None:
    ax.text(
        0.5,
        0.5,
        "\n".join(textwrap.wrap(text, 50)),
        transform=ax.transAxes,
        ha="center",
        va="center",
        color="0.35",
        fontsize=9,
    )


def _ratio(num: Any, den: Any) -> NDArray[np.float64]:
    n, d = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out: NDArray[np.float64] = np.where(d > 0, n / d, np.nan)
    return out


def summarise(frame: pd.DataFrame, columns: Sequence[str], by: str | None = None) -> pd.DataFrame:
    """Per group (``by``, in the frame's order of groups; one group without it) and round: each
    column's mean over the rows (runs), its 95% Student-t band ``<column>_lo`` / ``<column>_hi`` (NaN
    for a single run) and the runs counted, ``n``.

    With one row per round (a run's metrics) the mean is the value itself and there is no band.
    """
    cols = list(columns)
    if by is not None:
        frame = frame.assign(**{by: pd.Categorical(frame[by], categories=pd.unique(frame[by]))})
    g = frame.groupby([by, "round"] if by is not None else ["round"], sort=True, observed=True)[cols]
    mean, sd, n = g.mean(), g.std(ddof=1), g.count()
    out = mean.copy()
    for c in cols:
        k = n[c].to_numpy(dtype=np.float64)
        half = np.full(k.size, np.nan)
        if (k > 1).any():  # scipy only then (and scipy.special: scipy.stats alone takes a second to import)
            from scipy.special import stdtrit

            many = k > 1
            half[many] = (
                stdtrit(k[many] - 1, 0.5 + LEVEL / 2) * sd[c].to_numpy(dtype=np.float64)[many] / np.sqrt(k[many])
            )
        out[f"{c}_lo"] = mean[c].to_numpy() - half
        out[f"{c}_hi"] = mean[c].to_numpy() + half
    out["n"] = n[cols[0]].to_numpy() if cols else 0
    out = out.reset_index()
    if by is not None:
        out[by] = out[by].astype(str)
    return out


def _lines(
    ax: Axes,
    frame: pd.DataFrame,
    series: Sequence[tuple[str, str]],
    by: str | None,
    *,
    scale: float = 1.0,
) -> bool:
    """Draw ``series`` (column, label) of ``frame``, with a legend: colours are the series for a run,
    the groups for a sweep (whose series are line styles, the legend saying which); bands where a group
    has several runs. False, and a note in the panel, when there is nothing to draw."""
    present = [(c, lab) for c, lab in series if c in frame.columns]
    if frame.empty or not present:
        missing = ", ".join(c for c, _ in series)
        _note(ax, "no rounds recorded" if frame.empty else f"not recorded: {missing}")
        return False
    summ = summarise(frame, [c for c, _ in present], by)
    groups = [(g, summ[summ[by] == g]) for g in _group_names(frame, by)] if by is not None else [(None, summ)]
    for gi, (_, s) in enumerate(groups):
        x = s["round"].to_numpy()
        for si, (col, label) in enumerate(present):
            colour = _COLOURS[(gi if by is not None else si) % len(_COLOURS)]
            style = _STYLES[si % len(_STYLES)] if by is not None else "-"
            dots = "o" if len(x) <= 3 else None  # a line through one or two rounds is hardly seen
            ax.plot(
                x,
                s[col].to_numpy() * scale,
                color=colour,
                ls=style,
                lw=1.4,
                marker=dots,
                ms=4,
                label=label if by is None else None,
            )
            lo, hi = s[f"{col}_lo"].to_numpy() * scale, s[f"{col}_hi"].to_numpy() * scale
            if np.isfinite(lo).any():
                ax.fill_between(x, lo, hi, color=colour, alpha=0.15, lw=0)
    rounds = summ["round"]
    if rounds.max() - rounds.min() < 2:  # a round or two: whole rounds either side, not a sliver of one
        ax.set_xlim(rounds.min() - 1, rounds.max() + 1)
    if by is None:
        ax.legend(fontsize=8, frameon=False)
    elif len(present) > 1:
        from matplotlib.lines import Line2D

        styles = [
            Line2D([], [], color="0.3", ls=_STYLES[i % len(_STYLES)], label=lab) for i, (_, lab) in enumerate(present)
        ]
        ax.legend(handles=styles, fontsize=8, frameon=False)
    return True


def _title(base: str, by: str | None, frame: pd.DataFrame) -> str:
    if by is None or frame.empty:
        return base
    runs = frame["run"].nunique() if "run" in frame.columns else len(frame)
    return f"{base} ({len(_group_names(frame, by))} groups, {runs} runs)"


def _series_figure(
    metrics: pd.DataFrame,
    title: str,
    panels: Sequence[tuple[str, str, Sequence[tuple[str, str]], float, bool]],
    by: str | None,
    **kw: Any,
) -> Figure:
    """A row of time-series panels: (title, unit, series, scale, money axis) each."""
    fig = _figure(len(panels), _title(title, by, metrics), legend_rows=_legend_rows(metrics, by), **kw)
    for ax, (t, unit, series, scale, money) in zip(fig.axes, panels, strict=True):
        _setup(ax, t, unit)
        if _lines(ax, metrics, series, by, scale=scale) and money:
            _money_axis(ax)
    _group_legend(fig, metrics, by)
    return fig


# -- 1. output --------------------------------------------------------------------------------------
def output_vs_potential(metrics: pd.DataFrame, *, by: str | None = None) -> Figure:
    """GDP against potential output (what installed capital and the whole labour force could make),
    and their ratio: a demand shortfall shows as a gap that does not close."""
    f = metrics
    if {"gdp", "potential_output"} <= set(f.columns):
        f = f.assign(output_gap=_ratio(f["gdp"], f["potential_output"]))
    return _series_figure(
        f,
        "Output and potential output",
        (
            (
                "GDP and potential output, $ per month",
                "$ per round",
                (("gdp", "GDP"), ("potential_output", "potential output")),
                1.0,
                True,
            ),
            ("GDP / potential output", "% of potential output", (("output_gap", "GDP / potential"),), 100.0, False),
        ),
        by,
    )


# -- 2. wages ---------------------------------------------------------------------------------------
def wages_labour_share(metrics: pd.DataFrame, *, by: str | None = None) -> Figure:
    """The mean wage (nominal, and at the first round's prices) and the labour share: what automation
    does to workers' pay and to their part of output."""
    f = metrics
    if not f.empty and {"wage_mean", "price_index"} <= set(f.columns):
        runs = f["run"] if "run" in f.columns else pd.Series(0, index=f.index)
        p0 = f.groupby(runs, sort=False)["price_index"].transform("first")
        f = f.assign(real_wage=f["wage_mean"] * _ratio(p0, f["price_index"]))
    return _series_figure(
        f,
        "Wages and the labour share",
        (
            (
                "mean wage of the employed, $ per month (before income tax)",
                "$ per round",
                (("wage_mean", "nominal"), ("real_wage", "real (at the first round's prices)")),
                1.0,
                True,
            ),
            ("labour share: wage bill / GDP", "% of GDP", (("labour_share", "labour share"),), 100.0, False),
        ),
        by,
    )


# -- 3. consumption and income ----------------------------------------------------------------------
def consumption_income(metrics: pd.DataFrame, *, by: str | None = None, max_groups: int = 12) -> Figure:
    """Household consumption against household income, and income by source, stacked (one small panel
    per group for a sweep): who the economy pays, and whether it buys what it makes."""
    from matplotlib.figure import Figure

    sources = [(c, lab) for c, lab in INCOME_SOURCES if c in metrics.columns]
    f = metrics.assign(income_total=metrics[[c for c, _ in sources]].sum(axis=1)) if sources else metrics
    groups: list[str | None] = list(_group_names(f, by)) if by is not None else [None]
    shown = groups[:max_groups] or [None]
    cols = min(len(shown), 4)
    rows = math.ceil(len(shown) / cols)
    legend_rows = _legend_rows(f, by)
    height = HEIGHT if rows == 1 else 1.3 + 1.9 * rows
    h = height + 0.22 * legend_rows
    fig = Figure(figsize=(WIDTH, h), dpi=100)
    bottom = (0.58 + (0.22 * legend_rows + 0.12 if legend_rows else 0.0)) / h
    outer = fig.add_gridspec(
        1,
        2,
        width_ratios=[1, 1.25 if by is None else 1.7],
        left=0.07,
        right=0.985,
        top=1 - 0.62 / h,
        bottom=bottom,
        wspace=0.2,
    )
    a = fig.add_subplot(outer[0])
    _setup(a, "household consumption and income, $ per month", "$ per round")
    if _lines(a, f, (("consumption", "consumption"), ("income_total", "income (all sources)")), by):
        _money_axis(a)
    inner = outer[1].subgridspec(rows, cols, hspace=0.45, wspace=0.12)
    axes = [fig.add_subplot(inner[i // cols, i % cols]) for i in range(len(shown))]
    for i, (ax, group) in enumerate(zip(axes, shown, strict=True)):
        part = f if group is None else f[f[by] == group]
        if group is None:
            _setup(ax, "household income by source, stacked (before income tax)", "$ per round")
        else:
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(group, fontsize=8, loc="left", color=_COLOURS[i % len(_COLOURS)])
            ax.tick_params(labelsize=7)
            if i // cols == rows - 1:
                ax.set_xlabel("round", fontsize=8)
            ax.grid(alpha=0.3)
        if part.empty or not sources:
            _note(ax, "no rounds recorded" if part.empty else "income not recorded")
            continue
        s = summarise(part, [c for c, _ in sources])
        ax.stackplot(
            s["round"].to_numpy(),
            *[s[c].to_numpy() for c, _ in sources],
            labels=[lab for _, lab in sources],
            colors=_COLOURS[: len(sources)],
            alpha=0.85,
        )
        _money_axis(ax)
    if axes and axes[0].get_legend_handles_labels()[0]:
        handles, labels = axes[0].get_legend_handles_labels()
        if by is None:
            axes[0].legend(handles[::-1], labels[::-1], fontsize=8, frameon=False, loc="upper left")
        else:
            fig.legend(
                handles[::-1],
                labels[::-1],
                fontsize=8,
                frameon=False,
                loc="lower right",
                bbox_to_anchor=(0.99, 0.0),
                ncol=3,
                title="income by source (stacked, mean over seeds)",
                title_fontsize=8,
            )
    more = f"; first {max_groups} of {len(groups)} groups shown" if len(groups) > max_groups else ""
    fig.suptitle(
        _title("Consumption and household income", by, metrics) + more,
        fontsize=12,
        x=0.01,
        y=1 - 0.08 / h,
        ha="left",
        va="top",
    )
    _group_legend(fig, f, by)
    return fig


# -- 4. unemployment and inflation ------------------------------------------------------------------
def unemployment_inflation(metrics: pd.DataFrame, *, by: str | None = None) -> Figure:
    """Unemployment and monthly inflation (the right axis gives the annual rate it compounds to)."""
    fig = _series_figure(
        metrics,
        "Unemployment and inflation",
        (
            ("unemployment rate", "% of households", (("unemployment_rate", "unemployment"),), 100.0, False),
            ("inflation: change in the price index", "% per month", (("inflation", "inflation"),), 100.0, False),
        ),
        by,
        right=0.94,
        wspace=0.22,
    )
    b = fig.axes[1]
    if b.lines:
        b.axhline(0, color="0.5", lw=0.8)

        def annual(x: ArrayLike) -> NDArray[np.float64]:
            out: NDArray[np.float64] = (np.power(np.maximum(1 + np.asarray(x) / 100, 1e-9), 12) - 1) * 100
            return out

        def monthly(y: ArrayLike) -> NDArray[np.float64]:
            out: NDArray[np.float64] = (np.power(np.maximum(1 + np.asarray(y) / 100, 1e-9), 1 / 12) - 1) * 100
            return out

        sec = b.secondary_yaxis("right", functions=(annual, monthly))
        sec.set_ylabel("% a year, compounded", fontsize=9)
        sec.tick_params(labelsize=8)
    return fig


# -- 5. inequality ----------------------------------------------------------------------------------
def inequality(metrics: pd.DataFrame, *, by: str | None = None) -> Figure:
    """Gini coefficients of household wealth and income, and the richest tenth's share of wealth."""
    return _series_figure(
        metrics,
        "Inequality among households",
        (
            (
                "Gini coefficient (0: equal, 1: one household has all)",
                "Gini",
                (("gini_wealth", "wealth (deposits + tokens)"), ("gini_income", "income in the round")),
                1.0,
                False,
            ),
            (
                "top-10% share of household wealth",
                "% of household wealth",
                (("top10_wealth_share", "top 10%"),),
                100.0,
                False,
            ),
        ),
        by,
    )


# -- 6. rent ----------------------------------------------------------------------------------------
def rent_by_intermediary(
    rent: pd.DataFrame,
    metrics: pd.DataFrame,
    *,
    margin: pd.DataFrame | None = None,
    counted: str = "rail fees",
    top: int = 8,
) -> Figure:
    """Rent as a share of GDP, stacked by the kind of intermediary that collects it, and the largest
    collectors over the run.

    ``rent``: round, intermediary (a kind: "card network (card fees)", ...), collector (an account,
    or the kind when payments were recorded per role), amount ($); ``margin``: round, amount ($), the
    banks' net interest income, drawn for comparison: it is *not* counted as rent by the metric.
    ``counted`` says what the rent metric counts, in the title.
    """
    fig = _figure(2, f"Rent: what intermediaries collect (counted as rent: {counted})", ratios=[1.6, 1], wspace=0.32)
    a, b = fig.axes
    _setup(a, "rent by kind of intermediary, stacked, % of GDP", "% of GDP")
    b.set_title("largest collectors, total over the run", fontsize=10, loc="left")
    b.tick_params(labelsize=8)
    if metrics.empty or "gdp" not in metrics.columns:
        _note(a, "no rounds recorded")
        _note(b, "no rounds recorded")
        return fig
    gdp = metrics.set_index("round")["gdp"].astype(np.float64)
    rounds = gdp.index.to_numpy()
    per_gdp = 100 / gdp.where(gdp >= 1.0)  # a round with (almost) no output has no meaningful share
    order: list[Any] = []
    if not rent.empty:
        wide = rent.pivot_table(index="round", columns="intermediary", values="amount", aggfunc="sum", observed=True)
        wide = wide.reindex(rounds).fillna(0.0)
        order = list(wide.sum().sort_values(ascending=False).index)
        a.stackplot(
            rounds,
            *[(wide[k] * per_gdp).to_numpy() for k in order],
            labels=[str(k) for k in order],
            colors=[_COLOURS[(i + 3) % len(_COLOURS)] for i in range(len(order))],
            alpha=0.8,
        )
    else:
        _note(a, "no rent was paid")
    if "rent_share" in metrics.columns:
        share = metrics.set_index("round")["rent_share"].where(gdp >= 1.0) * 100
        a.plot(rounds, share.to_numpy(), color="black", lw=1.0, ls=":", label="rent_share metric (the total)")
    if margin is not None and not margin.empty:
        m = margin.groupby("round")["amount"].sum().reindex(rounds).fillna(0.0)
        a.plot(
            rounds,
            (m * per_gdp).to_numpy(),
            color="#8c564b",
            lw=1.4,
            ls="--",
            label="banks' net interest income (not rent)",
        )
    a.set_ylim(0, max(a.get_ylim()[1], 1e-3) * 1.3)  # room for the legend
    a.legend(fontsize=8, frameon=False, loc="upper left", ncol=2)
    if rent.empty:
        _note(b, "no rent was paid")
        return fig
    by = rent.groupby(["collector", "intermediary"], observed=True)["amount"].sum().sort_values(ascending=False)
    shown = by.head(top)[::-1]
    colours = [_COLOURS[(order.index(k) + 3) % len(_COLOURS)] for _, k in shown.index]
    b.barh([str(c).replace("_", " ") for c, _ in shown.index], shown.to_numpy(), color=colours, alpha=0.8)
    total = float(by.sum())
    for y, v in enumerate(shown.to_numpy()):
        b.text(v, y, f" {v / total:.0%}", va="center", fontsize=8)
    b.set_xlabel(f"$ over rounds {rounds[0]}-{rounds[-1]} (share of all rent)", fontsize=9)
    from matplotlib.ticker import MaxNLocator

    _money_axis(b, "x")
    b.xaxis.set_major_locator(MaxNLocator(5))
    b.set_xlim(0, float(shown.max()) * 1.2)
    b.grid(alpha=0.3, axis="x")
    return fig


def rent_share(metrics: pd.DataFrame, *, by: str | None = None) -> Figure:
    """The rent share of GDP and rent in dollars (a sweep's groups, or a run without the breakdown)."""
    f = metrics.assign(rent_pct=metrics["rent_share"].where(metrics["gdp"] >= 1.0)) if not metrics.empty else metrics
    return _series_figure(
        f,
        "Rent (the payment kinds registered as rent: rail fees)",
        (
            ("rent / GDP (rounds with GDP under $1 left out)", "% of GDP", (("rent_pct", "rent share"),), 100.0, False),
            ("rent, $ per month", "$ per round", (("rent", "rent"),), 1.0, True),
        ),
        by,
    )


# -- 7. LLM -----------------------------------------------------------------------------------------
def llm_usage(
    metrics: pd.DataFrame, decisions: pd.DataFrame | None = None, *, roles: Sequence[str] = (), by: str | None = None
) -> Figure:
    """Calls to the model per round (by role), tokens, and the decisions that fell back to the rules.

    ``decisions``: the run's LLM rows (round, fallback_reason) for the share of decisions the model
    made; ``roles``: the LLM-driven roles whose ``llm_calls_<role>`` columns stack the calls.
    """
    from matplotlib.ticker import MaxNLocator

    fig = _figure(3, _title("LLM usage", by, metrics), legend_rows=_legend_rows(metrics, by), right=0.94, wspace=0.3)
    a, b, c = fig.axes
    _setup(a, "calls to the model per round", "calls")
    _setup(b, "tokens per round", "tokens")
    _setup(c, "decisions that fell back to the rules", "decisions per round")
    per_role = [(f"llm_calls_{r}", r) for r in roles if f"llm_calls_{r}" in metrics.columns]
    single = by is None and not metrics.empty
    if single and per_role:
        x = metrics["round"].to_numpy()
        bottom = np.zeros(len(x))
        for i, (col, role) in enumerate(per_role):
            v = metrics[col].to_numpy(dtype=np.float64)
            a.bar(x, v, bottom=bottom, color=_COLOURS[i % len(_COLOURS)], label=role, width=0.85)
            bottom += v
        a.set_ylim(0, max(float(bottom.max()), 1.0) * 1.35)  # room for the legend above the bars
        a.legend(fontsize=8, frameon=False, ncol=3, loc="upper center")
    else:
        _lines(a, metrics, (("llm_calls", "calls"),), by)
    _lines(b, metrics, (("llm_input_tokens", "input"), ("llm_output_tokens", "output")), by)
    _count_axis(a)
    _count_axis(b)
    c.yaxis.set_major_locator(MaxNLocator(integer=True))
    if single and "llm_fallbacks" in metrics.columns:
        fb = metrics["llm_fallbacks"].to_numpy(dtype=np.float64)
        c.bar(metrics["round"].to_numpy(), fb, color="#d62728", width=0.85, label="fallbacks (left axis)")
        c.set_ylim(0, max(float(fb.max()), 1.0) * 1.5)
        handles, labels = c.get_legend_handles_labels()
        if decisions is not None and not decisions.empty:
            asked = decisions.groupby("round").size()
            failed = decisions["fallback_reason"].fillna("").astype(str).ne("").groupby(decisions["round"]).sum()
            share = 100 * (1 - failed / asked)
            t = c.twinx()
            t.plot(
                share.index.to_numpy(),
                share.to_numpy(),
                color="black",
                lw=1.2,
                marker=".",
                label="LLM decisions the model made (right axis)",
            )
            t.set_ylim(0, 130)
            t.set_yticks([0, 25, 50, 75, 100])
            t.set_ylabel("% of LLM decisions from the model", fontsize=9)
            t.tick_params(labelsize=8)
            h2, l2 = t.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
        c.legend(handles, labels, fontsize=8, frameon=False, loc="upper left")
    else:
        _lines(c, metrics, (("llm_fallbacks", "fallbacks"),), by)
    _group_legend(fig, metrics, by)
    return fig


# -- 8. the market graph ----------------------------------------------------------------------------
def market_graph(graph: MarketGraph, *, title: str = "", min_share: float | None = None) -> Figure:
    """Draw a small market graph: nodes at their ``pos`` attribute (x, y), coloured by ``role``, area by
    ``wealth`` ($; nodes with none drawn small with a dashed outline) and named by ``label``;
    ``payment`` edges coloured by their ``flow`` category, width by ``amount``. Flows under
    ``min_share`` (default :data:`MIN_EDGE_SHARE`) of the largest are left out, and so are flows within
    one node: a caption should say so."""
    import networkx as nx
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    min_share = MIN_EDGE_SHARE if min_share is None else min_share
    h = 7.6
    fig = Figure(figsize=(WIDTH, h), dpi=100)
    ax = fig.add_axes((0.0, 0.0, 0.8, 1 - 0.45 / h))
    fig.suptitle(title or "The market graph", fontsize=12, x=0.01, y=1 - 0.08 / h, ha="left", va="top")
    ax.set_axis_off()
    nodes = list(graph.nodes)
    if not nodes:
        _note(ax, "no accounts")
        return fig
    pos = {n: graph.nodes[n]["pos"] for n in nodes}
    wealth = np.array([float(graph.nodes[n].get("wealth", 0.0)) for n in nodes])
    top = max(float(wealth.max()), 1e-9)
    sizes = np.where(wealth > 0, 50 + 2200 * np.maximum(wealth, 0) / top, 50)  # area ~ wealth
    colours = {n: ROLE_COLOURS.get(str(graph.nodes[n].get("role", "")), "#cccccc") for n in nodes}
    edges = [(u, v, d) for u, v, d in graph.edges(data=True) if d.get("kind") == "payment" and u != v]
    biggest = max((float(d["amount"]) for _, _, d in edges), default=0.0)
    kept = [(u, v, d) for u, v, d in edges if biggest > 0 and float(d["amount"]) >= min_share * biggest]
    xs, ys = zip(*pos.values(), strict=True)
    ax.set_xlim(min(xs) - 0.8, max(xs) + 0.5)  # room for the labels left of the households
    ax.set_ylim(min(ys) - 0.08, max(ys) + 0.14)
    order = sorted(kept, key=lambda e: -float(e[2]["amount"]))  # the widest first, under the rest
    _arcs(
        ax,
        [(pos[u], pos[v]) for u, v, _ in order],
        [0.4 + 9.0 * float(d["amount"]) / biggest for _, _, d in order],
        [EDGE_COLOURS.get(str(d.get("flow", "other")), EDGE_COLOURS["other"]) for _, _, d in order],
    )
    for dashed in (False, True):
        group = [i for i, w in enumerate(wealth) if (w <= 0) == dashed]
        if group:
            drawn = nx.draw_networkx_nodes(
                graph,
                pos,
                ax=ax,
                nodelist=[nodes[i] for i in group],
                node_size=sizes[group],
                node_color=[colours[nodes[i]] for i in group],
                edgecolors="black",
                linewidths=0.8,
                alpha=0.5 if dashed else 0.95,
            )
            drawn.set_linestyle("--" if dashed else "-")
            drawn.set_zorder(3)
    for n, size in zip(nodes, sizes, strict=True):
        side = str(graph.nodes[n].get("label_side", "right"))
        gap = float(np.sqrt(size / np.pi)) + 3  # points: the node's radius, and a little
        offset = {"left": (-gap, 0.0), "right": (gap, 0.0)}.get(side, (0.0, gap + 4))
        ha = {"left": "right", "right": "left"}.get(side, "center")
        ax.annotate(
            str(graph.nodes[n].get("label", n)),
            pos[n],
            xytext=offset,
            textcoords="offset points",
            ha=ha,
            va="center",
            fontsize=8,
            zorder=5,
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.8, "lw": 0},
        )
    used = list(dict.fromkeys(str(graph.nodes[n].get("role", "")) for n in nodes))
    roles = [
        Line2D(
            [],
            [],
            marker="o",
            ls="",
            markersize=8,
            markerfacecolor=ROLE_COLOURS.get(r, "#cccccc"),
            markeredgecolor="black",
            label=r.replace("_", " "),
        )
        for r in used
    ]
    flows = [f for f in EDGE_COLOURS if any(d.get("flow", "other") == f for _, _, d in kept)]
    lines = [Line2D([], [], color=EDGE_COLOURS[f], lw=3, label=f) for f in flows]
    fig.legend(
        handles=roles,
        title="node: role (area ~ wealth;\ndashed: none or negative)",
        fontsize=8,
        title_fontsize=8,
        loc="upper left",
        bbox_to_anchor=(0.81, 0.93),
        frameon=False,
    )
    widest = dollars(biggest).replace("$", r"\$")  # a bare pair of $ would be read as mathtext
    fig.legend(
        handles=lines,
        title=f"edge: payments of the round\n(width ~ \\$; widest {widest})",
        fontsize=8,
        title_fontsize=8,
        loc="upper left",
        bbox_to_anchor=(0.81, 0.55),
        frameon=False,
    )
    return fig


def _arcs(
    ax: Axes,
    ends: Sequence[tuple[tuple[float, float], tuple[float, float]]],
    widths: Sequence[float],
    colours: Sequence[str],
    *,
    bend: float = 0.12,
) -> None:
    """Curved edges with an arrowhead at 60% of their length, as two collections (networkx's
    ``draw_networkx_edges`` makes a patch per edge, which takes most of a report's time for a few
    hundred edges). An edge bends to its left, so the two directions between two nodes part."""
    from matplotlib.collections import LineCollection, PolyCollection

    if not ends:
        return
    bbox = ax.get_position()
    root = ax.get_figure(root=True)
    assert root is not None, "the axes belong to a figure"
    fig_w, fig_h = root.get_size_inches()
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    scale = np.array([bbox.width * fig_w / (x1 - x0), bbox.height * fig_h / (y1 - y0)])  # inches per data unit
    p = np.array([a for a, _ in ends], dtype=np.float64) * scale
    q = np.array([b for _, b in ends], dtype=np.float64) * scale
    d = q - p
    c = (p + q) / 2 + bend * np.stack([-d[:, 1], d[:, 0]], axis=1)  # the control point, left of p -> q
    t = np.linspace(0.0, 1.0, 24)[None, :, None]
    curve = (1 - t) ** 2 * p[:, None] + 2 * (1 - t) * t * c[:, None] + t**2 * q[:, None]
    ax.add_collection(LineCollection(list(curve / scale), linewidths=widths, colors=colours, alpha=0.5, zorder=1))
    m = 0.6
    at = (1 - m) ** 2 * p + 2 * (1 - m) * m * c + m**2 * q
    tangent = 2 * (1 - m) * (c - p) + 2 * m * (q - c)
    unit = tangent / np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    normal = np.stack([-unit[:, 1], unit[:, 0]], axis=1)
    length = (0.07 + 0.012 * np.asarray(widths, dtype=np.float64))[:, None]  # inches
    tip, back = at + unit * length / 2, at - unit * length / 2
    heads = np.stack([tip, back + normal * length * 0.45, back - normal * length * 0.45], axis=1)
    ax.add_collection(PolyCollection(list(heads / scale), facecolors=colours, edgecolors="none", alpha=0.8, zorder=2))
