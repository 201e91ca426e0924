"""Scenarios: frozen pydantic models loaded from TOML, with ``--set`` overrides.

Every parameter of the economy lives here, with its unit and why it has its default; nothing is
a constant in code. ``extra="forbid"`` everywhere, so a typo is an error naming the field rather
than a silently ignored key. Money is given in currency units (floats) and converted to integer
cents by the engine.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

__all__ = [
    "RoleConfig",
    "Roles",
    "Scenario",
    "ScenarioError",
    "add_role_section",
    "apply_overrides",
    "bundled_scenarios",
    "dotted",
    "load_scenario",
    "remove_role_section",
    "resolve_scenario_path",
    "scenario_from_data",
]


MAX_MONEY = 1e12
"""The largest amount a money field may hold, currency units: 10^14 cents, so the engine's int64 cents
keep room for sums over a population (the opening stock as a whole is checked by
``tokenomy.initial.check_scale``)."""


class _Model(BaseModel):
    # strict: ``households = true`` or ``wage = "2000"`` is a type error, not 1 household or a silent
    # conversion (an int is still a valid float); no inf or nan: the engine counts integer cents
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Production(_Model):
    """Korinek & Suh task-based production (their baseline calibration)."""

    A: float = Field(0.5, gt=0, le=1e6, description="total factor productivity (goods per unit input per round)")
    sigma: float = Field(
        0.5, ge=0.05, lt=1, description="elasticity of substitution between tasks (below 0.05 the CES terms underflow)"
    )


class Automation(_Model):
    """How the automatable share of tasks ``phi`` and the price of automation capital move."""

    schedule: Literal["constant", "linear", "exponential"] = "constant"
    phi0: float = Field(0.608, ge=0, le=1, description="automatable share at round 0 (K&S: 0.608)")
    phi_end: float = Field(1.0, ge=0, le=1, description="where the ramp ends (linear) or tends (exponential)")
    start: int = Field(0, ge=0, description="round at which the ramp begins")
    ramp_rounds: int = Field(100, ge=1, description="linear: rounds to go from phi0 to phi_end")
    rate: float = Field(0.05, gt=0, le=1, description="exponential: share of the remaining gap closed per round")
    capital_price0: float | None = Field(
        None,
        gt=0,
        le=1e9,
        description="goods per unit of automation capital at round 0; None = calibrated so "
        "the initial capital per worker is cost-minimising",
    )
    capital_price_decline: float = Field(0.0, ge=0, lt=1, description="fraction the capital price falls per round")
    depreciation: float = Field(0.01, ge=0, le=1, description="share of capital worn out per round")
    adjustment: float = Field(
        0.0237,
        gt=0,
        le=1,
        description="share of the gap to desired capital a firm closes per round (Roberts 2003: about a quarter a"
        " year, 1 - 0.75^(1/12) a month)",
    )

    @model_validator(mode="after")
    def _order(self) -> Automation:
        if self.schedule != "constant" and self.phi_end < self.phi0:
            raise ValueError("phi_end must be >= phi0 (automation does not reverse)")
        return self


class Initial(_Model):
    """The economy at round 0."""

    employment_rate: float = Field(0.95, ge=0, le=1)
    wage: float = Field(2000.0, ge=0.01, le=MAX_MONEY, description="wage per worker per round, currency units")
    household_deposits: float = Field(4000.0, ge=0, le=MAX_MONEY, description="mean household deposit")
    deposits: Literal["mean", "steady"] = Field(
        "steady",
        description='"mean": households open with household_deposits on average; "steady": at their rule\'s steady'
        " state instead, (1 - mpc_income) / (mpc_wealth + inflation target a round) rounds of each one's net pay"
        " (tokenomy.initial.steady_deposit_rounds)",
    )
    @model_validator(mode="after")
    def _deposits_rule(self) -> Initial:
        # a value other than the default (manifests store every field, so being set is not enough)
        default = type(self).model_fields["household_deposits"].default
        if self.deposits == "steady" and self.household_deposits != default:
            raise ValueError(
                'household_deposits applies only with deposits = "mean"; the default, "steady", opens each'
                " household at its consumption rule's steady state"
            )
        return self

    capital_per_worker: float = Field(4.6, ge=0, le=1e6, description="K&S K0 = 4.6 with L = 1")
    firm_cash_rounds: float = Field(3.0, ge=0, le=1000, description="firm deposits as rounds of its wage bill")
    firm_leverage: float = Field(
        0.1,
        ge=0,
        le=0.9,
        description="firms' opening loans as a share of their capital's value (0: none): 0.1 is about where"
        " baseline's loans settle (Caiani et al. 2016 open at the steady state); US nonfinancial corporations"
        " owe about 30% of their assets (Federal Reserve Financial Accounts, Z.1), bonds included",
    )
    bank_capital: float = Field(1_000_000.0, ge=0, le=MAX_MONEY, description="each bank's own funds")
    owner_share: float = Field(0.1, gt=0, le=1, description="share of households that own all tokens at start")
    ownership_pareto: float = Field(
        1.5, ge=0.1, le=1000, description="Pareto tail of holdings among owners (lower = more concentrated)"
    )
    shares_per_issuer: int = Field(1_000_000, ge=1, le=10**12)


class RoleConfig(_Model):
    """What every role's ``[roles.<name>]`` section shares: where its decisions come from, and
    what its prompt says. A role's own rule parameters are fields of its subclass."""

    policy: Literal["heuristic", "llm"] = Field("heuristic", description="who decides: the rules or an LLM")
    llm_share: float = Field(1.0, ge=0, le=1, description="with policy = llm: share of agents the LLM drives")
    prompt: str | None = Field(None, description="path to a prompt template replacing the bundled one")
    persona: str = Field("", description="text for ${persona} in the prompt")
    personas: list[str] = Field(default_factory=list, description="per-archetype personas, cycled over archetypes")
    policy_text: str = Field("", description="text for ${policy_text} in the prompt (a mandate, a rule)")

    def archetype_count(self) -> int:
        """LLM calls that decide for a whole group of this role's agents (0 = one call per agent)."""
        return 0


