"""Clearing a round's markets, as named steps: credit, labour, production, goods, tokens.

Each step takes the world, the round's outcome (the decisions are in it), the scenario and the
simulation's generator; it decides who trades what with whom and writes the quantities into the
world and the outcome. No money moves here (``tokenomy.settlement`` posts it). The steps draw from
the one generator in this order, so a seed fixes the whole run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tokenomy.agents.bank import BankBatch, grant_loans
from tokenomy.agents.firm import FirmBatch, fit_to_funds, fixed_payments, illiquid
from tokenomy.agents.firm import config as firm_config
from tokenomy.agents.household import HouseholdBatch
from tokenomy.agents.household import config as household_config
from tokenomy.agents.regulator import RegulatorBatch
from tokenomy.market import production as prod
from tokenomy.market import rails
from tokenomy.market.clearing import call_auction, goods_market, match_labour, pair_fills
from tokenomy.market.rails import Rail
from tokenomy.outcome import RoundOutcome
from tokenomy.scenario import Scenario
from tokenomy.world import World

__all__ = ["STEPS", "clear", "credit", "goods", "labour", "production", "tokens"]

Step = Callable[[World, RoundOutcome, Scenario, np.random.Generator], None]


def credit(w: World, o: RoundOutcome, s: Scenario, rng: np.random.Generator) -> None:
    """Banks lend first; then every firm's plan is cut to its cash (balance plus new credit)."""
    fm, bk = o.batch("firm", FirmBatch), o.batch("bank", BankBatch)
    # this round's debt service is at the rate the firms planned with; the rate set with the new
    # credit applies from the next round (as the new loan does). Charging it at once cut a worker
    # from the plan of many a borrowing firm, its wage bill short by the difference (measured).
    o.opening_loan_rate = w.f_loan_rate.copy()
    fixed = fixed_payments(w, s)
    o.grant = grant_loans(w, fm.loan_request, bk, s)
    fitted = fit_to_funds(w, fm, w.firm_balance() + o.grant, s, fixed)
    o.decisions["firm"] = fitted
    o.illiquid = illiquid(w, fm, fitted, s)


def labour(w: World, o: RoundOutcome, s: Scenario, rng: np.random.Generator) -> None:
    """Labour flows (JOLTS-like): quits and retirements at ``separation_rate``; firms above their
    target let workers go (at random); then the unemployed, and ``on_the_job_search`` of the
    employed (asking more than they earn), apply to vacancies.

    A worker who quits searches only from the next round; one who moves on the job leaves a
    vacancy at the firm he left, which it posts next round.
    """
    hp = household_config(s)
    fm = o.batch("firm", FirmBatch)
    target = fm.target_workers
    w.h_reservation = o.batch("household", HouseholdBatch).reservation_wage
    emp = np.flatnonzero(w.h_employer >= 0)
    quit_ = emp[rng.random(emp.size) < hp.separation_rate]
    w.h_employer[quit_] = -1
    workers = w.workers()
    excess = np.maximum(workers - target, 0)
    left = np.zeros(w.n_households, dtype=bool)
    left[quit_] = True
    if excess.any():
        emp = np.flatnonzero(w.h_employer >= 0)
        firm = w.h_employer[emp]
        order = np.lexsort((rng.random(emp.size), firm))
        fs = firm[order]
        rank = np.arange(fs.size) - np.searchsorted(fs, fs, side="left")
        out = emp[order[rank < excess[fs]]]
        w.h_employer[out] = -1
        left[out] = True
    o.fired = int(left.sum())
    vacancies = np.maximum(target - w.workers(), 0)
    w.f_vacancies = vacancies
    employed = np.flatnonzero(w.h_employer >= 0)
    on_job = employed[rng.random(employed.size) < hp.on_the_job_search]
    seekers = np.concatenate([np.flatnonzero((w.h_employer < 0) & ~left), on_job])
    n_unemployed = seekers.size - on_job.size  # seekers: the unemployed first, then those moving on
    ask = w.h_reservation[seekers].copy()
    ask[n_unemployed:] = w.f_wage[w.h_employer[on_job]] * (1.0 + hp.job_switch_premium)
    new = match_labour(rng, ask, vacancies, w.f_wage, hp.job_applications)
    got = new >= 0
    moved = int(got[n_unemployed:].sum())
    w.h_employer[seekers[got]] = new[got]
    o.hired = int(got.sum())
    o.fired += moved  # a move is a separation from one firm and a hire at another
    w.f_unfilled = vacancies - np.bincount(new[got], minlength=w.n_firms)
    assert o.grant is not None, "credit clears before labour"
    cash = w.firm_balance() + o.grant
    bill = wage_bill(w)
    let_go = within_cash(w, cash, bill, seekers[got], rng)
    if let_go.size:
        bill = wage_bill(w)
        o.hired -= int(np.isin(let_go, seekers[got]).sum())
        o.fired += int((~np.isin(let_go, seekers[got])).sum())
    o.decisions["firm"] = after_wages(fm, cash - fixed_payments(w, s) - bill)
    w.h_unemployed_rounds = np.where(w.h_employer >= 0, 0, w.h_unemployed_rounds + 1)
    emp_now = w.h_employer >= 0
    w.h_reservation = np.where(emp_now, w.f_wage[np.maximum(w.h_employer, 0)], w.h_reservation)


