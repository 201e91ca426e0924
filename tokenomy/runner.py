"""The run's lifecycle: run directory, recorder, LLM decider and its answer cache, worker
processes, event loop, progress. The economy itself is ``Simulation``'s; this is the home of
what happens around it (and of resume, fork and sweeps next).

    runner = Runner(load_scenario("baseline"), metrics={"median_wealth": fn})
    path = runner.run("runs/base")        # all rounds through the LangGraph round, recorded
    runner.step()                         # or one round by hand, LLM roles included
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tokenomy.metrics import Metric
from tokenomy.outcome import RoundOutcome
from tokenomy.policies.cache import AnswerCache
from tokenomy.policies.llm import LLMConfigError, LLMDecider, LLMPolicy, redact
from tokenomy.recording import Recorder
from tokenomy.rounds import RoundContext, RoundState, run_rounds
from tokenomy.scenario import Scenario
from tokenomy.simulation import Simulation
from tokenomy.store import RunWriter
from tokenomy.world import World

__all__ = ["Runner"]


class Runner:
    """Runs one economy: ``Runner(scenario).run(out)``; ``with Runner(sc) as r:`` stops LLM workers at the end.

    ``metrics`` adds columns to ``metrics.parquet``: name -> function of a
    :class:`tokenomy.metrics.RoundData` (the world, the round's view and outcome, the scenario).
    """

    def __init__(
        self, scenario: Scenario, world: World | None = None, *, metrics: Mapping[str, Metric] | None = None
    ) -> None:
        self.sim = Simulation(scenario, world)
        self.metrics = dict(metrics or {})
        self.llm: LLMPolicy | None = None
        self.last_state: RoundState | None = None  # the graph's state after the last run()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def scenario(self) -> Scenario:
        return self.sim.scenario

    @property
    def world(self) -> World:
        return self.sim.world

    @property
    def outcome(self) -> RoundOutcome:
        """What the last round did."""
        return self.sim.outcome

    # -- the LLM side ---------------------------------------------------------------------------
    def attach_llm(self, *, replay: bool = False) -> LLMPolicy | None:
        """Set up the LLM side when the scenario has LLM-driven roles (else do nothing).

        Reads the API key now (unless replaying), so a missing key fails before anything is
        written. Answers are cached only once :meth:`open_llm_cache` names a file.
        """
        if not self.scenario.llm_roles():
            return None
        decider = LLMDecider(self.scenario.llm, seed=self.scenario.seed, replay=replay)
        self.llm = LLMPolicy(self.scenario, decider)
        self.sim.llm = self.llm
        return self.llm

    def open_llm_cache(self, path: Path, *, replay_from: Path | None = None) -> None:
        """Record answers in ``path``; or, replaying, copy the recorded ``replay_from`` there and read it."""
        if self.llm is None:
            return
        if replay_from is not None:
            shutil.copyfile(replay_from, path)
            self.llm.decider.cache = AnswerCache(path, read_only=True)
        else:
            self.llm.decider.cache = AnswerCache(path)

    def llm_usage(self) -> dict[str, Any] | None:
        """The LLM usage totals for the manifest, or None without LLM roles."""
        if self.llm is None:
            return None
        d = self.llm.decider
        u = d.usage
        return {
            "calls": u.calls,
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "cache_hits": u.cache_hits,
            "fallbacks": u.fallbacks,
            "estimated_cost_usd": round(u.cost_usd, 6),
            "structured_output_method": d.method,
            "methods_failed": d.methods_failed,
            "capped": u.capped,
            "capped_round": u.capped_round,
            "by_role": u.by_role,
            "workers": d.cfg.workers,
            "worker_failure": d.worker_failure,
        }

    def close(self) -> None:
        """Stop the LLM worker processes (``llm.workers > 1``), if any; they restart on the next call.

        They also stop when the runner is garbage-collected or the interpreter exits.
        """
        if self.llm is not None:
            self.llm.decider.close()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def event_loop(self) -> asyncio.AbstractEventLoop:
        """The runner's own event loop: every round runs on it, so the LLM clients' connections
        (bound to the loop that opened them) stay usable across ``step`` and repeated ``run`` calls."""
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop

    # -- running --------------------------------------------------------------------------------
    def step(self) -> RoundOutcome:
        """One round without the graph or recording (LLM answers are not cached)."""
        if self.llm is None:
            self.attach_llm()
        return self.sim.step(self.event_loop())

    def run(
        self,
        out: str | Path | None = None,
        *,
        rounds: int | None = None,
        overwrite: bool = False,
        on_round: Callable[[int, dict[str, Any]], None] | None = None,
        replay_from: str | Path | None = None,
    ) -> Path | None:
        """Run the remaining rounds through the LangGraph round graph; record to ``out`` if given.

        ``replay_from`` is a run directory whose recorded LLM answers are replayed (no network).
        Returns the run directory. A conservation failure stops the run: the tables so far are
        kept, the manifest says ``failed`` with the error, and the error is raised.
        """
        total = rounds if rounds is not None else self.scenario.rounds
        replay = Path(replay_from) / "llm-cache.sqlite" if replay_from is not None else None
        if replay is not None and not replay.is_file():
            raise LLMConfigError(f"{replay_from}: no recorded LLM answers to replay (llm-cache.sqlite missing)")
        if out is not None:
            RunWriter.check(Path(out), overwrite=overwrite)
        if self.llm is None:  # before the run directory exists: a missing key creates nothing
            self.attach_llm(replay=replay is not None)
        recorder = None
        if out is not None:
            manifest = self.llm.manifest() if self.llm is not None else None
            recorder = Recorder.open(
                self.scenario, Path(out), llm_manifest=manifest, metrics=self.metrics, overwrite=overwrite
            )
            self.open_llm_cache(recorder.path / "llm-cache.sqlite", replay_from=replay)
        elif replay is not None and self.llm is not None:
            self.llm.decider.cache = AnswerCache(replay, read_only=True)
        first = self.world.round
        try:
            ctx = RoundContext(self.sim, recorder, on_round)
            self.last_state = run_rounds(ctx, first=first, last=first + total, loop=self.event_loop())
        except BaseException as exc:
            if recorder is not None:
                error = redact(f"{type(exc).__name__}: {exc}")
                recorder.close("failed", error=error, **self._usage_extra())
            raise
        finally:  # the cache belongs to this run's directory: close it and detach it
            if self.llm is not None and self.llm.decider.cache is not None:
                self.llm.decider.cache.close()
                self.llm.decider.cache = None
        if recorder is not None:
            last = None  # what resume restores, and the hash it checks; relative, so the run can move
            if self.last_state is not None and self.last_state["snapshot"] is not None:
                rel = Path(self.last_state["snapshot"]).relative_to(recorder.path)
                last = {"path": str(rel), "sha256": self.last_state["snapshot_sha256"]}
            recorder.close("finished", last_snapshot=last, **self._usage_extra())
            return recorder.path
        return None

    def _usage_extra(self) -> dict[str, Any]:
        usage = self.llm_usage()
        return {"llm_usage": usage} if usage is not None else {}
