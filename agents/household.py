"""Households: consume, look for work, save as deposits, trade tokens, choose a payment rail.

Rule-based policy (``heuristic``), vectorised over the whole population:

* **Consumption** ``C = mpc * net income + mpc_wealth * wealth``, where ``mpc`` falls from
  ``mpc_income`` at the median wealth to ``mpc_income_rich`` at ``rich_wealth_multiple`` times the
  median (the rich save more of their income: this is what lets demand fail when income moves
  from wages to capital). At least ``subsistence`` while money lasts; never above the balance.
* **Work**: the employed ask their current wage; the unemployed lower their reservation wage by
  ``reservation_decay`` per round without work.
* **Saving and investing**: deposits above ``invest_threshold`` rounds of spending are partly
  (``invest_share``) bid for one random token a little above its reference price. Holders sell part
  of one position at random (``turnover``) or to cover a shortfall of cash for spending, a little
  below it. The reference price is the last trade moved ``value_anchor`` (0 by default) of the way
  to the issuer's book value per share: without it token prices never follow the price level, and
  the owners' wealth melts away in real terms (README, "A sound economy").
* **Rail**: with chance ``switch_rate`` a household moves to the cheaper of card and chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from tokenomy.agents.base import Batch, DecisionModel, ExampleAnswer, MarketView, expect, note, obs_number
from tokenomy.market.rails import RAIL_NAMES, Rail, net_of_fee
from tokenomy.scenario import Household, Rails, Scenario
from tokenomy.world import World

__all__ = [
    "BuyOrders",
    "HouseholdBatch",
    "HouseholdDecision",
    "HouseholdObservation",
    "HouseholdShareDecision",
    "Households",
    "SellOrders",
    "buy_orders",
    "config",
    "consumption_budget",
    "desired_consumption",
    "hand_to_mouth",
    "marginal_propensity",
    "rail_choice",
    "reference_price",
    "reservation_wage",
    "sell_orders",
]


def config(scenario: Scenario) -> Household:
    """The ``[roles.household]`` section."""
    return scenario.roles.get("household", Household)


class HouseholdObservation(BaseModel):
    """What one household knows at the start of a round (money in currency units)."""

    round: int
    balance: float
    net_income_last_round: float
    spent_last_round: float
    employed: bool
    wage: float
    reservation_wage: float
    rounds_unemployed: int
    token_wealth: float
    rail: str
    price_index: float
    unemployment_rate: float
    mean_wage: float
    rail_fees: dict[str, float]


class HouseholdDecision(DecisionModel):
    consumption_budget: float = Field(ge=0, le=1e12, description="currency to spend on goods this round")
    reservation_wage: float = Field(ge=0, le=1e12, description="lowest wage accepted")
    token_buy_budget: float = Field(0.0, ge=0, le=1e12)
    token_buy: int = Field(-1, ge=-1, le=1_000_000, description="token index to bid for, -1 for none")
    token_sell: int = Field(-1, ge=-1, le=1_000_000, description="token index to sell, -1 for none")
    token_sell_shares: int = Field(0, ge=0, le=10**15)
    rail: Literal["card", "chain", "bank_transfer"] = "card"


class HouseholdShareDecision(DecisionModel):
    """One decision for a whole archetype, in shares, applied to each member's own accounts."""

    consume_share: float = Field(ge=0, le=1, description="share of the member's balance to spend on goods")
    invest_share: float = Field(0.0, ge=0, le=1, description="share of the member's balance to bid for tokens")
    sell_share: float = Field(0.0, ge=0, le=1, description="share of the member's largest token position to sell")
    reservation_wage_factor: float = Field(1.0, ge=0, le=3, description="multiplies the member's reservation wage")
    rail: Literal["card", "chain", "bank_transfer"] = "card"


