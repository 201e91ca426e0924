"""The run's lifecycle: run directory, recorder, LLM decider and its answer cache, worker
processes, event loop, progress. The economy itself is ``Simulation``'s; this is the home of
what happens around it: resume, pause and continue, fork (and sweeps next).

    runner = Runner(load_scenario("baseline"), metrics={"median_wealth": fn})
    path = runner.run("runs/base")        # all rounds through the LangGraph round, recorded
    runner.step()                         # or one round by hand, LLM roles included
    tokenomy.resume("runs/base")          # a killed or interrupted run, continued from its checkpoint
    runner.run("runs/ubi", pause_at=59)   # stop after round 59, checkpointed ...
    runner.update({"roles.regulator.ubi": 500}).resume()   # ... change the policy from round 60, go on
    tokenomy.fork("runs/base", at_round=59, set={"roles.regulator.ubi": 500}, out="runs/ubi-fork")
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import signal
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import ValidationError

from tokenomy._sync import run_sync
from tokenomy.changes import Change, act, changed, reapply
from tokenomy.forks import create_branch, open_parent
from tokenomy.metrics import Metric, RoundData, metrics_row
from tokenomy.outcome import RoundOutcome
from tokenomy.policies.cache import AnswerCache
from tokenomy.policies.llm import LLMConfigError, LLMDecider, LLMPolicy, redact
from tokenomy.recording import Recorder
from tokenomy.rounds import RoundContext, RoundState, run_rounds
from tokenomy.scenario import Scenario, dotted
from tokenomy.simulation import Simulation
from tokenomy.store import Checkpoint, RunDirError, RunWriter
from tokenomy.world import World

__all__ = ["RunInterrupted", "Runner", "fork", "resume"]


class RunInterrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP during a recorded run: it ends as Ctrl-C ends it (tables written, manifest
    ``interrupted``); a ``KeyboardInterrupt``, so whatever stops on Ctrl-C stops on these too."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise RunInterrupted(signum)


@contextmanager
def _interrupt_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`RunInterrupted` while a run is recorded (in the main thread,
    and only where nobody installed a handler or asked to ignore them, as ``nohup`` does)."""
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is signal.SIG_DFL:
                previous[sig] = signal.signal(sig, _raise_interrupted)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_UNWIND_SECONDS = 30.0  # how long a stopped run waits for the tasks it cancelled


def _stop_reason(exc: BaseException) -> tuple[str, str]:
    """The manifest's status and error for what ended a run."""
    if isinstance(exc, RunInterrupted):
        return "interrupted", f"interrupted by {exc}"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", "interrupted by SIGINT (Ctrl-C)"
    return "failed", redact(f"{type(exc).__name__}: {exc}")


# the decider's state a checkpoint keeps, beside its usage totals: resumed, the caps, the method
# found and the cost estimates go on from where they were
_DECIDER_STATE = ("method", "methods_failed", "reached", "worker_failure", "_reserved", "_chars_sent")


def _last_answer(cache: Path) -> int:
    """The rowid of the last answer recorded in ``cache`` (SQLite gives each insert a larger one)."""
    if not cache.is_file():
        return 0
    with closing(sqlite3.connect(f"file:{cache}?mode=ro", uri=True)) as db:
        (rowid,) = db.execute("SELECT max(rowid) FROM answers").fetchone()
    return int(rowid or 0)


