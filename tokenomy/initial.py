"""Build the round-0 World from a Scenario.

The starting point is calibrated rather than arbitrary: each firm starts at Korinek & Suh's
baseline (capital per worker ``K0``, automatable share ``phi0``), prices are set so the wage equals
the marginal revenue product of labour (labour share 0.657 at their calibration), and, unless the
scenario fixes it, the price of automation capital makes the initial capital per worker
cost-minimising. Tokens start concentrated: ``owner_share`` of households hold every token, with
Pareto-distributed weights.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tokenomy import registry
from tokenomy.agents.bank import config as bank_config
from tokenomy.agents.bank import rates as bank_rates
from tokenomy.agents.central_bank import config as central_bank_config
from tokenomy.agents.firm import config as firm_config
from tokenomy.agents.household import config as household_config
from tokenomy.agents.household import hand_to_mouth
from tokenomy.agents.network import config as network_config
from tokenomy.agents.regulator import config as regulator_config
from tokenomy.market import production
from tokenomy.market.clearing import pro_rata
from tokenomy.market.ledger import Ledger
from tokenomy.market.rails import Rail
from tokenomy.scenario import Scenario, ScenarioError
from tokenomy.world import World

__all__ = ["available_memory", "build_world", "calibrated_capital_price", "check_scale", "phi_at"]


def phi_at(scenario: Scenario, round_no: int) -> float:
    """The automatable share of tasks in a round, from the automation schedule."""
    a = scenario.automation
    t = round_no - a.start
    if a.schedule == "constant" or t <= 0:
        return a.phi0
    if a.schedule == "linear":
        return float(min(a.phi_end, a.phi0 + (a.phi_end - a.phi0) * t / a.ramp_rounds))
    return float(a.phi_end - (a.phi_end - a.phi0) * (1.0 - a.rate) ** t)


def calibrated_capital_price(scenario: Scenario) -> float:
    """Goods per unit of capital at which the initial capital per worker is cost-minimising."""
    a, p = scenario.automation, scenario.production
    if a.capital_price0 is not None:
        return a.capital_price0
    k0 = scenario.initial.capital_per_worker
    if k0 <= 0:
        return 8.0
    mpk, _ = production.marginal_products(k0, 1.0, a.phi0, p.A, p.sigma)
    return float(mpk) / (a.depreciation + initial_loan_rate(scenario))


def initial_loan_rate(scenario: Scenario) -> float:
    """The base loan rate per round at round 0: priced off the central bank's opening rate."""
    return bank_rates(central_bank_config(scenario).policy_rate, bank_config(scenario))[1]


RUN_MEMORY_FACTOR = 5
"""A run's peak memory over its world's arrays: a round's observations, decision batches, postings and
recorded tables come to 5.3x the world at 100,000 households without recording, 6.6x with (measured);
the lower figure, so that only a run that surely cannot fit is refused."""

MAX_OPENING_CENTS = 2**63 // 1024
"""The opening stocks (and a run's UBI) may come to this many cents at most: the ledger counts int64
cents, and money grows over a run and is summed over the population, so three orders of magnitude
are kept free."""
MAX_DEPOSIT_ROUNDS = 600.0
"""The most rounds of pay a household opens with: with no wealth effect and no inflation the steady
state is unbounded."""


def available_memory() -> int | None:
    """Bytes this process may still allocate: the least of what the kernel reports available, the
    container's limit (cgroup v2) and the address-space limit (``ulimit -v``); None when unknown."""
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        try:
            found.append(soft - int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError, IndexError):
            found.append(soft)
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError):
            return None
    return max(0, min(found))


def _bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError  # unreachable: the loop returns at TiB


