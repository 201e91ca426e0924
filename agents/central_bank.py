"""The central bank: sets the policy rate, lends to the state, owes the banks their reserves.

Rule-based policy: a Taylor (1993) rule on annual rates,
``i* = r* + pi + a_pi (pi - pi*) + a_y gap``, floored at zero, where ``pi`` is 12-month inflation
of the price index (monthly inflation is too noisy to feed a rule) and ``gap`` is real output over
its trend (an exponential average of past output, ``World.output_trend``). The rate moves towards
``i*`` by ``1 - smoothing`` a round, the partial adjustment estimated central banks follow
(Clarida, Gali & Gertler 2000: 0.8 a quarter, about 0.93 a month); without it the rate swung
between 0 and 20% month to month here, and the capital user cost, and investment, swung with it.
The rate is annual; banks price their loans and deposits off the per-round rate, ``i / 12`` for a
monthly round (``roles.bank``), from the next round on.

Money it creates is always against an asset: advances to the state (``World.cb_advances``). Its
net worth is ``World.cb_equity``: it pays interest on reserves and, by default, earns none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from tokenomy.agents.base import Batch, DecisionModel, ExampleAnswer, MarketView, expect, note, obs_number
from tokenomy.scenario import CentralBank, Scenario
from tokenomy.world import World

__all__ = [
    "CentralBankBatch",
    "CentralBankDecision",
    "CentralBankObservation",
    "CentralBanks",
    "annual_inflation",
    "config",
    "output_gap",
    "taylor_rate",
]

ROUNDS_PER_YEAR = 12


def config(scenario: Scenario) -> CentralBank:
    """The ``[roles.central_bank]`` section."""
    return scenario.roles.get("central_bank", CentralBank)


class CentralBankObservation(BaseModel):
    round: int
    policy_rate: float = Field(description="annual, in force")
    inflation_12m: float = Field(description="price index over its level 12 rounds ago, minus 1")
    output_gap: float = Field(description="real output over its trend, minus 1")
    unemployment_rate: float
    inflation_target: float


class CentralBankDecision(DecisionModel):
    policy_rate: float = Field(ge=0, le=1, description="annual policy rate")


@dataclass
class CentralBankBatch(Batch):
    takes_effect = "next_round"
    policy_rate: NDArray[np.float64]  # annual
    notes: NDArray[np.object_]

    def merge(self, world: World, i: int, decision: BaseModel, scenario: Scenario) -> None:
        self.policy_rate[i] = expect(decision, CentralBankDecision).policy_rate

    def validated(self, world: World, scenario: Scenario) -> CentralBankBatch:
        rate = np.clip(np.nan_to_num(self.policy_rate, nan=world.policy_rate), 0.0, 1.0)
        note(self.notes, rate != self.policy_rate, "policy rate clipped to 0..1")
        return CentralBankBatch(rate, self.notes)

    def apply(self, world: World) -> None:
        """The rate holds from the next round: banks price off the rate they saw when they decided."""
        world.policy_rate = float(self.policy_rate[0])



def annual_inflation(world: World) -> float:
    """Inflation over the last 12 rounds: the price level over its level 12 rounds ago, minus 1."""
    h = world.price_history
    past = float(h[0]) if h.size else world.price_index
    return float(world.price_index / past - 1.0) if past > 0 else 0.0


def output_gap(world: World) -> float:
    return float(world.f_output.sum() / world.output_trend - 1.0) if world.output_trend > 0 else 0.0


def taylor_rate(p: CentralBank, inflation: float, gap: float) -> float:
    """Taylor (1993): the annual nominal rate, floored at zero."""
    rate = p.neutral_real_rate + inflation + p.inflation_weight * (inflation - p.inflation_target) + p.gap_weight * gap
    return max(rate, 0.0)


class CentralBanks:
    decision_model = CentralBankDecision
    share_decision = None
    example_answers: Mapping[str, ExampleAnswer] = {}  # set below

    def observe(self, world: World, view: MarketView, i: int) -> CentralBankObservation:
        return CentralBankObservation(
            round=view.round,
            policy_rate=world.policy_rate,
            inflation_12m=annual_inflation(world),
            output_gap=output_gap(world),
            unemployment_rate=view.unemployment,
            inflation_target=world.inflation_target,
        )

    def heuristic(
        self, world: World, view: MarketView, scenario: Scenario, rng: np.random.Generator
    ) -> CentralBankBatch:
        p = config(scenario)
        if p.rule == "fixed":
            rate = p.policy_rate
        else:  # partial adjustment towards the Taylor rate (Clarida, Gali & Gertler 2000)
            target = taylor_rate(p, annual_inflation(world), output_gap(world))
            rate = p.smoothing * world.policy_rate + (1.0 - p.smoothing) * target
        return CentralBankBatch(np.array([rate]), np.array([""], dtype=object))


def example_answer(obs: dict[str, Any], persona: str) -> dict[str, Any]:
    """What the fake OpenAI-compatible server (tokenomy.testing) answers: a Taylor rule with r* = 2%."""
    pi = obs_number(obs, "inflation_12m")
    gap = obs_number(obs, "output_gap")
    rate = max(0.02 + pi + 0.5 * (pi - obs_number(obs, "inflation_target", 0.02)) + 0.5 * gap, 0.0)
    return {"policy_rate": round(min(rate, 1.0), 6), "rationale": "fake rule-based policy: Taylor rule"}


CentralBanks.example_answers = {"CentralBankDecision": (example_answer, {"policy_rate": 5.0})}