class Household(RoleConfig):
    """Rule-based household: consumption, job search, saving, investing, rail choice."""

    mpc_income: float = Field(0.85, ge=0, le=1, description="propensity to consume out of disposable income")
    mpc_wealth: float = Field(
        0.004, ge=0, le=1, description="propensity to consume out of wealth per round (empirical: 0.003-0.005 a month)"
    )
    mpc_token_wealth: float | None = Field(
        0.0025,
        ge=0,
        le=1,
        description="propensity to consume out of token wealth per round (None: mpc_wealth); stock-market"
        " wealth is spent from at about 3 cents a dollar a year (Di Maggio, Kermani & Majlesi 2020), 0.0025 a month",
    )
    hand_to_mouth: float = Field(
        0.0, ge=0, le=1,
        description="share of households that hold no liquid wealth beyond hand_to_mouth_buffer rounds of pay and"
        " spend the rest of it with all their income (about a third in the US: Kaplan, Violante & Weidner 2014)",
    )
    hand_to_mouth_buffer: float = Field(
        1.0, ge=0, le=100, description="rounds of net income a hand-to-mouth household keeps (its pay cycle)"
    )
    mpc_income_rich: float = Field(0.4, ge=0, le=1, description="income propensity of the wealthiest households")
    rich_wealth_multiple: float = Field(20.0, gt=1, description="wealth (x median) at which mpc_income_rich applies")
    subsistence: float = Field(600.0, ge=0, le=MAX_MONEY, description="spending floor per round while money lasts")
    search_firms: int = Field(3, ge=1, le=20, description="sellers sampled per round (Z)")
    job_applications: int = Field(4, ge=1, le=20, description="applications per job seeker (M)")
    separation_rate: float = Field(
        0.015, ge=0, le=1, description="quits and retirements per round, share of the employed (JOLTS quits ~2%/month)"
    )
    skill_dispersion: float = Field(
        0.5,
        ge=0,
        le=3,
        description="standard deviation of log skill, a permanent draw (wages are paid per efficiency unit):"
        " the permanent component of US log earnings, variance about 0.25 (Storesletten, Telmer & Yaron 2004)",
    )
    on_the_job_search: float = Field(0.05, ge=0, le=1, description="share of the employed looking for a better job")
    job_switch_premium: float = Field(0.02, ge=0, le=1, description="pay rise an on-the-job seeker asks to move")
    reservation_decay: float = Field(0.05, ge=0, lt=1, description="reservation wage cut per round unemployed")
    min_reservation_wage: float = Field(0.0, ge=0, le=MAX_MONEY)
    invest_threshold: float = Field(6.0, ge=0, description="deposits above this many rounds of spending are invested")
    invest_share: float = Field(0.2, ge=0, le=1, description="share of the excess put into tokens per round")
    turnover: float = Field(0.02, ge=0, le=1, description="chance a holder sells part of a position per round")
    bid_spread: float = Field(
        0.02, ge=0, le=0.5, description="limit prices spread up to this far from the reference price"
    )
    portfolio_positions: int = Field(
        4,
        ge=0,
        le=1_000_000,
        description="a household holding this many different tokens adds to one of them instead of buying a new"
        " one (0: no limit); households hold few stocks, 4.3 on average (Barber & Odean 2000)",
    )
    value_anchor: float = Field(
        0.05,
        ge=0,
        le=1,
        description="share of the gap between a token's last price and its issuer's book value per share that"
        " the reference price closes each round: prices revert to fundamentals with a half-life of about 3 years"
        " (Poterba & Summers 1988), 1 - 0.5^(1/36) = 0.019 a month; 0.05 (the default) halves it in 13.5 months;"
        " 0 trades at the last price alone",
    )
    archetypes: int = Field(
        0, ge=0, le=4096, description="with policy = llm: group households into this many archetypes, one call each"
    )

    def archetype_count(self) -> int:
        return self.archetypes


