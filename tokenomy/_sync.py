"""Run a coroutine from synchronous code, also inside Jupyter, whose thread already runs a loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["run_sync"]


def run_sync(coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop | None = None) -> T:
    """Run ``coro`` to completion on ``loop`` (or a fresh one) and return its result.

    When this thread is already running an event loop (a notebook), the coroutine runs on a
    worker thread instead: blocking the notebook's loop is what the caller asked for, and nesting
    loops in one thread is not allowed.
    """

    def go() -> T:
        return loop.run_until_complete(coro) if loop is not None else asyncio.run(coro)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return go()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenomy") as pool:
        return pool.submit(go).result()
