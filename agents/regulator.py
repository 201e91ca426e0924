"""The state and regulator: income tax, robot tax, UBI, the card-fee cap, public spending.

Rule-based policy: keep the scenario's instruments (UBI from ``ubi_start``), and buy goods worth
``gdp_share`` of trend nominal GDP each round (Caiani et al. 2016: spending tied to trend output,
so it steadies demand instead of following the cycle), as long as last round's deficit after
transfers stays within ``deficit_limit`` of trend GDP; or, with ``spending_rule = "surplus"``,
``spending_share`` of the balance beyond next round's UBI. A deficit is advanced by the central
bank (``deficit_financing = "money"``: explicit debt, ``World.cb_advances``); a balance beyond
``balance_buffer_rounds`` of spending repays that debt, so the state's balance stays bounded.
Tax-financed UBI pays what the balance allows (pro rata when short); money-financed UBI is
advanced by the central bank first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from tokenomy.agents.base import Batch, DecisionModel, ExampleAnswer, MarketView, expect, note, obs_number
from tokenomy.scenario import Regulator as RegulatorConfig
from tokenomy.scenario import Scenario
from tokenomy.world import World

__all__ = ["Regulator", "RegulatorBatch", "RegulatorDecision", "RegulatorObservation", "config"]


def config(scenario: Scenario) -> RegulatorConfig:
    """The ``[roles.regulator]`` section."""
    return scenario.roles.get("regulator", RegulatorConfig)


class RegulatorObservation(BaseModel):
    round: int
    balance: float
    income_tax: float
    robot_tax: float
    ubi: float
    ubi_financing: str
    card_fee_cap: float
    unemployment_rate: float
    price_index: float
    mean_wage: float


class RegulatorDecision(DecisionModel):
    income_tax: float = Field(ge=0, le=1)
    robot_tax: float = Field(ge=0, le=1)
    ubi: float = Field(ge=0, le=1e7, description="per household per round")
    card_fee_cap: float = Field(ge=0, le=1)
    spending: float = Field(0.0, ge=0, le=1e12, description="goods the state buys this round")


@dataclass
class RegulatorBatch(Batch):
    money: ClassVar[tuple[str, ...]] = ("ubi", "spending")
    income_tax: NDArray[np.float64]
    robot_tax: NDArray[np.float64]
    ubi: NDArray[np.int64]  # cents per household
    card_fee_cap: NDArray[np.float64]
    spending: NDArray[np.int64]
    notes: NDArray[np.object_]
    takes_effect = "next_round"

    def merge(self, world: World, i: int, decision: BaseModel, scenario: Scenario) -> None:
        d = expect(decision, RegulatorDecision)
        self.income_tax[i] = d.income_tax
        self.robot_tax[i] = d.robot_tax
        self.ubi[i] = round(d.ubi * 100)
        self.card_fee_cap[i] = d.card_fee_cap
        self.spending[i] = round(d.spending * 100)

    def validated(self, world: World, scenario: Scenario) -> RegulatorBatch:
        notes = self.notes
        tax = np.clip(np.nan_to_num(self.income_tax), 0.0, 1.0)
        robot = np.clip(np.nan_to_num(self.robot_tax), 0.0, 1.0)
        cap = np.clip(np.nan_to_num(self.card_fee_cap, nan=1.0), 0.0, 1.0)
        ubi = np.maximum(self.ubi, 0)
        bal = int(world.balance_of("regulator")[0])
        if config(scenario).deficit_financing == "money":  # the central bank advances what it lacks
            bal = max(bal, int(4 * trend_gdp(world)))
        spend = np.clip(self.spending, 0, bal)
        note(notes, spend < self.spending, "spending clipped to what the state may spend")
        return RegulatorBatch(tax, robot, ubi, cap, spend, notes)

    def apply(self, world: World) -> None:
        """Taxes, UBI and the fee cap hold from the next round (this round's spending is a purchase)."""
        world.income_tax = float(self.income_tax[0])
        world.robot_tax = float(self.robot_tax[0])
        world.ubi_cents = int(self.ubi[0])
        world.card_fee_cap = float(self.card_fee_cap[0])


class Regulator:
    decision_model = RegulatorDecision
    share_decision = None
    example_answers: Mapping[str, ExampleAnswer] = {}  # set below

    def observe(self, world: World, view: MarketView, i: int) -> RegulatorObservation:
        return RegulatorObservation(
            round=view.round,
            balance=float(world.balance_of("regulator")[0]) / 100,
            income_tax=world.income_tax,
            robot_tax=world.robot_tax,
            ubi=world.ubi_cents / 100,
            ubi_financing="money" if world.ubi_money_financed else "tax",
            card_fee_cap=world.card_fee_cap,
            unemployment_rate=view.unemployment,
            price_index=view.price_index / 100,
            mean_wage=view.mean_wage / 100,
        )

    def heuristic(self, world: World, view: MarketView, scenario: Scenario, rng: np.random.Generator) -> RegulatorBatch:
        p = config(scenario)
        ubi = round(p.ubi * 100) if view.round >= p.ubi_start else 0
        bal = int(world.balance_of("regulator")[0])
        if p.spending_rule == "trend":
            trend = trend_gdp(world)
            spend = int(p.gdp_share * trend)
            if p.deficit_limit is not None:  # a Maastricht-style cap on last round's deficit
                room = world.state_revenue - world.state_transfers + p.deficit_limit * trend
                spend = int(max(min(spend, room), 0.0))
        else:
            reserve = 0 if world.ubi_money_financed else ubi * world.n_households
            spend = int(p.spending_share * max(bal - reserve, 0))
        return RegulatorBatch(
            np.array([p.income_tax]),
            np.array([p.robot_tax]),
            np.array([ubi]),
            np.array([p.card_fee_cap]),
            np.array([spend]),
            np.array([""], dtype=object),
        )


def trend_gdp(world: World) -> float:
    """Nominal GDP on trend, cents per round: trend real output at this round's price level."""
    return world.output_trend * world.price_index


def _unit(obs: dict[str, Any], key: str) -> float:
    return min(max(obs_number(obs, key), 0.0), 1.0)


def example_answer(obs: dict[str, Any], persona: str) -> dict[str, Any]:
    """What the fake OpenAI-compatible server (tokenomy.testing) answers for the regulator."""
    return {
        "income_tax": _unit(obs, "income_tax"),
        "robot_tax": _unit(obs, "robot_tax"),
        "ubi": max(obs_number(obs, "ubi"), 0.0),
        "card_fee_cap": _unit(obs, "card_fee_cap"),
        "spending": 0.0,
        "rationale": "fake rule-based policy: keep the instruments",
    }


Regulator.example_answers = {"RegulatorDecision": (example_answer, {"income_tax": 2.0, "ubi": -50.0})}