class Firm(RoleConfig):
    """Rule-based firm (Delli Gatti et al. price/quantity rule, K&S input choice)."""

    eta_price: float = Field(
        0.032, ge=0, le=0.5, description="max price change per round (Delli Gatti's 0.1 a quarter, monthly)"
    )
    eta_output: float = Field(
        0.032, ge=0, le=1, description="max planned-output change per round (0.1 a quarter, monthly)"
    )
    eta_wage: float = Field(
        0.0164,
        ge=0,
        le=0.5,
        description="max wage-offer change per round (Delli Gatti et al. 2011: 0.05 a quarter, 1.05^(1/3) - 1)",
    )
    pricing: Literal["price_or_quantity", "markup"] = Field(
        "price_or_quantity",
        description="Delli Gatti's price-or-quantity rule, or Caiani's adaptive markup on unit cost",
    )
    eta_markup: float = Field(0.032, ge=0, le=1, description="markup pricing: max markup change per round")
    production: Literal["capacity", "planned"] = Field(
        "capacity", description="make all the workforce and capital can, or the planned output up to that"
    )
    wage_rule: Literal["rigid", "vacancies", "tightness"] = Field(
        "rigid",
        description="wages rise with the firm's unfilled vacancies and never fall (Delli Gatti et al., as"
        " published), also fall with slack (vacancies), or follow the vacancy/unemployment ratio (tightness)",
    )
    unemployment_norm: float = Field(
        0.08, gt=0, le=1, description="vacancies rule: unemployment at which wage offers fall fastest"
    )
    tightness_norm: float = Field(
        1.0, gt=0, description="vacancies per unemployed worker at which wage offers hold still on average"
    )
    min_wage: float = Field(
        0.0, ge=0, le=MAX_MONEY, description="lowest wage a firm may offer, per round, currency units"
    )
    inventory_target: float = Field(0.1, ge=0, description="buffer stock as a share of expected sales")
    investment_rule: Literal["gap", "utilisation"] = Field(
        "gap",
        description="close automation.adjustment of the gap to the capital expected sales need each round, or"
        " grow capital with expected utilisation against a target (Caiani et al. 2016)",
    )
    utilisation_target: float = Field(
        0.8, gt=0, le=1, description="utilisation rule: expected sales over capacity a firm aims at (Caiani: 0.8)"
    )
    investment_sensitivity: float = Field(
        0.0066,
        ge=0,
        le=1,
        description="utilisation rule: capital growth per round per unit of relative"
        " utilisation gap (Caiani et al. 2016: 0.02 a quarter)",
    )
    max_fire_share: float = Field(0.1, ge=0, le=1, description="largest share of its workers a firm lets go per round")
    hire_to_marginal_product: bool = Field(
        True, description="hire no worker whose marginal product is worth less than her wage (K&S labour demand)"
    )
    inventory_decay: float = Field(0.05, ge=0, le=1, description="share of unsold stock lost per round")
    payout_ratio: float = Field(
        0.03,
        ge=0,
        le=1,
        description="share of the cash beyond needs and buffer paid as dividends per round"
        " (Lintner 1956's speed of adjustment, ~0.3 a year, monthly)",
    )
    cash_buffer_rounds: float = Field(1.0, ge=0, description="wage bills kept in cash before paying dividends")
    dividend_rule: Literal["cash", "profit"] = Field(
        "profit",
        description="pay payout_ratio of the cash beyond needs and buffer, or profit_payout of the recent profit"
        " (Caiani et al. 2016), from that cash",
    )
    profit_payout: float = Field(
        0.9, ge=0, le=1, description="dividend_rule = profit: share of a positive profit paid out (Caiani et al.: 0.9)"
    )
    profit_smoothing: float = Field(
        3.0,
        ge=1,
        description="dividend_rule = profit: rounds over which profit is averaged (exponentially) before the payout;"
        " Caiani et al. pay on a quarter's profit, three monthly rounds (1: last round's alone)",
    )
    leverage_target: float = Field(
        0.5, ge=0, description="no dividend while loans exceed this multiple of the capital's value"
    )
    equity_issuance: bool = Field(True, description="may sell new tokens to fund investment")
    exit_and_entry: bool = Field(True, description="failed firms exit and entrants replace them one for one")
    exit_after_defaults: int = Field(3, ge=1, description="rounds running in default after which a firm exits")
    exit_share: float = Field(
        1e-5, ge=0, le=1,
        description="a firm older than exit_grace rounds that sold less than this share of the round's goods exits"
        " (Dosi et al. 2010's near-zero market share; 1e-5 in the LSD implementation of K+S); 0: never",
    )
    exit_grace: int = Field(12, ge=0, description="rounds an entrant is spared the exit_share test")
    exit_on_illiquidity: bool = Field(
        True,
        description="a firm whose cash and new credit cannot pay its debt service and the staff it may not lay off"
        " this round (all but max_fire_share) exits (Caiani et al. 2016; Dosi et al. 2010)",
    )
    exit_scrap: float = Field(0.5, ge=0, le=1, description="share of an exiting firm's capital scrapped")
    exit_recovery: float = Field(
        0.5, ge=0, le=1,
        description="share of the value of the plant an entrant takes over that households pay the exiting firm's"
        " bank for, up to the unpaid loan (Caiani et al. 2016's fire sale: 0.5); 0: the plant passes without proceeds",
    )
    entry_equity_rounds: float = Field(
        3.0, ge=0, le=1000, description="an entrant raises this many median wage bills of equity from households"
    )
    entry_capital: float = Field(
        0.5, ge=0, le=10,
        description="an entrant also raises what tops the plant it takes over up to this share of the incumbents'"
        " mean capital, at replacement cost, and invests it (Dosi et al. 2010: a random 0.1-0.9, mean 0.5)",
    )
    max_issue_share: float = Field(0.02, ge=0, le=1, description="new tokens per round, share of outstanding")