@dataclass
class HouseholdBatch(Batch):
    money: ClassVar[tuple[str, ...]] = (
        "consumption_budget",
        "reservation_wage",
        "token_buy_budget",
        "token_buy_limit",
        "token_sell_limit",
    )
    consumption_budget: NDArray[np.int64]  # cents
    reservation_wage: NDArray[np.float64]  # cents
    token_buy_budget: NDArray[np.int64]  # cents
    token_buy: NDArray[np.int64]
    token_buy_limit: NDArray[np.float64]  # cents per share
    token_sell: NDArray[np.int64]
    token_sell_shares: NDArray[np.int64]
    token_sell_limit: NDArray[np.float64]
    rail: NDArray[np.int8]
    notes: NDArray[np.object_]
    # No ``apply``: a household's chosen rail is used for this round's payments but never stored in
    # ``World.h_rail`` (a known bug, left as it is so that the architecture refactor moves no number).

    def merge(self, world: World, i: int, decision: BaseModel, scenario: Scenario) -> None:
        d = expect(decision, HouseholdDecision)
        batch = self
        spread = config(scenario).bid_spread
        n_tok = world.t_price.size
        ref = reference_price(world, config(scenario))
        batch.consumption_budget[i] = round(d.consumption_budget * 100)
        batch.reservation_wage[i] = d.reservation_wage * 100
        batch.token_buy_budget[i] = round(d.token_buy_budget * 100)
        batch.token_buy[i] = d.token_buy
        batch.token_buy_limit[i] = ref[d.token_buy] * (1 + spread) if 0 <= d.token_buy < n_tok else 0.0
        batch.token_sell[i] = d.token_sell
        batch.token_sell_shares[i] = d.token_sell_shares
        batch.token_sell_limit[i] = ref[d.token_sell] * (1 - spread) if 0 <= d.token_sell < n_tok else 0.0
        batch.rail[i] = RAIL_NAMES.index(d.rail)

    def merge_shares(self, world: World, members: NDArray[np.int64], decision: BaseModel, scenario: Scenario) -> None:
        """Apply an archetype's answer to each member, scaled by that member's own accounts."""
        d = expect(decision, HouseholdShareDecision)
        batch = self
        spread = config(scenario).bid_spread
        bal = world.household_balance()[members].astype(np.float64)
        batch.consumption_budget[members] = np.floor(d.consume_share * bal).astype(np.int64)
        batch.reservation_wage[members] = world.h_reservation[members] * d.reservation_wage_factor
        batch.rail[members] = RAIL_NAMES.index(d.rail)
        n_tok = world.t_price.size
        if n_tok == 0:
            return
        ref = reference_price(world, config(scenario))
        buy = np.floor(d.invest_share * bal).astype(np.int64)
        tok = np.where(batch.token_buy[members] >= 0, batch.token_buy[members], members % n_tok)
        batch.token_buy_budget[members] = buy
        batch.token_buy[members] = np.where(buy > 0, tok, -1)
        batch.token_buy_limit[members] = ref[tok] * (1 + spread)
        h = world.household_holdings()[members]
        largest = np.argmax(h * world.t_price, axis=1)
        held = h[np.arange(members.size), largest]
        qty = np.floor(d.sell_share * held).astype(np.int64)
        batch.token_sell[members] = np.where(qty > 0, largest, -1)
        batch.token_sell_shares[members] = qty
        batch.token_sell_limit[members] = ref[largest] * (1 - spread)

    def validated(self, world: World, scenario: Scenario) -> HouseholdBatch:
        """Clip every household to what it owns: budget plus fees within its balance."""
        batch = self
        notes = batch.notes
        n_tok = world.t_price.size
        bal = world.household_balance()
        fees = world.rail_fees()
        bad_rail = (batch.rail < 0) | (batch.rail > 2) | ((batch.rail == Rail.CHAIN) & (not world.chain_enabled))
        note(notes, bad_rail, "rail not available: bank_transfer used")
        rail = np.where(bad_rail, Rail.BANK_TRANSFER, batch.rail).astype(np.int8)

        cons = np.maximum(batch.consumption_budget, 0)
        max_cons = net_of_fee(bal, rail, fees)
        note(notes, cons > max_cons, "consumption clipped to balance")
        cons = np.minimum(cons, max_cons)

        gross_cons = cons + np.floor(cons * fees[rail]).astype(np.int64)
        left = bal - gross_cons
        bt = np.full(bal.size, int(Rail.BANK_TRANSFER))
        buy = np.maximum(batch.token_buy_budget, 0)
        bad_tok = (batch.token_buy < 0) | (batch.token_buy >= n_tok)
        buy = np.where(bad_tok, 0, buy)
        max_buy = net_of_fee(np.maximum(left, 0), bt, fees)
        note(notes, buy > max_buy, "token bid clipped to balance")
        buy = np.minimum(buy, max_buy)
        limit = np.where(np.isfinite(batch.token_buy_limit) & (batch.token_buy_limit > 0), batch.token_buy_limit, 0.0)
        buy = np.where(limit > 0, buy, 0)

        sell_tok = batch.token_sell
        ok_tok = (sell_tok >= 0) & (sell_tok < n_tok)
        own = world.household_holdings()
        held = (
            np.where(ok_tok, own[np.arange(bal.size), np.clip(sell_tok, 0, max(n_tok - 1, 0))], 0)
            if n_tok
            else np.zeros(bal.size, np.int64)
        )
        qty = np.maximum(batch.token_sell_shares, 0)
        note(notes, qty > held, "sell order clipped to holdings")
        qty = np.minimum(qty, held)
        sell_limit = np.where(np.isfinite(batch.token_sell_limit), np.maximum(batch.token_sell_limit, 0.0), 0.0)
        res = np.where(np.isfinite(batch.reservation_wage), np.maximum(batch.reservation_wage, 0.0), 0.0)
        return HouseholdBatch(
            cons.astype(np.int64),
            res,
            buy.astype(np.int64),
            np.where(buy > 0, batch.token_buy, -1),
            limit,
            np.where(qty > 0, sell_tok, -1),
            qty.astype(np.int64),
            sell_limit,
            rail,
            notes,
        )


