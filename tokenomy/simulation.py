"""Simulation: builds a World from a Scenario, owns the seed, and runs the phases of a round.

The phases are methods called in order by the round graph (``tokenomy.rounds``)::

    observe -> decide -> clear -> settle -> regulate -> record

``observe`` publishes what every agent may know; ``decide`` asks each role's policy and validates
the answers; ``clear`` runs the markets (credit, labour, production, goods, tokens) without moving
money; ``settle`` posts every payment through the ledger and checks conservation; ``regulate``
puts the regulator's choices into force for the next round. Every random draw comes from the one
generator seeded by the scenario, in a fixed order, so a seed fixes the whole run.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tokenomy._sync import run_sync
from tokenomy.agents.bank import BankBatch, Banks, grant_loans
from tokenomy.agents.base import Batch, MarketView
from tokenomy.agents.firm import FirmBatch, Firms, debt_service, fit_to_funds, robot_tax_due
from tokenomy.agents.household import HouseholdBatch, Households
from tokenomy.agents.network import NetworkBatch, Networks
from tokenomy.agents.regulator import Regulator, RegulatorBatch
from tokenomy.initial import build_world, phi_at
from tokenomy.market import production, rails
from tokenomy.market.clearing import Purchases, call_auction, goods_market, match_labour, pair_fills
from tokenomy.market.rails import Rail
from tokenomy.policies.cache import AnswerCache
from tokenomy.policies.llm import LLMConfigError, LLMDecider, LLMPolicy, redact
from tokenomy.scenario import Scenario
from tokenomy.settlement import pay_deposit_interest, pay_dividends, pay_goods, pay_ubi, pay_withholding, service_debt
from tokenomy.store import RunWriter
from tokenomy.world import World

__all__ = ["RoundOutcome", "Simulation"]


@dataclass
class RoundOutcome:
    """What one round did, for the record: decisions, market results and income by source."""

    round: int
    decisions: dict[str, Batch] = field(default_factory=dict)
    grant: NDArray[np.int64] | None = None
    output: NDArray[np.float64] | None = None
    purchases: Purchases | None = None
    trades: list[dict[str, Any]] = field(default_factory=list)
    trade_legs: tuple[NDArray[np.int64], ...] = ()
    wages: NDArray[np.int64] | None = None
    dividends: NDArray[np.int64] | None = None
    interest: NDArray[np.int64] | None = None
    ubi: NDArray[np.int64] | None = None
    fees: int = 0
    taxes: int = 0
    written_off: int = 0
    fired: int = 0
    hired: int = 0
    invest_qty: NDArray[np.float64] | None = None
    issued: int = 0
    destroyed: int = 0
    postings: list[Any] = field(default_factory=list)
    llm_records: list[dict[str, Any]] = field(default_factory=list)


class Simulation:
    """One economy, advanced a round at a time. ``Simulation(scenario).run()`` runs it all."""

    def __init__(self, scenario: Scenario, world: World | None = None) -> None:
        self.scenario = scenario
        self.rng = np.random.default_rng(scenario.seed)
        self.world = world if world is not None else build_world(scenario, self.rng)
        if world is not None and world.rng_state:
            self.rng.bit_generator.state = world.rng_state
        self.households, self.firms, self.banks = Households(), Firms(), Banks()
        self.networks, self.regulator = Networks(), Regulator()
        self.view: MarketView | None = None
        self.outcome = RoundOutcome(self.world.round)
        self.llm: LLMPolicy | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach_llm(self, *, replay: bool = False) -> LLMPolicy | None:
        """Set up the LLM side when the scenario has LLM-driven roles (else do nothing).

        Reads the API key now (unless replaying), so a missing key fails before anything is
        written. Answers are cached only once :meth:`open_llm_cache` names a file.
        """
        if not self.scenario.llm_roles():
            return None
        decider = LLMDecider(self.scenario.llm, seed=self.scenario.seed, replay=replay)
        self.llm = LLMPolicy(self.scenario, decider)
        return self.llm

    def open_llm_cache(self, path: Path, *, replay_from: Path | None = None) -> None:
        """Record answers in ``path``; or, replaying, copy the recorded ``replay_from`` there and read it."""
        if self.llm is None:
            return
        if replay_from is not None:
            shutil.copyfile(replay_from, path)
            self.llm.decider.cache = AnswerCache(path, read_only=True)
        else:
            self.llm.decider.cache = AnswerCache(path)

    def close(self) -> None:
        """Stop the LLM worker processes (``llm.workers > 1``), if any; they restart on the next call.

        They also stop when the simulation is garbage-collected or the interpreter exits; ``with
        Simulation(sc) as sim:`` stops them at the end of the block.
        """
        if self.llm is not None:
            self.llm.decider.close()

    def __enter__(self) -> Simulation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def roles(self) -> dict[str, Any]:
        return {r.name: r for r in (self.households, self.firms, self.banks, self.networks, self.regulator)}

    # -- phases ---------------------------------------------------------------------------------
    def observe(self) -> MarketView:
        w = self.world
        emp = w.h_employer >= 0
        self.view = MarketView(
            round=w.round,
            phi=w.phi,
            capital_price=w.capital_price,
            price_index=w.price_index,
            mean_price=float(w.f_price.mean()),
            unemployment=float(1.0 - emp.mean()),
            mean_wage=float(w.f_wage[w.h_employer[emp]].mean()) if emp.any() else 0.0,
            rail_fees=tuple(float(x) for x in w.rail_fees()),  # type: ignore[arg-type]
        )
        self.outcome = RoundOutcome(w.round)
        return self.view

    async def adecide(self) -> dict[str, Batch]:
        """Rules decide for everyone (vectorised); LLM answers then replace theirs; validation clips all."""
        assert self.view is not None, "observe() first"
        if self.llm is None and self.scenario.llm_roles():
            self.attach_llm()  # stepping by hand: no cache
        batches = {
            name: role.heuristic(self.world, self.view, self.scenario, self.rng) for name, role in self.roles.items()
        }
        if self.llm is not None:
            self.outcome.llm_records = await self.llm.decide(self, batches)
        out = {name: role.validate(self.world, batches[name], self.scenario) for name, role in self.roles.items()}
        nw: NetworkBatch = out["network"]  # type: ignore[assignment]
        self.world.card_fee = float(nw.fee_rate[0])  # the operator's fee applies to this round's payments
        self.outcome.decisions = out
        return out

    def event_loop(self) -> asyncio.AbstractEventLoop:
        """The simulation's own event loop: every round runs on it, so the LLM clients' connections
        (bound to the loop that opened them) stay usable across ``step`` and repeated ``run`` calls."""
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop

    def decide(self) -> dict[str, Batch]:
        """``adecide`` on the simulation's own event loop."""
        return run_sync(self.adecide(), self.event_loop())

    def clear(self) -> None:
        w, s, o = self.world, self.scenario, self.outcome
        hh: HouseholdBatch = o.decisions["household"]  # type: ignore[assignment]
        bk: BankBatch = o.decisions["bank"]  # type: ignore[assignment]
        rg: RegulatorBatch = o.decisions["regulator"]  # type: ignore[assignment]
        fm: FirmBatch = o.decisions["firm"]  # type: ignore[assignment]

        # credit, then every firm's plan cut to its cash
        o.grant = grant_loans(w, fm.loan_request, bk, s)
        fm = fit_to_funds(w, fm, w.firm_balance() + o.grant, s)
        o.decisions["firm"] = fm
        w.f_price, w.f_wage = fm.price.copy(), fm.wage_offer.copy()

        self._clear_labour(fm.target_workers, hh.reservation_wage)

        # production
        L = w.workers().astype(np.float64)
        o.output = np.asarray(
            production.output(w.f_capital, L, w.phi, s.production.A, s.production.sigma), dtype=np.float64
        )
        w.f_inventory = w.f_inventory + o.output

        # goods: households consume, firms invest, the state spends
        n = w.n_households
        bt = np.full(w.n_firms, int(Rail.BANK_TRANSFER))
        fees = w.rail_fees()
        # households search a few sellers; firms and the state (few, large buyers) canvass them all
        p_hh = goods_market(self.rng, hh.consumption_budget, w.f_price, w.f_inventory, s.roles.household.search_firms)
        left = np.maximum(w.f_inventory - np.bincount(p_hh.seller, weights=p_hh.quantity, minlength=w.n_firms), 0.0)
        institutional = np.concatenate(
            [
                rails.net_of_fee(fm.investment_budget, bt, fees),
                rails.net_of_fee(rg.spending, np.array([int(Rail.BANK_TRANSFER)]), fees),
            ]
        )
        p_in = goods_market(self.rng, institutional, w.f_price, left, w.n_firms)
        p = Purchases(
            np.concatenate([p_hh.buyer, p_in.buyer + n]),
            np.concatenate([p_hh.seller, p_in.seller]),
            np.concatenate([p_hh.quantity, p_in.quantity]),
            np.concatenate([p_hh.amount, p_in.amount]),
            p_hh.unmet + p_in.unmet,
        )
        o.purchases = p
        sold = np.bincount(p.seller, weights=p.quantity, minlength=w.n_firms)
        w.f_inventory = np.maximum(w.f_inventory - sold, 0.0)
        w.f_sales, w.f_unmet = sold, p.unmet
        firm_buys = (p.buyer >= n) & (p.buyer < n + w.n_firms)
        o.invest_qty = np.bincount(p.buyer[firm_buys] - n, weights=p.quantity[firm_buys], minlength=w.n_firms)

        self._clear_tokens(hh, fm)

    def settle(self) -> tuple[int, int]:
        """Post every payment of the round through the ledger, in this order, then check conservation."""
        opening = self.world.household_balance().copy()
        self._settle_debt_and_credit()
        self._settle_wages()
        self._settle_purchases()
        self._settle_token_trades()
        self._settle_capital_income_and_transfers(opening)
        self._update_stocks()
        w, o = self.world, self.outcome
        o.postings = list(w.ledger.postings)
        o.taxes = sum(int(x.amount.sum()) for x in o.postings if x.kind in ("income_tax", "robot_tax"))
        o.issued, o.destroyed = w.ledger.close_round(w.round)
        return o.issued, o.destroyed

    def _settle_debt_and_credit(self) -> None:
        """Debt service and robot tax first (reserved in ``fit_to_funds``), then new loans (issued)."""
        w, s, o = self.world, self.scenario, self.outcome
        firms = w.layout.firm_accounts()
        due = debt_service(w, s)
        interest = np.floor(w.f_loan * w.f_loan_rate).astype(np.int64)
        o.written_off = int(service_debt(w, interest, due - interest).sum())
        w.ledger.transfer("robot_tax", firms, w.layout.state, robot_tax_due(w, s))
        assert o.grant is not None
        w.ledger.issue("loan", firms, o.grant)
        w.f_loan = w.f_loan + o.grant

    def _settle_wages(self) -> None:
        """Every employed household is paid its firm's wage, income tax withheld for the state."""
        w, o = self.world, self.outcome
        emp = np.flatnonzero(w.h_employer >= 0)
        gross = np.floor(w.f_wage[w.h_employer[emp]]).astype(np.int64)
        payer = w.layout.firm_accounts()[w.h_employer[emp]]
        pay_withholding(w.ledger, "wage", payer, emp.astype(np.int64), gross, w.income_tax, w.layout.state)
        o.wages = np.zeros(w.n_households, dtype=np.int64)
        o.wages[emp] = gross

    def _settle_purchases(self) -> None:
        """Goods bought in ``clear``: households over their rail, firms and the state by bank transfer."""
        w, o = self.world, self.outcome
        hh: HouseholdBatch = o.decisions["household"]  # type: ignore[assignment]
        p = o.purchases
        assert p is not None
        n, m = w.n_households, w.n_firms
        is_hh, is_firm = p.buyer < n, (p.buyer >= n) & (p.buyer < n + m)
        # buyer ids follow the account layout: households, then firms; the one past the firms is the state
        buyer = np.where(is_hh | is_firm, p.buyer, w.layout.state)
        rail = np.where(is_hh, hh.rail[np.minimum(p.buyer, n - 1)], int(Rail.BANK_TRANSFER)).astype(np.int64)
        bank = np.where(
            is_hh,
            w.h_bank[np.minimum(p.buyer, n - 1)],
            np.where(is_firm, w.f_loan_bank[np.clip(p.buyer - n, 0, m - 1)], 0),
        )
        seller = w.layout.firm_accounts()[p.seller]
        o.fees = 0
        for kind, mask in (("consumption", is_hh), ("investment", is_firm), ("government", ~is_hh & ~is_firm)):
            o.fees += int(pay_goods(w, kind, buyer[mask], seller[mask], p.amount[mask], rail[mask], bank[mask]).sum())
        w.h_spent = np.bincount(p.buyer[is_hh], weights=p.amount[is_hh], minlength=n).astype(np.int64)

    def _settle_token_trades(self) -> None:
        """Buyers pay sellers (an issuer sells newly minted tokens); then the holdings move."""
        w, o = self.world, self.outcome
        if not o.trade_legs:
            return
        tok, buyer, seller, shares, amount = o.trade_legs
        bt = np.full(buyer.size, int(Rail.BANK_TRANSFER))
        o.fees += int(pay_goods(w, "token_trade", buyer, seller, amount, bt, w.h_bank[buyer]).sum())
        np.add.at(w.holdings, (buyer, tok), shares)
        from_hh = seller < w.n_households
        np.subtract.at(w.holdings, (seller[from_hh], tok[from_hh]), shares[from_hh])
        np.add.at(w.t_outstanding, tok[~from_hh], shares[~from_hh])

    def _settle_capital_income_and_transfers(self, opening: NDArray[np.int64]) -> None:
        """Dividends of every issuer, deposit interest on opening balances, UBI."""
        w, o = self.world, self.outcome
        fm: FirmBatch = o.decisions["firm"]  # type: ignore[assignment]
        bk: BankBatch = o.decisions["bank"]  # type: ignore[assignment]
        nw: NetworkBatch = o.decisions["network"]  # type: ignore[assignment]
        o.dividends = pay_dividends(w, np.concatenate([fm.dividend, bk.dividend, nw.dividend]))
        o.interest = pay_deposit_interest(w, bk.deposit_rate, opening)
        o.ubi = pay_ubi(w, w.ubi_cents)

    def _update_stocks(self) -> None:
        """Stocks that follow from the round's flows: capital, inventory, households' net income."""
        w, s, o = self.world, self.scenario, self.outcome
        assert o.invest_qty is not None and o.output is not None
        assert o.wages is not None and o.dividends is not None and o.interest is not None and o.ubi is not None
        a = s.automation
        w.f_capital = w.f_capital * (1.0 - a.depreciation) + o.invest_qty / max(w.capital_price, 1e-12)
        w.f_inventory = w.f_inventory * (1.0 - s.roles.firm.inventory_decay)
        w.f_output = o.output
        capital_income = o.dividends + o.interest
        w.h_income = (
            (o.wages - np.floor(o.wages * w.income_tax)).astype(np.int64)
            + (capital_income - np.floor(capital_income * w.income_tax)).astype(np.int64)
            + o.ubi
        )

    def regulate(self) -> None:
        """The regulator's choices take effect from the next round."""
        w = self.world
        rg: RegulatorBatch = self.outcome.decisions["regulator"]  # type: ignore[assignment]
        w.income_tax = float(rg.income_tax[0])
        w.robot_tax = float(rg.robot_tax[0])
        w.ubi_cents = int(rg.ubi[0])
        w.card_fee_cap = float(rg.card_fee_cap[0])

    def advance(self) -> None:
        """Close the round: publish its price level and move the clock and the frontier on."""
        w, s = self.world, self.scenario
        p = self.outcome.purchases
        if p is not None and p.quantity.sum() > 0:
            w.price_index = float(p.amount.sum() / p.quantity.sum())
        w.round += 1
        w.phi = phi_at(s, w.round)
        w.capital_price *= 1.0 - s.automation.capital_price_decline
        w.rng_state = self.rng.bit_generator.state

    def step(self) -> RoundOutcome:
        """One round without the graph or recording (tests, benchmarks): the same phases in order."""
        self.observe()
        self.decide()
        self.clear()
        self.settle()
        self.regulate()
        outcome = self.outcome
        self.advance()
        return outcome

    def run(
        self,
        out: str | Path | None = None,
        *,
        rounds: int | None = None,
        overwrite: bool = False,
        on_round: Callable[[int, dict[str, Any]], None] | None = None,
        replay_from: str | Path | None = None,
    ) -> Path | None:
        """Run the remaining rounds through the LangGraph round graph; record to ``out`` if given.

        ``replay_from`` is a run directory whose recorded LLM answers are replayed (no network).
        Returns the run directory. A conservation failure stops the run: the tables so far are
        kept, the manifest says ``failed`` with the error, and the error is raised.
        """
        from tokenomy.recording import Recorder
        from tokenomy.rounds import RoundContext, run_rounds

        total = rounds if rounds is not None else self.scenario.rounds
        replay = Path(replay_from) / "llm-cache.sqlite" if replay_from is not None else None
        if replay is not None and not replay.is_file():
            raise LLMConfigError(f"{replay_from}: no recorded LLM answers to replay (llm-cache.sqlite missing)")
        if out is not None:
            RunWriter.check(Path(out), overwrite=overwrite)
        if self.llm is None:  # before the run directory exists: a missing key creates nothing
            self.attach_llm(replay=replay is not None)
        recorder = Recorder.open(self, Path(out), overwrite=overwrite) if out is not None else None
        if recorder is not None:
            self.open_llm_cache(recorder.path / "llm-cache.sqlite", replay_from=replay)
        elif replay is not None and self.llm is not None:
            self.llm.decider.cache = AnswerCache(replay, read_only=True)
        try:
            run_rounds(RoundContext(self, recorder, on_round), first=self.world.round, last=self.world.round + total)
        except BaseException as exc:
            if recorder is not None:
                recorder.close("failed", self, error=redact(f"{type(exc).__name__}: {exc}"))
            raise
        finally:  # the cache belongs to this run's directory: close it and detach it
            if self.llm is not None and self.llm.decider.cache is not None:
                self.llm.decider.cache.close()
                self.llm.decider.cache = None
        if recorder is not None:
            recorder.close("finished", self)
            return recorder.path
        return None

    # -- markets --------------------------------------------------------------------------------
    def _clear_labour(self, target: NDArray[np.int64], reservation: NDArray[np.float64]) -> None:
        w, o = self.world, self.outcome
        w.h_reservation = reservation
        workers = w.workers()
        excess = np.maximum(workers - target, 0)
        fired = np.zeros(w.n_households, dtype=bool)
        if excess.any():
            emp = np.flatnonzero(w.h_employer >= 0)
            firm = w.h_employer[emp]
            order = np.lexsort((self.rng.random(emp.size), firm))
            fs = firm[order]
            rank = np.arange(fs.size) - np.searchsorted(fs, fs, side="left")
            out = emp[order[rank < excess[fs]]]
            w.h_employer[out] = -1
            fired[out] = True
        o.fired = int(fired.sum())
        vacancies = np.maximum(target - w.workers(), 0)
        seekers = np.flatnonzero((w.h_employer < 0) & ~fired)
        new = match_labour(
            self.rng, w.h_reservation[seekers], vacancies, w.f_wage, self.scenario.roles.household.job_applications
        )
        got = new >= 0
        w.h_employer[seekers[got]] = new[got]
        o.hired = int(got.sum())
        w.f_unfilled = vacancies - np.bincount(new[got], minlength=w.n_firms)
        w.h_unemployed_rounds = np.where(w.h_employer >= 0, 0, w.h_unemployed_rounds + 1)
        emp = w.h_employer >= 0
        w.h_reservation = np.where(emp, w.f_wage[np.maximum(w.h_employer, 0)], w.h_reservation)

    def _clear_tokens(self, hh: HouseholdBatch, fm: FirmBatch) -> None:
        """One call auction per token: household bids and asks, plus issuers' new tokens."""
        w, o = self.world, self.outcome
        bid_qty_all = np.where(
            hh.token_buy >= 0, np.floor(hh.token_buy_budget / np.maximum(hh.token_buy_limit, 1e-9)), 0
        ).astype(np.int64)
        bidders = np.flatnonzero(bid_qty_all > 0)
        askers = np.flatnonzero(hh.token_sell_shares > 0)
        issuers = np.flatnonzero(fm.issue_shares > 0)
        b_tok, b_qty, b_px, b_acct = hh.token_buy[bidders], bid_qty_all[bidders], hh.token_buy_limit[bidders], bidders
        half = self.scenario.roles.household.bid_spread / 2
        a_tok = np.concatenate([hh.token_sell[askers], issuers])
        a_qty = np.concatenate([hh.token_sell_shares[askers], fm.issue_shares[issuers]])
        a_px = np.concatenate([hh.token_sell_limit[askers], w.t_price[issuers] * (1 - half)])
        a_acct = np.concatenate([askers, w.layout.firm0 + issuers])
        legs: list[tuple[NDArray[np.int64], ...]] = []
        for j in np.intersect1d(b_tok, a_tok):
            bi, ai = np.flatnonzero(b_tok == j), np.flatnonzero(a_tok == j)
            res = call_auction(b_px[bi], b_qty[bi], a_px[ai], a_qty[ai], float(w.t_price[j]))
            if res.volume == 0:
                continue
            pb, pa, q = pair_fills(res.bid_fill, res.ask_fill)
            amount = np.floor(q * res.price).astype(np.int64)
            legs.append((np.full(q.size, j), b_acct[bi][pb], a_acct[ai][pa], q, amount))
            w.t_price[j] = res.price
            o.trades.append({"token": int(j), "price": res.price, "volume": res.volume, "value": int(amount.sum())})
        if legs:
            o.trade_legs = tuple(np.concatenate(c).astype(np.int64) for c in zip(*legs, strict=True))