class Bank(RoleConfig):
    """Rule-based bank: rates priced off the central bank's, lending within a capital ratio."""

    rates: Literal["policy", "fixed"] = Field(
        "policy", description="price loans and deposits off the policy rate, or keep the fixed rates below"
    )
    loan_markup: float = Field(0.002, ge=0, le=0.1, description="base loan rate over the policy rate, per round")
    deposit_markdown: float = Field(0.002, ge=0, le=0.1, description="deposit rate under the policy rate, per round")
    deposit_rate: float = Field(0.001, ge=0, le=0.1, description="with rates = fixed: interest per round on deposits")
    loan_rate: float = Field(0.005, ge=0, le=0.5, description="with rates = fixed: base loan interest per round")
    loan_spread: float = Field(0.002, ge=0, le=0.5, description="added per round per unit of borrower leverage")
    capital_ratio: float = Field(0.08, gt=0, le=1, description="own funds / loans a bank must keep")
    max_leverage: float = Field(2.0, ge=0, le=100, description="debt a firm may carry per unit of its capital value")
    amortization: float = Field(0.02, ge=0, le=1, description="share of principal repaid per round")
    payout_ratio: float = Field(0.5, ge=0, le=1, description="share of last round's profit paid as dividends")
    credit_rule: Literal["leverage", "expected_return"] = Field(
        "expected_return",
        description="lend any request within max_leverage, or only what is expected to pay (Caiani et al. 2016:"
        " default probability from cash flow over debt service, recovery from collateral)",
    )
    default_sensitivity: float = Field(
        3.92245, ge=0, le=100,
        description="expected_return: cash flow / debt service at which the default probability is 1/2"
        " (Caiani et al. 2016's calibrated value for consumption firms)",
    )
    recovery_haircut: float = Field(
        0.5, ge=0, le=1, description="expected_return: share of the borrower's capital value a defaulted loan recovers"
    )
    resolution: Literal["state", "bail_in"] = Field(
        "state",
        description="a bank whose net worth falls below zero is recapitalised to its capital requirement"
        " by the state, or by converting its depositors' deposits (bail-in)",
    )


