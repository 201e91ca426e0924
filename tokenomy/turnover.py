"""Firm exit and entry (Assenza et al. 2015; Caiani et al. 2016): one settlement step.

A firm exits when its net worth is negative (deposits plus its capital and stock at replacement
cost, less its loans) or when it has missed part of its debt service ``roles.firm.exit_after_defaults``
rounds running, or (with ``exit_on_illiquidity``) when its cash and new credit cannot pay the staff
it may not lay off this round, or (with ``exit_share``, Dosi et al. 2010) when, past its first
``exit_grace`` rounds, it sells next to nothing. Then, in this order:

1. its workers are laid off;
2. its deposits repay its loan as far as they go (money destroyed); the rest of the loan is
   charged off against its bank's net worth; any deposits left over go to its shareholders;
3. ``exit_scrap`` of its capital is scrapped; the rest of the plant and its stock pass to the
   entrant. With ``exit_recovery`` above 0 (Caiani et al. 2016's fire sale) households buy that
   plant for the creditors at that share of its value, up to what the deposits left unpaid,
   before the charge-off, and hold the entrant's token for it; at 0, it passes without proceeds
   and the creditors' loss is the whole charge-off;
4. its token is worth nothing: every holding of it is cancelled;
5. an entrant takes its place (same account, same bank, a new token of ``shares_per_issuer``
   shares), financed explicitly: households with deposits above the median buy the new equity
   pro rata to those deposits, up to ``entry_equity_rounds`` times the median firm's wage bill
   (and, with ``entry_capital``, the cost of topping its plant up to that share of the
   incumbents' mean, Dosi et al. 2010), so the entrant's cash is money that moved, never money
   created. It starts at the mean price
   and wage.

Every exit is a ``bankruptcy`` event and every entry an ``entry`` event (``events.parquet``).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from tokenomy import accounts
from tokenomy.agents.firm import config as firm_config
from tokenomy.market.clearing import pro_rata
from tokenomy.outcome import RoundOutcome
from tokenomy.scenario import Scenario
from tokenomy.world import World

__all__ = ["exit_reasons", "exiting_firms", "firm_turnover"]


def exit_reasons(
    w: World,
    s: Scenario,
    price_index: float,
    illiquid: NDArray[np.bool_] | None = None,
    sales: NDArray[np.float64] | None = None,
) -> dict[str, NDArray[np.bool_]]:
    """Per reason, the firms it sends out this round: negative net worth, too many rounds in
    default, (with ``exit_on_illiquidity``) out of cash for the staff they keep, (with
    ``exit_share``) past their grace and selling next to nothing of the round's ``sales`` (cents
    per firm). Named in each ``bankruptcy`` event."""
    p = firm_config(s)
    none = np.zeros(w.n_firms, dtype=bool)
    share_out = none
    if p.exit_share > 0 and sales is not None:
        share = sales / max(float(sales.sum()), 1.0)
        share_out = (share < p.exit_share) & (w.f_age >= p.exit_grace)
    return {
        "negative net worth": w.firm_net_worth(price_index, price_index) < 0,
        "in default": w.f_bad_rounds >= p.exit_after_defaults,
        "illiquid": illiquid if illiquid is not None else none,
        "no market share": share_out,
    }


def exiting_firms(
    w: World,
    s: Scenario,
    price_index: float,
    illiquid: NDArray[np.bool_] | None = None,
    sales: NDArray[np.float64] | None = None,
) -> NDArray[np.int64]:
    """The firms that exit this round, for any of :func:`exit_reasons`."""
    return _failed(exit_reasons(w, s, price_index, illiquid, sales))


def _failed(reasons: dict[str, NDArray[np.bool_]]) -> NDArray[np.int64]:
    out: NDArray[np.int64] = np.flatnonzero(np.logical_or.reduce(list(reasons.values())))
    return out


def firm_turnover(w: World, o: RoundOutcome, s: Scenario) -> None:
    """Settlement step: count defaults, then let failed firms exit and entrants take their places."""
    p = firm_config(s)
    if o.defaulted is not None:
        w.f_bad_rounds = np.where(o.defaulted, w.f_bad_rounds + 1, 0)
    w.f_age = w.f_age + 1
    if not p.exit_and_entry:
        return
    price = o.price_index if o.price_index is not None else w.price_index
    reasons = exit_reasons(w, s, price, o.illiquid, o.revenue)
    for f in _failed(reasons):
        why = ", ".join(k for k, v in reasons.items() if v[f])
        paid = _exit(w, o, s, int(f), price, why)
        _enter(w, o, s, int(f), paid)


def _investors(w: World) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Who buys an exiting firm's plant and an entrant's equity: households with deposits above
    the median, pro rata to their deposits (rows, deposits)."""
    deposits = w.household_balance().astype(np.float64)
    rich = np.flatnonzero(deposits > np.median(deposits))
    return rich, deposits[rich]


def _fire_sale(w: World, s: Scenario, f: int, unpaid: int, price_index: float) -> NDArray[np.int64]:
    """Households pay the exiting firm ``exit_recovery`` of the value of the plant the entrant
    takes over, at most ``unpaid``: per household (length ``n_households``), cents."""
    p = firm_config(s)
    paid = np.zeros(w.n_households, dtype=np.int64)
    if p.exit_recovery <= 0 or unpaid <= 0:
        return paid
    kept = w.f_capital[f] * (1.0 - p.exit_scrap) * w.capital_price * price_index + w.f_inventory[f] * price_index
    rich, deposits = _investors(w)
    want = min(unpaid, int(p.exit_recovery * kept), int(deposits.sum()))
    if rich.size == 0 or want <= 0:
        return paid
    share = np.minimum(pro_rata(want, deposits), deposits.astype(np.int64))
    w.ledger.transfer("fire_sale", w.layout.first("household") + rich, w.layout.first("firm") + f, share)
    paid[rich] = share
    return paid