def _forget_answers_after(cache: Path, rowid: int) -> None:
    """Delete the answers recorded after a checkpoint: the rounds after it ask again, so their calls,
    tokens, costs and caps count as an uninterrupted run's did (a cached answer counts none)."""
    if cache.is_file():
        with closing(sqlite3.connect(cache)) as db:
            db.execute("DELETE FROM answers WHERE rowid > ?", (rowid,))
            db.commit()


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
        self.path: Path | None = None  # the run directory of the last run() or resume(), once it exists
        self._loop: asyncio.AbstractEventLoop | None = None
        # from_run() or forked(): writer, checkpoint, last round, whether continuing it is a resume
        self._resuming: tuple[RunWriter, Checkpoint, int, bool] | None = None
        self._paused = False  # run(pause_at=...) stopped: resume() goes on in self.path
        self._pending: dict[str, Any] = {}  # update()'s fields and their old values, recorded on resume()
        self._driving = False

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

    def preflight(self, *, replay: bool = False) -> None:
        """Attach the LLM side and send the first request of the next round now.

        A wrong key, model or URL then stops the run (``LLMUnavailableError``) before a round runs
        or a run directory is written; the answer is kept for that round, which does not ask again.
        Nothing is sent when replaying, without LLM roles, or once the endpoint has answered.
        """
        if self.llm is None:
            self.attach_llm(replay=replay)
        if self.llm is None or self.llm.decider.replay or self.llm.decider.reached:
            return
        sim = self.sim
        saved = sim.view, sim.outcome
        try:
            request = self.llm.first_request(sim.world, sim.observe())
        finally:
            sim.view, sim.outcome = saved  # observe() again in the round: nothing here may show
        if request is not None:
            run_sync(self.llm.decider.preflight(request, round_no=sim.world.round), self.event_loop())

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
            **u.summary(),  # decisions, from_model, model_share, repaired, capped_decisions, failed, ...
        }

    def close(self) -> None:
        """Stop the LLM worker processes (``llm.workers > 1``), if any; they restart on the next call.

        They also stop when the runner is garbage-collected or the interpreter exits. A runner made by
        :meth:`from_run` and never resumed lets go of the run directory's lock here.
        """
        if self.llm is not None:
            self.llm.decider.close()
        if self._resuming is not None:
            self._resuming[0].release()
            self._resuming = None

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
        unique: bool = False,
        pause_at: int | None = None,
    ) -> Path | None:
        """Run the remaining rounds through the LangGraph round graph; record to ``out`` if given.

        ``pause_at``: stop after that round, checkpointed, with the manifest ``paused``;
        :meth:`update` may then change the scenario and :meth:`resume` goes on to the last round in
        the same directory (``tokenomy resume`` too). The runner's own stop rather than LangGraph's
        ``interrupt``: the round graph keeps no state to resume (the world is not in it), and a
        stop at a checkpoint is the same stop a killed run makes, so pause, resume and fork share
        one tested way back in.

        ``unique``: ``out`` is a new directory, made atomically (suffixed when the name is taken).
        The directory is locked while the run writes it; SIGTERM and SIGHUP end the run as Ctrl-C
        does (tables written, manifest ``interrupted``), and :func:`resume` continues it.
        ``replay_from`` is a run directory whose recorded LLM answers are replayed (no network).
        Returns the run directory. A conservation failure stops the run: the tables so far are
        kept, the manifest says ``failed`` with the error, and the error is raised. So does an LLM
        run once more than ``llm.max_fallback_share`` of its model answers failed (checked after
        every round: ``LLMFallbackError``); an endpoint that refuses the configuration stops it
        before its first round, with nothing written (``LLMUnavailableError``, see :meth:`preflight`).
        """
        if self._resuming is not None or self._paused:
            raise RuntimeError(f"the run in {self.path or 'its directory'} is not finished: go on with resume()")
        self._pending = {}  # the scenario a new run records is the one in force now
        total = rounds if rounds is not None else self.scenario.rounds
        stop = None
        if pause_at is not None:
            first = self.world.round
            if out is None:
                raise ValueError("pause_at needs a run directory (out): a paused run goes on from its checkpoint")
            if not first <= pause_at < first + total - 1:
                raise ValueError(f"pause_at={pause_at}: not a round before the last ({first}-{first + total - 2})")
            stop = pause_at + 1
        replay = Path(replay_from) / "llm-cache.sqlite" if replay_from is not None else None
        if replay is not None and not replay.is_file():
            raise LLMConfigError(f"{replay_from}: no recorded LLM answers to replay (llm-cache.sqlite missing)")
        if out is not None and not unique:
            RunWriter.check(Path(out), overwrite=overwrite)
        # before the run directory exists: a missing key, a wrong model or URL creates nothing
        self.preflight(replay=replay is not None)
        recorder = None
        first = self.world.round
        if out is not None:
            manifest = self.llm.manifest() if self.llm is not None else None
            extra: dict[str, Any] = {"round_range": [first, first + total]}  # what resume completes
            if replay_from is not None:
                extra["replay_from"] = str(replay_from)
            recorder = Recorder.open(
                self.scenario,
                Path(out),
                llm_manifest=manifest,
                metrics=self.metrics,
                overwrite=overwrite,
                unique=unique,
                extra=extra,
            )
            self.open_llm_cache(recorder.path / "llm-cache.sqlite", replay_from=replay)
        elif replay is not None and self.llm is not None:
            self.llm.decider.cache = AnswerCache(replay, read_only=True)
        return self._drive(recorder, first, first + total, on_round, stop=stop)

    def _drive(
        self,
        recorder: Recorder | None,
        first: int,
        last: int,
        on_round: Callable[[int, dict[str, Any]], None] | None,
        *,
        stop: int | None = None,
    ) -> Path | None:
        """Rounds ``first .. last-1`` (or ``stop-1``, paused there) through the round graph, recorded by
        ``recorder``; however the run ends, its directory says so: ``finished``, ``paused``,
        ``interrupted`` (a signal) or ``failed`` (the error)."""
        stop = last if stop is None else stop
        if recorder is not None:
            self.path = recorder.path
            recorder.state = self._checkpoint_state
        try:
            self._driving = True
            with _interrupt_on_signals():
                if stop > first:  # a resumed run whose rounds were all recorded has only its finish left
                    ctx = RoundContext(self.sim, recorder, self._checked(on_round))
                    self.last_state = run_rounds(ctx, first=first, last=stop, loop=self.event_loop())
        except BaseException as exc:
            if recorder is not None:
                status, error = _stop_reason(exc)
                recorder.close(status, error=error, **self._usage_extra())
            self._unwind()
            raise
        finally:  # the cache belongs to this run's directory: close it and detach it
            self._driving = False
            if self.llm is not None and self.llm.decider.cache is not None:
                self.llm.decider.cache.close()
                self.llm.decider.cache = None
        if recorder is not None:  # last_snapshot (what resume restores, and its hash) came with the checkpoint
            self._paused = stop < last  # the round graph snapshotted and checkpointed the pause round as its last
            recorder.close("paused" if self._paused else "finished", **self._usage_extra())
            return recorder.path
        return None

    def _unwind(self) -> None:
        """What ``asyncio.run`` does on its way out: cancel the tasks a stopped run left on the loop and
        let them finish, so none is collected half-run (LangGraph's then print errors at exit)."""
        loop = self._loop
        if loop is None or loop.is_closed() or loop.is_running():
            return
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in tasks:
            t.cancel()

        async def settle() -> None:
            # bounded: a task that ignores its cancellation is left behind, the stopped run still ends
            # (a run interrupted by SIGHUP hung once in CI after its directory was finished; not reproduced)
            await asyncio.wait(tasks, timeout=_UNWIND_SECONDS)

        if tasks:
            run_sync(settle(), loop)

    # -- resume ---------------------------------------------------------------------------------
    @classmethod
    def from_run(cls, path: str | Path, *, metrics: Mapping[str, Metric] | None = None) -> Runner:
        """A runner set to continue the stopped run in ``path`` (killed, interrupted or failed): call
        :meth:`resume`.

        It locks the directory (a run still writing there raises :class:`RunDirError`), rebuilds the
        scenario from the manifest and the world from the checkpoint's snapshot, checked against its
        SHA-256, restores the LLM usage and caps, and checks the endpoint; the directory is changed
        only by :meth:`resume`. ``metrics`` must be the run's own metric functions, if it had any.
        """
        run_dir = Path(path)
        writer, point = RunWriter.reopen(run_dir)
        try:
            m = writer.manifest
            if point.world is None and "fork" in m:
                raise RunDirError(f"{run_dir}: a fork that stopped before its first round: fork its parent again")
            try:
                scenario = Scenario.model_validate(m["scenario"])
            except ValidationError as exc:  # one line, as every bad input gets: the first field and why
                e = exc.errors()[0]
                where = f"scenario.{'.'.join(str(x) for x in e['loc'])}: {e['msg']} (got {e.get('input')!r:.60})"
                raise RunDirError(f"{run_dir / 'manifest.json'}: its scenario does not validate ({where})") from None
            first, last = m.get("round_range", [0, scenario.rounds])
            if sorted(metrics or {}) != sorted(m.get("extra_metrics", [])):
                raise RunDirError(
                    f"{run_dir}: the run has metric columns of its own ({', '.join(m.get('extra_metrics', []))}):"
                    " resume it from Python, Runner.from_run(path, metrics={...}) with the same functions"
                )
            if point.world is None and first != 0:
                raise RunDirError(f"{run_dir}: stopped before its first checkpoint, from a world of its own")
            runner = cls(scenario, point.world, metrics=metrics)
            reapply(runner.world, scenario, m.get("changes") or [], point.round + 1)  # set after the snapshot
            runner._setup_llm(run_dir, m, point.state, replay=m.get("replay_from") is not None)
        except BaseException:
            writer.release()
            raise
        runner._resuming = (writer, point, int(last), True)
        return runner

    def _setup_llm(self, run_dir: Path, manifest: Mapping[str, Any], state: Mapping[str, Any], *, replay: bool) -> None:
        """The LLM side of a run going on from a checkpoint: its prompts unchanged, its usage and caps as
        the checkpoint left them, the endpoint answering (else stop before anything changes)."""
        if self.attach_llm(replay=replay) is not None:
            self._check_prompts(run_dir, manifest.get("llm") or {})
            self._restore_llm(state.get("llm"))
            self.preflight(replay=replay)

    @classmethod
    def forked(
        cls,
        path: str | Path,
        *,
        at_round: int,
        out: str | Path,
        set: Mapping[str, Any] | None = None,
        rounds: int | None = None,
        metrics: Mapping[str, Metric] | None = None,
        overwrite: bool = False,
    ) -> Runner:
        """A runner set to continue, in ``out``, a fork of the run in ``path`` from the end of round
        ``at_round`` with the scenario fields ``set`` changed from the next round: call :meth:`resume`.

        ``out`` is made now, holding the parent's rounds up to ``at_round`` (``tokenomy.forks``
        explains what is shared); the fork runs to the parent's last round, or ``rounds`` more.
        Raises :class:`RunDirError` or ``ScenarioError`` (one line each) before anything is written.
        """
        change: Change | None = None
        with open_parent(Path(path), at_round, rounds=rounds) as parent:
            if Path(out).resolve() == parent.path.resolve():
                raise RunDirError(f"--out {out}: the run being forked; write the fork into another directory")
            RunWriter.check(Path(out), overwrite=overwrite)
            base = parent.base()
            if set:
                if parent.replay:
                    raise RunDirError(
                        f"{path}: replays another run's answers; a fork with --set asks other questions, so fork"
                        f" the run it replays ({parent.manifest['replay_from']})"
                    )
                change = changed(base, set)
            if sorted(metrics or {}) != sorted(parent.manifest.get("extra_metrics") or []):
                raise RunDirError(
                    f"{path}: the run has metric columns of its own ({', '.join(parent.manifest['extra_metrics'])}):"
                    " fork it from Python, tokenomy.fork(path, ..., metrics={...}) with the same functions"
                )
            runner = cls(parent.scenario_for(parent.snapshot.round), parent.world, metrics=metrics)
            try:
                for r in parent.rerun:  # T has no snapshot: from the one before, as the parent ran
                    runner._adopt(parent.scenario_for(r), parent.changed_in(r))
                    runner.step()
                    assert runner.sim.view is not None
                    d = RoundData(runner.world, runner.sim.view, runner.outcome, runner.scenario)
                    parent.check_rerun(r, metrics_row(d, runner.metrics))
                snapshot = runner.world.to_bytes() if parent.rerun else None  # the world of T, before the change
                if change is not None:  # in force from T+1 (create_branch records it), before the preflight asks
                    runner._adopt(change.scenario, change.set)
                else:
                    runner._adopt(base, ())
                state = parent.snapshot.state if not parent.rerun else {}
                runner._setup_llm(parent.path, parent.manifest, state, replay=parent.replay)
                writer, point = create_branch(
                    parent,
                    Path(out),
                    world=runner.world,
                    snapshot=snapshot,
                    state=state,
                    change=change,
                    llm_manifest=runner.llm.manifest() if runner.llm is not None else None,
                    metrics=metrics,
                    overwrite=overwrite,
                )
            except BaseException:
                runner.close()
                raise
        runner._resuming = (writer, point, parent.end, False)
        return runner

    def update(self, changes: Mapping[str, Any]) -> Runner:
        """Change scenario fields between rounds: ``runner.update({"roles.regulator.ubi": 500})``.

        Validated as ``--set`` is (one line naming the field, as ``ScenarioError``); fields that fix
        the population, the seed, the opening state or who decides cannot change
        (``tokenomy.changes`` says which and why). Fields the world copied at round 0 (rail fees,
        the automation schedule) are set in it now, so every change acts from the next round. A run
        paused (``run(out, pause_at=T)``) or opened by :meth:`from_run` records the change in its
        manifest when :meth:`resume` goes on: ``changes: [{"round": T+1, "set": ..., "was": ...}]``,
        the manifest's scenario being the one in force from then. Returns the runner.
        """
        if self._driving:
            raise RuntimeError("update() during a run: pause it first, Runner.run(out, pause_at=round)")
        change = changed(self.scenario, changes)
        self._adopt(change.scenario, change.set)
        for key, was in change.was.items():
            self._pending.setdefault(key, was)
        return self

    def _adopt(self, scenario: Scenario, keys: Iterable[str]) -> None:
        """Make ``scenario`` the one in force, and set what the world copied of the changed ``keys``."""
        self.sim.scenario = scenario
        if self.llm is not None:
            self.llm.scenario = scenario  # personas and policy texts are read from it every round
        act(self.world, scenario, keys)

    def _record_changes(self, writer: RunWriter, round_no: int) -> None:
        """Put :meth:`update`'s changes in the manifest, in force from ``round_no``."""
        now = dotted(self.scenario.model_dump(mode="json"))
        was = {k: old for k, old in self._pending.items() if now[k] != old}  # a field set back is no change
        self._pending = {}
        if was:
            m = writer.manifest
            m["scenario"] = self.scenario.model_dump(mode="json")
            m.setdefault("changes", []).append({"round": round_no, "set": {k: now[k] for k in was}, "was": was})

    @property
    def resume_rounds(self) -> range:
        """The rounds :meth:`resume` will run (empty unless made by :meth:`from_run` or :meth:`forked`)."""
        return range(self.world.round, self._resuming[2]) if self._resuming is not None else range(0)

    def resume(self, *, on_round: Callable[[int, dict[str, Any]], None] | None = None) -> Path:
        """Continue the run :meth:`from_run` opened (or :meth:`forked` made, or ``run(pause_at=...)``
        paused), in its own directory, from its checkpoint.

        The table parts and snapshots past the checkpoint are removed and the answers the LLM gave
        after it are forgotten (they are asked again, so calls, tokens and caps count as an
        uninterrupted run's did); the finished run's tables equal an uninterrupted run's in every
        column but the timings (``latency_ms``, ``llm_latency_*``). :meth:`update`'s changes are
        recorded first. Returns the run directory.
        """
        if self._resuming is None and self._paused and self.path is not None:
            writer, point = RunWriter.reopen(self.path)  # locked again, its snapshot checked
            if point.round != self.world.round - 1:
                writer.release()
                raise RunDirError(f"{self.path}: its checkpoint (round {point.round}) moved since this runner paused")
            self._resuming = (writer, point, int(writer.manifest["round_range"][1]), True)
            self._paused = False
        if self._resuming is None:
            raise RuntimeError("nothing to resume: make the runner with Runner.from_run(path)")
        writer, point, last, resumed = self._resuming
        self._resuming = None
        try:
            self._record_changes(writer, point.round + 1)
            writer.truncate(point.round, resumed=resumed)
            if self.llm is not None:
                cache = writer.path / "llm-cache.sqlite"
                replay = self.llm.decider.replay
                if not replay:
                    _forget_answers_after(cache, int(point.state.get("llm_cache_rowid", 0)))
                self.llm.decider.cache = AnswerCache(cache, read_only=replay)
            recorder = Recorder.reopen(self.scenario, writer, point, metrics=self.metrics)
        except BaseException:
            writer.release()
            raise
        path = self._drive(recorder, self.world.round, last, on_round)
        assert path is not None
        return path

    def _checkpoint_state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the runner: the LLM decider's usage, caps and method, and how many
        answers its cache held (what resume keeps of it)."""
        if self.llm is None:
            return {}
        d = self.llm.decider
        state: dict[str, Any] = {
            "llm": {"usage": dataclasses.asdict(d.usage), **{k: getattr(d, k) for k in _DECIDER_STATE if hasattr(d, k)}}
        }
        if d.cache is not None and not d.cache.read_only:
            state["llm_cache_rowid"] = _last_answer(d.cache.path)
        return state

    def _restore_llm(self, state: dict[str, Any] | None) -> None:
        """Put the decider back as a checkpoint left it, but for ``reached``: the endpoint is asked again."""
        if self.llm is None or state is None:
            return
        d = self.llm.decider
        usage = type(d.usage)()
        for f in dataclasses.fields(usage):
            if f.name in state["usage"]:
                value = state["usage"][f.name]
                setattr(usage, f.name, Counter(value) if isinstance(getattr(usage, f.name), Counter) else value)
        d.usage = usage
        for k in _DECIDER_STATE:
            if k in state and k != "reached":
                setattr(d, k, state[k])

    def _check_prompts(self, run_dir: Path, recorded: dict[str, Any]) -> None:
        """A prompt file edited since the run began would mix two prompts in one run: refuse."""
        assert self.llm is not None
        now = self.llm.manifest().get("roles", {})
        for role, was in (recorded.get("roles") or {}).items():
            sha = now.get(role, {}).get("prompt_sha256")
            if sha is not None and sha != was.get("prompt_sha256"):
                raise RunDirError(
                    f"{run_dir}: the {role} prompt {now[role].get('prompt')} changed since the run began"
                    f" (SHA-256 {sha}, was {was.get('prompt_sha256')}); resuming would mix two prompts"
                )

    def _checked(
        self, on_round: Callable[[int, dict[str, Any]], None] | None
    ) -> Callable[[int, dict[str, Any]], None] | None:
        """``on_round``, then the fallback-share check once the round is recorded (LLM runs only)."""
        if self.llm is None:
            return on_round
        decider = self.llm.decider

        def after(r: int, row: dict[str, Any]) -> None:
            if on_round is not None:
                on_round(r, row)
            decider.check_fallback_share(r)

        return after

    def _usage_extra(self) -> dict[str, Any]:
        usage = self.llm_usage()
        return {"llm_usage": usage} if usage is not None else {}


def fork(
    path: str | Path,
    *,
    at_round: int,
    out: str | Path,
    set: Mapping[str, Any] | None = None,
    rounds: int | None = None,
    metrics: Mapping[str, Metric] | None = None,
    on_round: Callable[[int, dict[str, Any]], None] | None = None,
    overwrite: bool = False,
) -> Path:
    """Branch a counterfactual from the end of round ``at_round`` of the run in ``path`` (what
    ``tokenomy fork`` does): ``out`` gets the parent's rounds up to ``at_round`` (its table rows,
    snapshots and LLM answers), then runs the rest with ``set`` changed (``{"roles.regulator.ubi":
    500}``) to the parent's last round, or ``rounds`` more. Without ``set`` the branch's tables equal
    the parent's but for the timings. Its manifest's ``fork`` names the parent, the round and the
    snapshot it started from; ``changes`` says from which round the scenario changed. Returns ``out``.
    """
    with Runner.forked(
        path, at_round=at_round, out=out, set=set, rounds=rounds, metrics=metrics, overwrite=overwrite
    ) as runner:
        return runner.resume(on_round=on_round)


def resume(
    path: str | Path,
    *,
    metrics: Mapping[str, Metric] | None = None,
    on_round: Callable[[int, dict[str, Any]], None] | None = None,
) -> Path:
    """Continue the stopped run in ``path`` from its last checkpoint to its last round (what
    ``tokenomy resume RUN_DIR`` does): ``Runner.from_run(path).resume()``. Returns the run directory."""
    with Runner.from_run(path, metrics=metrics) as runner:
        return runner.resume(on_round=on_round)