class CentralBank(RoleConfig):
    """The central bank's rate rule (annual rates; a round is a month)."""

    rule: Literal["taylor", "fixed"] = Field("taylor", description="Taylor (1993) rule, or a fixed policy_rate")
    policy_rate: float = Field(0.04, ge=0, le=1, description="annual: the fixed rate, and the rate at round 0")
    neutral_real_rate: float = Field(0.02, ge=-0.1, le=0.2, description="r*, annual (Taylor 1993: 2%)")
    inflation_target: float = Field(0.02, ge=-0.1, le=0.5, description="pi*, annual (Taylor 1993: 2%)")
    inflation_weight: float = Field(0.5, ge=0, le=5, description="on pi - pi* (Taylor 1993: 0.5)")
    gap_weight: float = Field(0.5, ge=0, le=5, description="on the output gap (Taylor 1993: 0.5)")
    smoothing: float = Field(
        0.93, ge=0, lt=1, description="weight on last round's rate (Clarida, Gali & Gertler 2000: 0.8 a quarter)"
    )
    trend_rounds: float = Field(24.0, ge=1, description="rounds the output trend averages over (exponential)")
    advance_interest: bool = Field(False, description="the state pays the policy rate on its central-bank debt")
    reserve_remuneration: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of the policy rate paid on banks' reserves (0: none, as the Fed"
        " before 2008; 1: a floor system)",
    )


class Network(RoleConfig):
    """The card-network operator."""

    card_fee: float = Field(0.0224, ge=0, le=0.2, description="fee it asks on card payments")
    strategy: Literal["fixed", "max"] = Field("fixed", description="'max' asks for the regulator's cap")


class Regulator(RoleConfig):
    """The state: taxes, UBI, fee caps, spending, and how a deficit is financed."""

    income_tax: float = Field(0.2, ge=0, le=1, description="withheld at source on wages, dividends, interest")
    robot_tax: float = Field(0.0, ge=0, le=1, description="per round, share of automation capital value")
    ubi: float = Field(0.0, ge=0, le=MAX_MONEY, description="per household per round, currency units")
    ubi_start: int = Field(0, ge=0, description="first round that pays UBI")
    unemployment_benefit: float = Field(
        0.4, ge=0, le=2, description="paid to each unemployed household, as a share of the mean wage (Caiani: 0.4)"
    )
    ubi_financing: Literal["tax", "money"] = "tax"
    card_fee_cap: float = Field(1.0, ge=0, le=1, description="largest card fee allowed")
    spending_rule: Literal["trend", "surplus"] = Field(
        "trend",
        description="buy gdp_share of trend nominal GDP each round (Caiani et al. 2016), or spending_share"
        " of the balance beyond next round's UBI",
    )
    gdp_share: float = Field(0.2, ge=0, le=1, description="trend rule: spending as a share of trend GDP")
    deficit_limit: float | None = Field(
        None,
        ge=0,
        le=1,
        description="trend rule: cut spending so last round's deficit stays within this share of"
        " trend GDP (None: no cap)",
    )
    spending_share: float = Field(1.0, ge=0, le=1, description="surplus rule: share of the surplus spent per round")
    deficit_financing: Literal["money", "none"] = Field(
        "money",
        description="a deficit is advanced by the central bank (explicit debt), or spending is cut to the balance",
    )
    balance_buffer_rounds: float = Field(
        1.0, ge=0, description="the state's balance beyond this many rounds of spending repays its central-bank debt"
    )