def _exit(w: World, o: RoundOutcome, s: Scenario, f: int, price_index: float, why: str) -> NDArray[np.int64]:
    """Lay off, repay from deposits (and the fire sale), charge off the rest, cancel the token.
    Returns what each household paid for the plant."""
    lay, led = w.layout, w.ledger
    acct = lay.first("firm") + f
    bank = int(w.f_loan_bank[f])
    staff = np.flatnonzero(w.h_employer == f)
    w.h_employer[staff] = -1
    w.h_unemployed_rounds[staff] = 0
    o.fired += int(staff.size)
    own = int(led.spendable(np.array([acct]))[0])
    paid = _fire_sale(w, s, f, int(w.f_loan[f]) - own, price_index)
    cash = own + int(paid.sum())
    repay = min(cash, int(w.f_loan[f]))
    if repay > 0:
        led.destroy("loan_repayment", acct, repay)
    charged_off = int(w.f_loan[f]) - repay
    w.f_loan[f] = 0
    accounts.charge_loss(w, np.array([bank]), np.array([charged_off], dtype=np.int64))
    o.written_off += charged_off
    left = cash - repay
    token = w.tokens_of("firm").start + f
    if left > 0:  # what creditors did not need goes to the shareholders
        held = w.holdings[:, token]
        rows = np.flatnonzero(held)
        if rows.size:
            share = pro_rata(left, held[rows].astype(np.float64))
            led.transfer("liquidation", acct, w.holder_accounts[rows], share)
    w.holdings[:, token] = 0
    w.t_outstanding[token] = 0
    w.f_capital[f] *= 1.0 - firm_config(s).exit_scrap
    o.events.append(
        {
            "kind": "bankruptcy",
            "agent": lay.name_of(acct),
            "counterparty": lay.name_of(lay.first("bank") + bank),
            "amount": charged_off,
            "detail": f"{why}: {staff.size} workers laid off; {charged_off} cents of loans charged off"
            + (f"; {int(paid.sum())} cents recovered by the sale of its plant" if paid.any() else ""),
        }
    )
    return paid


def _enter(w: World, o: RoundOutcome, s: Scenario, f: int, paid_for_plant: NDArray[np.int64]) -> None:
    """An entrant on the exited firm's account: new equity from households (and, after a fire
    sale, the plant its buyers paid for), a new token for both, the mean price and wage."""
    lay, led, p = w.layout, w.ledger, firm_config(s)
    acct = lay.first("firm") + f
    others = np.arange(w.n_firms) != f
    median_bill = float(np.median((w.labour() * w.f_wage)[others])) if others.any() else 0.0
    want = int(p.entry_equity_rounds * median_bill)
    if p.entry_capital > 0 and others.any():  # the cost of the plant it lacks, which it will buy as capital
        short = max(p.entry_capital * float(w.f_capital[others].mean()) - float(w.f_capital[f]), 0.0)
        want += int(short * w.capital_price * w.price_index)
    rich, deposits = _investors(w)
    stake = paid_for_plant.copy()
    if rich.size and want > 0:
        raised = pro_rata(min(want, int(deposits.sum())), deposits)
        raised = np.minimum(raised, deposits.astype(np.int64))
        led.transfer("equity_issue", lay.first("household") + rich, acct, raised)
        stake[rich] += raised
    token = w.tokens_of("firm").start + f
    shares = s.initial.shares_per_issuer
    total = int(stake.sum())
    owners = np.flatnonzero(stake)
    if total > 0:
        rows = w.row_of(lay.first("household") + owners)
        w.holdings[rows, token] = pro_rata(shares, stake[owners].astype(np.float64))
        w.t_outstanding[token] = shares
    w.t_price[token] = total / shares if total > 0 else 0.0
    w.f_price[f] = float(w.f_price[others].mean()) if others.any() else w.f_price[f]
    w.f_wage[f] = float(w.f_wage[others].mean()) if others.any() else w.f_wage[f]
    w.f_expected[f] = float(np.median(w.f_expected[others])) if others.any() else 0.0
    # as the opening world does: as if it had sold what it expects (its zero sales read as a
    # shrinking market left every entrant with inherited stock expecting nothing, for good)
    w.f_sales[f] = w.f_expected[f]
    w.f_unmet[f], w.f_unfilled[f], w.f_vacancies[f] = 0.0, 0, 0
    w.f_bad_rounds[f] = 0
    w.f_age[f] = 0
    w.f_cash_flow[f] = float(np.median(w.f_cash_flow[others])) if others.any() else 0.0  # no history of its own
    w.f_profit[f] = float(np.median(w.f_profit[others])) if others.any() else 0.0
    w.f_profit_smoothed[f] = float(np.median(w.f_profit_smoothed[others])) if others.any() else 0.0
    w.f_markup[f] = float(np.median(w.f_markup[others])) if others.any() else 0.0
    o.events.append(
        {
            "kind": "entry",
            "agent": lay.name_of(acct),
            "counterparty": "households",
            "amount": total,
            "detail": f"new token: {shares if total else 0} shares sold to {owners.size} households",
        }
    )
