"""The registries: roles, assets and payment kinds. One place declares each; the rest derives.

A **role** (:class:`RoleSpec`) is one registration: its name, its agents module's implementation
(Observation, Decision, rule-based policy; the batch validates, merges and applies itself), its
``[roles.<name>]`` scenario section, how many agents a scenario asks for, how its accounts are
named in the ledger layout, its prompt, and whether an LLM may drive it. The world layout and
``name_of``, the recorder's picks, the LLM planner, the scenario's sections, the fake server's
answers and the per-role LLM metrics all read this registry. Registration order is the layout's
order (and the seed order of LLM agent selection), so built-ins come first, always in the same order.

An **asset kind** (:class:`AssetSpec`) is what a token is a claim on; a role that ``issues`` an
asset kind has one token per agent. A **payment kind** is a name the ledger posts under; those
registered with ``rent=True`` make up the rent metric (rail fees today; fund fees and land rent next).

Adding a role is one new module and one :func:`register_role` call; tests use :func:`registered`
to add one for the length of a ``with`` block::

    with registered(RoleSpec("pollster", Pollsters(), PollsterConfig, count=lambda s: 3, labels="p")):
        Runner(load_scenario("baseline", ["roles.pollster.bias=0.1"])).run(out)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from tokenomy.agents.bank import Banks
from tokenomy.agents.base import Role
from tokenomy.agents.central_bank import CentralBanks
from tokenomy.agents.firm import Firms
from tokenomy.agents.household import Households
from tokenomy.agents.network import OPERATORS, Networks
from tokenomy.agents.regulator import Regulator
from tokenomy.scenario import (
    Bank,
    CentralBank,
    Firm,
    Household,
    Network,
    RoleConfig,
    Scenario,
    add_role_section,
    remove_role_section,
)
from tokenomy.scenario import Regulator as RegulatorConfig
from tokenomy.world import Layout

__all__ = [
    "AssetSpec",
    "PaymentKind",
    "RoleSpec",
    "asset_kinds",
    "layout_for",
    "payment_kinds",
    "record_ids",
    "register_asset",
    "register_payment_kind",
    "register_role",
    "registered",
    "rent_kinds",
    "role",
    "roles",
    "unregister_role",
]


@dataclass(frozen=True)
class RoleSpec:
    """Everything the engine needs to know about a role, besides its economics."""

    name: str
    role: Role  # the agents module's implementation
    config: type[RoleConfig]  # its [roles.<name>] section
    count: Callable[[Scenario], int]  # agents (and ledger accounts) a scenario asks for
    labels: str | tuple[str, ...]  # account names: a prefix ("h" -> h0, h1, ...) or one per agent
    prompt: str | Path | None = None  # bundled template name (agents/prompts/<name>.md) or a file; None = name
    archetype_prompt: str | None = None  # bundled template for one call per archetype, if the role has them
    llm: bool = True  # whether an LLM may drive it
    holds_tokens: bool = False  # its accounts are rows of World.holdings
    issues: str | None = None  # asset kind of the token each of its agents issues
    recorded: Literal["all", "sample"] = "all"  # decisions recorded for every agent, or a fixed sample
    columns: Callable[[Scenario, int], dict[str, NDArray[Any]]] | None = None  # its World.extra columns at round 0

    @property
    def prompt_name(self) -> str | Path:
        return self.prompt if self.prompt is not None else self.name


@dataclass(frozen=True)
class AssetSpec:
    name: str
    description: str


@dataclass(frozen=True)
class PaymentKind:
    name: str
    rent: bool = False  # counts towards the rent share of GDP
    description: str = ""


_ROLES: dict[str, RoleSpec] = {}
_ASSETS: dict[str, AssetSpec] = {}
_PAYMENTS: dict[str, PaymentKind] = {}


def register_role(spec: RoleSpec) -> RoleSpec:
    """Add a role after those registered so far; its section becomes valid in scenarios."""
    if spec.name in _ROLES:
        raise ValueError(f"role {spec.name!r} is already registered")
    if spec.name == "mint":
        raise ValueError("'mint' names the issuance side of the ledger, not a role")
    if spec.issues is not None and spec.issues not in _ASSETS:
        raise ValueError(f"role {spec.name!r} issues unknown asset kind {spec.issues!r}")
    _ROLES[spec.name] = spec
    add_role_section(spec.name, spec.config)
    return spec


def unregister_role(name: str) -> None:
    if _ROLES.pop(name, None) is not None:
        remove_role_section(name)


@contextmanager
def registered(*specs: RoleSpec) -> Iterator[None]:
    """Roles registered for the length of a ``with`` block (tests, notebooks)."""
    try:
        for s in specs:
            register_role(s)
        yield
    finally:
        for s in reversed(specs):
            unregister_role(s.name)


def roles() -> tuple[RoleSpec, ...]:
    """Every registered role, in registration (= layout) order."""
    return tuple(_ROLES.values())


def role(name: str) -> RoleSpec:
    try:
        return _ROLES[name]
    except KeyError:
        raise KeyError(f"no role {name!r} is registered (roles: {', '.join(_ROLES)})") from None


def layout_for(scenario: Scenario) -> Layout:
    """The ledger layout a scenario asks for: one block per registered role, in order."""
    return Layout.of([(s.name, int(s.count(scenario)), s.labels) for s in _ROLES.values()])


def register_asset(spec: AssetSpec) -> AssetSpec:
    if spec.name in _ASSETS:
        raise ValueError(f"asset kind {spec.name!r} is already registered")
    _ASSETS[spec.name] = spec
    return spec


def asset_kinds() -> tuple[str, ...]:
    """Asset kind names; ``World.t_kind`` indexes this tuple."""
    return tuple(_ASSETS)


def register_payment_kind(kind: PaymentKind) -> PaymentKind:
    """Add a kind the ledger may post under (appended: codes of existing kinds never change)."""
    if kind.name in _PAYMENTS:
        raise ValueError(f"payment kind {kind.name!r} is already registered")
    _PAYMENTS[kind.name] = kind
    return kind


def payment_kinds() -> tuple[str, ...]:
    """Payment kind names in registration order: the codes of ``payments.parquet``'s ``kind``."""
    return tuple(_PAYMENTS)