C = TypeVar("C", bound=RoleConfig)


class Roles(_Model):
    """The ``[roles.<name>]`` sections: one field per registered role, in registration order.

    The fields are not written here: ``tokenomy.registry`` declares each role and adds its section
    with :func:`add_role_section`, which rebuilds this model (so a typo in a section name is still
    an error naming the field and line). Code reads a section with :meth:`get`, typed by its class.
    """

    def section(self, name: str) -> RoleConfig:
        value = getattr(self, name, None)
        if not isinstance(value, RoleConfig):
            raise KeyError(f"no role {name!r} is registered (roles: {', '.join(type(self).model_fields)})")
        return value

    def get(self, name: str, kind: type[C]) -> C:
        """The section of role ``name``, checked to be a ``kind``."""
        value = self.section(name)
        if not isinstance(value, kind):
            raise TypeError(f"roles.{name} is a {type(value).__name__}, not a {kind.__name__}")
        return value


class Rails(_Model):
    """Payment rails for household purchases (firms and the state pay by bank transfer)."""

    chain_fee: float = Field(0.001, ge=0, le=0.2)
    bank_transfer_fee: float = Field(0.0, ge=0, le=0.2)
    card_adoption: float = Field(0.7, ge=0, le=1, description="share of households paying by card at start")
    chain_adoption: float = Field(0.0, ge=0, le=1, description="share paying on chain at start (rest: bank transfer)")
    chain_enabled: bool = True
    switch_rate: float = Field(0.0, ge=0, le=1, description="chance per round a household moves to the cheapest rail")

    @model_validator(mode="after")
    def _shares(self) -> Rails:
        if self.card_adoption + self.chain_adoption > 1.0 + 1e-9:
            raise ValueError("card_adoption + chain_adoption must be <= 1")
        return self


class LLM(_Model):
    """The model behind LLM-driven roles: any OpenAI-compatible endpoint.

    The API key is read from the environment variable named by ``api_key_env`` and nowhere else;
    it is never written to the run directory, logs or error messages.
    """

    model: str = Field("gpt-4o-mini", min_length=1)
    base_url: str | None = Field(None, description="e.g. http://localhost:8000/v1 for vLLM; None = OpenAI")
    api_key_env: str = Field("OPENAI_API_KEY", min_length=1)
    temperature: float = Field(0.0, ge=0, le=2)
    seed: int | None = Field(None, description="sampling seed sent to the model (None = the scenario's seed)")
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10, description="retries of timeouts, 429 and 5xx (with backoff)")
    max_concurrency: int = Field(32, ge=1, le=4096)
    workers: int = Field(
        1, ge=1, le=256, description="processes making the calls (>1 spreads the client's CPU over cores)"
    )
    requests_per_second: float | None = Field(None, gt=0)
    max_output_tokens: int = Field(400, ge=16)
    structured_output: Literal["auto", "json_schema", "json_mode", "tools"] = "auto"
    max_calls: int | None = Field(None, ge=0, description="hard cap on model calls; past it the rules decide")
    budget_usd: float | None = Field(None, ge=0, description="hard cap on estimated spend; past it the rules decide")
    price_input_per_million: float = Field(0.0, ge=0, description="USD per million input tokens (cost estimates)")
    price_output_per_million: float = Field(0.0, ge=0, description="USD per million output tokens")
    rationale_chars: int = Field(500, ge=0, description="rationale text kept per decision")
    on_invalid: Literal["fallback", "clip", "reask"] = Field(
        "reask",
        description="an answer that does not validate: the rules decide (fallback), out-of-range numbers are"
        " clipped to their bounds and extra fields dropped (clip), or the model is asked once more with the"
        " validation error (reask, the default: what is used is always the model's own answer)",
    )
    max_fallback_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="stop the run (manifest 'failed') once more than this share of the decisions asked of the"
        " model so far got no valid answer; decisions handed to the rules by max_calls or budget_usd do not count",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        """A URL the HTTP client cannot use fails here, with the field's name, not as a connection error."""
        if v is None:
            return v
        from urllib.parse import urlsplit

        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http(s) URL such as http://localhost:8000/v1")
        return v


