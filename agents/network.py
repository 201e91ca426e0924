"""Payment-rail operators: the card network (sets its fee under the regulator's cap) and the
chain's operator (fee fixed by the protocol). Both are owned by token holders and pay out what
they earn as dividends, so every fee they take is rent that ends with their owners.

Rule-based policy: ask ``roles.network.card_fee`` (``strategy = "fixed"``) or the cap itself
(``"max"``, the rent-seeking end), and distribute all earnings each round.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from tokenomy.agents.base import Batch, DecisionModel, ExampleAnswer, MarketView, expect, note, obs_number
from tokenomy.scenario import Network, Scenario
from tokenomy.world import World

__all__ = ["OPERATORS", "NetworkBatch", "NetworkDecision", "NetworkObservation", "Networks", "config"]

OPERATORS = ("card_network", "chain")  # the role's two agents, and their account names


def config(scenario: Scenario) -> Network:
    """The ``[roles.network]`` section."""
    return scenario.roles.get("network", Network)


class NetworkObservation(BaseModel):
    round: int
    operator: str
    fee_rate: float
    fee_cap: float
    balance: float
    card_users_share: float
    chain_users_share: float


class NetworkDecision(DecisionModel):
    fee_rate: float = Field(ge=0, le=0.2)
    dividend: float = Field(0.0, ge=0, le=1e12)


@dataclass
class NetworkBatch(Batch):
    """Entry 0 is the card network, entry 1 the chain operator."""

    money: ClassVar[tuple[str, ...]] = ("dividend",)
    fee_rate: NDArray[np.float64]
    dividend: NDArray[np.int64]
    notes: NDArray[np.object_]

    def merge(self, world: World, i: int, decision: BaseModel, scenario: Scenario) -> None:
        d = expect(decision, NetworkDecision)
        self.fee_rate[i] = d.fee_rate
        self.dividend[i] = round(d.dividend * 100)

    def validated(self, world: World, scenario: Scenario) -> NetworkBatch:
        notes = self.notes
        fee = np.clip(np.nan_to_num(self.fee_rate), 0.0, 0.2)
        fee[0] = min(fee[0], world.card_fee_cap)
        fee[1] = world.chain_fee  # the protocol sets it, not the operator
        note(notes, fee != self.fee_rate, "fee clipped to the cap")
        bal = world.balance_of("network")
        div = np.clip(self.dividend, 0, bal)
        note(notes, div < self.dividend, "dividend clipped to balance")
        return NetworkBatch(fee, div, notes)

    def apply(self, world: World) -> None:
        """The card network's fee applies to this round's payments."""
        world.card_fee = float(self.fee_rate[0])


class Networks:
    decision_model = NetworkDecision
    share_decision = None
    example_answers: Mapping[str, ExampleAnswer] = {}  # set below

    def observe(self, world: World, view: MarketView, i: int) -> NetworkObservation:
        return NetworkObservation(
            round=view.round,
            operator=OPERATORS[i],
            fee_rate=(world.card_fee, world.chain_fee)[i],
            fee_cap=world.card_fee_cap if i == 0 else 1.0,
            balance=float(world.balance_of("network")[i]) / 100,
            card_users_share=float((world.h_rail == 0).mean()),
            chain_users_share=float((world.h_rail == 1).mean()),
        )

    def heuristic(self, world: World, view: MarketView, scenario: Scenario, rng: np.random.Generator) -> NetworkBatch:
        p = config(scenario)
        card = world.card_fee_cap if p.strategy == "max" else p.card_fee
        bal = world.balance_of("network")
        return NetworkBatch(np.array([card, world.chain_fee]), bal.copy(), np.array(["", ""], dtype=object))



def example_answer(obs: dict[str, Any], persona: str) -> dict[str, Any]:
    """What the fake OpenAI-compatible server (tokenomy.testing) answers for an operator."""
    fee = min(max(obs_number(obs, "fee_rate"), 0.0), 0.2)
    if "fee_cap" in obs:
        fee = min(fee, max(obs_number(obs, "fee_cap"), 0.0))
    return {"fee_rate": fee, "dividend": 0.0, "rationale": "fake rule-based policy: keep the fee"}


Networks.example_answers = {"NetworkDecision": (example_answer, {"fee_rate": 0.9})}
