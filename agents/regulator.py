"""The state and regulator: income tax, robot tax, UBI, the card-fee cap, public spending.

Rule-based policy: keep the scenario's instruments (UBI from ``ubi_start``), and spend
``spending_share`` of the surplus beyond next round's UBI on goods, so taxes return to demand
instead of piling up. Tax-financed UBI pays what the state's balance allows (pro rata when
short); money-financed UBI is explicit issuance in the ledger.
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
        spend = np.clip(self.spending, 0, bal)
        note(notes, spend < self.spending, "spending clipped to the state's balance")
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