def _weighted_pick(rng: np.random.Generator, weights: NDArray[np.float64]) -> NDArray[np.int64]:
    """One column per row, with probability proportional to that row's weights."""
    c = np.cumsum(weights, axis=1)
    r = rng.random(weights.shape[0]) * c[:, -1]
    picks: NDArray[np.int64] = np.argmax(c > r[:, None], axis=1)
    return picks


# -- the rules, in the order ``Households.heuristic`` applies them ---------------------------------
def marginal_propensity(wealth: NDArray[np.float64], p: Household) -> NDArray[np.float64]:
    """Consumption: ``mpc`` falls from ``mpc_income`` at the median wealth to ``mpc_income_rich`` at
    ``rich_wealth_multiple`` times the median (log-linear in between).

    The rich save more of their income: this is what lets demand fail when income moves from
    wages to capital.
    """
    med = max(float(np.median(wealth)), 1.0)
    x: NDArray[np.float64] = np.clip(np.log(np.maximum(wealth, 1.0) / med) / np.log(p.rich_wealth_multiple), 0.0, 1.0)
    return p.mpc_income + (p.mpc_income_rich - p.mpc_income) * x


def hand_to_mouth(n: int, share: float) -> NDArray[np.bool_]:
    """Which of ``n`` households are hand-to-mouth: ``round(share * n)`` of them, spread evenly
    over the index (skills and banks are drawn independently of it), so no state is needed."""
    i = np.arange(n)
    out: NDArray[np.bool_] = np.floor((i + 1) * share) > np.floor(i * share)
    return out


def desired_consumption(world: World, p: Household) -> NDArray[np.float64]:
    """Consumption: ``mpc * net income + mpc_wealth * wealth``, at least ``subsistence``, cents.

    Wealth is deposits plus tokens at their last price; with ``mpc_token_wealth`` set, tokens are
    spent from at that rate instead of ``mpc_wealth``. A ``hand_to_mouth`` household (Kaplan,
    Violante & Weidner 2014) spends all its net income and whatever deposits it holds beyond
    ``hand_to_mouth_buffer`` rounds of it: its consumption follows its income.
    """
    deposits, tokens = world.household_balance().astype(np.float64), world.household_token_wealth()
    wealth = deposits + tokens
    if p.mpc_token_wealth is None:
        spend = p.mpc_wealth * wealth
    else:  # the wealth effect of stock-market wealth is smaller than of liquid wealth
        spend = p.mpc_wealth * deposits + p.mpc_token_wealth * tokens
    income = np.maximum(world.h_income, 0).astype(np.float64)
    want = marginal_propensity(wealth, p) * income + spend
    if p.hand_to_mouth > 0:
        htm = hand_to_mouth(world.n_households, p.hand_to_mouth)
        beyond = np.maximum(deposits - p.hand_to_mouth_buffer * income, 0.0)
        want = np.where(htm, income + beyond, want)
    return np.maximum(want, p.subsistence * 100)


def consumption_budget(world: World, want: NDArray[np.float64]) -> NDArray[np.int64]:
    """Consumption: what a household wants, never above its balance (subsistence while money lasts), cents."""
    return np.minimum(want, world.household_balance().astype(np.float64)).astype(np.int64)


def reservation_wage(world: World, p: Household) -> NDArray[np.float64]:
    """Work: the employed ask their current wage; the unemployed lower their reservation wage by
    ``reservation_decay`` per round without work (not below ``min_reservation_wage``), cents per
    efficiency unit, as firms offer wages."""
    employed = world.h_employer >= 0
    current = world.f_wage[np.maximum(world.h_employer, 0)]
    lowered = np.maximum(world.h_reservation * (1.0 - p.reservation_decay), p.min_reservation_wage * 100)
    return np.where(employed, current, lowered)


