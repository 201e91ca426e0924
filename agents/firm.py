"""Firms: produce with labour and automation capital, set prices and wages, hire, fire, invest,
borrow, pay dividends and sometimes issue new tokens.

Rule-based policy, vectorised over firms:

* **Price or quantity** (Delli Gatti et al. 2011; Assenza et al. 2015), as published: a firm that
  sold out raises its price if it is below the market mean, else plans to sell more (by the unmet
  demand, at most a random ``eta_output`` share of sales); one with unsold stock cuts its price if
  above the mean, else plans to sell less by a random ``eta_output`` share. A price never sits
  below unit cost (with constant returns to scale, the marginal cost at the cheaper margin).
* **Output**: with ``production = "planned"`` a firm produces its planned output (expected sales
  plus the buffer-stock target, less stock) up to what its workforce and capital can make
  (capacity utilisation); with ``"capacity"`` (the default) all they can make.
* **Inputs** (Korinek & Suh): capital per worker is the cost-minimising ratio at the firm's wage
  and the user cost of capital ``capital_price * price_index * (depreciation + its loan rate)``.
  The firm closes ``automation.adjustment`` of the gap to the capital its expected sales need each
  round by buying goods as capital; with the capital it has, it hires the least labour that meets
  planned output.
* **Wages** rise when vacancies went unfilled and never fall (``wage_rule = "rigid"``, Delli
  Gatti et al. as published), also fall otherwise (``"vacancies"``), or move with the
  vacancy/unemployment ratio, symmetrically (``"tightness"``); never below ``min_wage``. Each way
  wage inflation falls as unemployment rises (the Phillips curve).
* **Cash**: dividends are ``profit_payout`` of a positive profit averaged over a quarter
  (``dividend_rule = "profit"``, Caiani et al. 2016; or ``"cash"``: ``payout_ratio`` of the spare
  cash), from the cash beyond this round's needs and a buffer of ``cash_buffer_rounds`` wage
  bills, paid only while the firm's leverage is at most ``leverage_target`` (a firm in debt
  retains its earnings); a shortfall is asked of the bank, and if equity issuance is on, also
  offered as new tokens.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from tokenomy.agents.base import Batch, DecisionModel, ExampleAnswer, MarketView, expect, note, obs_number
from tokenomy.market import production
from tokenomy.scenario import Bank, Firm, Production, Scenario
from tokenomy.world import World

__all__ = [
    "FirmBatch",
    "FirmDecision",
    "FirmObservation",
    "Firms",
    "OutputPlan",
    "PriceOrQuantity",
    "capital_user_cost",
    "cash_need",
    "config",
    "debt_due",
    "debt_service",
    "desired_inputs",
    "dividends",
    "fit_to_funds",
    "fixed_payments",
    "hoard_labour",
    "illiquid",
    "investment_budget",
    "loan_request",
    "output_plan",
    "posted_price",
    "price_or_quantity",
    "profitable_workforce",
    "robot_tax_due",
    "share_issue",
    "target_workforce",
    "unit_cost",
    "wage_offer",
]


def config(scenario: Scenario) -> Firm:
    """The ``[roles.firm]`` section."""
    return scenario.roles.get("firm", Firm)


def _bank(scenario: Scenario) -> Bank:
    return scenario.roles.get("bank", Bank)


class FirmObservation(BaseModel):
    round: int
    balance: float
    price: float
    wage_offer: float
    workers: int
    capital: float
    inventory: float
    sold_last_round: float
    unmet_demand_last_round: float
    unfilled_vacancies: int
    loan: float
    loan_rate: float
    token_price: float
    automatable_share: float
    capital_price: float = Field(description="currency per unit of automation capital")
    mean_price: float
    unemployment_rate: float
    mean_wage: float


class FirmDecision(DecisionModel):
    price: float = Field(gt=0, le=1e12)
    wage_offer: float = Field(ge=0, le=1e12)
    target_workers: int = Field(ge=0, le=10**9)
    investment_budget: float = Field(0.0, ge=0, le=1e12)
    dividend: float = Field(0.0, ge=0, le=1e12)
    loan_request: float = Field(0.0, ge=0, le=1e12)
    issue_shares: int = Field(0, ge=0, le=10**12)


@dataclass
class FirmBatch(Batch):
    money: ClassVar[tuple[str, ...]] = ("price", "wage_offer", "investment_budget", "dividend", "loan_request")
    price: NDArray[np.float64]  # cents per unit
    wage_offer: NDArray[np.float64]  # cents per worker per round
    target_workers: NDArray[np.int64]
    investment_budget: NDArray[np.int64]  # cents
    dividend: NDArray[np.int64]  # cents
    loan_request: NDArray[np.int64]  # cents
    issue_shares: NDArray[np.int64]
    notes: NDArray[np.object_]
    planned_output: NDArray[np.float64] | None = None  # units; None or negative: all it can make
    expected_sales: NDArray[np.float64] | None = None  # units: the rules' expectation, remembered
    markup: NDArray[np.float64] | None = None  # pricing = "markup": over unit cost, remembered

    def merge(self, world: World, i: int, decision: BaseModel, scenario: Scenario) -> None:
        d = expect(decision, FirmDecision)
        if self.planned_output is not None:
            self.planned_output[i] = -1.0  # an LLM firm chooses its workforce; it makes what that can
        self.price[i] = d.price * 100
        self.wage_offer[i] = d.wage_offer * 100
        self.target_workers[i] = d.target_workers
        self.investment_budget[i] = round(d.investment_budget * 100)
        self.dividend[i] = round(d.dividend * 100)
        self.loan_request[i] = round(d.loan_request * 100)
        self.issue_shares[i] = d.issue_shares

    def validated(self, world: World, scenario: Scenario) -> FirmBatch:
        """Reject impossible values; affordability is settled later by :func:`fit_to_funds`."""
        batch, p = self, config(scenario)
        notes = batch.notes
        bad_price = ~np.isfinite(batch.price) | (batch.price <= 0)
        note(notes, bad_price, "price must be positive: kept last price")
        price = np.where(bad_price, world.f_price, batch.price)
        bad_wage = ~np.isfinite(batch.wage_offer) | (batch.wage_offer < 0)
        note(notes, bad_wage, "wage must be non-negative: kept last wage")
        wage = np.where(bad_wage, world.f_wage, batch.wage_offer)
        floor = p.min_wage * 100
        note(notes, wage < floor, "wage raised to the minimum wage")
        wage = np.maximum(wage, floor)
        target = np.clip(batch.target_workers, 0, world.n_households)
        cap = np.floor(p.max_issue_share * world.t_outstanding[world.tokens_of("firm")]).astype(np.int64)
        issue = np.clip(batch.issue_shares, 0, cap) if p.equity_issuance else np.zeros_like(cap)
        note(notes, batch.issue_shares > issue, "share issue clipped to the allowed maximum")
        return FirmBatch(
            price,
            wage,
            target,
            np.maximum(batch.investment_budget, 0),
            np.maximum(batch.dividend, 0),
            np.maximum(batch.loan_request, 0),
            issue,
            notes,
            batch.planned_output,
            batch.expected_sales,
            batch.markup,
        )

    def apply(self, world: World) -> None:
        """Posted prices and wage offers hold from this round's markets on; the rules' expectation
        and markup are remembered for the next round."""
        world.f_price, world.f_wage = self.price.copy(), self.wage_offer.copy()
        if self.expected_sales is not None:
            world.f_expected = self.expected_sales.copy()
        if self.markup is not None:
            world.f_markup = self.markup.copy()


def capital_user_cost(world: World, scenario: Scenario) -> NDArray[np.float64]:
    """Cents per unit of capital per round, per firm: what a unit costs to hold, wear plus the
    interest rate the firm actually pays (so monetary policy reaches the choice of inputs)."""
    a = scenario.automation
    cost: NDArray[np.float64] = world.capital_price * world.price_index * (a.depreciation + world.f_loan_rate)
    return cost


def debt_due(
    loan: NDArray[np.int64], rate: NDArray[np.float64], amortization: float
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(interest, scheduled principal) due on ``loan`` this round, cents: what the firm plans for
    and what settlement collects, from one formula."""
    interest = np.floor(loan * rate).astype(np.int64)
    principal = np.minimum(np.ceil(loan * amortization), loan).astype(np.int64)
    return interest, principal