def check_scale(scenario: Scenario) -> None:
    """Refuse, before anything is allocated, a population too large for the memory available, or
    money too large for the ledger's int64 cents (otherwise: a MemoryError after gigabytes, or
    balances that wrap around mid-run).

    Raises:
        ScenarioError: naming the fields, the estimate and the limit.
    """
    s, ini = scenario, scenario.initial
    layout = registry.layout_for(s)
    tokens = sum(layout.count(spec.name) for spec in registry.roles() if spec.issues is not None)
    holders = sum(layout.count(spec.name) for spec in registry.roles() if spec.holds_tokens)
    size = {"accounts": layout.n_accounts, "households": s.households, "firms": s.firms, "banks": s.banks}
    world = World.estimated_nbytes(**size, tokens=tokens, holders=holders)
    bigger = {**size, "accounts": layout.n_accounts + 1, "households": s.households + 1}
    one_more = World.estimated_nbytes(**bigger, tokens=tokens, holders=holders + 1)
    need, have = RUN_MEMORY_FACTOR * world, available_memory()
    if have is not None and need > have:
        raise ScenarioError(
            f"households = {s.households:,}, firms = {s.firms:,}, banks = {s.banks:,}: a run needs about {_bytes(need)}"
            f" of memory (the world's arrays {_bytes(world)}, {one_more - world:,} bytes a household with {tokens:,}"
            f" tokens, and ~{RUN_MEMORY_FACTOR}x that while a round runs), more than the {_bytes(have)} available;"
            " lower households or firms"
        )
    wage = ini.wage * 100.0
    _, mpl = production.marginal_products(ini.capital_per_worker, 1.0, phi_at(s, 0), s.production.A, s.production.sigma)
    price0 = wage / float(mpl) if float(mpl) > 0 else 0.0
    leverage = 1.0 + bank_config(s).max_leverage  # the capital's value, and the loans it may carry
    capital = s.households * ini.capital_per_worker * calibrated_capital_price(s) * price0 * leverage
    stocks = {
        "households x initial.household_deposits": s.households * opening_deposits(s) * 100.0,
        "households x initial.wage x initial.firm_cash_rounds": s.households * wage * max(ini.firm_cash_rounds, 1.0),
        "banks x initial.bank_capital": s.banks * ini.bank_capital * 100.0,
        "households x roles.regulator.ubi x rounds": s.households * regulator_config(s).ubi * 100.0 * s.rounds,
        "the capital stock's value and loans (initial.capital_per_worker, automation.capital_price0, initial.wage,"
        " production.A, production.sigma, roles.bank.max_leverage)": capital,
    }
    # the largest term, a nan or inf first (the parameters' products overflow)
    what, cents = max(stocks.items(), key=lambda kv: (not np.isfinite(kv[1]), kv[1]))
    if not sum(stocks.values()) <= MAX_OPENING_CENTS:  # written so that a nan is refused too
        raise ScenarioError(
            f"{what}: about {cents:.2g} cents, more than the {MAX_OPENING_CENTS:.2g} the ledger's int64 cents can"
            " hold with room for a run to grow; lower them"
        )


def steady_deposit_rounds(scenario: Scenario) -> float:
    """Rounds of net pay a household holds where its consumption rule is at rest: it saves
    ``1 - mpc_income`` of its income and spends ``mpc_wealth`` of its wealth, which inflation at
    the central bank's target also erodes, so wealth settles at ``(1 - mpc_income) / (mpc_wealth +
    inflation a round)`` rounds of income (26.5 at the defaults; the SCF's median household holds
    about 2.5 years of income). Opening with that, not a few rounds' pay, is what Caiani et al.
    2016 do (stocks start at the model's steady state): an economy that opens far from it spends
    hundreds of rounds filling its households' deposits, and its wealth Gini falls all the while."""
    p = household_config(scenario)
    inflation = (1.0 + central_bank_config(scenario).inflation_target) ** (1 / 12) - 1.0
    rate = p.mpc_wealth + inflation
    return min((1.0 - p.mpc_income) / rate, MAX_DEPOSIT_ROUNDS) if rate > 0 else MAX_DEPOSIT_ROUNDS


def opening_deposits(scenario: Scenario) -> float:
    """``initial.household_deposits``, or with ``initial.deposits = "steady"`` the mean at the households' steady state
    (:func:`steady_deposit_rounds` rounds of the opening wage net of income tax), currency units."""
    ini = scenario.initial
    if ini.deposits == "mean":
        return ini.household_deposits
    net = ini.wage * (1.0 - regulator_config(scenario).income_tax)
    return steady_deposit_rounds(scenario) * net