def reference_price(world: World, p: Household) -> NDArray[np.float64]:
    """Saving and investing: each token's last price moved ``value_anchor`` of the way to its
    issuer's book value per share (stock at the price index; nothing for negative net worth), cents."""
    book = np.maximum(world.book_per_share(world.price_index, world.price_index), 0.0)
    ref: NDArray[np.float64] = world.t_price + p.value_anchor * (book - world.t_price)
    return ref


@dataclass(frozen=True, slots=True)
class BuyOrders:
    """Each household's bid: ``budget`` cents for ``token`` (-1: none) at up to ``limit`` cents a share."""

    budget: NDArray[np.int64]
    token: NDArray[np.int64]
    limit: NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class SellOrders:
    """Each household's offer: ``shares`` of ``token`` (-1: none) at no less than ``limit`` cents a share."""

    token: NDArray[np.int64]
    shares: NDArray[np.int64]
    limit: NDArray[np.float64]


def buy_orders(
    world: World, p: Household, want: NDArray[np.float64], budget: NDArray[np.int64], rng: np.random.Generator
) -> BuyOrders:
    """Saving and investing: deposits above ``invest_threshold`` rounds of spending are partly
    (``invest_share``) bid for one random token a little (up to ``bid_spread``) above its reference price."""
    n, n_tok = world.n_households, world.t_price.size
    excess = world.household_balance().astype(np.float64) - budget - p.invest_threshold * want
    buyers = (excess > 0) & (n_tok > 0)
    cents = np.where(buyers, p.invest_share * np.maximum(excess, 0), 0).astype(np.int64)
    token = np.where(buyers, rng.integers(0, max(n_tok, 1), size=n), -1)
    if p.portfolio_positions > 0 and n_tok:
        held = world.household_holdings() > 0
        full = buyers & (held.sum(axis=1) >= p.portfolio_positions)
        if full.any():
            token[full] = _weighted_pick(rng, held[full].astype(np.float64))
    ref = reference_price(world, p)[np.maximum(token, 0)] if n_tok else np.zeros(n)
    limit = ref * (1.0 + rng.random(n) * p.bid_spread) if n_tok else np.zeros(n)
    return BuyOrders(cents, token, limit)


def sell_orders(world: World, p: Household, want: NDArray[np.float64], rng: np.random.Generator) -> SellOrders:
    """Saving and investing: holders sell part of one position, picked in proportion to its value,
    at random (``turnover``; 10-50 % of it) or to cover a shortfall of cash for spending, a little
    (up to ``bid_spread``) below its reference price."""
    n, n_tok = world.n_households, world.t_price.size
    holds = world.household_holdings().sum(axis=1) > 0 if n_tok else np.zeros(n, bool)
    short = np.maximum(want - world.household_balance().astype(np.float64), 0.0)
    sellers = holds & ((rng.random(n) < p.turnover) | (short > 0))
    token = np.full(n, -1, dtype=np.int64)
    shares = np.zeros(n, dtype=np.int64)
    limit = np.zeros(n)
    s_idx = np.flatnonzero(sellers)
    if s_idx.size:
        h = world.household_holdings()[s_idx]
        tok = _weighted_pick(rng, h * world.t_price)
        held = h[np.arange(s_idx.size), tok]
        lim = reference_price(world, p)[tok] * (1.0 - rng.random(s_idx.size) * p.bid_spread)
        for_cash = np.ceil(short[s_idx] / np.maximum(lim, 1e-9))
        random_part = np.ceil(held * rng.uniform(0.1, 0.5, s_idx.size))
        qty = np.where(short[s_idx] > 0, for_cash, random_part)
        token[s_idx] = tok
        shares[s_idx] = np.minimum(qty, held).astype(np.int64)
        limit[s_idx] = lim
    return SellOrders(token, shares, limit)


def rail_choice(world: World, rails: Rails, rng: np.random.Generator) -> NDArray[np.int8]:
    """Rail: with chance ``switch_rate`` a card or chain user moves to the cheaper of card and chain
    (only while the chain is enabled; bank-transfer users stay)."""
    rail = world.h_rail.copy()
    if rails.switch_rate > 0 and world.chain_enabled:
        fees = world.rail_fees()
        cheaper = Rail.CHAIN if fees[Rail.CHAIN] < fees[Rail.CARD] else Rail.CARD
        movers = (rail != Rail.BANK_TRANSFER) & (rng.random(world.n_households) < rails.switch_rate)
        rail[movers] = cheaper
    return rail


