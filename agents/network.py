"""Payment-rail operators: the card network (sets its fee under the regulator's cap) and the
chain's operator (fee fixed by the protocol). Both are owned by token holders and pay out what
they earn as dividends, so every fee they take is rent that ends with their owners.

Rule-based policy: ask ``roles.network.card_fee`` (``strategy = "fixed"``) or the cap itself
(``"max"``, the rent-seeking end), and distribute all earnings each round.
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

__all__ = ["NetworkBatch", "NetworkDecision", "NetworkObservation", "Networks"]


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


class Networks:
    name = "network"
    decision_model = NetworkDecision

    def agent_name(self, world: World, i: int) -> str:
        return ("card_network", "chain")[i]

    def merge(self, world: World, batch: NetworkBatch, i: int, d: NetworkDecision, scenario: Scenario) -> None:
        batch.fee_rate[i] = d.fee_rate
        batch.dividend[i] = round(d.dividend * 100)

    def _accounts(self, world: World) -> NDArray[np.int64]:
        return np.array([world.layout.card_network, world.layout.chain_operator])

    def observe(self, world: World, view: MarketView, i: int) -> NetworkObservation:
        return NetworkObservation(
            round=view.round,
            operator=("card_network", "chain")[i],
            fee_rate=(world.card_fee, world.chain_fee)[i],
            fee_cap=world.card_fee_cap if i == 0 else 1.0,
            balance=float(world.ledger.balance[self._accounts(world)[i]]) / 100,
            card_users_share=float((world.h_rail == 0).mean()),
            chain_users_share=float((world.h_rail == 1).mean()),
        )

    def heuristic(self, world: World, view: MarketView, scenario: Scenario, rng: np.random.Generator) -> NetworkBatch:
        p = scenario.roles.network
        card = world.card_fee_cap if p.strategy == "max" else p.card_fee
        bal = world.ledger.balance[self._accounts(world)]
        return NetworkBatch(np.array([card, world.chain_fee]), bal.copy(), np.array(["", ""], dtype=object))

    def validate(self, world: World, batch: NetworkBatch, scenario: Scenario) -> NetworkBatch:
        notes = batch.notes
        fee = np.clip(np.nan_to_num(batch.fee_rate), 0.0, 0.2)
        fee[0] = min(fee[0], world.card_fee_cap)
        fee[1] = world.chain_fee  # the protocol sets it, not the operator
        note(notes, fee != batch.fee_rate, "fee clipped to the cap")
        bal = world.ledger.balance[self._accounts(world)]
        div = np.clip(batch.dividend, 0, bal)
        note(notes, div < batch.dividend, "dividend clipped to balance")
        return NetworkBatch(fee, div, notes)
