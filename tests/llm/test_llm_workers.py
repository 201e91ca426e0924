"""``llm.workers``: a round's calls made from worker processes, with the real client over real HTTP."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from llm_helpers import CALLS_PER_ROUND, KEY, assert_conserved, llm_rows, llm_sets

import tokenomy
from tokenomy.runner import Runner
from tokenomy.scenario import load_scenario
from tokenomy.testing.fake_openai import FakeOpenAIServer

pytestmark = pytest.mark.slow  # spawns worker processes


def test_workers_make_the_same_run_as_one_process(server: FakeOpenAIServer, tmp_path: Path) -> None:
    server.set(latency_s=0.1)
    sc = load_scenario("baseline", llm_sets(server))
    with Runner(sc) as sim:
        one = tokenomy.open_run(sim.run(tmp_path / "one"))
    calls_one = server.stats["completions"]
    server.reset()
    with Runner(load_scenario("baseline", llm_sets(server, "llm.workers=2"))) as sim:
        two = tokenomy.open_run(sim.run(tmp_path / "two"))
        assert len(multiprocessing.active_children()) == 2  # the workers live across rounds...
    assert not multiprocessing.active_children()  # ...and stop with the simulation

    assert server.stats["completions"] == calls_one == CALLS_PER_ROUND * 3
    assert all(r["headers"].get("authorization") == f"Bearer {KEY}" for r in server.requests)
    assert server.stats["in_flight_peak"] >= 5
    a, b = one.metrics, two.metrics
    same = [c for c in a.columns if not c.startswith("llm_latency")]
    pd.testing.assert_frame_equal(a[same], b[same])
    cols = ["round", "agent_id", "decision_json", "rationale", "fallback_reason", "input_tokens"]
    pd.testing.assert_frame_equal(
        llm_rows(one)[cols].reset_index(drop=True), llm_rows(two)[cols].reset_index(drop=True)
    )
    assert two.manifest["llm_usage"]["workers"] == 2 and two.manifest["llm_usage"]["worker_failure"] == ""
    for f in two.path.rglob("*"):
        assert not f.is_file() or KEY.encode() not in f.read_bytes(), f
    assert_conserved(two)


def test_a_killed_worker_fails_only_its_calls_and_the_run_goes_on(server: FakeOpenAIServer) -> None:
    sc = load_scenario("baseline", llm_sets(server, "llm.workers=2", "rounds=4"))
    with Runner(sc) as sim:
        sim.step()
        assert sum(r["fallback_reason"] != "" for r in sim.outcome.llm_records) == 0
        victim = multiprocessing.active_children()[0]
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(10)
        sim.step()  # the dead worker's share of the round falls back to the rules, the rest is answered
        fell = [r["fallback_reason"] for r in sim.outcome.llm_records if r["fallback_reason"]]
        assert 0 < len(fell) < CALLS_PER_ROUND
        assert all("LLM worker process failed" in f for f in fell)
        assert sim.llm is not None and "LLM worker process failed" in sim.llm.decider.worker_failure
        sim.step()  # from now on the calls are made from this process
        assert [r["fallback_reason"] for r in sim.outcome.llm_records] == [""] * CALLS_PER_ROUND
        assert not multiprocessing.active_children()
    assert server.stats["completions"] == 3 * CALLS_PER_ROUND - len(fell)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has exited; only its exit status is left to collect


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_workers_exit_when_their_parent_is_killed(server: FakeOpenAIServer) -> None:
    """kill -9 of a run must not leave its worker processes behind (they would hold memory and sockets)."""
    sets = llm_sets(server, "llm.workers=2", "rounds=50")
    code = (
        "import multiprocessing, time, tokenomy\n"
        f"sim = tokenomy.Runner(tokenomy.load_scenario('baseline', {sets!r}))\n"
        "sim.step()\n"
        "print(' '.join(str(p.pid) for p in multiprocessing.active_children()), flush=True)\n"
        "time.sleep(300)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]  # type: ignore[union-attr]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
    finally:
        proc.kill()
        proc.wait()
    for _ in range(200):  # they notice within moments; allow a slow machine plenty
        if not any(_alive(p) for p in pids):
            break
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)