def debt_service(world: World, scenario: Scenario) -> NDArray[np.int64]:
    """Interest plus scheduled repayment due this round, cents."""
    interest, principal = debt_due(world.f_loan, world.f_loan_rate, _bank(scenario).amortization)
    due: NDArray[np.int64] = interest + principal
    return due


# -- the rules, in the order ``Firms.heuristic`` applies them --------------------------------------
@dataclass(frozen=True, slots=True)
class PriceOrQuantity:
    """Which margin each firm moves this round (Delli Gatti et al. 2011): price or quantity, up or down."""

    raise_price: NDArray[np.bool_]
    cut_price: NDArray[np.bool_]
    expand: NDArray[np.bool_]
    shrink: NDArray[np.bool_]


def price_or_quantity(world: World, view: MarketView) -> PriceOrQuantity:
    """Delli Gatti et al. (2011), Assenza et al. (2015), as published: a firm that sold out raises
    its price if it is below the market mean, else plans to sell more; one with unsold stock cuts
    its price if above the mean, else plans to sell less. A firm that sold exactly what it made
    moves neither. (Unfilled vacancies are a labour-market signal, for wages: :func:`wage_offer`.)
    """
    price = world.f_price
    sold_out = world.f_unmet > 1e-9
    unsold = ~sold_out & (world.f_inventory > 1e-9)
    raise_price = sold_out & (price < view.mean_price)
    cut_price = unsold & (price > view.mean_price)
    return PriceOrQuantity(raise_price, cut_price, sold_out & ~raise_price, unsold & ~cut_price)