def rent_kinds() -> frozenset[str]:
    return frozenset(k.name for k in _PAYMENTS.values() if k.rent)


# -- the built-ins ----------------------------------------------------------------------------------
register_asset(AssetSpec("equity", "a share of its issuer's dividends (firms, banks, rail operators)"))

for _kind in (
    PaymentKind("consumption", description="households buy goods"),
    PaymentKind("investment", description="firms buy goods as automation capital"),
    PaymentKind("government", description="the state buys goods"),
    PaymentKind("token_trade", description="a buyer pays a token's seller (or its issuer, for new tokens)"),
    PaymentKind("fee", rent=True, description="a rail's fee, to its operator"),
    PaymentKind("wage", description="firms pay their workers, net of income tax"),
    PaymentKind("income_tax", description="withheld at source for the state"),
    PaymentKind("robot_tax", description="firms pay on the value of their automation capital"),
    PaymentKind("dividend", description="issuers pay token holders, net of income tax"),
    PaymentKind("deposit_interest", description="banks pay depositors, net of income tax"),
    PaymentKind("loan_interest", description="firms pay their bank"),
    PaymentKind("loan_repayment", description="principal repaid: money destroyed"),
    PaymentKind("loan", description="new credit: money issued"),
    PaymentKind("ubi", description="the state pays every household"),
    PaymentKind("cb_advance", description="the central bank lends the state: money issued, owed by the state"),
    PaymentKind("recapitalisation", description="the state restores an insolvent bank's capital"),
    PaymentKind("bail_in", description="depositors' deposits converted into an insolvent bank's capital"),
    PaymentKind("cb_repayment", description="the state repays the central bank: money destroyed"),
    PaymentKind("reserve_interest", description="the central bank pays banks on their reserves"),
    PaymentKind("advance_interest", description="the state pays the central bank on its advances"),
    PaymentKind("unemployment_benefit", description="the state pays every household without work"),
    PaymentKind("liquidation", description="an exiting firm's deposits left after its creditors, to its owners"),
    PaymentKind("equity_issue", description="households buy an entrant's new token"),
    PaymentKind("fire_sale", description="households buy an exiting firm's plant for its creditors (exit_recovery)"),
):
    register_payment_kind(_kind)

for _spec in (
    RoleSpec(
        "household",
        Households(),
        Household,
        count=lambda s: s.households,
        labels="h",
        archetype_prompt="household_archetype",
        holds_tokens=True,
        recorded="sample",
    ),
    RoleSpec("firm", Firms(), Firm, count=lambda s: s.firms, labels="f", issues="equity"),
    RoleSpec("bank", Banks(), Bank, count=lambda s: s.banks, labels="b", issues="equity"),
    RoleSpec("network", Networks(), Network, count=lambda s: len(OPERATORS), labels=OPERATORS, issues="equity"),
    RoleSpec("regulator", Regulator(), RegulatorConfig, count=lambda s: 1, labels=("state",)),
    RoleSpec("central_bank", CentralBanks(), CentralBank, count=lambda s: 1, labels=("central_bank",)),
):
    register_role(_spec)


def record_ids(spec: RoleSpec, scenario: Scenario, n: int) -> NDArray[np.int64]:
    """Which of a role's ``n`` agents have their decisions recorded every round.

    A ``sample`` role records ``record.household_decisions`` evenly spaced ids: no random draw, so
    what is recorded never changes what happens.
    """
    if spec.recorded == "all":
        return np.arange(n, dtype=np.int64)
    k = min(scenario.record.household_decisions, n)
    return np.unique(np.linspace(0, n - 1, k).astype(np.int64)) if k else np.empty(0, np.int64)
