"""The figures of ``tokenomy validate``: what the table's numbers summarise, one line per seed.

1. ``distribution.png``: wealth Gini, income Gini and top-10% wealth share over rounds.
2. ``labour_prices.png``: unemployment and inflation over rounds.
3. ``cycles.png``: HP(1600) cycles of quarterly log GDP, consumption and investment (first seed).
4. ``money_loans.png``: money and loans relative to GDP over rounds.

Figures are drawn on :class:`matplotlib.figure.Figure` with the Agg canvas, never through pyplot,
so writing them changes no backend or state of the caller's session (a notebook keeps its own).
matplotlib is imported only here, and this module only when figures are written. A metric a run
did not record leaves its panel with a note instead of stopping the validation. Where a check
states a target for the plotted metric, its band is shaded.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from tokenomy.validation import stats
from tokenomy.validation.checks import Check

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["FIGURES", "write_figures"]

FIGURES = ("distribution.png", "labour_prices.png", "cycles.png", "money_loans.png")

_Series = Callable[[pd.DataFrame], NDArray[np.float64]]


@dataclass(frozen=True)
class _Panel:
    """One panel of a per-seed figure: the columns it needs, the series drawn, its labels, and
    the check whose target band is shaded (in the panel's units: the metric times ``scale``)."""

    needs: tuple[str, ...]
    series: _Series
    title: str
    unit: str
    check: str | None = None
    scale: float = 1.0


def _column(name: str, scale: float = 1.0) -> _Series:
    return lambda f: np.asarray(f[name], dtype=np.float64) * scale


def _per_gdp(stock: str, to_currency: float) -> _Series:
    def series(f: pd.DataFrame) -> NDArray[np.float64]:
        gdp = np.asarray(f["gdp"], dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            out: NDArray[np.float64] = np.asarray(f[stock], dtype=np.float64) * to_currency / gdp
        return out

    return series


_GINI = "Gini coefficient (0-1)"
_DISTRIBUTION = (
    _Panel(("gini_wealth",), _column("gini_wealth"), "wealth Gini", _GINI, "wealth Gini"),
    _Panel(("gini_income",), _column("gini_income"), "income Gini (household income per round)", _GINI, "income Gini"),
    _Panel(("top10_wealth_share",), _column("top10_wealth_share", 100), "top-10% wealth share",
           "% of household wealth", "top-10% wealth share", 100.0),
)  # fmt: skip
_LABOUR_PRICES = (
    _Panel(("unemployment_rate",), _column("unemployment_rate", 100), "unemployment rate", "% of households",
           "unemployment mean", 100.0),
    _Panel(("inflation",), _column("inflation", 100), "inflation (price index, month on month)", "% per month",
           "inflation per round", 100.0),
)  # fmt: skip
_MONEY_LOANS = (
    _Panel(("money_supply_cents", "gdp"), _per_gdp("money_supply_cents", 0.01), "money (deposits) / GDP",
           "x monthly GDP"),
    _Panel(("loans_outstanding", "gdp"), _per_gdp("loans_outstanding", 1.0), "loans outstanding / GDP",
           "x monthly GDP"),
)  # fmt: skip


def write_figures(
    folder: Path,
    frames: Sequence[pd.DataFrame],
    seeds: Sequence[int],
    *,
    burn_in: int,
    name: str,
    checks: Sequence[Check] = (),
) -> list[Path]:
    """Write the four PNG files into ``folder``: one line per seed (``frames[i]`` is the metrics of
    ``seeds[i]``), the burn-in shaded, and the targets of ``checks`` where a panel plots a metric
    a check is measured on. Returns the files' paths."""
    folder.mkdir(parents=True, exist_ok=True)
    targets = {c.name: (c.target.lo, c.target.hi, c.source) for c in checks}
    b = burn_in
    sub = f"{name}, {len(seeds)} seed{'s' if len(seeds) != 1 else ''}; rounds are months; grey: burn-in"
    paths = []
    for file, title, panels in (
        (FIGURES[0], f"Distribution over rounds ({sub})", _DISTRIBUTION),
        (FIGURES[1], f"Labour market and prices ({sub})", _LABOUR_PRICES),
        (FIGURES[3], f"Money and credit relative to output ({sub})", _MONEY_LOANS),
    ):
        fig = _figure(len(panels), title)
        for ax, panel in zip(fig.axes, panels, strict=True):
            target = targets.get(panel.check) if panel.check is not None else None
            _per_seed(ax, frames, seeds, b, panel, target)
        paths.append(_save(fig, folder / file))
    fig = _figure(1, f"Business cycles, seed {seeds[0]} ({name}): HP(1600) cycle of quarterly logs, after the burn-in")
    _cycles(fig.axes[0], frames[0], b)
    paths.insert(2, _save(fig, folder / FIGURES[2]))
    return paths


def _figure(panels: int, title: str) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 2.2 + 2.6 * panels), dpi=110, layout="constrained")
    axes = fig.subplots(panels, 1, sharex=panels > 1, squeeze=False)[:, 0]
    for ax in axes[:-1]:
        ax.tick_params(labelbottom=True)
    fig.suptitle(title, fontsize=11)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(path)
    return path