class Record(_Model):
    snapshot_every: int = Field(1, ge=1, description="world snapshot every N rounds (always the last)")
    flush_every: int | None = Field(
        None,
        ge=1,
        description="write the tables as complete Parquet parts, with a checkpoint resume can start from, at the"
        " first snapshot N rounds or more after the last (None: 10, or 1 when a role is LLM-driven)",
    )
    household_decisions: int = Field(50, ge=0, description="households whose decisions are recorded each round")
    payments: Literal["agent", "role"] = Field(
        "agent", description="aggregate payments per payer->payee agent edge, or per role->role"
    )


class Scenario(_Model):
    """One research question: the economy, its policies, and how long to run it."""

    name: str = "unnamed"
    question: str = ""
    households: int = Field(1000, ge=1)
    firms: int = Field(20, ge=1)
    banks: int = Field(2, ge=1)
    rounds: int = Field(120, ge=1)
    seed: int = Field(0, ge=0)
    production: Production = Production()
    automation: Automation = Automation()
    initial: Initial = Initial()
    roles: Roles = Roles()
    rails: Rails = Rails()
    record: Record = Record()
    llm: LLM = LLM()

    def llm_roles(self) -> list[str]:
        """Roles whose decisions come (at least partly) from the LLM, in registration order."""
        return [name for name, r in self.roles if isinstance(r, RoleConfig) and r.policy == "llm" and r.llm_share > 0]


_SECTIONS: dict[str, type[RoleConfig]] = {}


def _rebuild_roles() -> None:
    """Rebuild ``Roles`` with one field per section, and ``Scenario`` around it.

    pydantic validates the new sections natively, so errors keep their location
    (``roles.<name>.<field>``) and a misspelt section stays an ``extra_forbidden`` error.
    """
    fields: dict[str, Any] = {name: (model, model()) for name, model in _SECTIONS.items()}
    model = create_model("Roles", __base__=Roles, __doc__=Roles.__doc__, **fields)
    info = Scenario.__pydantic_fields__["roles"]
    info.annotation, info.default = model, model()
    Scenario.model_rebuild(force=True)


def add_role_section(name: str, model: type[RoleConfig]) -> None:
    """Accept ``[roles.<name>]`` in scenarios, validated by ``model`` (``tokenomy.registry`` calls this)."""
    if not name.isidentifier():
        raise ValueError(f"role name {name!r} must be an identifier")
    _SECTIONS[name] = model
    _rebuild_roles()


def remove_role_section(name: str) -> None:
    _SECTIONS.pop(name, None)
    _rebuild_roles()


class ScenarioError(ValueError):
    """A scenario that cannot be used; the message names file, field, line and what was expected."""


def bundled_dir() -> Path:
    return Path(str(resources.files("tokenomy.scenarios")))


def bundled_scenarios() -> dict[str, Path]:
    """Bundled scenario names and paths."""
    return {p.stem: p for p in sorted(bundled_dir().glob("*.toml"))}


def _shown(p: Path, limit: int = 120) -> str:
    """A path for an error line: cut short when it is too long to read (it keeps the message one line)."""
    s = str(p)
    return s if len(s) <= limit else f"{s[: limit // 2]}...{s[-limit // 2 :]} ({len(s)} characters)"


def resolve_scenario_path(name_or_path: str | Path) -> Path:
    """An existing file wins, then a bundled name; a directory never shadows a bundled name."""
    p = Path(name_or_path)
    try:
        if p.is_file():
            return p
        is_dir, exists = p.is_dir(), p.exists()
    except OSError as exc:  # a name too long for the file system, say
        raise ScenarioError(f"{_shown(p)}: not a usable scenario path ({exc.strerror})") from None
    found = bundled_scenarios().get(str(name_or_path))
    if found is not None:
        return found
    if is_dir:
        raise ScenarioError(f"{p}: is a directory; expected a scenario TOML file or a bundled scenario name")
    if exists:
        raise ScenarioError(f"{p}: not a regular file; expected a scenario TOML file")
    if p.suffix == ".toml" or "/" in str(name_or_path):
        raise ScenarioError(f"{p}: no such scenario file")
    names = ", ".join(bundled_scenarios()) or "none"
    raise ScenarioError(f"{name_or_path}: not a file and not a bundled scenario (bundled: {names})")