def within_cash(
    w: World, cash: NDArray[np.int64], bill: NDArray[np.int64], hired: NDArray[np.int64], rng: np.random.Generator
) -> NDArray[np.int64]:
    """Let workers go where a firm's wage bill now exceeds its cash (wages are paid before sales):
    the newest hires first, in random order, then its staff. Returns who was let go.

    A firm plans its workforce at the skill of its staff, but the hires it gets are random draws,
    so the bill can come out above plan; with equal skills it never does (nobody is let go here).
    """
    over = np.flatnonzero(bill > cash)
    out: list[NDArray[np.int64]] = []
    is_new = np.zeros(w.n_households, dtype=bool)
    is_new[hired] = True
    for f in over:
        staff = np.flatnonzero(w.h_employer == f)
        order = staff[np.lexsort((rng.random(staff.size), ~is_new[staff]))]  # new hires first
        pay = np.floor(w.f_wage[f] * w.h_skill[order])
        keep_from = int(np.searchsorted(np.cumsum(pay) >= bill[f] - max(int(cash[f]), 0), True))
        gone = order[: keep_from + 1]
        w.h_employer[gone] = -1
        out.append(gone)
    return np.concatenate(out) if out else np.empty(0, np.int64)


def after_wages(fm: FirmBatch, left: NDArray[np.int64]) -> FirmBatch:
    """Investment and dividends cut to ``left``, the cash the workforce actually hired leaves after
    contractual payments (the plan priced new hires at the staff's skill); a no-op whenever the wage
    bill came out at or below plan."""
    room = np.maximum(left, 0)
    invest = np.minimum(fm.investment_budget, room)
    div = np.minimum(fm.dividend, room - invest)
    if np.array_equal(invest, fm.investment_budget) and np.array_equal(div, fm.dividend):
        return fm
    return dataclasses.replace(fm, investment_budget=invest, dividend=div)


def wage_bill(w: World) -> NDArray[np.int64]:
    """Each firm's wage bill as settlement pays it (``World.pay``)."""
    emp, gross = w.pay()
    return np.bincount(w.h_employer[emp], weights=gross, minlength=w.n_firms).astype(np.int64)


def production(w: World, o: RoundOutcome, s: Scenario, rng: np.random.Generator) -> None:
    """Every firm produces what its capital and workforce can make (Korinek & Suh), or with
    ``roles.firm.production = "planned"`` its planned output up to that; output joins its stock.
    ``o.capacity`` is what they could have made.

    ``planned`` is the benchmark models' margin (capacity utilisation) but is not the default yet:
    measured here (600 households, 2 seeds, rounds 100-199, with the other defaults) it raised mean
    unemployment from about 8% to 10-30% depending on the wage rule; see the README's calibration
    notes. The comparison is one --set away.
    """
    L = w.labour()
    capacity = np.asarray(prod.output(w.f_capital, L, w.phi, s.production.A, s.production.sigma), dtype=np.float64)
    plan = o.batch("firm", FirmBatch).planned_output if firm_config(s).production == "planned" else None
    o.capacity = capacity
    o.opening_inventory = w.f_inventory.copy()
    o.output = capacity if plan is None else np.where(plan >= 0, np.minimum(capacity, plan), capacity)
    w.f_inventory = w.f_inventory + o.output


