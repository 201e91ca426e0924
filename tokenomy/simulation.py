"""Simulation: builds a World from a Scenario, owns the seed, and runs the phases of a round.

The phases are methods called in order by the round graph (``tokenomy.rounds``)::

    observe -> decide -> clear -> settle -> regulate -> advance

``observe`` publishes what every agent may know; ``decide`` asks each registered role's policy,
validates the answers and applies what takes effect this round; ``clear`` runs the markets
(``tokenomy.markets``) without moving money; ``settle`` posts every payment
(``tokenomy.settlement``) and checks conservation; ``regulate`` applies the decisions that take
effect from the next round (the regulator's); ``advance`` moves the clock, the automation
frontier, the capital price and the saved random state on. Every random draw comes from the one
generator seeded by the scenario, in a fixed order, so a seed fixes the whole run.

The run's lifecycle (run directory, recording, the LLM client and its cache, the event loop) is
``tokenomy.runner``'s; here an LLM policy, when the scenario has LLM-driven roles, is given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Literal, Protocol

import numpy as np

from tokenomy import registry
from tokenomy._sync import run_sync
from tokenomy.agents.base import Batch, MarketView, Role
from tokenomy.agents.central_bank import config as central_bank_config
from tokenomy.initial import build_world, phi_at
from tokenomy.markets import clear
from tokenomy.outcome import RoundOutcome
from tokenomy.scenario import Scenario
from tokenomy.settlement import settle
from tokenomy.world import World

__all__ = ["DecisionSource", "Simulation", "apply_decisions"]


class DecisionSource(Protocol):
    """Where LLM answers come from (``tokenomy.policies.llm.LLMPolicy``): it writes them into the
    rules' batches before validation and returns one record per call."""

    async def decide(self, world: World, view: MarketView, batches: dict[str, Batch]) -> list[dict[str, Any]]: ...


def apply_decisions(
    world: World, decisions: Mapping[str, Batch], when: Literal["this_round", "next_round"]
) -> None:
    """Put the decisions that take effect ``when`` into the world: the one place decisions act.

    This round: the card network's fee, firms' prices and wage offers. From the next round: the
    regulator's taxes, UBI and fee cap.
    """
    for batch in decisions.values():
        if batch.takes_effect == when:
            batch.apply(world)


class Simulation:
    """One economy, advanced a round at a time: the phases, nothing else.

    ``tokenomy.Runner(scenario).run(out)`` runs it all with recording; ``step()`` runs one round
    of a rule-based economy by hand (tests, benchmarks).
    """

    def __init__(self, scenario: Scenario, world: World | None = None, *, llm: DecisionSource | None = None) -> None:
        self.scenario = scenario
        self.rng = np.random.default_rng(scenario.seed)
        self.world = world if world is not None else build_world(scenario, self.rng)
        if world is not None and world.rng_state:
            self.rng.bit_generator.state = world.rng_state
        self.llm = llm
        self.view: MarketView | None = None
        self.outcome = RoundOutcome(self.world.round)

    @property
    def roles(self) -> dict[str, Role]:
        """Every registered role's implementation, in registration order."""
        return {spec.name: spec.role for spec in registry.roles()}

    # -- phases ---------------------------------------------------------------------------------
    def observe(self) -> MarketView:
        w = self.world
        emp = w.h_employer >= 0
        self.view = MarketView(
            round=w.round,
            phi=w.phi,
            capital_price=w.capital_price,
            price_index=w.price_index,
            mean_price=float(w.f_price.mean()),
            unemployment=float(1.0 - emp.mean()),
            mean_wage=float(w.f_wage[w.h_employer[emp]].mean()) if emp.any() else 0.0,
            rail_fees=tuple(float(x) for x in w.rail_fees()),
        )
        self.outcome = RoundOutcome(w.round)
        return self.view

    async def adecide(self) -> dict[str, Batch]:
        """Rules decide for everyone (vectorised); LLM answers then replace theirs; validation clips all."""
        assert self.view is not None, "observe() first"
        if self.llm is None and self.scenario.llm_roles():
            raise RuntimeError(
                f"roles {', '.join(self.scenario.llm_roles())} are LLM-driven but no LLM is attached:"
                " run them with tokenomy.Runner, which connects the model"
            )
        w, s = self.world, self.scenario
        batches = {name: role.heuristic(w, self.view, s, self.rng) for name, role in self.roles.items()}
        if self.llm is not None:
            self.outcome.llm_records = await self.llm.decide(w, self.view, batches)
        out = {name: batch.validated(w, s) for name, batch in batches.items()}
        apply_decisions(w, out, "this_round")
        self.outcome.decisions = out
        return out

    def decide(self, loop: asyncio.AbstractEventLoop | None = None) -> dict[str, Batch]:
        """``adecide`` from synchronous code (on ``loop``, which LLM clients need to stay the same)."""
        return run_sync(self.adecide(), loop)

    def clear(self) -> None:
        clear(self.world, self.outcome, self.scenario, self.rng)

    def settle(self) -> tuple[int, int]:
        """Post every payment of the round, then check conservation; returns (issued, destroyed)."""
        settle(self.world, self.outcome, self.scenario)
        return self.outcome.issued, self.outcome.destroyed

    def regulate(self) -> None:
        """The decisions that take effect from the next round (the regulator's) take it."""
        apply_decisions(self.world, self.outcome.decisions, "next_round")

    def advance(self) -> None:
        """Close the round: publish its price level and move the clock and the frontier on."""
        w, s = self.world, self.scenario
        if self.outcome.price_index is not None:
            w.price_history = np.append(w.price_history, w.price_index)[-12:]  # the 12 levels before this one
            w.price_index = self.outcome.price_index
        cb = central_bank_config(s)
        w.output_trend += (float(w.f_output.sum()) - w.output_trend) / cb.trend_rounds
        w.round += 1
        w.phi = phi_at(s, w.round)
        w.capital_price *= 1.0 - s.automation.capital_price_decline
        w.rng_state = dict(self.rng.bit_generator.state)

    def step(self, loop: asyncio.AbstractEventLoop | None = None) -> RoundOutcome:
        """One round without the graph or recording: the same phases in order.

        LLM-driven roles step through ``tokenomy.Runner.step``, which passes the event loop their
        clients' connections belong to.
        """
        self.observe()
        self.decide(loop)
        self.clear()
        self.settle()
        self.regulate()
        outcome = self.outcome
        self.advance()
        return outcome