_HEADER = re.compile(r"^\[\s*([^\[\]]+?)\s*\](?:\s*#.*)?$")


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line of a dotted field in TOML text (tomllib keeps no positions)."""
    if not loc:
        return None
    keys = [str(k) for k in loc if not isinstance(k, int)]
    table, leaf = keys[:-1], keys[-1]
    current: list[str] = []
    for i, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        header = _HEADER.match(line)
        if header:
            current = [s.strip().strip('"') for s in header.group(1).split(".")]
            if current == keys:
                return i
            continue
        if "=" in line and not line.startswith("#"):
            key = line.split("=", 1)[0].strip().strip('"')
            parts = current + [s.strip().strip('"') for s in key.split(".")]
            if parts == [*table, leaf]:
                return i
    return None


def _describe(err: ValidationError, source: Path, text: str | None, overrides: dict[str, str]) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        field = ".".join(str(x) for x in loc) or "(top level)"
        override = next((item for key, item in overrides.items() if field == key or field.startswith(key + ".")), None)
        if override is not None:
            where = f"--set {override} (over {source})"  # the value came from the command line
        else:
            line = _line_of(text, loc) if text else None
            where = f"{source}:{line}" if line else str(source)
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling and section)"
        given, shown = e.get("input"), repr(e.get("input"))
        shown = shown if len(shown) <= 80 else f"{shown[:60]}... ({len(shown)} characters)"
        given_s = "" if e["type"] in ("extra_forbidden", "missing") or isinstance(given, dict) else f" (got {shown})"
        lines.append(f"{where}: field '{field}': {msg}{given_s}")
    return "\n".join(lines)


def dotted(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested scenario data as ``{"a.b.c": value}``, the paths ``--set`` and ``--grid`` name (lists
    are values): what comparing two scenarios field by field needs."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        out |= dotted(v, f"{prefix}{k}.") if isinstance(v, Mapping) else {f"{prefix}{k}": v}
    return out


def _parse_value(raw: str) -> Any:
    """A --set value is parsed as a TOML value; bare words fall back to strings."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides to raw scenario data (a copy is returned)."""
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ScenarioError(f"--set {item!r}: expected FIELD=VALUE, e.g. --set households=10000")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ScenarioError(f"--set {item!r}: empty field name")
        node = out
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ScenarioError(f"--set {item!r}: '{p}' is a value, not a section")
            node = nxt
        node[parts[-1]] = _parse_value(raw.strip())
    return out


def load_scenario(name_or_path: str | Path, overrides: list[str] | None = None, **fields: Any) -> Scenario:
    """Load a bundled scenario by name, or a TOML file by path, then apply ``--set`` overrides.

    Raises:
        ScenarioError: naming the file, field, line and what was expected.
    """
    path = resolve_scenario_path(name_or_path)
    try:
        text = _decode(path, path.read_bytes())
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: invalid TOML: {exc}") from None
    return scenario_from_data(data, path, overrides, text=text, **fields)


def _decode(path: Path, raw: bytes) -> str:
    """TOML is UTF-8 text: a byte-order mark is accepted (editors on Windows write one), anything
    else that is not UTF-8 (a binary file, Latin-1) is an error saying where."""
    if b"\0" in raw[:8192]:
        raise ScenarioError(f"{path}: a binary file, not a TOML text file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ScenarioError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
        ) from None


def scenario_from_data(
    data: dict[str, Any],
    source: str | Path,
    overrides: list[str] | None = None,
    *,
    text: str | None = None,
    **fields: Any,
) -> Scenario:
    """Validate raw scenario ``data`` (a TOML file's, or a run manifest's) after ``--set`` overrides.

    ``source`` names where the data came from in errors; ``text``, if given, is searched for lines.

    Raises:
        ScenarioError: naming the source, field, line and what was expected.
    """
    path = Path(source)
    data = apply_overrides(data, overrides or [])
    for k, v in fields.items():
        if v is not None:
            data[k] = v
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        given = {item.split("=", 1)[0].strip(): item for item in overrides or []}
        given.update({k: f"{k}={v}" for k, v in fields.items() if v is not None})
        raise ScenarioError(_describe(exc, path, text, given)) from None