def household_skills(dispersion: float, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """Each household's skill: a permanent lognormal draw, scaled to mean exactly 1 so that an
    efficiency unit is the average worker (wage offers and labour demand keep their meaning).

    Permanent ability is the simplest margin the benchmark models with heterogeneous workers have
    (Dosi et al. 2017 add learning on the job); without it every worker earned the same wage to
    0.5% (measured: the wage Gini among the employed was 0.004), and the income Gini was 0.2.
    No draw with ``dispersion = 0``, so the random stream is what it was without skills.
    """
    if dispersion <= 0:
        return np.ones(n)
    s = rng.lognormal(0.0, dispersion, n)
    out: NDArray[np.float64] = s / s.mean()
    return out


def build_world(scenario: Scenario, rng: np.random.Generator) -> World:
    check_scale(scenario)  # before the first array: a MemoryError after gigabytes helps nobody
    s, ini, prod = scenario, scenario.initial, scenario.production
    layout = registry.layout_for(s)
    n, m, nb = s.households, s.firms, s.banks
    phi0 = phi_at(s, 0)
    k0 = ini.capital_per_worker
    wage0 = ini.wage * 100.0

    # employment: a random share of households, spread evenly across firms
    employer = np.full(n, -1, dtype=np.int64)
    hired = rng.permutation(n)[: round(ini.employment_rate * n)]
    employer[hired] = np.arange(hired.size) % m
    skill = household_skills(household_config(s).skill_dispersion, n, rng)
    L = np.bincount(employer[employer >= 0], weights=skill[employer >= 0], minlength=m).astype(np.float64)
    K = k0 * np.maximum(L, 1.0)
    _, mpl = production.marginal_products(k0, 1.0, phi0, prod.A, prod.sigma)
    price0 = wage0 / float(mpl)
    price = price0 * (1.0 + 0.02 * (rng.random(m) - 0.5))
    out = np.asarray(production.output(K, L, phi0, prod.A, prod.sigma), dtype=np.float64)
    cap_price = calibrated_capital_price(s)
    cash_flow0 = price * out - L * wage0  # as if last round had sold the opening output at cost of its wages
    profit0 = cash_flow0 - s.automation.depreciation * K * cap_price * price0  # no stock built yet

    # balances
    ledger = Ledger.open(layout.n_accounts)
    # at the steady state in proportion to skill (it is a number of rounds of each one's pay)
    scale = skill if ini.deposits == "steady" else 1.0
    h_bal = np.floor(opening_deposits(s) * 100 * scale * rng.lognormal(-0.125, 0.5, n)).astype(np.int64)
    hp = household_config(s)
    if ini.deposits == "steady" and hp.hand_to_mouth > 0:  # they keep their pay cycle, no more
        htm = hand_to_mouth(n, hp.hand_to_mouth)
        net = wage0 * (1 - regulator_config(s).income_tax) * skill
        h_bal[htm] = np.floor(hp.hand_to_mouth_buffer * net[htm]).astype(np.int64)
    ledger.balance[:n] = h_bal
    firms = layout.block("firm")
    ledger.balance[firms.start : firms.stop] = np.floor(ini.firm_cash_rounds * L * wage0).astype(np.int64)
    # banks hold no money: they owe the deposits. Their own funds are a net-worth register; the
    # opening money (and the reserves behind the banks' capital) is backed by the state's debt to
    # the central bank, so every cent has a counterpart from round 0 (tokenomy.accounts).
    ledger.set_issuers(np.concatenate([layout.accounts(r) for r in ("bank", "central_bank") if r in layout.roles]))
    b_equity = np.full(nb, round(ini.bank_capital * 100), dtype=np.int64)
    # loans that financed the opening plant: the money they created long ago is in the deposits,
    # so they, not the state's debt, are that much of its counterpart
    f_loan = np.floor(ini.firm_leverage * K * cap_price * price0).astype(np.int64)
    cb_advances = ledger.money_supply + int(b_equity.sum()) - int(f_loan.sum())
    if cb_advances < 0:
        raise ScenarioError(
            f"initial.firm_leverage: the firms' opening loans ({f_loan.sum() / 100:,.0f}) exceed the money and bank"
            f" capital they would have created ({(cb_advances + f_loan.sum()) / 100:,.0f}); lower it, or open"
            ' households at their steady state (initial.deposits = "steady")'
        )

    # tokens: one per agent of every issuing role, in layout order; held by a few households
    issuers = [spec for spec in registry.roles() if spec.issues is not None]
    t_issuer = np.concatenate([layout.accounts(spec.name) for spec in issuers] or [np.empty(0, np.int64)])
    kinds = registry.asset_kinds()
    t_kind = np.concatenate(
        [np.full(layout.count(spec.name), kinds.index(str(spec.issues)), np.int64) for spec in issuers]
        or [np.empty(0, np.int64)]
    )
    T = t_issuer.size
    outstanding = np.full(T, ini.shares_per_issuer, dtype=np.int64)
    holder_accounts = np.concatenate(
        [layout.accounts(spec.name) for spec in registry.roles() if spec.holds_tokens] or [np.empty(0, np.int64)]
    )
    owners = rng.permutation(n)[: max(1, round(ini.owner_share * n))]  # households' holdings rows
    owners = np.searchsorted(holder_accounts, owners)
    weight = rng.pareto(ini.ownership_pareto, owners.size) + 1.0
    holdings = np.zeros((holder_accounts.size, T), dtype=np.int64)
    for j in range(T):
        holdings[owners, j] = pro_rata(int(outstanding[j]), weight)
    card_revenue = network_config(s).card_fee * s.rails.card_adoption * n * ini.wage * 100 * 0.8
    value: dict[str, NDArray[np.float64]] = {  # each issuer's value at round 0, cents
        "firm": K * cap_price * price0 + ledger.balance[firms.start : firms.stop] - f_loan,
        "bank": np.full(nb, ini.bank_capital * 100),
        "network": np.array([max(card_revenue, 1.0) * 50, max(card_revenue * 0.05, 1.0) * 50]),
    }
    t_price = (
        np.concatenate([value.get(spec.name, np.ones(layout.count(spec.name))) for spec in issuers] or [np.empty(0)])
        / outstanding
    )
    extra: dict[str, NDArray[Any]] = {}
    for spec in registry.roles():
        if spec.columns is not None:
            extra |= {f"{spec.name}.{k}": v for k, v in spec.columns(s, layout.count(spec.name)).items()}

    u = rng.random(n)
    chain_ok = s.rails.chain_enabled
    rail = np.where(
        u < s.rails.card_adoption,
        Rail.CARD,
        np.where(chain_ok & (u < s.rails.card_adoption + s.rails.chain_adoption), Rail.CHAIN, Rail.BANK_TRANSFER),
    ).astype(np.int8)

    reg = regulator_config(s)
    tax = reg.income_tax
    return World(
        layout=layout,
        ledger=ledger,
        round=0,
        h_bank=rng.integers(0, nb, n).astype(np.int64),
        h_employer=employer,
        h_reservation=np.full(n, wage0),
        h_unemployed_rounds=np.where(employer >= 0, 0, 1).astype(np.int64),
        h_rail=rail,
        h_skill=skill,
        h_income=np.where(employer >= 0, np.floor(wage0 * skill * (1 - tax)), 0).astype(np.int64),
        h_spent=np.zeros(n, dtype=np.int64),
        f_price=price,
        f_wage=np.full(m, wage0),
        f_capital=K,
        f_inventory=firm_config(s).inventory_target * out,  # the buffer stock firms aim for: a steady start
        f_sales=out.copy(),
        f_unmet=np.zeros(m),
        f_unfilled=np.zeros(m, dtype=np.int64),
        f_vacancies=np.zeros(m, dtype=np.int64),
        f_expected=out.copy(),
        f_bad_rounds=np.zeros(m, dtype=np.int64),
        # markup over unit labour cost: K&S prices at marginal cost give 1 / labour share - 1 (~0.52)
        f_markup=np.maximum(price * out / np.maximum(L * wage0, 1.0) - 1.0, 0.0),
        f_output=out.copy(),
        f_cash_flow=cash_flow0,
        f_profit=profit0,
        f_profit_smoothed=profit0.copy(),
        f_age=np.zeros(m, dtype=np.int64),
        f_loan=f_loan,
        f_loan_bank=(np.arange(m) % nb).astype(np.int64),
        f_loan_rate=np.full(m, initial_loan_rate(s)),
        b_equity=b_equity,
        b_profit=np.zeros(nb, dtype=np.int64),
        cb_advances=cb_advances,
        policy_rate=central_bank_config(s).policy_rate,
        inflation_target=central_bank_config(s).inflation_target,
        price_history=np.full(12, price0),  # as if prices had been flat for a year: no spurious early inflation
        output_trend=float(out.sum()),
        t_issuer=t_issuer.astype(np.int64),
        t_kind=t_kind.astype(np.int64),
        t_price=t_price,
        t_outstanding=outstanding,
        holder_accounts=holder_accounts.astype(np.int64),
        holdings=holdings,
        card_fee=min(network_config(s).card_fee, reg.card_fee_cap),
        chain_fee=s.rails.chain_fee,
        bank_transfer_fee=s.rails.bank_transfer_fee,
        chain_enabled=chain_ok,
        income_tax=tax,
        robot_tax=reg.robot_tax,
        ubi_cents=round(reg.ubi * 100) if reg.ubi_start == 0 else 0,
        ubi_money_financed=reg.ubi_financing == "money",
        card_fee_cap=reg.card_fee_cap,
        phi=phi0,
        capital_price=cap_price,
        price_index=price0,
        extra=extra,
    )
