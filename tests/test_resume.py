"""Crash-safe run directories and ``tokenomy resume``.

A run killed with SIGKILL keeps complete tables up to its last checkpoint; ``tokenomy resume``
continues it, and after three kills the finished tables equal an uninterrupted run's in every
column but the timings. SIGTERM and SIGHUP finish the directory as Ctrl-C does; a directory being
written is locked; default run names never collide; ``open_run`` says when a run is unfinished.

The kills are triggered by observed progress: the directory is polled until a snapshot of the
chosen round appears, then the process is killed at once (the poll's short pause only paces the
loop; no sleep decides when a kill lands).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import pandas as pd
import pyarrow.parquet as pq
import pytest

import tokenomy
from tokenomy.policies.prompts import bundled_prompt_path
from tokenomy.runner import Runner
from tokenomy.scenario import load_scenario
from tokenomy.store import TABLES, RunDirError, RunLock, UnfinishedRunWarning, open_run
from tokenomy.testing.fake_openai import FakeOpenAIServer

SCRIPT = Path(sys.executable).parent / "tokenomy"
HANG_GUARD = 300.0  # seconds; only so a hung child cannot block the suite, never what triggers a kill
KEY = "sk-test-resume-0123456789abcdef"
TIMINGS = ("latency_ms",)  # and every llm_latency_* column: how long calls took, never what they did

# snapshots every round, a checkpoint (table parts + manifest) every second round
RULES = [
    "households=60",
    "firms=4",
    "banks=2",
    "rounds=24",
    "record.household_decisions=5",
    "record.snapshot_every=1",
    "record.flush_every=2",
]
# every role LLM-driven against the fake server; a snapshot and (the LLM default) a checkpoint every round
LLM_ROUNDS = 8
LLM = [
    "households=40",
    "firms=3",
    "banks=1",
    f"rounds={LLM_ROUNDS}",
    "record.household_decisions=5",
    "record.snapshot_every=1",
    "roles.household.policy=llm",
    "roles.household.llm_share=0.25",
    "roles.firm.policy=llm",
    "roles.bank.policy=llm",
    "roles.network.policy=llm",
    "roles.regulator.policy=llm",
    'llm.model="fake-model"',
    "llm.max_retries=1",
    "llm.timeout_s=5",
]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "PYTHONPATH")}
    # faulthandler: a child that hangs is sent SIGABRT (_signal_when) and writes every thread's stack to its log
    return {**env, "NO_COLOR": "1", "OPENAI_API_KEY": KEY, "PYTHONFAULTHANDLER": "1"}


def _sets(sets: list[str]) -> list[str]:
    return [a for s in sets for a in ("--set", s)]


def _start(args: list[str | Path], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(SCRIPT), *map(str, args)], env=_env(), stdin=subprocess.DEVNULL, stdout=log, stderr=log
    )


def _cli(args: list[str | Path], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *map(str, args)],
        cwd=cwd,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )


def _snapshot_rounds(out: Path) -> list[int]:
    snaps = out / "snapshots"
    names = [e.name for e in os.scandir(snaps)] if snaps.is_dir() else []
    return [int(n[6:12]) for n in names if n.startswith("round-") and n.endswith(".snap")]


def _signal_when(
    proc: subprocess.Popen[bytes], out: Path, target: int, sig: signal.Signals, log: Path | None = None
) -> int:
    """Send ``sig`` as soon as a snapshot of round ``target`` or later appears; the round it saw.
    A child that then hangs gets SIGABRT, and the failure shows the end of its ``log``."""
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        seen = [r for r in _snapshot_rounds(out) if r >= target]
        if seen:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=HANG_GUARD)
            except subprocess.TimeoutExpired:  # seen once in CI (SIGHUP): leave the stacks in the log
                proc.send_signal(signal.SIGABRT)
                proc.wait(timeout=30)
                stacks = log.read_text()[-6000:] if log is not None else "(no log)"
                raise AssertionError(f"the run hung after {sig.name}; its threads' stacks:\n{stacks}") from None
            return max(seen)
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before round {target} was snapshotted"
        time.sleep(0.001)  # paces the poll; the snapshot appearing is the trigger
    raise AssertionError(f"no snapshot of round {target} within {HANG_GUARD} s")


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    drop = [c for c in frame.columns if c in TIMINGS or c.startswith("llm_latency_")]
    return frame.drop(columns=drop).reset_index(drop=True)


def assert_same_tables(a: tokenomy.Run, b: tokenomy.Run) -> None:
    """Every table equal, exactly, but for the timing columns."""
    for table in TABLES:
        x, y = getattr(a, table), getattr(b, table)
        pd.testing.assert_frame_equal(_comparable(x), _comparable(y), check_exact=True, obj=table)


def check_stopped(out: Path, *, up_to: int) -> tokenomy.Run:
    """What a killed run leaves: whole parts only, a ``running`` manifest nobody holds the lock of,
    a checkpoint whose snapshot matches its SHA-256, and open_run saying so."""
    for part in (out / "parts").glob("*/*"):
        if part.name.endswith(".tmp"):
            continue  # a write the kill cut short: never read, removed by resume
        pq.read_table(part)  # complete, or this raises
    with pytest.warns(UnfinishedRunWarning, match=r"was killed.*holds rounds .* of .*tokenomy resume") as caught:
        run = open_run(out)
    assert str(out) in str(caught[0].message)
    assert run.status == "running" and not run.finished and not run.active
    rounds = run.rounds_recorded
    assert rounds == list(range(len(rounds))), rounds  # no gap, no duplicate
    ck = run.checkpoint_round
    if ck is None:  # killed before its first checkpoint: nothing flushed, resume starts from round 0
        assert rounds == [] and "from its first round" in str(caught[0].message)
        return run
    assert ck <= up_to and ck in rounds
    snap = run.manifest["checkpoint"]
    assert hashlib.sha256((out / snap["path"]).read_bytes()).hexdigest() == snap["sha256"]
    return run


def _kill_and_resume(out: Path, first: list[str | Path], targets: list[int], log: IO[bytes]) -> list[int]:
    """Start ``first``, SIGKILL it when a snapshot of ``targets[0]`` appears, resume and kill again at
    each further target, then resume to the end; the checkpoint each resume started after."""
    proc = _start(first, log)
    resumed_after: list[int] = []
    for i, target in enumerate(targets):
        seen = _signal_when(proc, out, target, signal.SIGKILL)
        assert proc.returncode == -signal.SIGKILL
        run = check_stopped(out, up_to=seen)
        assert len(run.rounds_recorded) < run.manifest["rounds"], "killed after its last round"
        resumed_after.append(run.checkpoint_round if run.checkpoint_round is not None else -1)
        if i + 1 < len(targets):
            proc = _start(["resume", out, "-q"], log)
    done = _cli(["resume", out, "-q"])
    assert done.returncode == 0, done.stderr
    return resumed_after


# -- SIGKILL three times, resume each time --------------------------------------------------------


@pytest.mark.slow  # the installed command in subprocesses
def test_three_sigkills_then_resume_give_the_uninterrupted_tables(tmp_path: Path) -> None:
    targets = sorted(random.Random(9).sample(range(2, 20, 3), 3))  # 3 apart: each checkpoint is further on
    out = tmp_path / "killed"
    with open(tmp_path / "log", "wb") as log:
        after = _kill_and_resume(out, ["run", "baseline", *_sets(RULES), "--out", out, "-q"], targets, log)
    assert len(set(after)) == 3 and after == sorted(after)  # each resume started further on
    whole = open_run(Runner(load_scenario("baseline", RULES)).run(tmp_path / "whole"))
    resumed = open_run(out)
    assert resumed.finished and not resumed.active
    assert [r["after_round"] for r in resumed.manifest["resumed"]] == after
    assert not (out / "parts").exists()  # a finished run has the single tables the README documents
    for table in TABLES:
        assert (out / f"{table}.parquet").is_file()
    assert (out / "report.html").is_file()  # written once the run finished, as `tokenomy run` does
    assert_same_tables(resumed, whole)
    assert resumed.snapshot_rounds() == whole.snapshot_rounds()
    assert resumed.manifest["last_snapshot"]["sha256"] == whole.manifest["last_snapshot"]["sha256"]


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(model="fake-model", retry_after_ms=1) as srv:
        yield srv


@pytest.mark.slow  # the installed command in subprocesses
def test_three_sigkills_with_llm_roles_then_resume_give_the_uninterrupted_tables(
    tmp_path: Path, server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    sets = [*LLM, f'llm.base_url="{server.base_url}"']
    targets = sorted(random.Random(4).sample(range(1, LLM_ROUNDS - 2), 3))
    out = tmp_path / "killed"
    with open(tmp_path / "log", "wb") as log:
        after = _kill_and_resume(out, ["run", "baseline", *_sets(sets), "--out", out, "-q"], targets, log)
    assert after == sorted(after) and after[0] < after[-1]
    whole = open_run(Runner(load_scenario("baseline", sets)).run(tmp_path / "whole"))
    resumed = open_run(out)
    assert_same_tables(resumed, whole)  # calls, tokens, cache hits and costs included
    llm = resumed.decisions.query("policy == 'llm'")
    assert len(llm) == 17 * LLM_ROUNDS and (llm["fallback_reason"] == "").all()
    usage, expected = resumed.manifest["llm_usage"], whole.manifest["llm_usage"]
    for key in ("calls", "input_tokens", "output_tokens", "estimated_cost_usd", "structured_output_method"):
        assert usage[key] == expected[key], key  # the caps count what an uninterrupted run counted
    # the run's answer cache holds every round's answers: a replay of it needs no server
    server.stop()
    replay = Runner(load_scenario("baseline", sets)).run(tmp_path / "replay", replay_from=out)
    same = [c for c in whole.metrics.columns if not c.startswith("llm_") or c == "llm_fallbacks"]
    pd.testing.assert_frame_equal(open_run(replay).metrics[same], resumed.metrics[same], check_exact=True)


def test_an_llm_run_refuses_to_resume_with_an_edited_prompt(
    tmp_path: Path, server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    prompt = tmp_path / "firm.md"
    prompt.write_text(bundled_prompt_path("firm").read_text())
    sets = [*LLM, "rounds=4", f'llm.base_url="{server.base_url}"', f'roles.firm.prompt="{prompt}"']

    def stop(r: int, row: dict[str, object]) -> None:
        if r == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Runner(load_scenario("baseline", sets)).run(tmp_path / "run", on_round=stop)
    original = prompt.read_text()
    prompt.write_text(original + "\nBe bold.\n")
    with pytest.raises(RunDirError, match=r"the firm prompt .*firm.md changed since the run began"):
        Runner.from_run(tmp_path / "run")
    prompt.write_text(original)
    whole = open_run(Runner(load_scenario("baseline", sets)).run(tmp_path / "whole"))
    assert_same_tables(open_run(tokenomy.resume(tmp_path / "run")), whole)


# -- signals ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tokenomy.Run:
    return open_run(Runner(load_scenario("baseline", RULES)).run(tmp_path_factory.mktemp("whole") / "run"))


@pytest.mark.slow  # the installed command in a subprocess
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_finish_the_directory_as_ctrl_c_does(
    sig: signal.Signals, tmp_path: Path, uninterrupted: tokenomy.Run
) -> None:
    out = tmp_path / "run"
    with open(tmp_path / "log", "wb") as log:
        proc = _start(["run", "baseline", *_sets(RULES), "--out", out, "-q"], log)
        seen = _signal_when(proc, out, 6, sig, tmp_path / "log")
    stderr = (tmp_path / "log").read_text()
    assert proc.returncode == 128 + sig, stderr
    assert f"interrupted by {sig.name}" in stderr and f"tokenomy resume {out}" in stderr
    with pytest.warns(UnfinishedRunWarning, match=f"interrupted \\(interrupted by {sig.name}\\)"):
        run = open_run(out)
    assert run.status == "interrupted" and not run.active
    rounds = run.rounds_recorded
    assert rounds == list(range(len(rounds))) and rounds[-1] >= seen
    # every recorded round is in the tables, and the checkpoint is the last snapshot, not the last flush
    assert run.checkpoint_round in (rounds[-1] - 1, rounds[-1])
    pd.testing.assert_frame_equal(run.metrics, uninterrupted.metrics.iloc[: len(rounds)], check_exact=True)
    path = tokenomy.resume(out)
    assert_same_tables(open_run(path), uninterrupted)


def test_ctrl_c_interrupts_keeps_every_recorded_round_and_resumes_exactly(
    tmp_path: Path, uninterrupted: tokenomy.Run
) -> None:
    out = tmp_path / "run"
    seen: dict[str, object] = {}

    def stop_at_7(r: int, row: dict[str, object]) -> None:
        if r == 2:  # the run is still writing: open_run says so, and what its parts hold so far
            with pytest.warns(UnfinishedRunWarning, match=r"still running \(pid \d+\)"):
                live = open_run(out)
            seen.update(active=live.active, status=live.status, rounds=live.rounds_recorded)
        if r == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Runner(load_scenario("baseline", RULES)).run(out, on_round=stop_at_7)
    assert seen == {"active": True, "status": "running", "rounds": [0, 1]}  # round 2 is not flushed yet
    with pytest.warns(UnfinishedRunWarning, match=r"interrupted.*holds rounds 0-7 of 24.*after round 7"):
        run = open_run(out)
    assert (run.status, run.finished, run.active, run.checkpoint_round) == ("interrupted", False, False, 7)
    assert run.manifest["error"] == "interrupted by SIGINT (Ctrl-C)"
    assert_same_tables_head(run, uninterrupted, 8)
    assert len(run.graph(5).edges_of("payment")) == int((run.payments["round"] == 5).sum()) > 0  # from its part
    runner = Runner.from_run(out)
    assert runner.resume_rounds == range(8, 24)
    with pytest.raises(RunDirError, match="is writing into this directory"):  # from_run holds the lock
        Runner.from_run(out)
    path = runner.resume()
    assert_same_tables(open_run(path), uninterrupted)
    with pytest.raises(RunDirError, match="the run finished; there is nothing to resume"):
        tokenomy.resume(path)


def assert_same_tables_head(run: tokenomy.Run, whole: tokenomy.Run, rounds: int) -> None:
    for table in TABLES:
        x, y = getattr(run, table), getattr(whole, table)
        if "round" in y:
            y = y[y["round"] < rounds]
        pd.testing.assert_frame_equal(_comparable(x), _comparable(y), check_exact=True, obj=table)


def test_a_failed_run_keeps_its_rounds_and_resume_drops_those_past_the_checkpoint(
    tmp_path: Path, uninterrupted: tokenomy.Run
) -> None:
    def fail_at_4(r: int, row: dict[str, object]) -> None:
        if r == 4:
            raise RuntimeError("disk on fire")

    out = tmp_path / "run"
    sc = load_scenario("baseline", [*RULES, "record.snapshot_every=2"])  # snapshots (checkpoints) at 1, 3, 5...
    with pytest.raises(RuntimeError, match="disk on fire"):
        Runner(sc).run(out, on_round=fail_at_4)
    with pytest.warns(UnfinishedRunWarning, match="failed .RuntimeError: disk on fire.*after round 3"):
        run = open_run(out)
    assert run.status == "failed" and run.checkpoint_round == 3 and run.rounds_recorded == [0, 1, 2, 3, 4]
    past = out / "parts" / "metrics" / "rounds-000004-000004.parquet"  # round 4, written as the run failed
    assert past.is_file()
    runner = Runner.from_run(out)
    assert past.is_file()  # nothing changes before resume()
    runner.resume()  # the resumed run writes round 4 again, into a part of rounds 4-5
    assert_same_tables(open_run(out), uninterrupted)


# -- what resume refuses ------------------------------------------------------------------------------


def _interrupted_run(path: Path, at: int = 3) -> Path:
    def stop(r: int, row: dict[str, object]) -> None:
        if r == at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Runner(load_scenario("baseline", [*RULES, "rounds=8"])).run(path, on_round=stop)
    return path


def test_a_damaged_snapshot_or_manifest_is_a_clear_error(tmp_path: Path) -> None:
    out = _interrupted_run(tmp_path / "run")
    snap = out / json.loads((out / "manifest.json").read_text())["checkpoint"]["path"]
    good = snap.read_bytes()
    snap.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(RunDirError, match=r"SHA-256 .* is not the .* the manifest recorded"):
        tokenomy.resume(out)
    snap.write_bytes(good)
    (out / "manifest.json").write_text('{"scenario": {"name": "x"}, "status": "run')
    with pytest.raises(RunDirError, match=r"manifest.json: damaged, not the JSON manifest of a run"):
        open_run(out)
    with pytest.raises(RunDirError, match=r"manifest.json: damaged"):
        tokenomy.resume(out)
    with pytest.raises(RunDirError, match="not a run directory"):
        open_run(tmp_path)


@pytest.mark.slow  # the installed command in subprocesses
def test_cli_refuses_a_locked_finished_or_damaged_directory_in_one_line(tmp_path: Path) -> None:
    locked = _interrupted_run(tmp_path / "locked")
    damaged = _interrupted_run(tmp_path / "damaged")
    (damaged / "manifest.json").write_text("{not json")
    done = Runner(load_scenario("baseline", [*RULES, "rounds=2"])).run(tmp_path / "done")
    cases = {
        "run --overwrite, locked": (["run", "baseline", "--rounds", "2", "--out", locked, "--overwrite"], "is writing"),
        "resume, locked": (["resume", locked], f"(pid {os.getpid()}) is writing into this directory"),
        "resume, damaged": (["resume", damaged], "manifest.json: damaged, not the JSON manifest of a run"),
        "resume, finished": (["resume", done], "the run finished; there is nothing to resume"),
    }
    lock = RunLock.acquire(locked)  # as a live run would hold it
    try:
        with pytest.warns(UnfinishedRunWarning, match=f"still running \\(pid {os.getpid()}\\)"):
            assert open_run(locked).active
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = dict(zip(cases, pool.map(lambda c: _cli(c[0]), cases.values()), strict=True))
    finally:
        lock.release()
    for case, (_, expected) in cases.items():
        res = results[case]
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert res.returncode == 2 and len(lines) == 1, (case, res.stderr)
        assert expected in " ".join(lines[0].split()) and "Traceback" not in res.stderr, (case, res.stderr)
    assert not tokenomy.Run(locked).active  # released: resume may go on now


def test_a_locked_directory_refuses_a_second_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    lock = RunLock.acquire(out)
    try:
        sc = load_scenario("baseline", [*RULES, "rounds=2"])
        with pytest.raises(RunDirError, match=f"pid {os.getpid()}"):
            Runner(sc).run(out, overwrite=True)
    finally:
        lock.release()
    path = Runner(sc).run(out, overwrite=True)  # free again
    assert open_run(path).finished and not open_run(path).active


# -- default names ------------------------------------------------------------------------------------


def test_unique_run_directories_never_collide(tmp_path: Path) -> None:
    sc = load_scenario("baseline", [*RULES, "rounds=1"])
    base = tmp_path / "runs" / "baseline-20260101-000000-000000"
    paths = [Runner(sc).run(base, unique=True) for _ in range(3)]
    assert paths[0] == base and len(set(paths)) == 3
    for p in paths:
        assert p is not None and p.name.startswith(base.name) and open_run(p).finished


@pytest.mark.slow  # the installed command in subprocesses
def test_two_runs_started_together_without_out_get_their_own_directories(tmp_path: Path) -> None:
    args = ["run", "baseline", *_sets([*RULES, "rounds=2"]), "-q"]
    procs = [
        subprocess.Popen([str(SCRIPT), *args], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=HANG_GUARD) == 0, p.stderr.read() if p.stderr else ""
    dirs = sorted((tmp_path / "runs").iterdir())
    assert len(dirs) == 2
    for d in dirs:
        assert d.name.startswith("baseline-") and open_run(d).finished
