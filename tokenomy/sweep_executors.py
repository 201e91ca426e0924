"""Where a sweep's runs execute: in this process, in a ``spawn`` process pool, or as Ray tasks.

Each run is a :class:`Job`: its run directory and either the scenario as data (a run to start) or
nothing (a run to resume from its own manifest). Every executor runs a job with the same
:func:`run_job` (``Runner(sc).run(path)`` or ``Runner.from_run(path).resume()``) and reports an
:class:`Outcome`; the sweep reads what each run left in its directory, so the tables never depend
on where a run executed.

Stopping. In this process the runner's own signal handling applies. Pool workers ignore SIGINT and
turn SIGTERM into :class:`RunInterrupted` while a run is in flight: the sweep process, on Ctrl-C or
SIGTERM, sends each worker SIGTERM, so every run in flight ends ``interrupted`` with its tables
written, and a worker that has no run in flight starts none. A worker whose sweep process died
(SIGKILL) exits at once (its run stays resumable as a killed run): no orphan keeps running, or
holds a run's lock against the restart. Ray tasks are cancelled (``ray.cancel`` raises
``KeyboardInterrupt`` in the task), with the same result.
"""

from __future__ import annotations

import importlib
import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any, Literal

from tokenomy.policies.client import redact
from tokenomy.runner import RunInterrupted, Runner, _interrupt_on_signals
from tokenomy.scenario import Scenario

__all__ = [
    "RAY_MISSING",
    "Job",
    "Outcome",
    "import_ray",
    "interrupt_on_signals",
    "run_here",
    "run_in_pool",
    "run_job",
    "run_on_ray",
]

STOP_TIMEOUT_S = 120.0
"""How long a stopping sweep waits for its runs in flight to write their tables and manifests; past it
their processes are killed (each run then stays resumable from its last checkpoint, as a killed run)."""

RAY_MISSING = "--executor ray needs Ray, an optional dependency: pip install 'tokenomy[ray]'"

RoundFn = Callable[[str, int], None]
DoneFn = Callable[["Outcome"], None]


@dataclass(frozen=True)
class Job:
    """One run of a sweep: ``data`` is the scenario of a run to start (None: resume ``path``)."""

    id: str
    path: str  # absolute: Ray workers do not share the sweep's working directory
    mode: Literal["start", "resume"]
    data: dict[str, Any] | None = None
    cwd: str | None = None  # where relative paths in the scenario (prompt files) are read from


@dataclass(frozen=True)
class Outcome:
    """How a job ended, as the process that ran it saw it (the run's manifest says the same, once it has one)."""

    id: str
    status: Literal["finished", "interrupted", "failed", "not started"]
    error: str | None = None
    signum: int | None = None  # the signal that interrupted it


def run_job(job: Job, on_round: Callable[[int], None] | None = None) -> Outcome:
    """Start or resume one run; every exception, ``KeyboardInterrupt`` included, becomes the outcome
    (an exception crossing a process boundary may not unpickle: ``RunInterrupted`` does not)."""
    if job.cwd is not None and os.path.isdir(job.cwd):
        os.chdir(job.cwd)
    report = (lambda r, _row: on_round(r)) if on_round is not None else None
    runner: Runner | None = None
    try:
        if job.mode == "resume":
            runner = Runner.from_run(job.path)
            runner.resume(on_round=report)
        else:
            assert job.data is not None
            runner = Runner(Scenario.model_validate(job.data))
            runner.run(job.path, on_round=report)
        return Outcome(job.id, "finished")
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, RunInterrupted) else int(signal.SIGINT)
        return Outcome(job.id, "interrupted", f"interrupted by {signal.Signals(signum).name}", signum)
    except Exception as exc:
        return Outcome(job.id, "failed", redact(f"{type(exc).__name__}: {exc}"))
    finally:
        if runner is not None:
            runner.close()


@contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`RunInterrupted` in the sweep process (the runner's handling)."""
    with _interrupt_on_signals():
        yield


def _raise_for(outcome: Outcome) -> None:
    """A run in this process was interrupted: the sweep stops as the run did."""
    if outcome.status == "interrupted":
        if outcome.signum is not None and outcome.signum != signal.SIGINT:
            raise RunInterrupted(outcome.signum)
        raise KeyboardInterrupt


# -- in this process --------------------------------------------------------------------------------
def run_here(jobs: Sequence[Job], on_round: RoundFn | None, on_done: DoneFn) -> None:
    """One run after another in this process (roles registered from your own code exist only here)."""
    for job in jobs:
        outcome = run_job(job, _reporter(on_round, job.id))
        on_done(outcome)
        _raise_for(outcome)


def _reporter(on_round: RoundFn | None, job_id: str) -> Callable[[int], None] | None:
    if on_round is None:
        return None
    return lambda r: on_round(job_id, r)


# -- a spawn process pool ---------------------------------------------------------------------------
_PROGRESS: Any = None  # in a worker: the queue its rounds are reported on
_IN_RUN = False  # in a worker: a run is in flight (SIGTERM interrupts it)
_STOPPING = False  # in a worker: SIGTERM came; start no further run


def _worker_sigterm(signum: int, frame: FrameType | None) -> None:
    global _STOPPING
    _STOPPING = True
    if _IN_RUN:
        raise RunInterrupted(signum)


def _exit_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


def _init_worker(progress: Any) -> None:
    global _PROGRESS
    _PROGRESS = progress
    # Ctrl-C at a terminal reaches the whole process group: the sweep process stops the workers
    # itself (SIGTERM), so each run is interrupted once, and an idle worker does not die mid-queue
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_sigterm)
    parent = multiprocessing.parent_process()
    if parent is not None:  # a sweep killed with -9 cannot stop us: leave with it
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()


