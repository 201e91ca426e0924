"""What every role has: an Observation, a Decision, a rule-based policy, validation, and an effect.

A role's *Decision* model (pydantic) describes one agent's choice at the boundary where an LLM or
a file supplies it. Inside the engine the same choices travel as a *batch*: a dataclass of numpy
arrays over the whole population, which the rule-based policy fills in one vectorised pass. The
batch knows what to do with itself: ``merge`` writes one agent's LLM answer into it,
``validated`` clips every agent to what it owns (``notes`` says, per agent, what was clipped and
why; empty when nothing was), and ``apply`` puts what the world must remember into it, this round
or from the next (``takes_effect``). Keeping those on the batch keeps the ``Role`` protocol free
of the batch's type, so a registry of different roles needs no casts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from tokenomy.scenario import Scenario
from tokenomy.world import World

__all__ = ["Batch", "DecisionModel", "ExampleAnswer", "MarketView", "Role", "expect", "note", "obs_number"]

D = TypeVar("D", bound=BaseModel)

# What a stand-in model answers for a Decision: (observation, persona) -> answer fields, plus the
# fields an "out of range" fault overwrites with values outside the Decision's bounds.
ExampleAnswer = tuple[Callable[[dict[str, Any], str], dict[str, Any]], dict[str, Any]]


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
    rail_fees: tuple[float, ...]


def obs_number(obs: Mapping[str, Any], key: str, default: float = 0.0) -> float:
    """A numeric field of an observation as a stand-in model reads it (``example_answers``):
    absent or junk gives ``default``, so the fake server never crashes on what it is sent."""
    v = obs.get(key, default)
    if not isinstance(v, int | float) or isinstance(v, bool):
        return default
    try:
        x = float(v)
    except OverflowError:  # an integer too large for a float
        return default
    return x if math.isfinite(x) else default


def expect(decision: BaseModel, kind: type[D]) -> D:
    """``decision`` as a ``kind``: the LLM planner pairs each role with its own Decision, so anything
    else is a bug in the caller, raised rather than merged."""
    if not isinstance(decision, kind):
        raise TypeError(f"expected a {kind.__name__}, got a {type(decision).__name__}")
    return decision


class Batch:
    """Mixin for role decision batches: arrays with one entry per agent of the role."""

    money: ClassVar[tuple[str, ...]] = ()  # fields held in cents, reported in currency units
    takes_effect: ClassVar[Literal["this_round", "next_round"]] = "this_round"
    notes: NDArray[np.object_]

    def __len__(self) -> int:
        return len(self.notes)

    def as_dict(self, i: int) -> dict[str, Any]:
        """Agent ``i``'s decision as plain values (money in currency units)."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]  # every Batch subclass is a dataclass
            if f.name == "notes" or getattr(self, f.name) is None:  # an optional column left unset
                continue
            v = getattr(self, f.name)[i]
            v = v.item() if hasattr(v, "item") else v
            out[f.name] = v / 100 if f.name in self.money else v
        return out

    def validated(self, world: World, scenario: Scenario) -> Batch:
        """A copy clipped to what each agent owns and may do, with notes saying what was clipped."""
        raise NotImplementedError

    def merge(self, world: World, i: int, decision: BaseModel, scenario: Scenario) -> None:
        """Write agent ``i``'s LLM answer (currency units) into the batch, before validation."""
        raise NotImplementedError(f"{type(self).__name__} takes no LLM answers")

    def merge_shares(self, world: World, members: NDArray[np.int64], decision: BaseModel, scenario: Scenario) -> None:
        """Write one archetype's answer into each of its members' decisions."""
        raise NotImplementedError(f"{type(self).__name__} has no archetypes")

    def apply(self, world: World) -> None:
        """Put what the world keeps of these decisions into it (at ``takes_effect``); most keep nothing."""


def note(notes: NDArray[np.object_], mask: NDArray[np.bool_], text: str) -> None:
    """Append ``text`` to the notes of the agents in ``mask``."""
    if not mask.any():
        return
    cur = notes[mask]
    notes[mask] = np.where(cur == "", text, cur + ("; " + text))


class Role(Protocol):
    """One role of the economy: what an agent sees, what it may decide, and the rules' decisions.

    ``tokenomy.registry`` declares the rest (name, accounts, section, prompt, whether an LLM may
    drive it). ``share_decision`` is the Decision of one call for a whole archetype, where the role
    has archetypes; ``example_answers`` are what the fake OpenAI server answers per Decision name.
    """

    @property
    def decision_model(self) -> type[DecisionModel]: ...

    @property
    def share_decision(self) -> type[DecisionModel] | None: ...

    @property
    def example_answers(self) -> Mapping[str, ExampleAnswer]: ...

    def observe(self, world: World, view: MarketView, i: int) -> BaseModel: ...

    def heuristic(self, world: World, view: MarketView, scenario: Scenario, rng: np.random.Generator) -> Batch: ...
