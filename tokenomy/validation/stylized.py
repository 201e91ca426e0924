"""Stylized facts of the macro agent-based literature, measured on each seed's ``metrics.parquet``.

Each fact is one :class:`Spec` row of :data:`SPECS`: a name, the target, where the target comes
from, and a one-line measurement on a :class:`Seed` (one run's rounds from the burn-in on, with the
quarterly views the business-cycle facts are stated on). Rounds are months; business-cycle facts
use quarters of three rounds (flows summed, rates averaged, price levels at the quarter's end),
detrended with the HP filter at lambda = 1600, as in Dosi et al. (2010) and Caiani et al. (2016).

A metric the engine does not record (yet) makes its check fail with the note ``metric <name> not
recorded``: the check is in the table, unmeasured, never silently passed or skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from tokenomy.validation import stats
from tokenomy.validation.checks import Check, Kind, Target, above, below, between, check
from tokenomy.validation.stats import Aggregation

__all__ = ["SPECS", "MetricNotRecorded", "Seed", "Spec", "stylized_checks"]


class MetricNotRecorded(LookupError):
    """A check needs a column this run's ``metrics.parquet`` does not have."""

    def __init__(self, name: str) -> None:
        super().__init__(f"metric {name} not recorded")
        self.name = name


class Seed:
    """One seed's metrics: the rounds from ``burn_in`` on (the window), and the quarterly views of it.

    Quarters start at the window's first round; an incomplete last quarter is dropped.
    """

    def __init__(self, frame: pd.DataFrame, burn_in: int) -> None:
        self.frame = frame.sort_values("round", kind="stable") if "round" in frame.columns else frame
        self.burn_in = burn_in
        rounds = self.frame["round"] if "round" in frame.columns else pd.RangeIndex(len(frame))
        self.window = self.frame[np.asarray(rounds) >= burn_in]

    def monthly(self, name: str, *, whole_run: bool = False) -> NDArray[np.float64]:
        """One column per round, over the window (or every round, burn-in included)."""
        frame = self.frame if whole_run else self.window
        if name not in frame.columns:
            raise MetricNotRecorded(name)
        if len(frame) == 0:
            raise ValueError(f"no rounds from round {self.burn_in} on")
        return np.asarray(frame[name], dtype=np.float64)

    def quarters(self, name: str, how: Aggregation) -> NDArray[np.float64]:
        return stats.to_quarters(self.monthly(name), how)

    def log_cycle(self, name: str) -> NDArray[np.float64]:
        """HP cycle of the log of a flow's quarterly sums (a relative deviation from trend)."""
        return stats.log_cycle(self.quarters(name, "sum"))

    def cycle(self, name: str, how: Aggregation = "mean") -> NDArray[np.float64]:
        """HP cycle in levels (for rates such as unemployment, already in shares)."""
        return stats.hp_filter(self.quarters(name, how))[1]

    def growth(self, name: str, how: Aggregation) -> NDArray[np.float64]:
        """Quarter-on-quarter growth rate (one fewer point than the quarters)."""
        q = self.quarters(name, how)
        if not np.all(q > 0):
            raise ValueError(f"growth of {name} needs positive quarterly values")
        return q[1:] / q[:-1] - 1.0


Measure = Callable[[Seed], float]


@dataclass(frozen=True)
class Spec:
    """One stylized fact: what :func:`stylized_checks` measures in each seed and compares."""

    name: str
    target: Target
    source: str
    measure: Measure
    note: str  # the exact measurement, short
    kind: Kind = "stylized"


# -- measurements several facts share -------------------------------------------------------------
def _mean(name: str) -> Measure:
    return lambda s: float(np.mean(s.monthly(name)))


def _ratio(num: float, den: float) -> float:
    return num / den if den != 0 and math.isfinite(den) else math.nan


