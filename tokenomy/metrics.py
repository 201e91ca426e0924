"""Named metrics: pure functions of the world and of what a round did.

GDP is measured by production: units produced times the round's transaction price index. With one
good and no intermediate inputs this is consumption + investment + government + inventory change
at market prices; valuing unsold output at the price goods actually traded at (not at each firm's
posted price) keeps one firm's stray price from moving GDP, and keeps the labour share meaningful
in rounds when sales and production part ways.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from tokenomy.market import production

if TYPE_CHECKING:
    from tokenomy.scenario import Scenario
    from tokenomy.simulation import RoundOutcome
    from tokenomy.world import World

__all__ = ["LLM_ROLE_METRICS", "METRIC_COLUMNS", "gini", "llm_metrics", "round_metrics", "top_share"]

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
METRIC_COLUMNS = (
    "round",
    "gdp",
    "potential_output",
    "consumption",
    "investment",
    "government",
    "wage_mean",
    "labour_share",
    "unemployment_rate",
    "price_index",
    "inflation",
    "gini_wealth",
    "gini_income",
    "top10_wealth_share",
    "rent",
    "rent_share",
    "money_supply_cents",
    "issued_cents",
    "destroyed_cents",
    "ubi_paid",
    "income_wages",
    "income_dividends",
    "income_interest",
    "income_ubi",
    "automation_share",
    "capital_stock",
    "output_units",
    "loans_outstanding",
    "taxes",
    "card_fee",
    "hires",
    "separations",
    *LLM_ROLE_METRICS,
)


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


def round_metrics(world: World, outcome: RoundOutcome, scenario: Scenario, prev_price_index: float) -> dict[str, Any]:
    """One row of ``metrics.parquet`` for the round that just settled (money in currency units)."""
    o, w, n = outcome, world, world.n_households
    p = o.purchases
    assert p is not None and o.output is not None and o.wages is not None
    assert o.dividends is not None and o.interest is not None and o.ubi is not None
    hh = p.buyer < n
    firm_buyer = (p.buyer >= n) & (p.buyer < n + w.n_firms)
    sold_q = float(p.quantity.sum())
    price_index = float(p.amount.sum() / sold_q) if sold_q > 0 else prev_price_index
    gdp_c = float(o.output.sum()) * price_index
    potential = float(production.output(w.f_capital.sum(), n, w.phi, scenario.production.A, scenario.production.sigma))
    wage_bill = float(o.wages.sum())
    employed = w.h_employer >= 0
    income = o.wages + o.dividends + o.interest + o.ubi
    wealth = w.household_balance() + w.token_wealth()
    return {
        "round": o.round,
        "gdp": gdp_c / 100,
        "potential_output": potential * price_index / 100,
        "consumption": float(p.amount[hh].sum()) / 100,
        "investment": float(p.amount[firm_buyer].sum()) / 100,
        "government": float(p.amount[~hh & ~firm_buyer].sum()) / 100,
        "wage_mean": float(o.wages[employed].mean()) / 100 if employed.any() else 0.0,
        "labour_share": wage_bill / gdp_c if gdp_c > 0 else 0.0,
        "unemployment_rate": float(1.0 - employed.mean()),
        "price_index": price_index / 100,
        "inflation": price_index / prev_price_index - 1.0 if prev_price_index > 0 else 0.0,
        "gini_wealth": gini(wealth),
        "gini_income": gini(income),
        "top10_wealth_share": top_share(wealth, 0.1),
        "rent": o.fees / 100,
        "rent_share": o.fees / gdp_c if gdp_c > 0 else 0.0,
        "money_supply_cents": int(w.ledger.money_supply),
        "issued_cents": int(o.issued),
        "destroyed_cents": int(o.destroyed),
        "ubi_paid": float(o.ubi.sum()) / 100,
        "income_wages": wage_bill / 100,
        "income_dividends": float(o.dividends.sum()) / 100,
        "income_interest": float(o.interest.sum()) / 100,
        "income_ubi": float(o.ubi.sum()) / 100,
        "automation_share": float(w.phi),
        "capital_stock": float(w.f_capital.sum()),
        "output_units": float(o.output.sum()),
        "loans_outstanding": float(w.f_loan.sum()) / 100,
        "taxes": o.taxes / 100,
        "card_fee": float(min(w.card_fee, w.card_fee_cap)),
        "hires": o.hired,
        "separations": o.fired,
        **llm_metrics(o.llm_records, scenario),
    }