class Households:
    decision_model = HouseholdDecision
    share_decision = HouseholdShareDecision
    example_answers: Mapping[str, ExampleAnswer] = {}  # set below, after the answer functions

    def observe(self, world: World, view: MarketView, i: int) -> HouseholdObservation:
        emp = int(world.h_employer[i])
        return HouseholdObservation(
            round=view.round,
            balance=float(world.ledger.balance[i]) / 100,
            net_income_last_round=float(world.h_income[i]) / 100,
            spent_last_round=float(world.h_spent[i]) / 100,
            employed=emp >= 0,
            wage=float(world.f_wage[emp] * world.h_skill[i]) / 100 if emp >= 0 else 0.0,
            reservation_wage=float(world.h_reservation[i]) / 100,
            rounds_unemployed=int(world.h_unemployed_rounds[i]),
            token_wealth=float(world.household_holdings()[i] @ world.t_price) / 100,
            rail=RAIL_NAMES[int(world.h_rail[i])],
            price_index=view.price_index / 100,
            unemployment_rate=view.unemployment,
            mean_wage=view.mean_wage / 100,
            rail_fees=dict(zip(RAIL_NAMES, view.rail_fees, strict=True)),
        )

    def heuristic(self, world: World, view: MarketView, scenario: Scenario, rng: np.random.Generator) -> HouseholdBatch:
        """The rules in order: consumption, work, token orders (buy, then sell), rail.

        The random draws (bids, then offers, then rail moves) happen in that order; a seed fixes them.
        """
        p = config(scenario)
        want = desired_consumption(world, p)
        budget = consumption_budget(world, want)
        reservation = reservation_wage(world, p)
        buy = buy_orders(world, p, want, budget, rng)
        sell = sell_orders(world, p, want, rng)
        rail = rail_choice(world, scenario.rails, rng)
        notes = np.full(world.n_households, "", dtype=object)
        return HouseholdBatch(
            budget,
            reservation,
            buy.budget,
            buy.token,
            buy.limit,
            sell.token,
            sell.shares,
            sell.limit,
            rail,
            notes,
        )


# -- what a stand-in model answers (the fake OpenAI-compatible server; tokenomy.testing) -----------


def _wanted_consumption(obs: dict[str, Any]) -> float:
    """Spend most of income plus a little wealth, at least subsistence while money lasts."""
    bal = max(obs_number(obs, "balance"), 0.0)
    income, tokens = max(obs_number(obs, "net_income_last_round"), 0.0), max(obs_number(obs, "token_wealth"), 0.0)
    want = 0.85 * income + 0.01 * (bal + tokens)
    return min(bal, max(want, 600.0))


def _observed_rail(obs: dict[str, Any]) -> str:
    """The observed rail if it is a valid choice, so the fake's own answers always validate."""
    rail = obs.get("rail")
    return rail if rail in RAIL_NAMES else "card"


def example_answer(obs: dict[str, Any], persona: str) -> dict[str, Any]:
    bal = max(obs_number(obs, "balance"), 0.0)
    budget = bal if persona == "spendthrift" else _wanted_consumption(obs) * (0.5 if persona == "frugal" else 1.0)
    unemployed_ask = 0.95 * max(obs_number(obs, "reservation_wage"), 0.0)
    reservation = obs_number(obs, "wage") if obs.get("employed") else unemployed_ask
    return {
        "consumption_budget": round(budget, 2),
        "reservation_wage": round(reservation, 2),
        "token_buy_budget": 0.0,
        "token_buy": -1,
        "token_sell": -1,
        "token_sell_shares": 0,
        "rail": _observed_rail(obs),
        "rationale": f"fake rule-based policy ({persona or 'default'} persona): spend from income, keep savings",
    }


def example_share_answer(obs: dict[str, Any], persona: str) -> dict[str, Any]:
    bal = max(obs_number(obs, "balance"), 0.0)
    share = _wanted_consumption(obs) / bal if bal > 0 else 0.0
    share = 1.0 if persona == "spendthrift" else share * (0.5 if persona == "frugal" else 1.0)
    return {
        "consume_share": round(min(max(share, 0.0), 1.0), 4),
        "invest_share": 0.0,
        "sell_share": 0.0,
        "reservation_wage_factor": 1.0 if obs.get("employed", True) else 0.95,
        "rail": _observed_rail(obs),
        "rationale": f"fake rule-based policy ({persona or 'default'} persona): spend from income, keep savings",
    }


Households.example_answers = {
    "HouseholdDecision": (example_answer, {"consumption_budget": -100.0, "token_buy": -5}),
    "HouseholdShareDecision": (example_share_answer, {"consume_share": 5.0}),
}
