"""The round as a LangGraph StateGraph: one screen, six phases, one loop.

    observe -> decide -> clear -> settle -> regulate -> record --(more rounds?)--> observe
                                                                 \\-> END

The graph state is tiny on purpose (round counters, the policy label, the latest snapshot's id):
SQLite checkpoints store the whole state at every step, so a world in state would make them grow
quadratically. The world itself lives in the runtime context (``RoundContext.sim``), which
LangGraph does not checkpoint. All per-agent work happens inside the ``decide`` node as vectorised
(or, for LLM agents, gathered) calls: never one ``Send`` per agent (~0.3 ms each per round).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from tokenomy._sync import run_sync

if TYPE_CHECKING:
    from tokenomy.recording import Recorder
    from tokenomy.simulation import Simulation

__all__ = ["PHASES", "RoundContext", "RoundState", "build_round_graph", "run_rounds"]


class RoundState(TypedDict):
    round: int  # the round about to run (or just run, in `record`)
    last: int  # stop before this round
    policy: str  # "heuristic", or "llm:<roles>" when any role asks the model
    snapshot_id: str | None


@dataclass
class RoundContext:
    sim: Simulation
    recorder: Recorder | None = None
    on_round: Callable[[int, dict[str, Any]], None] | None = None


def observe(state: RoundState, runtime: Runtime[RoundContext]) -> dict[str, Any]:
    runtime.context.sim.observe()
    return {}


async def decide(state: RoundState, runtime: Runtime[RoundContext]) -> dict[str, Any]:
    await runtime.context.sim.adecide()  # every LLM call of the round, gathered concurrently
    return {}


def clear(state: RoundState, runtime: Runtime[RoundContext]) -> dict[str, Any]:
    runtime.context.sim.clear()
    return {}


def settle(state: RoundState, runtime: Runtime[RoundContext]) -> dict[str, Any]:
    runtime.context.sim.settle()  # raises ConservationError if money appeared or vanished
    return {}


def regulate(state: RoundState, runtime: Runtime[RoundContext]) -> dict[str, Any]:
    runtime.context.sim.regulate()
    return {}


def record(state: RoundState, runtime: Runtime[RoundContext]) -> dict[str, Any]:
    ctx = runtime.context
    row = ctx.recorder.record(ctx.sim) if ctx.recorder else None
    ctx.sim.advance()
    snap = ctx.recorder.snapshot(ctx.sim, final=state["round"] + 1 >= state["last"]) if ctx.recorder else None
    if ctx.on_round:
        ctx.on_round(state["round"], row or {})
    return {"round": state["round"] + 1, "snapshot_id": snap or state["snapshot_id"]}


def _next(state: RoundState) -> Literal["observe", "__end__"]:
    return "observe" if state["round"] < state["last"] else END


PHASES = (observe, decide, clear, settle, regulate, record)


def build_round_graph(checkpointer: Any = None) -> Any:
    g = StateGraph(RoundState, context_schema=RoundContext)
    for fn in PHASES:
        g.add_node(fn.__name__, fn)
    g.add_edge(START, "observe")
    for a, b in itertools.pairwise(PHASES):
        g.add_edge(a.__name__, b.__name__)
    g.add_conditional_edges("record", _next)
    return g.compile(checkpointer=checkpointer)


def run_rounds(ctx: RoundContext, *, first: int, last: int, checkpointer: Any = None) -> RoundState:
    """Run rounds ``first .. last-1`` of ``ctx.sim`` through the graph."""
    graph = build_round_graph(checkpointer)
    llm = ctx.sim.scenario.llm_roles()
    policy = f"llm:{','.join(llm)}" if llm else "heuristic"
    state: RoundState = {"round": first, "last": last, "policy": policy, "snapshot_id": None}
    limit = (last - first) * len(PHASES) + 10
    coro = graph.ainvoke(state, config={"recursion_limit": limit}, context=ctx)
    return run_sync(coro, ctx.sim.event_loop())  # type: ignore[no-any-return]
