"""The state and regulator: income tax, robot tax, UBI, the card-fee cap, public spending.

Rule-based policy: keep the scenario's instruments (UBI from ``ubi_start``), and spend
``spending_share`` of the surplus beyond next round's UBI on goods, so taxes return to demand
instead of piling up. Tax-financed UBI pays what the state's balance allows (pro rata when
short); money-financed UBI is explicit issuance in the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from tokenomy.agents.base import Batch, DecisionModel, MarketView, note
from tokenomy.scenario import Scenario
from tokenomy.world import World

__all__ = ["Regulator", "RegulatorBatch", "RegulatorDecision", "RegulatorObservation"]


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


class Regulator:
    name = "regulator"
    decision_model = RegulatorDecision

    def agent_name(self, world: World, i: int) -> str:
        return "state"

    def merge(self, world: World, batch: RegulatorBatch, i: int, d: RegulatorDecision, scenario: Scenario) -> None:
        batch.income_tax[i] = d.income_tax
        batch.robot_tax[i] = d.robot_tax
        batch.ubi[i] = round(d.ubi * 100)
        batch.card_fee_cap[i] = d.card_fee_cap
        batch.spending[i] = round(d.spending * 100)

    def observe(self, world: World, view: MarketView, i: int) -> RegulatorObservation:
        return RegulatorObservation(
            round=view.round,
            balance=float(world.ledger.balance[world.layout.state]) / 100,
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
        p = scenario.roles.regulator
        ubi = round(p.ubi * 100) if view.round >= p.ubi_start else 0
        bal = int(world.ledger.balance[world.layout.state])
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

    def validate(self, world: World, batch: RegulatorBatch, scenario: Scenario) -> RegulatorBatch:
        notes = batch.notes
        tax = np.clip(np.nan_to_num(batch.income_tax), 0.0, 1.0)
        robot = np.clip(np.nan_to_num(batch.robot_tax), 0.0, 1.0)
        cap = np.clip(np.nan_to_num(batch.card_fee_cap, nan=1.0), 0.0, 1.0)
        ubi = np.maximum(batch.ubi, 0)
        bal = int(world.ledger.balance[world.layout.state])
        spend = np.clip(batch.spending, 0, bal)
        note(notes, spend < batch.spending, "spending clipped to the state's balance")
        return RegulatorBatch(tax, robot, ubi, cap, spend, notes)