def _pool_job(job: Job) -> Outcome:
    global _IN_RUN
    if _STOPPING:
        return Outcome(job.id, "not started")
    report = _PROGRESS
    _IN_RUN = True
    try:
        return run_job(job, (lambda r: report.put((job.id, r))) if report is not None else None)
    finally:
        _IN_RUN = False


def run_in_pool(jobs: Sequence[Job], n: int, on_round: RoundFn | None, on_done: DoneFn) -> None:
    """Every job in ``n`` ``spawn`` worker processes (the scenario crosses as data), rounds reported as
    they finish. On ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM/SIGHUP as :class:`RunInterrupted`) the runs
    in flight are interrupted, their outcomes reported, and the exception raised again."""
    ctx = multiprocessing.get_context("spawn")
    rounds_q: Any = ctx.Queue()
    pool = ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_init_worker, initargs=(rounds_q,))
    futures: dict[Future[Outcome], Job] = {}

    def drain() -> None:
        while on_round is not None:
            try:
                job_id, r = rounds_q.get_nowait()
            except queue.Empty:
                return
            on_round(job_id, r)

    def collect(done: set[Future[Outcome]]) -> None:
        for f in done:
            job = futures.pop(f)
            if f.cancelled():
                continue
            try:
                on_done(f.result())
            except Exception as exc:  # the worker died (BrokenProcessPool): its run is what it left on disk
                on_done(Outcome(job.id, "failed", f"{type(exc).__name__}: {exc}"))

    try:
        futures = {pool.submit(_pool_job, job): job for job in jobs}
        while futures:
            done, _ = wait(list(futures), timeout=0.1, return_when=FIRST_COMPLETED)
            drain()
            collect(done)
        pool.shutdown(wait=True)
    except KeyboardInterrupt:
        procs = _processes(pool)
        # no Future.cancel() here: a worker killed while starting breaks the pool, which then sets an
        # exception on every queued future, and a cancelled one crashed its manager thread
        # (InvalidStateError), leaving the rest unresolved; a stopping worker answers a queued job
        # with "not started" at once instead
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)  # a run in flight ends interrupted; an idle worker starts none
        try:
            # until the runs in flight have ended; not past the time limit, nor once every worker is
            # gone (one killed while starting breaks the pool, and its futures never resolve)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while futures and time.monotonic() < deadline and any(p.is_alive() for p in procs):
                done, _ = wait(list(futures), timeout=0.1, return_when=FIRST_COMPLETED)
                drain()
                collect(done)
            drain()
            collect({f for f in futures if f.done()})
        finally:
            _stop(pool, procs)
        raise
    except BaseException:
        _stop(pool, _processes(pool))
        raise
    finally:
        rounds_q.close()
        rounds_q.join_thread()


def _processes(pool: ProcessPoolExecutor) -> list[Any]:
    return list((getattr(pool, "_processes", None) or {}).values())  # no public handle before Python 3.14


def _stop(pool: ProcessPoolExecutor, procs: list[Any]) -> None:
    """Cancel what has not started and end this pool's workers, by their own handles."""
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
            p.join(timeout=5)


# -- Ray --------------------------------------------------------------------------------------------
def import_ray() -> Any:
    """The ``ray`` module (typed ``Any``: an optional dependency), or ``ImportError`` saying how to get it."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise ImportError(RAY_MISSING) from None


@contextmanager
def ray_cluster(address: str | None, num_cpus: int) -> Iterator[Any]:
    """Ray, connected: to ``address`` if given, to the cluster already initialised in this process
    (a notebook's, a test's) if any, else to a local one started here (and shut down after)."""
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        import logging

        if address is not None:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def ray_cpus(ray: Any) -> int:
    """The connected cluster's CPUs (one run per CPU)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def run_on_ray(ray: Any, jobs: Sequence[Job], n: int, on_done: DoneFn) -> None:
    """One Ray task per run, at most ``n`` in flight. The run directories must be on a file system every
    Ray worker sees at the same path (a local cluster's workers do). On ``KeyboardInterrupt`` the tasks
    in flight are cancelled (each run ends ``interrupted``), awaited, and the exception raised again."""
    remote = ray.remote(num_cpus=1, max_retries=0)(run_job)
    pending = deque(jobs)
    inflight: dict[Any, Job] = {}

    def get(ref: Any, job: Job) -> Outcome:
        try:
            out: Outcome = ray.get(ref)
            return out
        except Exception as exc:  # the worker died, or the task was cancelled
            return Outcome(job.id, "failed", redact(f"{type(exc).__name__}: {exc}"))

    try:
        while pending or inflight:
            while pending and len(inflight) < n:
                job = pending.popleft()
                inflight[remote.remote(job)] = job
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.2)
            for ref in ready:
                on_done(get(ref, inflight.pop(ref)))
    except KeyboardInterrupt:
        for ref in inflight:
            ray.cancel(ref)
        if inflight:
            ray.wait(list(inflight), num_returns=len(inflight), timeout=STOP_TIMEOUT_S)
        raise
