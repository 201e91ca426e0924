"""Settlement: every money movement of a round, posted through the ledger, as named steps.

``STEPS`` is the order payments are made in; each step takes the world, the round's outcome
(what clearing decided) and the scenario, posts transfers (or, for loans and money-financed UBI,
explicit issuance and destruction), and notes income in the outcome. Income taxes are withheld
at source: the payer sends the net to the recipient and the tax to the state, so no household is
ever debited for tax. :func:`settle` runs the steps and closes the round's books.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from tokenomy import accounts, registry
from tokenomy.agents.bank import BankBatch
from tokenomy.agents.bank import config as bank_config
from tokenomy.agents.central_bank import config as central_bank_config
from tokenomy.agents.firm import FirmBatch, debt_due, robot_tax_due
from tokenomy.agents.firm import config as firm_config
from tokenomy.agents.household import HouseholdBatch
from tokenomy.agents.network import NetworkBatch
from tokenomy.agents.regulator import config as regulator_config
from tokenomy.market import rails
from tokenomy.market.clearing import pro_rata
from tokenomy.market.ledger import Ledger
from tokenomy.market.rails import Rail
from tokenomy.outcome import RoundOutcome
from tokenomy.scenario import Scenario
from tokenomy.turnover import firm_turnover
from tokenomy.world import World

__all__ = [
    "STEPS",
    "advance_to_state",
    "pay_deposit_interest",
    "pay_dividends",
    "pay_over_rails",
    "pay_ubi",
    "pay_withholding",
    "service_debt",
    "settle",
]

Step = Callable[[World, RoundOutcome, Scenario], None]


# -- postings -------------------------------------------------------------------------------------
def pay_withholding(
    ledger: Ledger,
    kind: str,
    payer: NDArray[np.int64],
    payee: NDArray[np.int64],
    gross: NDArray[np.int64],
    tax_rate: float,
    state: int,
) -> NDArray[np.int64]:
    """Pay ``gross`` from payer to payee, withholding ``tax_rate`` for the state. Returns the tax."""
    tax: NDArray[np.int64] = np.floor(gross * tax_rate).astype(np.int64)
    net = gross - tax
    ledger.require_funds(kind, np.concatenate([payer, payer]), np.concatenate([net, tax]))
    ledger.transfer(kind, payer, payee, net)
    if tax.any():
        payers, idx = np.unique(payer, return_inverse=True)
        ledger.transfer("income_tax", payers, state, np.bincount(idx, weights=tax).astype(np.int64))
    return tax


def pay_dividends(world: World, dividend: NDArray[np.int64]) -> NDArray[np.int64]:
    """Token ``j``'s issuer pays ``dividend[j]`` cents pro rata to its holders; returns gross per holdings row.

    Each holder's share is floored to the cent; the rounding remainder stays with the issuer.
    """
    H = world.holdings
    out = np.zeros(H.shape[0], dtype=np.int64)
    d = np.where(world.t_outstanding > 0, dividend / np.maximum(world.t_outstanding, 1), 0.0)
    pay_tok = np.flatnonzero(d > 0)
    if pay_tok.size == 0:
        return out
    sub = H[:, pay_tok]
    rows, cols = np.nonzero(sub)
    gross = np.floor(sub[rows, cols] * d[pay_tok][cols]).astype(np.int64)
    issuer = world.t_issuer[pay_tok][cols]
    state = world.layout.first("regulator")
    pay_withholding(world.ledger, "dividend", issuer, world.holder_accounts[rows], gross, world.income_tax, state)
    np.add.at(out, rows, gross)
    return out


def pay_deposit_interest(world: World, rate: NDArray[np.float64], balance: NDArray[np.int64]) -> NDArray[np.int64]:
    """Each bank pays its depositors ``rate`` on their opening balance, pro rata if it is short."""
    bank = world.h_bank
    due = np.floor(balance * rate[bank]).astype(np.int64)
    banks = world.layout.accounts("bank")
    total_due = np.bincount(bank, weights=due, minlength=banks.size)
    can = world.ledger.spendable(banks).astype(np.float64)
    scale = np.where(total_due > can, can / np.maximum(total_due, 1.0), 1.0)
    gross = np.floor(due * scale[bank]).astype(np.int64)
    payee = np.flatnonzero(gross)
    pay_withholding(
        world.ledger,
        "deposit_interest",
        banks[bank[payee]],
        world.layout.first("household") + payee.astype(np.int64),
        gross[payee],
        world.income_tax,
        world.layout.first("regulator"),
    )
    return gross


def service_debt(
    world: World, interest: NDArray[np.int64], principal: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_]]:
    """Firms pay loan interest to their bank and repay principal (destroyed), from their deposits.

    A firm that cannot pay in full pays what it has, interest first (Caiani et al. 2016: partial
    default); only the principal it could not repay is written off, charged to its bank's net
    worth; the rest of the loan stays owed. Returns (interest paid, principal written off,
    defaulted) per firm.
    """
    ledger, lay = world.ledger, world.layout
    firms = lay.accounts("firm")
    cash = ledger.spendable(firms)
    pay_int = np.minimum(interest, cash)
    pay_rep = np.minimum(principal, cash - pay_int)
    ledger.transfer("loan_interest", firms, lay.accounts("bank")[world.f_loan_bank], pay_int)
    ledger.destroy("loan_repayment", firms, pay_rep)
    defaulted = (pay_int < interest) | (pay_rep < principal)
    written_off = (principal - pay_rep).astype(np.int64)
    world.f_loan = world.f_loan - pay_rep - written_off
    accounts.charge_loss(world, world.f_loan_bank, written_off)
    return pay_int.astype(np.int64), written_off, defaulted


def pay_ubi(world: World, ubi_cents: int) -> NDArray[np.int64]:
    """UBI to every household from the state's balance, pro rata if short.

    Money-financed UBI is first advanced to the state by the central bank (issued against the
    state's debt, ``World.cb_advances``), so the new money has a counterpart.
    """
    n = world.n_households
    if ubi_cents <= 0:
        return np.zeros(n, dtype=np.int64)
    households = world.layout.accounts("household")
    state = world.layout.first("regulator")
    if world.ubi_money_financed:
        need = ubi_cents * n - int(world.ledger.spendable(np.array([state]))[0])
        if need > 0:
            advance_to_state(world, need)
    can = int(world.ledger.spendable(np.array([state]))[0])
    each = min(ubi_cents, can // n)
    amount = np.full(n, each, dtype=np.int64)
    world.ledger.transfer("ubi", state, households, amount)
    return amount


def pay_benefits(w: World, o: RoundOutcome, s: Scenario) -> NDArray[np.int64]:
    """Unemployment benefits: every household without work gets ``unemployment_benefit`` times
    this round's mean gross wage (Caiani et al. 2016; Dosi et al. 2010), from the state, which
    borrows from the central bank what it lacks when deficits are money-financed (else pro rata).

    The automatic stabiliser of the benchmark models: without it an unemployed household's
    spending falls to subsistence, demand with it, and the labour flows push the economy down.
    """
    n = w.n_households
    share = regulator_config(s).unemployment_benefit
    out = np.zeros(n, dtype=np.int64)
    assert o.wages is not None
    employed = o.wages > 0
    idle = np.flatnonzero(w.h_employer < 0)
    if share <= 0 or idle.size == 0 or not employed.any():
        return out
    each = int(share * float(o.wages[employed].mean()))
    state = w.layout.first("regulator")
    if regulator_config(s).deficit_financing == "money":
        advance_to_state(w, each * idle.size - int(w.ledger.spendable(np.array([state]))[0]))
    each = min(each, int(w.ledger.spendable(np.array([state]))[0]) // idle.size)
    out[idle] = each
    w.ledger.transfer("unemployment_benefit", state, w.layout.first("household") + idle, each)
    return out


def advance_to_state(world: World, amount: int) -> None:
    """The central bank lends the state ``amount`` cents: new money, owed by the state."""
    if amount <= 0:
        return
    world.ledger.issue("cb_advance", world.layout.first("regulator"), amount)
    world.cb_advances += int(amount)


def pay_over_rails(
    world: World,
    kind: str,
    payer: NDArray[np.int64],
    payee: NDArray[np.int64],
    amount: NDArray[np.int64],
    rail: NDArray[np.int64],
    bank_of_payer: NDArray[np.int64],
) -> NDArray[np.int64]:
    """Payers pay payees over their rail (goods or tokens); each fee goes to the rail's operator
    (a bank transfer's to the payer's bank). Returns the fees."""
    lay = world.layout
    card, chain = lay.first("network"), lay.first("network") + 1  # agents.network.OPERATORS order
    operator = np.select([rail == Rail.CARD, rail == Rail.CHAIN], [card, chain], lay.first("bank") + bank_of_payer)
    return rails.pay(world.ledger, kind, payer, payee, amount, rail, world.rail_fees(), operator)


# -- the steps of a round's settlement ------------------------------------------------------------
def credit(w: World, o: RoundOutcome, s: Scenario) -> None:
    """New loans first (Caiani et al. 2016): issued into the borrowers' deposits, booked as loans."""
    assert o.grant is not None, "clear before settle"
    o.opening_loans = w.f_loan.copy()  # what is serviced this round; a new loan pays from the next
    w.ledger.issue("loan", w.layout.accounts("firm"), o.grant)
    w.f_loan = w.f_loan + o.grant


def debt(w: World, o: RoundOutcome, s: Scenario) -> None:
    """Debt service after sales, then the robot tax, each from what the firm has."""
    firms = w.layout.accounts("firm")
    owed = o.opening_loans if o.opening_loans is not None else w.f_loan
    rate = o.opening_loan_rate if o.opening_loan_rate is not None else w.f_loan_rate
    interest, principal = debt_due(owed, rate, bank_config(s).amortization)
    o.interest_paid, written_off, o.defaulted = service_debt(w, interest, principal)
    o.written_off = int(written_off.sum())
    lay = w.layout
    for f in np.flatnonzero(written_off):
        o.events.append(
            {
                "kind": "loan_default",
                "agent": lay.name_of(int(firms[f])),
                "counterparty": lay.name_of(lay.first("bank") + int(w.f_loan_bank[f])),
                "amount": int(written_off[f]),
                "detail": "unpaid principal written off, charged to the bank's net worth",
            }
        )
    tax = np.minimum(robot_tax_due(w, s), w.ledger.spendable(firms))
    w.ledger.transfer("robot_tax", firms, w.layout.first("regulator"), tax)
    o.robot_tax_paid = tax


def wages(w: World, o: RoundOutcome, s: Scenario) -> None:
    """Every employed household is paid its firm's wage per efficiency unit times its skill,
    income tax withheld for the state."""
    emp, gross = w.pay()
    payer = w.layout.accounts("firm")[w.h_employer[emp]]
    payee = w.layout.first("household") + emp.astype(np.int64)
    pay_withholding(w.ledger, "wage", payer, payee, gross, w.income_tax, w.layout.first("regulator"))
    o.wages = np.zeros(w.n_households, dtype=np.int64)
    o.wages[emp] = gross
    o.wage_bill = np.bincount(w.h_employer[emp], weights=gross, minlength=w.n_firms).astype(np.int64)


def central_bank_interest(w: World, o: RoundOutcome, s: Scenario) -> None:
    """Interest on the central bank's books (per round: the annual policy rate / 12): it pays
    banks ``roles.central_bank.reserve_remuneration`` of the policy rate on their reserves (and
    charges the full rate on a negative position); with ``roles.central_bank.advance_interest`` the
    state pays the policy rate on its advances too, capitalised when the state lacks the cash
    (Caiani et al. 2016 have both flows).

    Reserves earn nothing by default. Paid at the policy rate (measured, ``baseline``, 5 seeds),
    the central bank created 80% of the money stock by round 300 as interest on reserves that
    the state's deficits had made large, and higher rates meant more money: a Taylor rule then
    feeds inflation instead of damping it. Banks instead pay on deposits no more than their loans
    earn (:func:`tokenomy.agents.bank.loan_yield_per_deposit`). Interest on advances is off by
    default: the state's opening debt backs the whole opening money stock (it is base money), and
    paying the policy rate on it with new money feeds inflation back into the rate (measured:
    inflation near 1% a round at a 10% rate). The central bank's net worth absorbs what it pays
    (``World.cb_equity``, booked).
    """
    lay = w.layout
    if "central_bank" not in lay.roles:
        return
    rate = w.policy_rate / 12
    res = accounts.bank_reserves(w)
    cb, banks = lay.first("central_bank"), lay.accounts("bank")
    paid = rate * central_bank_config(s).reserve_remuneration
    w.ledger.transfer("reserve_interest", cb, banks, np.floor(np.maximum(res, 0) * paid).astype(np.int64))
    w.ledger.transfer("reserve_interest", banks, cb, np.floor(np.maximum(-res, 0) * rate).astype(np.int64))
    if not central_bank_config(s).advance_interest:
        return
    due = int(w.cb_advances * rate)
    state = lay.first("regulator")
    advance_to_state(w, due - int(w.ledger.spendable(np.array([state]))[0]))
    w.ledger.transfer("advance_interest", state, cb, due)


def state_finance(w: World, o: RoundOutcome, s: Scenario) -> None:
    """The central bank advances what the state lacks for this round's purchases and the
    bank-transfer fees on them (a deficit financed by explicit debt,
    ``roles.regulator.deficit_financing = "money"``)."""
    p = o.purchases
    assert p is not None, "clear before settle"
    if regulator_config(s).deficit_financing != "money":
        return
    gov = p.buyer >= w.n_households + w.n_firms
    state = w.layout.first("regulator")
    amount = p.amount[gov]
    fee = rails.fees(amount, np.full(amount.size, int(Rail.BANK_TRANSFER)), w.rail_fees())  # paid on top
    due = int(amount.sum()) + int(fee.sum())
    advance_to_state(w, due - int(w.ledger.spendable(np.array([state]))[0]))


def state_repays(w: World, o: RoundOutcome, s: Scenario) -> None:
    """The state's balance beyond ``balance_buffer_rounds`` of this round's spending repays its
    central-bank debt (money destroyed), so the balance stays bounded."""
    p = o.purchases
    assert p is not None
    gov = p.buyer >= w.n_households + w.n_firms
    transfers = sum(int(x.sum()) for x in (o.ubi, o.benefits) if x is not None)
    keep = regulator_config(s).balance_buffer_rounds * float(p.amount[gov].sum() + transfers)
    state = w.layout.first("regulator")
    repay = min(int(w.ledger.spendable(np.array([state]))[0] - keep), w.cb_advances)
    if repay > 0:
        w.ledger.destroy("cb_repayment", state, repay)
        w.cb_advances -= repay


def purchases(w: World, o: RoundOutcome, s: Scenario) -> None:
    """Goods bought in ``clear``: households over their rail, firms and the state by bank transfer."""
    hh = o.batch("household", HouseholdBatch)
    p = o.purchases
    assert p is not None, "clear before settle"
    lay = w.layout
    n, m = w.n_households, w.n_firms
    # buyer ids of the goods market: households 0..n, firms n..n+m, the state n+m
    is_hh, is_firm = p.buyer < n, (p.buyer >= n) & (p.buyer < n + m)
    buyer = np.where(
        is_hh,
        lay.first("household") + p.buyer,
        np.where(is_firm, lay.first("firm") + p.buyer - n, lay.first("regulator")),
    )
    rail = np.where(is_hh, hh.rail[np.minimum(p.buyer, n - 1)], int(Rail.BANK_TRANSFER)).astype(np.int64)
    bank = np.where(
        is_hh,
        w.h_bank[np.minimum(p.buyer, n - 1)],
        np.where(is_firm, w.f_loan_bank[np.clip(p.buyer - n, 0, m - 1)], 0),
    )
    seller = lay.accounts("firm")[p.seller]
    for kind, mask in (("consumption", is_hh), ("investment", is_firm), ("government", ~is_hh & ~is_firm)):
        pay_over_rails(w, kind, buyer[mask], seller[mask], p.amount[mask], rail[mask], bank[mask])
    w.h_spent = np.bincount(p.buyer[is_hh], weights=p.amount[is_hh], minlength=n).astype(np.int64)
    o.revenue = np.bincount(p.seller, weights=p.amount, minlength=m).astype(np.float64)


def token_trades(w: World, o: RoundOutcome, s: Scenario) -> None:
    """Buyers pay sellers (an issuer sells newly minted tokens); then the holdings move."""
    if not o.trade_legs:
        return
    tok, buyer, seller, shares, amount = o.trade_legs
    bt = np.full(buyer.size, int(Rail.BANK_TRANSFER))
    buyer_bank = w.h_bank[buyer - w.layout.first("household")]
    pay_over_rails(w, "token_trade", buyer, seller, amount, bt, buyer_bank)
    np.add.at(w.holdings, (w.row_of(buyer), tok), shares)
    new = seller == w.t_issuer[tok]  # the issuer sells new tokens; anyone else sells holdings
    np.subtract.at(w.holdings, (w.row_of(seller[~new]), tok[~new]), shares[~new])
    np.add.at(w.t_outstanding, tok[new], shares[new])


def capital_income_and_transfers(w: World, o: RoundOutcome, s: Scenario) -> None:
    """Dividends of every issuer, deposit interest on opening balances, UBI."""
    fm, bk = o.batch("firm", FirmBatch), o.batch("bank", BankBatch)
    nw = o.batch("network", NetworkBatch)
    assert o.opening_deposits is not None
    firm_div = np.minimum(fm.dividend, w.ledger.spendable(w.layout.accounts("firm")))
    if o.defaulted is not None:
        firm_div = np.where(o.defaulted, 0, firm_div)  # never by a firm in default
    declared = {"firm": firm_div, "bank": bk.dividend, "network": nw.dividend}
    per_token = [  # in token order: issuing roles in registration order
        declared.get(spec.name, np.zeros(w.layout.count(spec.name), np.int64))
        for spec in registry.roles()
        if spec.issues is not None
    ]
    paid = pay_dividends(w, np.concatenate(per_token))
    o.dividends = paid[w.holder_rows("household")]
    o.interest = pay_deposit_interest(w, bk.deposit_rate, o.opening_deposits)
    o.ubi = pay_ubi(w, w.ubi_cents)
    o.benefits = pay_benefits(w, o, s)


def operating_cash_flow(w: World, o: RoundOutcome) -> NDArray[np.float64]:
    """Per firm, the round's sales less its wages, loan interest and robot tax, cents: Caiani et
    al. (2016)'s operating cash flow, which a bank sets against the debt service a loan adds."""
    assert o.revenue is not None and o.wage_bill is not None
    out: NDArray[np.float64] = o.revenue - o.wage_bill.astype(np.float64)
    for paid in (o.interest_paid, o.robot_tax_paid):
        if paid is not None:
            out = out - paid.astype(np.float64)
    return out


def accounting_profit(w: World, o: RoundOutcome, wear: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per firm, the round's profit as Caiani et al. (2016) book it, cents: the operating cash
    flow plus the change in inventories valued at unit (labour) cost, less the wear of capital at
    replacement cost. Without the inventory term a firm building stock reads as losing money and
    one selling from stock as earning it, so profit moved against output (measured on ``baseline``,
    5 seeds, with 0.9 of it paid out, ``automation.adjustment`` 0.0237 and ``eta_wage`` 0.0164:
    corr(C, Y) -0.40 before, 0.21 with the inventory term). A firm that made nothing values its
    stock at the median unit cost of those that did (it has no cost of its own this round)."""
    assert o.output is not None and o.wage_bill is not None and o.inventory_decay is not None
    made = np.asarray(o.output, dtype=np.float64)
    produced = made > 1e-12
    unit = np.divide(o.wage_bill.astype(np.float64), made, out=np.zeros_like(made), where=produced)
    unit = np.where(produced, unit, float(np.median(unit[produced])) if produced.any() else 0.0)
    stock_change = made - w.f_sales - o.inventory_decay
    out: NDArray[np.float64] = w.f_cash_flow + stock_change * unit - wear * w.capital_price * w.price_index
    return out


def stocks(w: World, o: RoundOutcome, s: Scenario) -> None:
    """Stocks that follow from the round's flows: capital, inventory, households' net income."""
    assert o.invest_qty is not None and o.output is not None
    assert o.wages is not None and o.dividends is not None and o.interest is not None and o.ubi is not None
    wear = w.f_capital * s.automation.depreciation
    w.f_capital = w.f_capital - wear + o.invest_qty / max(w.capital_price, 1e-12)
    o.capital_wear = wear
    o.inventory_decay = w.f_inventory * firm_config(s).inventory_decay
    w.f_inventory = w.f_inventory - o.inventory_decay
    w.f_output = o.output
    w.f_cash_flow = operating_cash_flow(w, o)
    w.f_profit = accounting_profit(w, o, wear)
    w.f_profit_smoothed = w.f_profit_smoothed + (w.f_profit - w.f_profit_smoothed) / firm_config(s).profit_smoothing
    capital_income = o.dividends + o.interest
    w.h_income = (
        (o.wages - np.floor(o.wages * w.income_tax)).astype(np.int64)
        + (capital_income - np.floor(capital_income * w.income_tax)).astype(np.int64)
        + o.ubi
        + (o.benefits if o.benefits is not None else 0)
    )


def bank_books(w: World, o: RoundOutcome, s: Scenario) -> None:
    """Book the round's payments to and from banks into their net worth; resolve any bank whose
    net worth fell below zero by the scenario's rule (``roles.bank.resolution``), as an event.

    ``state``: the state recapitalises it to its capital requirement (borrowing from the central
    bank what it lacks). ``bail_in``: its depositors' deposits are converted, pro rata, into the
    same amount of capital (as far as they reach; the state covers any rest).
    """
    accounts.book_bank_flows(w, w.ledger.postings)
    booked = len(w.ledger.postings)
    # profit: the change in net worth from the round's business (its loan losses included, which
    # debt service and exits charged before this step), before the dividends it paid
    opening = o.opening_bank_equity if o.opening_bank_equity is not None else w.b_equity
    w.b_profit = w.b_equity - opening + o.batch("bank", BankBatch).dividend
    p = bank_config(s)
    lay = w.layout
    loans = accounts.bank_loans(w)
    need = np.where(w.b_equity < 0, np.ceil(p.capital_ratio * loans) - w.b_equity, 0).astype(np.int64)
    state = lay.first("regulator")
    for b in np.flatnonzero(need > 0):
        bank_acct, amount = lay.first("bank") + int(b), int(need[b])
        covered = 0
        if p.resolution == "bail_in":
            covered = _bail_in(w, int(b), amount)
            o.events.append(_resolution_event(lay.name_of(bank_acct), covered, "bail_in", "depositors"))
        rest = amount - covered
        if rest > 0:
            advance_to_state(w, rest - int(w.ledger.spendable(np.array([state]))[0]))
            w.ledger.transfer("recapitalisation", state, bank_acct, rest)
            o.events.append(_resolution_event(lay.name_of(bank_acct), rest, "state", "state"))
    accounts.book_bank_flows(w, w.ledger.postings[booked:])


def _bail_in(w: World, bank: int, amount: int) -> int:
    """Convert up to ``amount`` of the deposits held at ``bank`` into its capital, pro rata; returns the amount."""
    lay = w.layout
    holders = np.concatenate([lay.accounts("household")[w.h_bank == bank], lay.accounts("firm")[w.f_loan_bank == bank]])
    bal = w.ledger.spendable(holders)
    total = int(bal.sum())
    if total <= 0:
        return 0
    take = pro_rata(min(amount, total), bal.astype(np.float64))
    take = np.minimum(take, bal)
    w.ledger.transfer("bail_in", holders, lay.first("bank") + bank, take)
    return int(take.sum())


def _resolution_event(bank: str, amount: int, rule: str, by: str) -> dict[str, object]:
    return {
        "kind": "bank_resolution",
        "agent": bank,
        "counterparty": by,
        "amount": amount,
        "detail": f"net worth below zero: {rule}",
    }


STEPS: tuple[Step, ...] = (
    credit,
    wages,
    state_finance,
    purchases,
    token_trades,
    debt,
    central_bank_interest,
    capital_income_and_transfers,
    state_repays,
    stocks,
    firm_turnover,
    bank_books,
)


def settle(w: World, o: RoundOutcome, s: Scenario) -> None:
    """Post every payment of the round (``STEPS`` in order), then check conservation.

    Raises :class:`~tokenomy.market.ledger.ConservationError` if money appeared or vanished.
    """
    o.opening_deposits = w.household_balance().copy()
    o.opening_balance = w.ledger.balance.copy()
    o.opening_reserves = accounts.reserves(w)
    o.opening_bank_equity = w.b_equity.copy()
    for step in STEPS:
        step(w, o, s)
    o.postings = list(w.ledger.postings)
    rent = registry.rent_kinds()
    o.rent = sum(int(x.amount.sum()) for x in o.postings if x.kind in rent)
    o.taxes = sum(int(x.amount.sum()) for x in o.postings if x.kind in ("income_tax", "robot_tax"))
    for e in o.events:
        e.setdefault("round", o.round)
    w.state_revenue = o.taxes
    w.state_transfers = sum(int(x.sum()) for x in (o.ubi, o.benefits) if x is not None)
    o.issued, o.destroyed = w.ledger.close_round(w.round)
