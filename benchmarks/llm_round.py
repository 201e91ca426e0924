"""LLM rounds: concurrency, archetypes and replay, against the local fake OpenAI-compatible server.

    python benchmarks/llm_round.py

1. A round with 100 LLM households and 10 LLM firms while the server adds a fixed latency to every
   answer (200 ms, then 1 s): all calls of a round run concurrently in the decide node, so a round
   should take about one answer's latency, not 110 of them. Prints ``round time / answer latency``
   (issue target: <= 1.5 at 200 ms, concurrency >= 110) and the client CPU per call, which is what
   is left between the two.
2. LLM calls per round with 10,000 households in 32 archetypes (target: <= 32 household calls).
3. Replay speed: rounds per second when every answer comes from the recorded cache.

The real client (``langchain-openai`` over HTTP) is used throughout; only the model is fake, and it
runs in its own process, as a model server would.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import tokenomy
from tokenomy.runner import Runner

LLM_ROUND = [
    "households=1000",
    "firms=10",
    "banks=2",
    "roles.household.policy=llm",
    "roles.household.llm_share=0.1",
    "roles.firm.policy=llm",
]


def _sets(base_url: str, *extra: str) -> list[str]:
    return [
        'llm.model="fake-model"',
        f'llm.base_url="{base_url}"',
        "llm.max_concurrency=128",
        "llm.timeout_s=30",
        *extra,
    ]


@contextmanager
def server_process(latency: float) -> Iterator[str]:
    """The fake server in its own process (not competing for this process's GIL)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "tokenomy.testing.fake_openai", "--port", str(port), "--latency", str(latency)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _cpu_seconds() -> float:
    """CPU time of this process and its live worker processes (Linux ``/proc``; else this process only)."""
    total = time.process_time()
    for child in multiprocessing.active_children():
        try:
            fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def concurrency(base_url: str, latency: float, workers: int, rounds: int = 6) -> None:
    sets = _sets(base_url, *LLM_ROUND, f"rounds={rounds}", f"llm.workers={workers}")
    with Runner(tokenomy.load_scenario("baseline", sets)) as runner:
        runner.attach_llm()
        sim, loop = runner.sim, runner.event_loop()  # the phases by hand, on the runner's event loop
        times, decide, cpu = [], [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            sim.observe()
            t1, c1 = time.perf_counter(), _cpu_seconds()
            sim.decide(loop)
            t2, c2 = time.perf_counter(), _cpu_seconds()
            sim.clear()
            sim.settle()
            sim.regulate()
            sim.advance()
            times.append(time.perf_counter() - t0)
            decide.append(t2 - t1)
            cpu.append(c2 - c1)
        calls = len(sim.outcome.llm_records)
    warm = times[1:]  # round 0 also starts workers, opens the connections and probes the structured-output method
    rnd, dec, per_call = statistics.median(warm), statistics.median(decide[1:]), statistics.median(cpu[1:]) / calls
    print(
        f"   latency {latency * 1000:5.0f} ms, workers {workers}: round {rnd * 1000:5.0f} ms, decide {dec * 1000:5.0f}"
        f" ms, client CPU {per_call * 1000:.1f} ms/call, first round {times[0] * 1000:5.0f} ms"
        f"  ->  round / latency = {rnd / latency:.2f}"
    )


def throughput(base_url: str, workers: int, rounds: int = 4) -> None:
    """Calls per second when the server answers at once: what the client side can sustain."""
    sets = _sets(
        base_url,
        "households=4000",
        "firms=10",
        "banks=2",
        "roles.household.policy=llm",
        "roles.household.llm_share=0.1",
        "roles.firm.policy=llm",
        f"rounds={rounds}",
        f"llm.workers={workers}",
    )
    with Runner(tokenomy.load_scenario("baseline", sets)) as runner:
        runner.attach_llm()
        sim, loop = runner.sim, runner.event_loop()
        rates = []
        for _ in range(rounds):
            sim.observe()
            t0 = time.perf_counter()
            sim.decide(loop)
            rates.append(len(sim.outcome.llm_records) / (time.perf_counter() - t0))
            sim.clear()
            sim.settle()
            sim.regulate()
            sim.advance()
    calls = len(sim.outcome.llm_records)
    print(
        f"   workers {workers}: {statistics.median(rates[1:]):5.0f} calls/s ({calls} calls a round, no server latency)"
    )


def archetypes(base_url: str) -> None:
    sets = _sets(
        base_url,
        "households=10000",
        "firms=100",
        "banks=5",
        "rounds=4",
        "roles.household.policy=llm",
        "roles.household.archetypes=32",
    )
    sim = Runner(tokenomy.load_scenario("baseline", sets))
    per_round = []
    for _ in range(4):
        sim.step()
        per_round.append(sum(1 for r in sim.outcome.llm_records if r["role"] == "household"))
    print(f"2. 10,000 households in 32 archetypes: household calls per round {per_round} (target <= 32)")


def replay(base_url: str, rounds: int = 20) -> None:
    sc = tokenomy.load_scenario("baseline", _sets(base_url, *LLM_ROUND, f"rounds={rounds}"))
    with tempfile.TemporaryDirectory() as d:
        first = Runner(sc).run(Path(d) / "rec")
        t0 = time.perf_counter()
        again = Runner(sc).run(Path(d) / "replay", replay_from=first)
        dt = time.perf_counter() - t0
        m = tokenomy.open_run(again).metrics
    assert int(m["llm_calls"].sum()) == 0
    print(
        f"3. replay: {rounds} rounds x {int(m['llm_cache_hits'].iloc[0])} cached answers in {dt:.2f} s = "
        f"{rounds / dt:.1f} rounds/s with 0 calls (full run path: graph + recording, 1,000 households)"
    )


def main() -> None:
    os.environ.setdefault("OPENAI_API_KEY", "sk-benchmark-not-a-real-key")
    print(f"1. 110 LLM calls a round (100 households + 10 firms), concurrency 128, {os.cpu_count()} cores")
    for latency in (0.2, 1.0):
        with server_process(latency) as url:
            for workers in (1, 2):
                concurrency(url, latency, workers)
    print("   client throughput, the part that more cores (llm.workers) buy:")
    with server_process(0.0) as url:
        for workers in (1, 2):
            throughput(url, workers)
        archetypes(url)
        replay(url)


if __name__ == "__main__":
    main()
