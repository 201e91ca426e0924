"""Firm exit and entry (Assenza et al. 2015; Caiani et al. 2016): one settlement step.

A firm exits when its net worth is negative (deposits plus its capital and stock at replacement
cost, less its loans) or when it has missed part of its debt service ``roles.firm.exit_after_defaults``
rounds running. Then, in this order:

1. its workers are laid off;
2. its deposits repay its loan as far as they go (money destroyed); the rest of the loan is
   charged off against its bank's net worth; any deposits left over go to its shareholders;
3. ``exit_scrap`` of its capital is scrapped; the rest of the plant and its stock pass to the
   entrant, as the bankruptcy estate's sale would, without proceeds (its creditors' loss is the
   charge-off);
4. its token is worth nothing: every holding of it is cancelled;
5. an entrant takes its place (same account, same bank, a new token of ``shares_per_issuer``
   shares), financed explicitly: households with deposits above the median buy the new equity
   pro rata to those deposits, up to ``entry_equity_rounds`` times the median firm's wage bill,
   so the entrant's cash is money that moved, never money created. It starts at the mean price
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

__all__ = ["exiting_firms", "firm_turnover"]


def exiting_firms(w: World, s: Scenario, price_index: float) -> NDArray[np.int64]:
    """The firms that exit this round: negative net worth, or too many rounds in default."""
    p = firm_config(s)
    failed = (w.firm_net_worth(price_index, price_index) < 0) | (w.f_bad_rounds >= p.exit_after_defaults)
    out: NDArray[np.int64] = np.flatnonzero(failed)
    return out


def firm_turnover(w: World, o: RoundOutcome, s: Scenario) -> None:
    """Settlement step: count defaults, then let failed firms exit and entrants take their places."""
    p = firm_config(s)
    if o.defaulted is not None:
        w.f_bad_rounds = np.where(o.defaulted, w.f_bad_rounds + 1, 0)
    if not p.exit_and_entry:
        return
    price = o.price_index if o.price_index is not None else w.price_index
    for f in exiting_firms(w, s, price):
        _exit(w, o, s, int(f))
        _enter(w, o, s, int(f))


def _exit(w: World, o: RoundOutcome, s: Scenario, f: int) -> None:
    lay, led = w.layout, w.ledger
    acct = lay.first("firm") + f
    bank = int(w.f_loan_bank[f])
    staff = np.flatnonzero(w.h_employer == f)
    w.h_employer[staff] = -1
    w.h_unemployed_rounds[staff] = 0
    o.fired += int(staff.size)
    cash = int(led.spendable(np.array([acct]))[0])
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
            "detail": f"{staff.size} workers laid off; {charged_off} cents of loans charged off",
        }
    )


def _enter(w: World, o: RoundOutcome, s: Scenario, f: int) -> None:
    lay, led, p = w.layout, w.ledger, firm_config(s)
    acct = lay.first("firm") + f
    others = np.arange(w.n_firms) != f
    median_bill = float(np.median((w.labour() * w.f_wage)[others])) if others.any() else 0.0
    want = int(p.entry_equity_rounds * median_bill)
    deposits = w.household_balance().astype(np.float64)
    rich = np.flatnonzero(deposits > np.median(deposits))
    raised = np.zeros(rich.size, dtype=np.int64)
    if rich.size and want > 0:
        raised = pro_rata(min(want, int(deposits[rich].sum())), deposits[rich])
        raised = np.minimum(raised, deposits[rich].astype(np.int64))
        led.transfer("equity_issue", lay.first("household") + rich, acct, raised)
    token = w.tokens_of("firm").start + f
    shares = s.initial.shares_per_issuer
    total = int(raised.sum())
    if total > 0:
        rows = w.row_of(lay.first("household") + rich)
        w.holdings[rows, token] = pro_rata(shares, raised.astype(np.float64))
        w.t_outstanding[token] = shares
    w.t_price[token] = total / shares if total > 0 else 0.0
    w.f_price[f] = float(w.f_price[others].mean()) if others.any() else w.f_price[f]
    w.f_wage[f] = float(w.f_wage[others].mean()) if others.any() else w.f_wage[f]
    w.f_expected[f] = float(np.median(w.f_expected[others])) if others.any() else 0.0
    w.f_sales[f], w.f_unmet[f], w.f_unfilled[f], w.f_vacancies[f] = 0.0, 0.0, 0, 0
    w.f_bad_rounds[f] = 0
    w.f_markup[f] = float(np.median(w.f_markup[others])) if others.any() else 0.0
    o.events.append(
        {
            "kind": "entry",
            "agent": lay.name_of(acct),
            "counterparty": "households",
            "amount": total,
            "detail": f"new token: {shares if total else 0} shares sold to {int((raised > 0).sum())} households",
        }
    )