def quantity_only(world: World) -> PriceOrQuantity:
    """With markup pricing every firm moves its quantity: more when it sold out, less when stock
    was left (its price follows its costs and markup)."""
    sold_out = world.f_unmet > 1e-9
    unsold = ~sold_out & (world.f_inventory > 1e-9)
    none = np.zeros(world.n_firms, dtype=bool)
    return PriceOrQuantity(none, none, sold_out, unsold)


def adapted_markup(world: World, p: Firm, moves: PriceOrQuantity, rng: np.random.Generator) -> NDArray[np.float64]:
    """Adaptive markup (Caiani et al. 2016): a firm whose stock fell short of its target
    (``inventory_target`` of what it sold) raises its markup over unit labour cost by a random share
    of at most ``eta_markup`` (of 5% while it is below that); one whose stock exceeds the target
    cuts it, never below zero. The price then follows unit labour cost, so a rise in wages passes
    into prices and the labour share is anchored near ``1 / (1 + markup)``.

    Which is why it is not the default: anchored so, the labour share no longer falls as tasks are
    automated (measured: ``automation_shock``'s rose from 0.65 to 0.82), the very effect the
    sandbox exists to study. It passed more stylized facts on the control (33 of 37 checks
    against 31): a markup on full unit cost would keep both, once capital's cost can enter the
    price without feeding back through the price level and the loan rate (see ``unit_labour_cost``).

    The signal is the stock, not turned-away demand: with several visits per buyer nearly every
    firm turns someone away, and markups rose every round on that signal (measured).
    """
    u = rng.random(world.n_firms) * p.eta_markup
    short = world.f_inventory < p.inventory_target * world.f_sales
    mu = world.f_markup
    mu = np.where(short, mu + u * np.maximum(mu, 0.05), mu * (1 - u))
    out: NDArray[np.float64] = np.maximum(mu, 0.0)
    return out


def unit_labour_cost(world: World, prod: Production, workforce: NDArray[np.float64]) -> NDArray[np.float64]:
    """Wages per unit of output at the firm's inputs, cents (what Caiani et al. 2016 mark up).

    Not the full average cost: capital's user cost is priced at the current price level and the
    loan rate, so a price marked up on it feeds itself (measured: on the cheaper margin prices fell
    by three quarters in nine rounds; on average cost they exploded once the Taylor rule raised
    the loan rate). The markup covers capital, and the labour share is about ``1 / (1 + markup)``.
    """
    L = np.maximum(workforce, 1.0)
    Y = production.output(world.f_capital, L, world.phi, prod.A, prod.sigma)
    cost: NDArray[np.float64] = world.f_wage * L / np.maximum(Y, 1e-12)
    return cost