def _stock_to_gdp_drift(stock: str, to_currency: float) -> Measure:
    """Mean stock/GDP over the window's last 100 rounds over that of its first 100 (halves when
    the window is shorter than 200 rounds, so the two never overlap)."""

    def measure(s: Seed) -> float:
        with np.errstate(divide="ignore", invalid="ignore"):
            r = s.monthly(stock) * to_currency / s.monthly("gdp")
        k = min(100, r.size // 2)
        return _ratio(float(r[-k:].mean()), float(r[:k].mean())) if k else math.nan

    return measure


def _rel_sd(flow: str) -> Measure:
    return lambda s: _ratio(float(np.std(s.log_cycle(flow))), float(np.std(s.log_cycle("gdp"))))


def _corr_with_y_cycle(name: str, how: Aggregation) -> Measure:
    """corr of a quarterly series in levels with the HP cycle of log quarterly GDP."""
    return lambda s: stats.corr(s.quarters(name, how), s.log_cycle("gdp"))


MIN_BANKRUPTCIES = 10
"""Fewest bankruptcies in a seed's window for their cyclicality to be measured: a correlation over
one or two events is noise (the baseline has 0-2 per seed, and its sign flipped with any change)."""


def _bankruptcy_cyclicality(s: Seed) -> float:
    q = s.quarters("bankruptcies", "sum")
    if not q.sum() >= MIN_BANKRUPTCIES:
        return math.nan
    return stats.corr(q, s.log_cycle("gdp"))


def _u_q(s: Seed) -> NDArray[np.float64]:
    return s.quarters("unemployment_rate", "mean")


def _max_abs_whole_run(name: str) -> Measure:
    return lambda s: float(np.max(np.abs(s.monthly(name, whole_run=True))))


def _gdp_gap(s: Seed) -> float:
    """How far GDP by production and by expenditure differ beyond what valuation explains."""
    y, e = s.monthly("gdp", whole_run=True), s.monthly("gdp_expenditure", whole_run=True)
    explained = s.monthly("gdp_discrepancy_explained", whole_run=True)
    return float(np.max(np.abs(y - e - explained) / np.maximum(np.abs(y), 1.0)))


_ABM = "Dosi et al. 2010; Caiani et al. 2016"
_SFC = "Godley & Lavoie 2007; Caiani et al. 2016"
_Q = "quarterly sums, HP(1600) cycle of logs"
_STRICTLY_POSITIVE = 1e-9  # Target's bounds are inclusive: "> 0" must not pass a run with none at all

SPECS: tuple[Spec, ...] = (
    # prices and stock-flow norms
    Spec("inflation per round", between(0.0, 0.004), "Caiani et al. 2016 (low, stable inflation)",
         _mean("inflation"), "mean monthly inflation over the window"),
    Spec("inflation volatility", below(0.01, "sd <= 0.01 a month"), "US CPI 1960-2019: monthly sd about 0.003",
         lambda s: float(np.std(s.monthly("inflation"), ddof=1)),
         "sample sd of monthly inflation over the window: a mean in range can hide wild swings"),
    Spec("inflation trend", between(-0.001, 0.001, "within +-0.001 per 100 rounds"), "Caiani et al. 2016",
         lambda s: 100 * stats.linear_trend(s.monthly("inflation")),
         "OLS slope of monthly inflation on round, per 100 rounds"),
    Spec("money/GDP stability", between(0.8, 1.25), _SFC, _stock_to_gdp_drift("money_supply_cents", 0.01),
         "mean money_supply/gdp, last 100 rounds of the window / first 100"),
    Spec("loans/GDP stability", between(0.8, 1.25), _SFC, _stock_to_gdp_drift("loans_outstanding", 1.0),
         "mean loans_outstanding/gdp, last 100 rounds of the window / first 100"),
    Spec("money without a counterpart", between(0.0, 0.0, "= 0"), "Godley & Lavoie 2007 (every asset a liability)",
         _max_abs_whole_run("money_without_counterpart_cents"),
         "max |money_without_counterpart_cents| over every round, burn-in included", kind="accounting"),
    Spec("SFC matrices: every row and column sums to 0", between(0.0, 0.0, "= 0"), "Godley & Lavoie 2007, ch. 2",
         _max_abs_whole_run("sfc_residual_cents"), "max |sfc_residual_cents| over every round, burn-in included",
         kind="accounting"),
    Spec("GDP by production = by expenditure", between(0.0, 1e-9, "< 1e-9 of GDP"), "national accounts identity",
         _gdp_gap, "max |gdp - gdp_expenditure - unsold output's valuation and decay| / gdp, every round",
         kind="accounting"),
    # the labour market
    Spec("unemployment mean", between(0.03, 0.10), "US BLS 1948-2019; Dosi et al. 2010",
         _mean("unemployment_rate"), "mean monthly unemployment_rate over the window"),
    Spec("unemployment volatility", above(0.005, ">= 0.005"), "US BLS 1948-2019; Dosi et al. 2010",
         lambda s: float(np.std(s.monthly("unemployment_rate"), ddof=1)),
         "sample sd of monthly unemployment_rate over the window"),
    # the business cycle (quarterly)
    Spec("sd(I)/sd(Y)", between(1.5, 6.0), _ABM, _rel_sd("investment"), f"sd ratio; {_Q}"),
    Spec("sd(C)/sd(Y)", between(0.4, 1.0), _ABM, _rel_sd("consumption"), f"sd ratio; {_Q}"),
    Spec("corr(C, Y)", above(0.5), _ABM, lambda s: stats.corr(s.log_cycle("consumption"), s.log_cycle("gdp")),
         f"contemporaneous corr; {_Q}"),
    Spec("peak corr(I, Y) within +-2 quarters", above(0.5), _ABM,
         lambda s: stats.peak_cross_corr(s.log_cycle("investment"), s.log_cycle("gdp"), 2)[1],
         f"max over lags -2..2 of corr(I_t, Y_t+lag); {_Q}"),
    Spec("corr(u, Y)", below(-0.5), _ABM,
         lambda s: stats.corr(s.cycle("unemployment_rate"), s.log_cycle("gdp")),
         "HP cycle of quarterly mean u (levels) vs HP cycle of log quarterly GDP"),
    Spec("Phillips curve (wages)", below(-0.2), "Phillips 1958; Dosi et al. 2010",
         lambda s: stats.corr(_u_q(s)[1:], s.growth("wage_mean", "mean")),
         "corr(quarterly mean u, q-on-q growth of quarterly mean wage_mean)"),
    Spec("Phillips curve (prices)", below(0.0), "Dosi et al. 2010",
         lambda s: stats.corr(_u_q(s)[1:], s.growth("price_index", "last")),
         "corr(quarterly mean u, q-on-q growth of end-of-quarter price_index)"),
    Spec("Okun's law", below(-0.5), "Okun 1962; Dosi et al. 2010",
         lambda s: stats.corr(np.diff(_u_q(s)), s.growth("gdp", "sum")),
         "corr(q-on-q change in quarterly mean u, q-on-q growth of quarterly GDP)"),
    Spec("Beveridge curve", below(-0.2), "US JOLTS; Dosi et al. 2010",
         lambda s: stats.corr(_u_q(s), s.quarters("vacancy_rate", "mean")),
         "corr(quarterly mean u, quarterly mean vacancy_rate), levels"),
    # firms
    Spec("firm size skewness", above(0.5), "Axtell 2001; Dosi et al. 2010", _mean("firm_size_skewness"),
         "mean of firm_size_skewness over the window"),
    Spec("bankruptcies occur", above(_STRICTLY_POSITIVE, "> 0"), "Delli Gatti et al. 2011", _mean("bankruptcies"),
         "mean bankruptcies per round over the window"),
    Spec("bankruptcies countercyclical", below(0.0), "Delli Gatti et al. 2011",
         _bankruptcy_cyclicality,
         f"corr(quarterly sum of bankruptcies, HP cycle of log quarterly GDP); not measured in a seed with fewer"
         f" than {MIN_BANKRUPTCIES} bankruptcies in the window"),
    # distribution
    Spec("wealth Gini", between(0.6, 0.9), "US SCF", _mean("gini_wealth"), "mean gini_wealth over the window"),
    Spec("wealth Gini trend", between(-0.02, 0.02, "within +-0.02 per 100 rounds"),
         "US SCF: the wealth Gini rose about 0.07 in 30 years (1989-2019)",
         lambda s: 100 * stats.linear_trend(s.monthly("gini_wealth")),
         "OLS slope of gini_wealth on round, per 100 rounds: a level the economy holds, not an initial draw decaying"),
    Spec("top-10% wealth share", between(0.5, 0.8), "US SCF", _mean("top10_wealth_share"),
         "mean top10_wealth_share over the window"),
    Spec("income Gini", between(0.3, 0.5), "US Census; OECD", _mean("gini_income"),
         "mean gini_income over the window"),
)  # fmt: skip


def _measure_one(spec: Spec, seed: Seed) -> tuple[float | None, str | None]:
    """The seed's value, or None and why it could not be measured."""
    try:
        return spec.measure(seed), None
    except (MetricNotRecorded, ValueError) as e:
        return None, str(e)


def stylized_checks(runs: Sequence[pd.DataFrame], burn_in: int, specs: Sequence[Spec] = SPECS) -> list[Check]:
    """Every fact of ``specs`` measured in each seed's metrics (rounds ``>= burn_in``), as checks.

    A seed that cannot be measured (a metric not recorded, too few quarters, a non-positive flow
    under a log) counts as ``None`` and the reason goes into the note; when no seed could be, the
    note is only the reason (``metric vacancy_rate not recorded``).
    """
    seeds = [Seed(frame, burn_in) for frame in runs]
    out = []
    for spec in specs:
        results = [_measure_one(spec, s) for s in seeds]
        problems: dict[str, list[int]] = {}
        for i, (_, why) in enumerate(results):
            if why is not None:
                problems.setdefault(why, []).append(i)
        if seeds and len(problems) == 1 and len(next(iter(problems.values()))) == len(seeds):
            note = next(iter(problems))
        else:
            note = "; ".join([spec.note, *(f"{why} (seed {', '.join(map(str, ix))})" for why, ix in problems.items())])
        out.append(check(spec.name, spec.target, spec.source, [v for v, _ in results], kind=spec.kind, note=note))
    return out