def _missing(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


def _per_seed(
    ax: Axes,
    frames: Sequence[pd.DataFrame],
    seeds: Sequence[int],
    burn_in: int,
    panel: _Panel,
    target: tuple[float | None, float | None, str] | None,
) -> None:
    """One line per seed over every round, the burn-in shaded grey, the check's target band green."""
    ax.set_title(panel.title, fontsize=10, loc="left")
    ax.set_xlabel("round (month)")
    ax.set_ylabel(panel.unit)
    ax.grid(alpha=0.3)
    drawn = 0
    for s, f in zip(seeds, frames, strict=True):
        if f.empty or any(n not in f.columns for n in panel.needs):
            continue
        ax.plot(np.asarray(f["round"]), panel.series(f), lw=1.0, label=f"seed {s}")
        drawn += 1
    if drawn == 0:
        _missing(ax, f"not recorded: {', '.join(panel.needs)}")
        return
    ax.axvspan(-0.5, burn_in - 0.5, color="0.85", zorder=0, label="burn-in")
    if target is not None and (target[0] is not None or target[1] is not None):
        lo, hi, source = target
        scale = panel.scale
        ylo, yhi = ax.get_ylim()
        band_lo = lo * scale if lo is not None else min(ylo, hi * scale if hi is not None else ylo)
        band_hi = hi * scale if hi is not None else max(yhi, band_lo)
        span = (
            f"{lo * scale:g} to {hi * scale:g}"
            if lo is not None and hi is not None
            else (f"> {lo * scale:g}" if lo is not None else f"< {hi * scale:g}" if hi is not None else "")
        )
        label = "\n".join(textwrap.wrap(f"target {span} ({source})", 30))
        ax.axhspan(band_lo, band_hi, color="tab:green", alpha=0.12, zorder=0, label=label)
        ax.set_ylim(
            min(ylo, band_lo - 0.05 * abs(band_hi - band_lo)), max(yhi, band_hi + 0.05 * abs(band_hi - band_lo))
        )
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)


def _cycles(ax: Axes, frame: pd.DataFrame, burn_in: int) -> None:
    ax.set_xlabel("quarter (3 rounds) after the burn-in")
    ax.set_ylabel("% deviation from HP trend")
    ax.grid(alpha=0.3)
    if frame.empty or "round" not in frame.columns:
        _missing(ax, "no rounds recorded")
        return
    window = frame[np.asarray(frame["round"]) >= burn_in]
    drawn, skipped = 0, []
    for col, label, color in (("gdp", "GDP", "black"), ("consumption", "consumption", "tab:blue"),
                              ("investment", "investment", "tab:orange")):  # fmt: skip
        if col not in window.columns:
            skipped.append(f"{label}: not recorded")
            continue
        try:
            cyc = 100.0 * stats.log_cycle(stats.to_quarters(np.asarray(window[col], dtype=np.float64), "sum"))
        except ValueError as exc:  # too few quarters, or a quarter with none of it
            skipped.append(f"{label} not drawn: {exc}")
            continue
        sd = float(np.std(cyc))
        ax.plot(np.arange(1, cyc.size + 1), cyc, lw=1.4 if col == "gdp" else 1.0, color=color,
                label=f"{label} (sd {sd:.2f}%)")  # fmt: skip
        drawn += 1
    if not drawn:
        _missing(ax, "\n".join(skipped))
        return
    for why in skipped:  # in the legend, where it cannot cover a line
        ax.plot([], [], " ", label="\n".join(textwrap.wrap(why, 30)))
    ax.axhline(0.0, color="0.5", lw=0.8)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