def goods(w: World, o: RoundOutcome, s: Scenario, rng: np.random.Generator) -> None:
    """One goods market for every buyer: households sample ``search_firms`` sellers, firms
    (investment) and the state, few and large, sample as many as there are firms; no class of
    buyer is served first (before, households bought first and the others took what was left).
    An investment order left unfilled is not lost: the gap to the desired capital it was for is
    still open next round, and the next order is sized to it. Buyer ids: households, firms, the state.
    """
    hh, fm = o.batch("household", HouseholdBatch), o.batch("firm", FirmBatch)
    rg = o.batch("regulator", RegulatorBatch)
    n, m = w.n_households, w.n_firms
    fees = w.rail_fees()
    budget = np.concatenate(
        [
            hh.consumption_budget,
            rails.net_of_fee(fm.investment_budget, np.full(m, int(Rail.BANK_TRANSFER)), fees),
            rails.net_of_fee(rg.spending, np.array([int(Rail.BANK_TRANSFER)]), fees),
        ]
    )
    search = np.concatenate([np.full(n, household_config(s).search_firms), np.full(m + 1, m)]).astype(np.int64)
    p = goods_market(rng, budget, w.f_price, w.f_inventory, search)
    o.purchases = p
    sold = np.bincount(p.seller, weights=p.quantity, minlength=w.n_firms).astype(np.float64)
    w.f_inventory = np.maximum(w.f_inventory - sold, 0.0)
    w.f_sales, w.f_unmet = sold, p.unmet
    firm_buys = (p.buyer >= n) & (p.buyer < n + w.n_firms)
    bought = np.bincount(p.buyer[firm_buys] - n, weights=p.quantity[firm_buys], minlength=w.n_firms)
    o.invest_qty = bought.astype(np.float64)
    # the round's price level, published in ``advance`` and measured in the metrics: computed once
    o.price_index = float(p.amount.sum() / p.quantity.sum()) if p.quantity.sum() > 0 else w.price_index


def tokens(w: World, o: RoundOutcome, s: Scenario, rng: np.random.Generator) -> None:
    """One call auction per token: household bids and asks, plus firms' new tokens."""
    hh, fm = o.batch("household", HouseholdBatch), o.batch("firm", FirmBatch)
    households = w.layout.first("household")
    bid_qty_all = np.where(
        hh.token_buy >= 0, np.floor(hh.token_buy_budget / np.maximum(hh.token_buy_limit, 1e-9)), 0
    ).astype(np.int64)
    bidders = np.flatnonzero(bid_qty_all > 0)
    askers = np.flatnonzero(hh.token_sell_shares > 0)
    issuers = np.flatnonzero(fm.issue_shares > 0)
    firm_tokens = np.arange(w.t_price.size)[w.tokens_of("firm")]
    b_tok, b_qty, b_px = hh.token_buy[bidders], bid_qty_all[bidders], hh.token_buy_limit[bidders]
    b_acct = households + bidders
    half = household_config(s).bid_spread / 2
    a_tok = np.concatenate([hh.token_sell[askers], firm_tokens[issuers]])
    a_qty = np.concatenate([hh.token_sell_shares[askers], fm.issue_shares[issuers]])
    a_px = np.concatenate([hh.token_sell_limit[askers], w.t_price[firm_tokens[issuers]] * (1 - half)])
    a_acct = np.concatenate([households + askers, w.layout.first("firm") + issuers])
    legs: list[tuple[NDArray[np.int64], ...]] = []
    trades: list[dict[str, Any]] = []
    for j in np.intersect1d(b_tok, a_tok):
        bi, ai = np.flatnonzero(b_tok == j), np.flatnonzero(a_tok == j)
        res = call_auction(b_px[bi], b_qty[bi], a_px[ai], a_qty[ai], float(w.t_price[j]))
        if res.volume == 0:
            continue
        pb, pa, q = pair_fills(res.bid_fill, res.ask_fill)
        amount = np.floor(q * res.price).astype(np.int64)
        legs.append((np.full(q.size, j), b_acct[bi][pb], a_acct[ai][pa], q, amount))
        w.t_price[j] = res.price
        trades.append({"token": int(j), "price": res.price, "volume": res.volume, "value": int(amount.sum())})
    o.trades = trades
    if legs:
        o.trade_legs = tuple(np.concatenate(c).astype(np.int64) for c in zip(*legs, strict=True))


STEPS: tuple[Step, ...] = (credit, labour, production, goods, tokens)


def clear(w: World, o: RoundOutcome, s: Scenario, rng: np.random.Generator) -> None:
    """Run the markets in ``STEPS`` order."""
    for step in STEPS:
        step(w, o, s, rng)