def unit_cost(
    world: World, prod: Production, workforce: NDArray[np.float64], capital_cost: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Marginal cost at the cheaper margin (more labour or more capital), cents per unit.

    The cheaper margin keeps it bounded even when output is near zero, where average cost
    explodes, and near ``phi = 1``, where the last labour-only tasks make ``w / MPL`` explode.
    """
    mpk, mpl = production.marginal_products(world.f_capital, np.maximum(workforce, 1.0), world.phi, prod.A, prod.sigma)
    return np.minimum(world.f_wage / np.maximum(mpl, 1e-12), capital_cost / np.maximum(mpk, 1e-12))


def posted_price(
    world: World, p: Firm, moves: PriceOrQuantity, cost: NDArray[np.float64], rng: np.random.Generator
) -> NDArray[np.float64]:
    """Price or quantity (Delli Gatti et al. 2011): the price moves by a random share of at most
    ``eta_price`` where the firm moves its price, and never sits below marginal ``cost``, so rising
    costs pass into prices."""
    u = rng.random(world.n_firms) * p.eta_price
    price = np.where(moves.raise_price, world.f_price * (1 + u), world.f_price)
    price = np.where(moves.cut_price, price * (1 - u), price)
    return np.maximum(price, cost)


@dataclass(frozen=True, slots=True)
class OutputPlan:
    """Expected sales (which size capacity) and planned output (which also restocks), units."""

    expected: NDArray[np.float64]
    planned: NDArray[np.float64]


def output_plan(world: World, p: Firm, moves: PriceOrQuantity, rng: np.random.Generator) -> OutputPlan:
    """Price or quantity, the quantity side (Assenza et al. 2015): a firm that expands plans to sell
    more by the unmet demand, at most a random ``eta_output`` share of its sales; one that shrinks
    plans to sell less by a random ``eta_output`` share; one that moves its price keeps last
    round's expectation (as published: the firm adjusts one margin at a time); one that moves
    neither expects what it sold. Planned output tops stock up to ``inventory_target`` of expected
    sales. A firm that had nothing to sell (no output, no stock, no sales) learnt nothing about its
    demand and keeps its expectation: expecting its zero sales instead left every entrant that
    had not yet hired planning nothing, for good (measured: entrants that never hired).

    Keeping the expectation on a price move matters once output follows the plan: expecting
    last round's sales there instead turned every price cut into a cut in output too, a downward
    bias that emptied the economy in a few dozen rounds. The step is bounded: adding the whole
    unmet demand lets large buyers' leftover budgets feed back into capacity and explode.
    """
    uq = rng.random(world.n_firms) * p.eta_output
    sales = world.f_sales
    step = np.where(moves.expand, np.minimum(world.f_unmet, uq * sales), 0.0)
    price_move = moves.raise_price | moves.cut_price
    expected = np.where(moves.shrink, sales * (1 - uq), sales + step)
    expected = np.where(price_move, world.f_expected, expected)
    idle = (world.f_output <= 1e-9) & (world.f_inventory <= 1e-9) & (sales <= 1e-9)
    expected = np.where(idle, world.f_expected, expected)
    planned = np.maximum(expected * (1 + p.inventory_target) - world.f_inventory, 0.0)
    return OutputPlan(expected, planned)


def desired_inputs(
    world: World, prod: Production, capital_cost: NDArray[np.float64], expected: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Inputs (Korinek & Suh): ``(labour, capital)`` that make the ``expected`` sales at least cost.

    Capital per worker is the cost-minimising ratio at the firm's wage and the user cost of
    capital; where that ratio is unbounded (no task needs labour) capital alone does the work.
    Capacity is sized to expected sales, not to this round's restocking.
    """
    ratio = production.cost_minimising_ratio(world.phi, world.f_wage, capital_cost, prod.sigma)
    all_capital = ~np.isfinite(ratio)
    finite_ratio = np.where(all_capital, 0.0, ratio)
    per_worker = production.output_per_worker(finite_ratio, world.phi, prod.A, prod.sigma)
    labour = np.where(all_capital, 0.0, expected / np.maximum(per_worker, 1e-12))
    capital = np.where(all_capital, expected / prod.A, finite_ratio * labour)
    return labour, capital


def investment_budget(
    world: World, view: MarketView, scenario: Scenario, desired_capital: NDArray[np.float64]
) -> NDArray[np.int64]:
    """Investment, cents: the capital to buy this round, replacing wear, as goods bought at the
    market's mean price. By ``roles.firm.investment_rule``:

    * ``gap`` (the default; Korinek & Suh's desired stock, reached by partial adjustment): close
      ``automation.adjustment`` of the gap to the capital expected sales need each round.
    * ``utilisation`` (Caiani et al. 2016): capital grows by
      ``investment_sensitivity * (u - utilisation_target) / utilisation_target``, where ``u`` is
      expected utilisation, the capital expected sales need (at the cost-minimising mix) over the
      capital the firm has; firms keep spare capacity and capital moves slowly with demand.
      Measured on ``baseline`` (5 seeds, rounds 100-299, with dividends paid at once): unemployment
      stayed within 3.3-5.2% and no firm failed, so the cycle facts fail (sd(C) > sd(Y), no
      bankruptcies, negative firm-size skew); ``gap`` keeps a cycle (unemployment 9% on average,
      sd 6 points, with the default dividends) but investment is about eight times as volatile as
      output (with one goods market, investment demand raises the sellers'
      expected sales and so their desired capital: the margin K+S and Caiani have is a separate
      capital-goods sector). That was at ``adjustment`` 0.25 a month; at Roberts 2003's quarter a
      year (0.0237, the default since 2026-12-02) it is 2.5 times (``tokenomy validate``).
    """
    a, p = scenario.automation, config(scenario)
    K = world.f_capital
    if p.investment_rule == "utilisation":
        u = desired_capital / np.maximum(K, 1e-12)
        g = p.investment_sensitivity * (u - p.utilisation_target) / p.utilisation_target
        K_next = np.where(K > 0, K * (1.0 + g), desired_capital / p.utilisation_target)
    else:
        K_next = K + a.adjustment * (desired_capital - K)
    units = np.maximum(K_next - K * (1 - a.depreciation), 0.0)
    return np.floor(units * world.capital_price * view.mean_price).astype(np.int64)


def target_workforce(
    world: World, prod: Production, planned: NDArray[np.float64], desired_labour: NDArray[np.float64]
) -> NDArray[np.int64]:
    """Hiring (Korinek & Suh): with the capital it has, the least labour that meets planned output
    (the desired labour where no finite amount can), at most every household."""
    need = production.labour_required(planned, world.f_capital, world.phi, prod.A, prod.sigma)
    need = np.where(np.isfinite(need), need, desired_labour)
    return np.minimum(np.ceil(need - 1e-9), world.n_households).astype(np.int64)


def profitable_workforce(
    world: World, prod: Production, target: NDArray[np.int64], price: NDArray[np.float64], wage: NDArray[np.float64]
) -> NDArray[np.int64]:
    """Hiring, capped where the marginal worker stops paying for herself: no more workers than
    those whose marginal product, at this round's price, is worth their wage (Korinek & Suh's
    labour demand ``w = p MPL``). Output the plan needs beyond that calls for capital, not labour.

    Without the cap, firms short of capital planned to make their output with labour doing
    automatable tasks at a loss: measured on ``baseline`` (rounds 100-159), about 70% of posted
    vacancies were of that kind, went unfilled, and raised wages every round (inflation 0.5-0.7% a
    month at 7% unemployment).
    """
    m = wage / np.maximum(price, 1e-12)
    cap = production.labour_at_marginal_product(m, world.f_capital, world.phi, prod.A, prod.sigma)
    cap = np.where(np.isfinite(cap), np.floor(cap), world.n_households)
    return np.minimum(target, cap).astype(np.int64)


def headcount(units: NDArray[np.int64], skill: NDArray[np.float64], most: int) -> NDArray[np.int64]:
    """The workers that supply ``units`` efficiency units at the firm's own skill per worker (a new
    hire is expected to be like its staff): rounded up, so the plan's output is met."""
    heads = np.ceil(units / np.maximum(skill, 1e-12) - 1e-9)
    return np.minimum(heads, most).astype(np.int64)


def hoard_labour(target: NDArray[np.int64], workforce: NDArray[np.float64], p: Firm) -> NDArray[np.int64]:
    """Labour hoarding: a firm sheds at most ``max_fire_share`` of its workforce a round."""
    return np.maximum(target, np.floor(workforce * (1.0 - p.max_fire_share))).astype(np.int64)


def wage_offer(world: World, view: MarketView, p: Firm, rng: np.random.Generator) -> NDArray[np.float64]:
    """Wages move by a random share of at most ``eta_wage``, never below ``min_wage``, by the
    scenario's ``wage_rule``:

    * ``rigid`` (the default; Delli Gatti et al. 2011, as published): a firm whose vacancies went
      unfilled raises its offer; any other keeps it. Nominal wages never fall, so a slump shows as
      unemployment, and wage inflation falls as unemployment rises (fewer unfilled vacancies).
    * ``vacancies`` (the first engine's variant): as ``rigid``, but a firm that filled its
      vacancies cuts its offer, and unemployment relative to ``unemployment_norm`` damps the rises
      and deepens the cuts. Measured on ``baseline`` (5 seeds, rounds 100-299): nominal wages fell
      while the price rule, which cuts only prices above the mean, held prices up; the real wage
      fell to a tenth and the labour share from 0.65 to 0.12 in 300 rounds, a wage-led slump
      (unemployment 21%).
    * ``tightness``: every firm moves by ``clip(log2(theta / tightness_norm), -1, 1)``, with
      ``theta`` last round's vacancies per unemployed worker: symmetric in the vacancy/unemployment
      ratio. Measured here (600 households, 2 seeds, rounds 100-199) it settles unemployment near
      30% at ``tightness_norm = 1``: posted vacancies, which include replacements for quits, are a
      different magnitude from JOLTS openings, so its norm has no published value yet.
    """
    uw = rng.random(world.n_firms) * p.eta_wage
    floor = p.min_wage * 100
    if p.wage_rule == "rigid":
        raised = np.where(world.f_unfilled > 0, world.f_wage * (1 + uw), world.f_wage)
        rigid: NDArray[np.float64] = np.maximum(raised, floor)
        return rigid
    if p.wage_rule == "tightness":
        unemployed = int((world.h_employer < 0).sum())
        theta = (float(world.f_vacancies.sum()) + 0.5) / (unemployed + 0.5)
        pressure = float(np.clip(np.log2(theta / p.tightness_norm), -1.0, 1.0))
        moved: NDArray[np.float64] = np.maximum(world.f_wage * (1.0 + uw * pressure), floor)
        return moved
    slack = min(1.0, view.unemployment / p.unemployment_norm)
    wage = world.f_wage
    up, down = wage * (1 + uw * (1 - slack)), wage * (1 - uw * (0.5 + 0.5 * slack))
    out: NDArray[np.float64] = np.maximum(np.where(world.f_unfilled > 0, up, down), floor)
    return out


def fixed_payments(world: World, scenario: Scenario) -> NDArray[np.int64]:
    """Contractual payments due this round whatever the firm does (debt service, robot tax), cents."""
    return debt_service(world, scenario) + robot_tax_due(world, scenario)


def cash_need(
    wage_bill: NDArray[np.float64], fixed: NDArray[np.int64], investment: NDArray[np.int64]
) -> NDArray[np.float64]:
    """Cash: what this round's plan pays out before any dividend (wages, fixed payments, investment), cents."""
    return wage_bill + fixed + investment


def loan_request(world: World, need: NDArray[np.float64]) -> NDArray[np.int64]:
    """Cash: the shortfall of the balance against this round's ``need`` is asked of the bank, cents."""
    return np.maximum(need - world.firm_balance().astype(np.float64), 0.0).astype(np.int64)


def dividends(world: World, p: Firm, need: NDArray[np.float64], wage_bill: NDArray[np.float64]) -> NDArray[np.int64]:
    """Dividends, cents: by ``dividend_rule``, paid only from the cash beyond this round's
    ``need`` and a buffer of ``cash_buffer_rounds`` wage bills, and only by a firm whose leverage
    (loans over the value of its capital) is at most ``leverage_target``: a firm in debt retains
    its earnings (and borrows less).

    ``"profit"`` (Caiani et al. 2016; the default since 2026-12-02): ``profit_payout`` of the
    firm's recent accounting profit when positive. Recent is ``World.f_profit_smoothed``: the
    profit (``World.f_profit``: operating cash flow plus the change in stock at unit cost, less
    the wear of capital at replacement cost) averaged over ``profit_smoothing`` rounds (3:
    Caiani et al.'s period is a quarter, a round a month). Paid on each month's profit, the
    positive part of a noisy series rose in downturns, when firms' monthly results spread out, and
    dividends moved against output although profit moved with it (measured on ``baseline``, seed
    1, rounds 100-299: corr with output of profit +0.55, of the positive profits +0.37, of
    dividends -0.32; smoothed over 3 rounds, dividends +0.20 and corr(C, Y) over 5 seeds 0.25 ->
    0.82). Cash no longer piles up in firms, so a loss-making firm runs short of it.

    ``"cash"``: ``payout_ratio`` of that spare cash, so money does not pile up idle in firms,
    paid out gradually (0.03 a round: Lintner 1956's speed of adjustment of dividends, about 0.3
    a year, monthly). Paid at once (0.9, the first engine's value), dividends rose whenever
    investment fell, by what it fell, and consumption did not move with output (measured on
    ``baseline``, 5 seeds: corr(C, Y) -0.10 against 0.55 with 0.03). The median firm then held 16
    wage bills of cash. (A share of a profit that did not charge wear leaked demand: a shrinking
    firm's depreciation allowance, retained as cash, was never spent.)
    """
    bal = world.firm_balance().astype(np.float64)
    spare = np.maximum(bal - need - p.cash_buffer_rounds * wage_bill, 0.0)
    capital_value = world.f_capital * world.capital_price * world.price_index
    ok = world.f_loan <= p.leverage_target * capital_value
    if p.dividend_rule == "profit":
        paid = np.minimum(p.profit_payout * np.maximum(world.f_profit_smoothed, 0.0), spare)
        return np.floor(np.where(ok, paid, 0.0)).astype(np.int64)
    return np.floor(np.where(ok, p.payout_ratio * spare, 0.0)).astype(np.int64)


def share_issue(world: World, p: Firm, loan: NDArray[np.int64]) -> NDArray[np.int64]:
    """Cash: with equity issuance on, a firm short of cash also offers new tokens worth its loan
    request at the last token price, at most ``max_issue_share`` of those outstanding."""
    if not p.equity_issuance:
        return np.zeros(world.n_firms, dtype=np.int64)
    mine = world.tokens_of("firm")
    cap = np.floor(p.max_issue_share * world.t_outstanding[mine])
    shares = np.minimum(np.ceil(loan / np.maximum(world.t_price[mine], 1e-9)), cap)
    return np.where(loan > 0, shares, 0).astype(np.int64)


class Firms:
    decision_model = FirmDecision
    share_decision = None
    example_answers: Mapping[str, ExampleAnswer] = {}  # set below, after the answer function

    def __init__(self) -> None:
        # each firm's workforce, counted once per round (keyed by the world and the round's view)
        self._workforce: tuple[weakref.ref[World], MarketView, NDArray[np.int64]] | None = None

    def _workers(self, world: World, view: MarketView) -> NDArray[np.int64]:
        """Each firm's workforce at the start of the round (the view is new each round; hiring comes later)."""
        if self._workforce is None or self._workforce[0]() is not world or self._workforce[1] is not view:
            self._workforce = (weakref.ref(world), view, world.workers())
        return self._workforce[2]

    def observe(self, world: World, view: MarketView, i: int) -> FirmObservation:
        return FirmObservation(
            round=view.round,
            balance=float(world.firm_balance()[i]) / 100,
            price=float(world.f_price[i]) / 100,
            wage_offer=float(world.f_wage[i]) / 100,
            workers=int(self._workers(world, view)[i]),
            capital=float(world.f_capital[i]),
            inventory=float(world.f_inventory[i]),
            sold_last_round=float(world.f_sales[i]),
            unmet_demand_last_round=float(world.f_unmet[i]),
            unfilled_vacancies=int(world.f_unfilled[i]),
            loan=float(world.f_loan[i]) / 100,
            loan_rate=float(world.f_loan_rate[i]),
            token_price=float(world.t_price[world.tokens_of("firm")][i]) / 100,
            automatable_share=view.phi,
            capital_price=view.capital_price * view.price_index / 100,
            mean_price=view.mean_price / 100,
            unemployment_rate=view.unemployment,
            mean_wage=view.mean_wage / 100,
        )

    def heuristic(self, world: World, view: MarketView, scenario: Scenario, rng: np.random.Generator) -> FirmBatch:
        """The rules in order: price or quantity, output plan, inputs, hiring, wages, cash.

        The random draws (price moves, output steps, wage moves) happen in that order; a seed fixes them.
        """
        p, prod = config(scenario), scenario.production
        workforce = world.labour()  # efficiency units: what the firm produces with and pays for
        skill = world.mean_skill()
        c_k = capital_user_cost(world, scenario)
        cost = unit_cost(world, prod, workforce, c_k)
        markup: NDArray[np.float64] | None = None
        if p.pricing == "markup":
            moves = quantity_only(world)
            markup = adapted_markup(world, p, moves, rng)
            price = (1.0 + markup) * unit_labour_cost(world, prod, workforce)
        else:
            moves = price_or_quantity(world, view)
            price = posted_price(world, p, moves, cost, rng)
        sales = output_plan(world, p, moves, rng)
        labour, capital = desired_inputs(world, prod, c_k, sales.expected)
        invest = investment_budget(world, view, scenario, capital)
        wage = wage_offer(world, view, p, rng)
        planned = target_workforce(world, prod, sales.planned, labour)
        if p.hire_to_marginal_product:
            planned = profitable_workforce(world, prod, planned, price, wage)
        heads = headcount(planned, skill, world.n_households)
        target = hoard_labour(heads, self._workers(world, view).astype(np.float64), p)
        wage_bill = target * wage * skill
        need = cash_need(wage_bill, fixed_payments(world, scenario), invest)
        loan = loan_request(world, need)
        issue = share_issue(world, p, loan)
        notes = np.full(world.n_firms, "", dtype=object)
        div = dividends(world, p, need, wage_bill)
        return FirmBatch(price, wage, target, invest, div, loan, issue, notes, sales.planned, sales.expected, markup)


def robot_tax_due(world: World, scenario: Scenario) -> NDArray[np.int64]:
    """Robot tax: a share of the market value of each firm's automation capital, cents."""
    if world.robot_tax <= 0:
        return np.zeros(world.n_firms, dtype=np.int64)
    return np.floor(world.robot_tax * world.f_capital * world.capital_price * world.price_index).astype(np.int64)


def fit_to_funds(
    world: World,
    batch: FirmBatch,
    funds: NDArray[np.int64],
    scenario: Scenario,
    fixed: NDArray[np.int64] | None = None,
) -> FirmBatch:
    """Cut a firm's plan to the cash it has (balance plus new credit).

    Contractual payments (``fixed``: by default :func:`fixed_payments` at the world's loan rates)
    come first, then wages (the firm shrinks its target workforce until the wage bill fits), then
    investment, and dividends only from what is left.
    """
    due = fixed_payments(world, scenario) if fixed is None else fixed
    room = np.maximum(funds - due, 0)
    notes = batch.notes
    # the workers whose whole wage (as settlement pays it, floored to the cent) fits in the room:
    # one division, so a target that fits is never cut by a rounding step
    each = np.floor(batch.wage_offer * world.mean_skill())  # a worker costs the offer per unit times her skill
    affordable_workers = np.where(each > 0, np.floor(room / np.maximum(each, 1.0)), batch.target_workers)
    target = np.minimum(batch.target_workers, affordable_workers).astype(np.int64)
    note(notes, target < batch.target_workers, "workforce cut to what the firm can pay")
    room = np.maximum(room - (target * each).astype(np.int64), 0)
    invest = np.minimum(batch.investment_budget, room)
    note(notes, invest < batch.investment_budget, "investment cut to funds")
    room = room - invest
    div = np.minimum(batch.dividend, room)
    note(notes, div < batch.dividend, "dividend cut to funds")
    return FirmBatch(
        batch.price, batch.wage_offer, target, invest, div, batch.loan_request, batch.issue_shares, notes,
        batch.planned_output, batch.expected_sales, batch.markup,
    )


def illiquid(world: World, planned: FirmBatch, fitted: FirmBatch, scenario: Scenario) -> NDArray[np.bool_]:
    """``exit_on_illiquidity``: the firms whose cash and new credit could not pay the staff they
    keep, so that :func:`fit_to_funds` cut their workforce below both their plan and what they
    may lay off in a round (all but ``max_fire_share``). That is Caiani et al. (2016)'s and Dosi
    et al. (2010)'s bankruptcy: a firm runs out of liquidity, however its balance sheet reads."""
    p = config(scenario)
    if not p.exit_on_illiquidity:
        return np.zeros(world.n_firms, dtype=bool)
    keep = np.floor(world.workers() * (1.0 - p.max_fire_share)).astype(np.int64)
    out: NDArray[np.bool_] = fitted.target_workers < np.minimum(keep, planned.target_workers)
    return out


# -- what a stand-in model answers (the fake OpenAI-compatible server; tokenomy.testing) -----------

def example_answer(obs: dict[str, Any], persona: str) -> dict[str, Any]:
    price = max(obs_number(obs, "price", 1.0), 0.01)
    if obs_number(obs, "unmet_demand_last_round") > 0:
        price *= 1.005
    elif obs_number(obs, "inventory") > 0.2 * obs_number(obs, "sold_last_round"):
        price *= 0.995
    workers = max(int(obs_number(obs, "workers")), 0)
    return {
        "price": round(max(price, 0.01), 4),
        "wage_offer": round(max(obs_number(obs, "wage_offer"), 0.0), 2),
        "target_workers": workers + (1 if obs_number(obs, "unfilled_vacancies") > 0 else 0),
        "investment_budget": 0.0,
        "dividend": 0.0,
        "loan_request": 0.0,
        "issue_shares": 0,
        "rationale": "fake rule-based policy: nudge price towards clearing, keep wage and staff",
    }


Firms.example_answers = {"FirmDecision": (example_answer, {"price": -1.0, "target_workers": -3})}
