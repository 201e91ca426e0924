"""Named metrics: one small function per column of ``metrics.parquet`` (Mesa's model reporters).

Each metric takes a :class:`RoundData` (the world, the round's view, its outcome, the scenario)
and returns a number. ``METRICS`` is the built-in table, in column order; a user adds columns
from Python without editing the package: ``Runner(scenario, metrics={"name": fn})``.

The row is taken after ``advance``: what advance moves (the automatable share, the price level)
is read from the round's ``MarketView``, so every number describes the round that settled.

GDP is measured by production: units produced times the round's transaction price index. With one
good and no intermediate inputs this is consumption + investment + government + inventory change
at market prices; valuing unsold output at the price goods actually traded at (not at each firm's
posted price) keeps one firm's stray price from moving GDP, and keeps the labour share meaningful
in rounds when sales and production part ways.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tokenomy import accounts, registry
from tokenomy.agents.base import MarketView
from tokenomy.market import production
from tokenomy.market.clearing import Purchases
from tokenomy.outcome import RoundOutcome
from tokenomy.scenario import Scenario
from tokenomy.world import World

__all__ = [
    "GDP_SHARES",
    "LLM_ROLE_METRICS",
    "METRICS",
    "METRIC_COLUMNS",
    "MIN_GDP",
    "Metric",
    "RoundData",
    "gini",
    "llm_metrics",
    "metrics_row",
    "round_metrics",
    "top_share",
]


@dataclass
class RoundData:
    """What a metric may read, with the intermediates several metrics share computed once."""

    world: World
    view: MarketView
    outcome: RoundOutcome
    scenario: Scenario

    @cached_property
    def purchases(self) -> Purchases:
        p = self.outcome.purchases
        assert p is not None, "metrics are taken from a settled round"
        return p

    @cached_property
    def household_buys(self) -> NDArray[np.bool_]:
        return self.purchases.buyer < self.world.n_households

    @cached_property
    def firm_buys(self) -> NDArray[np.bool_]:
        n, buyer = self.world.n_households, self.purchases.buyer
        return (buyer >= n) & (buyer < n + self.world.n_firms)

    @cached_property
    def price_index(self) -> float:
        """Cents per unit sold this round (the last round's when nothing sold)."""
        p = self.outcome.price_index
        return p if p is not None else self.view.price_index

    @cached_property
    def gdp_cents(self) -> float:
        return float(self._output.sum()) * self.price_index

    @cached_property
    def employed(self) -> NDArray[np.bool_]:
        return self.world.h_employer >= 0

    @cached_property
    def wage_bill(self) -> float:
        return float(self._income("wages").sum())

    @cached_property
    def wealth(self) -> NDArray[np.float64]:
        w = self.world
        return w.household_balance() + w.household_token_wealth()

    @cached_property
    def balance_sheet(self) -> NDArray[np.int64]:
        return accounts.balance_sheet(self.world)

    @cached_property
    def flows(self) -> tuple[tuple[str, ...], NDArray[np.int64]]:
        o = self.outcome
        assert o.opening_balance is not None, "metrics are taken from a settled round"
        kinds = registry.payment_kinds()
        return accounts.flow_matrix(self.world, o.postings, kinds, o.opening_balance, o.opening_reserves)

    @cached_property
    def unit_costs(self) -> NDArray[np.float64]:
        """Each firm's average cost of this round's output, cents per unit: wages and the wear of its
        capital at replacement cost (what national accounts value a change in inventories at)."""
        o, w = self.outcome, self.world
        assert o.wage_bill is not None and o.capital_wear is not None
        cost = o.wage_bill + o.capital_wear * w.capital_price * self.price_index
        out: NDArray[np.float64] = cost / np.maximum(self._output, 1e-12)
        # a firm that made (almost) nothing has no meaningful unit cost; dividing by a sliver of output
        # gave costs of 1e20 cents a unit and cancellation errors of 1% of GDP in the identity check
        return np.where(self._output > 1e-6, out, 0.0)

    @cached_property
    def inventory_change_cents(self) -> float:
        """The round's change in inventories, valued at cost."""
        o = self.outcome
        assert o.opening_inventory is not None
        return float((self.unit_costs * (self.world.f_inventory - o.opening_inventory)).sum())

    @cached_property
    def gdp_expenditure_cents(self) -> float:
        """GDP by expenditure: consumption + investment + government + change in inventories at cost."""
        return float(self.purchases.amount.sum()) + self.inventory_change_cents

    @property
    def _output(self) -> NDArray[np.float64]:
        assert self.outcome.output is not None
        return self.outcome.output

    def _income(self, source: str) -> NDArray[np.int64]:
        v: NDArray[np.int64] | None = getattr(self.outcome, source)
        assert v is not None, f"no {source} recorded this round"
        return v


Metric = Callable[[RoundData], float | int]


def _or(x: NDArray[np.float64] | None, default: NDArray[np.float64]) -> NDArray[np.float64]:
    return x if x is not None else default


def _share(x: float, of: float) -> float:
    return x / of if of > 0 else 0.0


def gini(x: ArrayLike) -> float:
    """Exact Gini coefficient of non-negative values (0 = equal, 1 = one holds all)."""
    v = np.sort(np.maximum(np.asarray(x, dtype=np.float64).ravel(), 0.0))
    n, total = v.size, v.sum()
    if n == 0 or total <= 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float((2.0 * (ranks * v).sum()) / (n * total) - (n + 1.0) / n)


def top_share(x: ArrayLike, share: float = 0.1) -> float:
    """Share of the total held by the top ``share`` of holders."""
    v = np.sort(np.maximum(np.asarray(x, dtype=np.float64).ravel(), 0.0))
    total = v.sum()
    if v.size == 0 or total <= 0:
        return 0.0
    k = max(1, int(np.ceil(share * v.size)))
    return float(v[-k:].sum() / total)


# -- the built-in columns -------------------------------------------------------------------------
def potential_output(d: RoundData) -> float:
    """What the capital stock and every household at work would produce, at this round's prices."""
    w, p = d.world, d.scenario.production
    units = float(production.output(w.f_capital.sum(), w.n_households, d.view.phi, p.A, p.sigma))
    return units * d.price_index / 100


def gdp_discrepancy_explained(d: RoundData) -> float:
    """What GDP by production and by expenditure must differ by, cents: production values unsold
    output at the round's price index, expenditure at cost, and counts none of the stock that
    decayed. ``gdp - gdp_expenditure`` equals this when every purchase and every unit of stock is
    accounted for (``tokenomy validate`` checks it)."""
    o, w = d.outcome, d.world
    assert o.inventory_decay is not None
    sold = np.bincount(d.purchases.seller, weights=d.purchases.quantity, minlength=w.n_firms)
    unsold = d._output - sold  # from the round's purchases: an entrant's reset sales would hide its stock
    c = d.unit_costs
    return float(((d.price_index - c) * unsold).sum() + (c * o.inventory_decay).sum())


def book_token_wealth(d: RoundData) -> float:
    """Households' tokens at their issuers' book net worth (``World.book_per_share``; stock at this
    round's unit cost), cents."""
    w = d.world
    return float((w.household_holdings() @ w.book_per_share(d.price_index, d.unit_costs)).sum())


def vacancy_rate(d: RoundData) -> float:
    """Vacancies posted over employment plus vacancies (the JOLTS job-openings rate)."""
    v = float(d.world.f_vacancies.sum())
    return _share(v, v + float(d.employed.sum()))


def skewness(x: NDArray[np.float64]) -> float:
    x = np.asarray(x, dtype=np.float64)
    sd = x.std()
    return float(((x - x.mean()) ** 3).mean() / sd**3) if sd > 0 else 0.0


def sfc_residual(d: RoundData) -> int:
    """The largest row or column sum of the balance-sheet and transactions-flow matrices, cents."""
    m, (_, f) = d.balance_sheet, d.flows
    fin = m[:-1]  # instrument rows (net worth is each column's balance, not an instrument)
    sums = [np.abs(fin.sum(axis=1)), np.abs(m.sum(axis=0)), np.abs(f.sum(axis=1)), np.abs(f.sum(axis=0))]
    return int(max(int(x.max()) for x in sums))


def household_income(d: RoundData) -> NDArray[np.int64]:
    sources = ("wages", "dividends", "interest", "ubi", "benefits")
    total: NDArray[np.int64] = sum((d._income(k) for k in sources), np.zeros(d.world.n_households, dtype=np.int64))
    return total


METRICS: dict[str, Metric] = {
    "round": lambda d: d.outcome.round,
    "gdp": lambda d: d.gdp_cents / 100,
    "potential_output": potential_output,
    "consumption": lambda d: float(d.purchases.amount[d.household_buys].sum()) / 100,
    "investment": lambda d: float(d.purchases.amount[d.firm_buys].sum()) / 100,
    "government": lambda d: float(d.purchases.amount[~d.household_buys & ~d.firm_buys].sum()) / 100,
    "wage_mean": lambda d: float(d._income("wages")[d.employed].mean()) / 100 if d.employed.any() else 0.0,
    "labour_share": lambda d: _share(d.wage_bill, d.gdp_cents),
    "unemployment_rate": lambda d: float(1.0 - d.employed.mean()),
    "price_index": lambda d: d.price_index / 100,
    "inflation": lambda d: d.price_index / d.view.price_index - 1.0 if d.view.price_index > 0 else 0.0,
    "gini_wealth": lambda d: gini(d.wealth),
    "gini_income": lambda d: gini(household_income(d)),
    "top10_wealth_share": lambda d: top_share(d.wealth, 0.1),
    "rent": lambda d: d.outcome.rent / 100,
    "rent_share": lambda d: _share(d.outcome.rent, d.gdp_cents),
    "money_supply_cents": lambda d: int(d.world.ledger.money_supply),
    "issued_cents": lambda d: int(d.outcome.issued),
    "destroyed_cents": lambda d: int(d.outcome.destroyed),
    "ubi_paid": lambda d: float(d._income("ubi").sum()) / 100,
    "income_wages": lambda d: d.wage_bill / 100,
    "income_dividends": lambda d: float(d._income("dividends").sum()) / 100,
    "income_interest": lambda d: float(d._income("interest").sum()) / 100,
    "income_ubi": lambda d: float(d._income("ubi").sum()) / 100,
    "automation_share": lambda d: float(d.view.phi),
    "capital_stock": lambda d: float(d.world.f_capital.sum()),
    "output_units": lambda d: float(d._output.sum()),
    "loans_outstanding": lambda d: float(d.world.f_loan.sum()) / 100,
    "taxes": lambda d: d.outcome.taxes / 100,
    "card_fee": lambda d: float(min(d.world.card_fee, d.world.card_fee_cap)),
    "hires": lambda d: d.outcome.hired,
    "separations": lambda d: d.outcome.fired,
    # every cent has a counterpart (tokenomy.accounts): both must be 0 in every round
    "money_without_counterpart_cents": lambda d: accounts.money_without_counterpart(d.world),
    "sfc_residual_cents": lambda d: sfc_residual(d),
    "bank_equity": lambda d: float(d.world.b_equity.sum()) / 100,
    "cb_advances": lambda d: d.world.cb_advances / 100,
    "loan_losses": lambda d: d.outcome.written_off / 100,
    "defaults": lambda d: int(d.outcome.defaulted.sum()) if d.outcome.defaulted is not None else 0,
    "bank_resolutions": lambda d: sum(e["kind"] == "bank_resolution" for e in d.outcome.events),
    "bankruptcies": lambda d: sum(e["kind"] == "bankruptcy" for e in d.outcome.events),
    "entries": lambda d: sum(e["kind"] == "entry" for e in d.outcome.events),
    "policy_rate": lambda d: float(d.world.policy_rate),
    "state_balance": lambda d: float(d.world.balance_of("regulator")[0]) / 100,
    "income_benefits": lambda d: float(d._income("benefits").sum()) / 100,
    # national accounts
    "gdp_expenditure": lambda d: d.gdp_expenditure_cents / 100,
    "inventory_change": lambda d: d.inventory_change_cents / 100,
    "gdp_discrepancy": lambda d: (d.gdp_cents - d.gdp_expenditure_cents) / 100,
    "gdp_discrepancy_explained": lambda d: gdp_discrepancy_explained(d) / 100,
    "utilisation": lambda d: _share(float(d._output.sum()), float(_or(d.outcome.capacity, d._output).sum())),
    "vacancy_rate": lambda d: vacancy_rate(d),
    "firm_size_skewness": lambda d: skewness(d.world.workers().astype(np.float64)),
    "token_wealth_market": lambda d: float(d.world.household_token_wealth().sum()) / 100,
    "token_wealth_book": lambda d: book_token_wealth(d) / 100,
}

GDP_SHARES = ("labour_share", "rent_share")
"""Columns that are ratios over GDP: summaries and comparisons leave out rounds whose GDP is under
``MIN_GDP`` (a tiny economy's GDP of 1e-8 once made the rent share 34 billion percent; below it the
ratio is meaningless, or 0 by convention), n/a if no round is left."""
MIN_GDP = 1.0  # currency units a round

LLM_ROLE_METRICS = (
    "llm_calls",
    "llm_input_tokens",
    "llm_output_tokens",
    "llm_cache_hits",
    "llm_fallbacks",
    "llm_latency_p50_ms",
    "llm_latency_p95_ms",
    "llm_cost_usd",
)  # in total, and again per LLM-driven role: llm_calls_household, llm_cost_usd_firm, ...
METRIC_COLUMNS = (*METRICS, *LLM_ROLE_METRICS)


def llm_metrics(records: list[dict[str, Any]], scenario: Scenario) -> dict[str, Any]:
    """LLM usage of one round: calls over the network, tokens spent (cache hits cost none), latency,
    estimated cost; in total, then per LLM-driven role (``llm_calls_household``, ...)."""
    row = _llm_usage(records, scenario, "")
    for role in scenario.llm_roles():
        row |= _llm_usage([r for r in records if r["role"] == role], scenario, f"_{role}")
    return row


def _llm_usage(records: list[dict[str, Any]], scenario: Scenario, suffix: str) -> dict[str, Any]:
    called = [r for r in records if r["called"]]
    lat = np.array([r["latency_ms"] for r in called], dtype=np.float64)
    tin, tout = int(sum(r["input_tokens"] for r in called)), int(sum(r["output_tokens"] for r in called))
    cfg = scenario.llm
    values = (
        int(sum(r["calls"] for r in called)),
        tin,
        tout,
        int(sum(r["cache_hit"] for r in records)),
        int(sum(bool(r["fallback_reason"]) for r in records)),
        float(np.percentile(lat, 50)) if lat.size else 0.0,
        float(np.percentile(lat, 95)) if lat.size else 0.0,
        (tin * cfg.price_input_per_million + tout * cfg.price_output_per_million) / 1e6,
    )
    return {f"{name}{suffix}": v for name, v in zip(LLM_ROLE_METRICS, values, strict=True)}


def round_metrics(
    world: World,
    view: MarketView,
    outcome: RoundOutcome,
    scenario: Scenario,
    extra: Mapping[str, Metric] | None = None,
) -> dict[str, Any]:
    """One row of ``metrics.parquet`` for the round that just settled (money in currency units):
    the built-in ``METRICS``, the LLM usage columns, then ``extra`` (a user's own)."""
    return metrics_row(RoundData(world, view, outcome, scenario), extra)


def metrics_row(d: RoundData, extra: Mapping[str, Metric] | None = None) -> dict[str, Any]:
    """:func:`round_metrics` from a :class:`RoundData` the caller keeps (the recorder reuses its
    sector matrices for ``accounts.parquet`` instead of building them twice)."""
    row: dict[str, Any] = {name: fn(d) for name, fn in METRICS.items()}
    row |= llm_metrics(d.outcome.llm_records, d.scenario)
    for name, fn in (extra or {}).items():
        if name in row:
            raise ValueError(f"metric {name!r} would replace a built-in column")
        row[name] = fn(d)
    return row
