"""What every role has: an Observation, a Decision, a rule-based policy, and validation.

A role's *Decision* model (pydantic) describes one agent's choice at the boundary where an LLM or
a file supplies it. Inside the engine the same choices travel as a *batch*: a dataclass of numpy
arrays over the whole population, which the rule-based policy fills in one vectorised pass and
``validate`` clips to what each agent can afford. ``notes`` says, per agent, what was clipped and
why (empty string when nothing was).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from tokenomy.scenario import Scenario
from tokenomy.world import World

__all__ = ["Batch", "DecisionModel", "MarketView", "Role", "note"]


class DecisionModel(BaseModel):
    """Base of every role's Decision: strict, and with a short free-text rationale."""

    model_config = ConfigDict(extra="forbid")
    rationale: str = ""


@dataclass(frozen=True, slots=True)
class MarketView:
    """What every agent may know at the start of a round: public prices and aggregates."""

    round: int
    phi: float
    capital_price: float  # goods per unit of capital
    price_index: float  # cents per unit
    mean_price: float  # cents per unit, unweighted over firms
    unemployment: float
    mean_wage: float  # cents per round, over employed households
    rail_fees: tuple[float, float, float]


class Batch:
    """Mixin for role decision batches: arrays with one entry per agent of the role."""

    money: ClassVar[tuple[str, ...]] = ()  # fields held in cents, reported in currency units
    notes: NDArray[np.object_]

    def __len__(self) -> int:
        return len(self.notes)

    def as_dict(self, i: int) -> dict[str, Any]:
        """Agent ``i``'s decision as plain values (money in currency units)."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            if f.name == "notes":
                continue
            v = getattr(self, f.name)[i]
            v = v.item() if hasattr(v, "item") else v
            out[f.name] = v / 100 if f.name in self.money else v
        return out


def note(notes: NDArray[np.object_], mask: NDArray[np.bool_], text: str) -> None:
    """Append ``text`` to the notes of the agents in ``mask``."""
    if not mask.any():
        return
    cur = notes[mask]
    notes[mask] = np.where(cur == "", text, cur + ("; " + text))


class Role(Protocol):
    """One role of the economy (household, firm, bank, network, regulator)."""

    name: str

    def observe(self, world: World, view: MarketView, i: int) -> BaseModel: ...

    def heuristic(self, world: World, view: MarketView, scenario: Scenario, rng: np.random.Generator) -> Batch: ...

    def validate(self, world: World, batch: Batch, scenario: Scenario) -> Batch: ...

    # the LLM side: what one agent answers with, its readable id, and writing an answer into a batch
    decision_model: type[DecisionModel]

    def agent_name(self, world: World, i: int) -> str: ...

    def merge(self, world: World, batch: Any, i: int, decision: Any, scenario: Scenario) -> None: ...
