"""Worker processes for a round's LLM calls: the client's CPU spread over cores.

Every call costs the client a few milliseconds of CPU (openai-python's request transform and
response models, httpx and httpcore, langchain's runnable layer), all on one core in one event
loop. With hundreds of calls in flight that CPU, not the model, sets the round time: 110 calls at
~4 ms are ~0.45 s of serial work however fast the server is. ``llm.workers = N`` starts N
processes, each with its own ``ModelClient``, event loop and connection pools; a round's requests
are dealt round-robin to them and the answers come back in request order. The answer cache, the
spending caps and the structured-output choice stay in the parent, so replay and caps behave the
same for any N. Only requests and outcomes cross the pipe; each worker reads the API key from the
environment it inherits, so the key is never pickled.

Processes are started with ``spawn`` (safe beside threads, in Jupyter and on every OS). As with
any ``spawn`` multiprocessing, a script that runs a simulation with ``workers > 1`` needs the usual
``if __name__ == "__main__":`` guard. A worker that dies fails only its share of that round's
calls (the rules decide those agents, with the reason recorded); the decider then carries on in
its own process. Workers watch their parent and exit with it, so ``kill -9`` of a run leaves no
process behind.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING

from tokenomy.policies.client import CallOutcome, ModelClient, Request, read_key

if TYPE_CHECKING:
    from tokenomy.scenario import LLM

__all__ = ["WorkerPool"]

_client: ModelClient | None = None
_loop: asyncio.AbstractEventLoop | None = None


def _start(cfg_json: str, seed: int, requests_per_second: float | None) -> None:
    """Worker initialiser: one client and one event loop for the worker's life (connections stay open)."""
    global _client, _loop
    from tokenomy.scenario import LLM

    parent = multiprocessing.parent_process()
    if parent is not None:  # a parent killed with -9 cannot shut us down: leave with it
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()

    cfg = LLM.model_validate_json(cfg_json)
    _loop = asyncio.new_event_loop()
    asyncio.set_event_loop(_loop)
    _client = ModelClient(cfg, seed=seed, key=read_key(cfg), requests_per_second=requests_per_second)


def _exit_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(0)


def _serve(method: str, requests: list[Request], concurrency: int) -> list[CallOutcome]:
    assert _client is not None and _loop is not None, "worker not started"
    return _loop.run_until_complete(_client.call_many(method, requests, concurrency))


class WorkerPool:
    """``n`` single-process executors, so each request chunk lands on a known, long-lived worker."""

    def __init__(self, cfg: LLM, *, seed: int, n: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        rps = cfg.requests_per_second / n if cfg.requests_per_second else None  # the limits are per run
        self.n = n
        self.concurrency = max(1, cfg.max_concurrency // n)
        self.broken = ""  # why the pool stopped working, once it has
        mine = cfg.model_copy(update={"max_concurrency": self.concurrency}).model_dump_json()  # sizes its pools
        self._executors = [
            ProcessPoolExecutor(1, mp_context=ctx, initializer=_start, initargs=(mine, seed, rps)) for _ in range(n)
        ]

    async def call_many(self, method: str, requests: list[Request]) -> list[CallOutcome]:
        live = min(self.n, len(requests))  # chunk w is requests w, w + n, w + 2n, ...
        chunks = [requests[w :: self.n] for w in range(live)]
        results = await asyncio.gather(*(self._on_worker(w, method, chunks[w]) for w in range(live)))
        out: list[CallOutcome] = [CallOutcome(None)] * len(requests)
        for w, res in enumerate(results):
            out[w :: self.n] = res
        return out

    async def _on_worker(self, w: int, method: str, chunk: list[Request]) -> list[CallOutcome]:
        try:
            return await asyncio.wrap_future(self._executors[w].submit(_serve, method, chunk, self.concurrency))
        except Exception as exc:  # a dead or broken worker (BrokenProcessPool, pickling): never stop the run
            self.broken = f"LLM worker process failed: {type(exc).__name__}: {exc}"[:300]
            return [CallOutcome(None, fallback_reason=self.broken, method=method, transient=True) for _ in chunk]

    def close(self) -> None:
        for ex in self._executors:
            ex.shutdown(wait=True, cancel_futures=True)
