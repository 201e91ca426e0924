"""The round as a LangGraph StateGraph: one screen, seven nodes, one loop.

    observe -> decide -> clear -> settle -> regulate -> advance -> record --(more rounds?)--> observe
                                                                         \\-> END

Every change of state is a node: ``decide`` applies what takes effect this round, ``regulate``
what takes effect from the next, ``advance`` moves the clock, the automation frontier, the capital
price and the saved random state, and ``record`` writes the round's metrics and tables (read from
its view and outcome) and the snapshot of the world as it enters the next round.

The graph state is tiny on purpose (the round counters and the last snapshot's path and SHA-256,
which resume will verify): SQLite checkpoints store the whole state at every step, so a world in
state would make them grow quadratically. The world lives in the runtime context
(``RoundContext.sim``), which LangGraph does not checkpoint. All per-agent work happens inside the
``decide`` node as vectorised (or, for LLM agents, gathered) calls: never one ``Send`` per agent
(~0.3 ms each per round).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from tokenomy._sync import run_sync
from tokenomy.recording import Recorder
from tokenomy.simulation import Simulation

__all__ = ["PHASES", "RoundContext", "RoundState", "build_round_graph", "run_rounds"]


class RoundState(TypedDict):
    round: int  # the round about to run (or just run, in `record`)
    last: int  # stop before this round
    snapshot: str | None  # path of the last world snapshot written
    snapshot_sha256: str | None


@dataclass
class RoundContext:
    sim: Simulation
    recorder: Recorder | None = None
    on_round: Callable[[int, dict[str, Any]], None] | None = None


Update = dict[str, Any]


def observe(state: RoundState, runtime: Runtime[RoundContext]) -> Update:
    runtime.context.sim.observe()
    return {}


async def decide(state: RoundState, runtime: Runtime[RoundContext]) -> Update:
    await runtime.context.sim.adecide()  # every LLM call of the round, gathered concurrently
    return {}


def clear(state: RoundState, runtime: Runtime[RoundContext]) -> Update:
    runtime.context.sim.clear()
    return {}


def settle(state: RoundState, runtime: Runtime[RoundContext]) -> Update:
    runtime.context.sim.settle()  # raises ConservationError if money appeared or vanished
    return {}


def regulate(state: RoundState, runtime: Runtime[RoundContext]) -> Update:
    runtime.context.sim.regulate()
    return {}


def advance(state: RoundState, runtime: Runtime[RoundContext]) -> Update:
    runtime.context.sim.advance()
    return {"round": state["round"] + 1}


def record(state: RoundState, runtime: Runtime[RoundContext]) -> Update:
    ctx, sim = runtime.context, runtime.context.sim
    assert sim.view is not None
    row: dict[str, Any] = {}
    update: Update = {}
    if ctx.recorder is not None:
        row = ctx.recorder.record(sim.world, sim.view, sim.outcome)
        snap = ctx.recorder.snapshot(sim.world, final=state["round"] >= state["last"])
        if snap is not None:
            update = {"snapshot": str(snap.path), "snapshot_sha256": snap.sha256}
    if ctx.on_round:
        ctx.on_round(sim.outcome.round, row)
    return update


def _next(state: RoundState) -> Literal["observe", "__end__"]:
    return "observe" if state["round"] < state["last"] else "__end__"  # langgraph's END


PHASES = (observe, decide, clear, settle, regulate, advance, record)


def build_round_graph() -> CompiledStateGraph[RoundState, RoundContext, RoundState, RoundState]:
    g = StateGraph(RoundState, context_schema=RoundContext)
    for fn in PHASES:
        g.add_node(fn.__name__, fn)
    g.add_edge(START, "observe")
    for a, b in itertools.pairwise(PHASES):
        g.add_edge(a.__name__, b.__name__)
    g.add_conditional_edges("record", _next)
    return g.compile()


def run_rounds(ctx: RoundContext, *, first: int, last: int, loop: asyncio.AbstractEventLoop) -> RoundState:
    """Run rounds ``first .. last-1`` of ``ctx.sim`` through the graph, on ``loop``."""
    graph = build_round_graph()
    state: RoundState = {"round": first, "last": last, "snapshot": None, "snapshot_sha256": None}
    limit = (last - first) * len(PHASES) + 10
    coro: Coroutine[Any, Any, dict[str, Any]] = graph.ainvoke(state, config={"recursion_limit": limit}, context=ctx)
    out = run_sync(coro, loop)
    return RoundState(
        round=out["round"], last=out["last"], snapshot=out["snapshot"], snapshot_sha256=out["snapshot_sha256"]
    )
