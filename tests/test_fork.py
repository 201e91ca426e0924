"""Forks (``tokenomy fork``, ``tokenomy.fork``) and pause, update, continue from Python.

A fork from the end of round T holds its parent's rounds up to T and runs the rest: with no
change its tables equal the parent's but for the timings, whether T has a snapshot or is reached
again from the one before; with ``--set roles.regulator.ubi=500`` they equal the parent's through
round T+1 but for the regulator's decision in T+1, and differ from T+2, when the UBI decided in
T+1 is first paid (``Batch.takes_effect = "next_round"``). A field the world copied at round 0
(``rails.bank_transfer_fee``) acts from T+1. A paused run changed with ``Runner.update`` records
the change and equals the fork with the same change; resumed after a kill, it re-applies it.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import tokenomy
from tokenomy import cli
from tokenomy.runner import Runner
from tokenomy.scenario import ScenarioError, load_scenario
from tokenomy.store import TABLES, RunDirError, RunLock, UnfinishedRunWarning, open_run
from tokenomy.testing.fake_openai import FakeOpenAIServer

RULES = [
    "households=60",
    "firms=4",
    "banks=2",
    "rounds=14",
    "record.household_decisions=5",
    "record.snapshot_every=1",
    "record.flush_every=2",
]
T = 5  # every fork here branches from the end of round 5
UBI = {"roles.regulator.ubi": 500}
KEY = "sk-test-fork-0123456789abcdef"


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    drop = [c for c in frame.columns if c == "latency_ms" or c.startswith("llm_latency_")]
    return frame.drop(columns=drop).reset_index(drop=True)


def _rounds(frame: pd.DataFrame, lo: int, hi: int) -> pd.DataFrame:
    return _comparable(frame[(frame["round"] >= lo) & (frame["round"] <= hi)])


def assert_same_tables(a: tokenomy.Run, b: tokenomy.Run, *, through: int | None = None) -> None:
    """Every table equal, exactly, but for the timing columns (``through``: rounds up to it only)."""
    for table in TABLES:
        x, y = getattr(a, table), getattr(b, table)
        if through is not None and "round" in y:
            x, y = x[x["round"] <= through], y[y["round"] <= through]
        pd.testing.assert_frame_equal(_comparable(x), _comparable(y), check_exact=True, obj=table)


def _manifest(path: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((path / "manifest.json").read_text())
    return data


def _cli(args: list[str | Path]) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = Runner(load_scenario("baseline", RULES)).run(tmp_path_factory.mktemp("parent") / "run")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def ubi_fork(parent: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tokenomy fork PARENT --at-round 5 --set roles.regulator.ubi=500``, through the command line."""
    out = tmp_path_factory.mktemp("ubi") / "fork"
    code, stdout, stderr = _cli(
        ["fork", parent, "--at-round", T, "--set", "roles.regulator.ubi=500", "--out", out, "-q"]
    )
    assert code == 0, stderr
    assert f"forked {parent} after round {T}" in " ".join(stdout.split())
    assert (out / "report.html").is_file()  # as `tokenomy run` writes one
    return out


# -- (a) no change: the parent's tables -------------------------------------------------------------


def test_a_fork_without_changes_continues_exactly_as_its_parent(parent: Path, tmp_path: Path) -> None:
    P = open_run(parent)
    B = open_run(tokenomy.fork(parent, at_round=T, out=tmp_path / "fork"))
    assert B.finished and B.rounds_recorded == list(range(14))
    assert_same_tables(B, P)  # rounds 0..T copied, T+1..13 run again: the whole history equal
    assert B.manifest["last_snapshot"]["sha256"] == P.manifest["last_snapshot"]["sha256"]  # the same final world
    f = B.manifest["fork"]
    assert f["parent"] == str(parent.resolve()) and f["at_round"] == T and f["set"] == {}
    assert f["snapshot"] == {"round": T, "sha256": P.manifest["snapshots"][str(T)]["sha256"]}
    assert f["rerun_rounds"] is None and B.manifest["changes"] == [] and "resumed" not in B.manifest
    assert B.snapshot_rounds() == P.snapshot_rounds()
    assert os.path.samefile(
        tmp_path / "fork" / "snapshots" / "round-000003.snap", parent / "snapshots" / "round-000003.snap"
    )
    # --rounds N: N rounds after T, the parent's as far as they go
    short = open_run(tokenomy.fork(parent, at_round=T, out=tmp_path / "short", rounds=3))
    assert short.rounds_recorded == list(range(T + 4)) and short.manifest["round_range"] == [0, T + 4]
    assert_same_tables(short, P, through=T + 3)


def test_a_fork_of_a_stopped_run_links_its_parts_and_equals_the_whole_run(parent: Path, tmp_path: Path) -> None:
    def stop(r: int, row: dict[str, object]) -> None:
        if r == 9:
            raise KeyboardInterrupt

    stopped = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        Runner(load_scenario("baseline", RULES)).run(stopped, on_round=stop)
    runner = Runner.forked(stopped, at_round=T, out=tmp_path / "fork")
    parts = tmp_path / "fork" / "parts" / "metrics"
    assert sorted(p.name for p in parts.iterdir()) == [
        "rounds-000000-000001.parquet",
        "rounds-000002-000003.parquet",
        "rounds-000004-000005.parquet",
    ]
    for p in parts.iterdir():  # the parent's parts, hard-linked
        assert os.path.samefile(p, stopped / "parts" / "metrics" / p.name)
    assert runner.resume_rounds == range(T + 1, 14)  # to the parent's planned end, past where it stopped
    B = open_run(runner.resume())
    assert_same_tables(B, open_run(parent))
    with pytest.warns(UnfinishedRunWarning):
        assert open_run(stopped).checkpoint_round == 9  # the parent is as it was
    assert pq.read_table(stopped / "parts" / "metrics" / "rounds-000000-000001.parquet").num_rows == 2


# -- (b) a policy change: equal through T+1, different from T+2 ---------------------------------------


def test_b_a_ubi_change_acts_from_the_round_after_the_regulator_decides_it(parent: Path, ubi_fork: Path) -> None:
    P, U = open_run(parent), open_run(ubi_fork)
    assert U.finished and U.rounds_recorded == list(range(14))
    for table in ("metrics", "trades", "payments", "events", "accounts"):
        x, y = getattr(P, table), getattr(U, table)
        if "round" in x:
            pd.testing.assert_frame_equal(_rounds(y, 0, T + 1), _rounds(x, 0, T + 1), check_exact=True, obj=table)
    # T+1: the regulator decides the new UBI (its row alone differs); it takes effect from the next round
    pd.testing.assert_frame_equal(_rounds(U.decisions, 0, T), _rounds(P.decisions, 0, T), check_exact=True)
    du, dp = (d[d["round"] == T + 1].reset_index(drop=True) for d in (U.decisions, P.decisions))
    other = du["role"] != "regulator"
    pd.testing.assert_frame_equal(_comparable(du[other]), _comparable(dp[other]), check_exact=True)
    assert json.loads(du[~other]["decision_json"].iloc[0])["ubi"] == 500.0
    assert json.loads(dp[~other]["decision_json"].iloc[0])["ubi"] == 0.0
    # T+2: it is paid, and everything the money touches moves
    assert P.metrics["ubi_paid"].sum() == 0 and U.metrics.set_index("round")["ubi_paid"][T + 2] > 0
    for table in ("metrics", "payments", "accounts"):
        x, y = getattr(P, table), getattr(U, table)
        assert not _rounds(x, T + 2, T + 2).equals(_rounds(y, T + 2, T + 2)), table
    m = U.manifest
    assert m["changes"] == [
        {"round": T + 1, "set": {"roles.regulator.ubi": 500.0}, "was": {"roles.regulator.ubi": 0.0}}
    ]
    assert m["fork"]["set"] == {"roles.regulator.ubi": 500.0}
    assert m["scenario"]["roles"]["regulator"]["ubi"] == 500.0  # the scenario in force now
    assert P.manifest["scenario"]["roles"]["regulator"]["ubi"] == 0.0


# -- (c) T without a snapshot: from the one before, run again ------------------------------------------


@pytest.fixture(scope="module")
def sparse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The parent's scenario with a snapshot every 5 rounds: rounds 4, 9 and the last, 13."""
    sc = load_scenario("baseline", [*RULES, "record.snapshot_every=5"])
    path = Runner(sc).run(tmp_path_factory.mktemp("sparse") / "run")
    assert path is not None
    return path


def test_c_a_fork_between_snapshots_runs_again_from_the_one_before(sparse: Path, parent: Path, tmp_path: Path) -> None:
    S = open_run(sparse)
    assert S.snapshot_rounds() == [4, 9, 13]
    B = open_run(tokenomy.fork(sparse, at_round=7, out=tmp_path / "fork"))
    assert B.manifest["fork"]["snapshot"] == {"round": 4, "sha256": S.manifest["snapshots"]["4"]["sha256"]}
    assert B.manifest["fork"]["rerun_rounds"] == [5, 7]
    assert_same_tables(B, S)
    assert_same_tables(B, open_run(parent))  # the snapshot cadence changes no table
    assert B.snapshot_rounds() == [4, 7, 9, 13]  # the world of 7, run again, is the branch's own snapshot
    assert B.manifest["last_snapshot"]["sha256"] == S.manifest["last_snapshot"]["sha256"]


# -- (d) pause, update, continue ----------------------------------------------------------------------


def test_d_pause_update_and_continue_records_the_change_and_equals_the_fork(ubi_fork: Path, tmp_path: Path) -> None:
    runner = Runner(load_scenario("baseline", RULES))
    path = runner.run(tmp_path / "run", pause_at=T)
    assert path is not None
    with pytest.warns(UnfinishedRunWarning, match=r"paused .*holds rounds 0-5 of 14.*after round 5"):
        paused = open_run(path)
    assert (paused.status, paused.checkpoint_round, paused.active) == ("paused", T, False)
    with pytest.raises(RuntimeError, match="go on with resume"):
        runner.run(tmp_path / "other")
    with pytest.raises(ScenarioError, match=r"^households cannot change mid-run: it fixes the population size"):
        runner.update({"households": 10})
    with pytest.raises(ScenarioError, match=r"^roles.regulator.ubi: Input should be greater than or equal to 0"):
        runner.update({"roles.regulator.ubi": -5})
    assert runner.update(UBI) is runner and runner.scenario.roles.section("regulator").model_dump()["ubi"] == 500
    assert runner.resume() == path
    R = open_run(path)
    assert R.finished and R.manifest["scenario"]["roles"]["regulator"]["ubi"] == 500.0
    assert R.manifest["changes"] == _manifest(ubi_fork)["changes"]
    assert [r["after_round"] for r in R.manifest["resumed"]] == [T]
    assert_same_tables(R, open_run(ubi_fork))
    # a fork before the parent's own change keeps its round's scenario, and records what it left out
    early = tokenomy.fork(path, at_round=T - 2, out=tmp_path / "early")
    left_out = open_run(early).manifest["fork"]["not_carried"]
    assert [(c["round"], c["set"]) for c in left_out] == [(T + 1, {"roles.regulator.ubi": 500.0})]
    assert open_run(early).metrics["ubi_paid"].sum() == 0 < R.metrics["ubi_paid"].sum()


def test_d_a_resumed_run_re_applies_a_change_the_world_holds(parent: Path, tmp_path: Path) -> None:
    """``rails.bank_transfer_fee`` is copied into the world at round 0: a change sets the copy, and a
    run killed after recording the change but before its next snapshot sets it again on resume."""
    sc = load_scenario("baseline", [*RULES, "record.snapshot_every=5"])
    fee = {"rails.bank_transfer_fee": 0.01}
    whole = Runner(sc)
    whole.run(tmp_path / "whole", pause_at=T)
    whole.update(fee).resume()

    def stop(r: int, row: dict[str, object]) -> None:
        if r == T + 1:  # round 6: the next snapshot would be 9's
            raise KeyboardInterrupt

    killed = Runner(sc)
    out = killed.run(tmp_path / "killed", pause_at=T)
    assert out is not None
    killed.update(fee)
    with pytest.raises(KeyboardInterrupt):
        killed.resume(on_round=stop)
    with pytest.warns(UnfinishedRunWarning, match="interrupted"):
        run = open_run(out)
    assert run.checkpoint_round == T and run.manifest["changes"][0]["round"] == T + 1
    assert run.world(T).bank_transfer_fee == 0.0  # the checkpoint's world is from before the change
    tokenomy.resume(out)
    W, P = open_run(tmp_path / "whole"), open_run(parent)
    assert_same_tables(open_run(out), W)
    assert_same_tables(W, P, through=T)
    for table in ("metrics", "payments"):  # a fee on every bank transfer from round T+1
        x, y = getattr(P, table), getattr(W, table)
        assert not _rounds(x, T + 1, T + 1).equals(_rounds(y, T + 1, T + 1)), table
    assert (W.payments.query(f"round == {T + 1} and rail == 'bank_transfer'")["fee_cents"] > 0).any()


# -- (e) bad input: one line, exit 2 ------------------------------------------------------------------


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    def stop(r: int, row: dict[str, object]) -> None:
        if r == 3:
            raise KeyboardInterrupt

    path = tmp_path_factory.mktemp("interrupted") / "run"
    with pytest.raises(KeyboardInterrupt):
        Runner(load_scenario("baseline", [*RULES, "rounds=8"])).run(path, on_round=stop)
    return path


BAD: dict[str, tuple[list[str], str]] = {
    "no such run": (["{tmp}/nope", "--at-round", "3"], "nope: not a run directory (no manifest.json)"),
    "T past the last round": (["{parent}", "--at-round", "14"], "cannot fork at round 14: the run's rounds are 0-13"),
    "T the last round": (["{parent}", "--at-round", "13"], "round 13 is the run's last: give --rounds N"),
    "T not recorded yet": (["{interrupted}", "--at-round", "5"], "cannot fork at round 5: not recorded yet"),
    "out is the parent": (["{parent}", "--at-round", "3", "--out", "{parent}"], "the run being forked"),
    "out not empty": (["{parent}", "--at-round", "3", "--out", "{tmp}/full"], "directory exists and is not empty"),
    "households": (["{parent}", "--at-round", "3", "--set", "households=10"], "households cannot change mid-run"),
    "seed": (["{parent}", "--at-round", "3", "--set", "seed=2"], "seed cannot change mid-run: the random state"),
    "policy": (["{parent}", "--at-round", "3", "--set", "roles.firm.policy=llm"], "roles.firm.policy cannot change"),
    "initial": (["{parent}", "--at-round", "3", "--set", "initial.wage=3000"], "sets the round-0 world only"),
    "bad value": (["{parent}", "--at-round", "3", "--set", "roles.regulator.ubi=-5"], "greater than or equal to 0"),
    "unknown": (["{parent}", "--at-round", "3", "--set", "roles.regulator.ubx=5"], "no such scenario field"),
    "a section": (["{parent}", "--at-round", "3", "--set", "rails={{}}"], "rails: not a single field"),
    "no =": (["{parent}", "--at-round", "3", "--set", "ubi"], "expected FIELD=VALUE"),
    "taylor rate": (["{parent}", "--at-round", "3", "--set", "roles.central_bank.policy_rate=0.1"], "rule = 'taylor'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_e_bad_input_is_one_line_and_exit_2(case: str, parent: Path, interrupted: Path, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    args, expected = BAD[case]
    paths = {"tmp": tmp_path, "parent": parent, "interrupted": interrupted}
    argv = [a.format(**paths) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "fork")]
    code, _, stderr = _cli(["fork", *argv, "-q"])
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert expected in lines[0] and "Traceback" not in stderr, stderr
    assert not (tmp_path / "fork").exists()  # nothing written
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["notes.txt"]


def test_e_a_live_parent_is_refused_and_pause_at_needs_a_directory(parent: Path, tmp_path: Path) -> None:
    lock = RunLock.acquire(parent)  # as a run writing there holds it
    try:
        with pytest.raises(RunDirError, match=f"a run \\(pid {os.getpid()}\\) is writing into this directory"):
            tokenomy.fork(parent, at_round=3, out=tmp_path / "fork")
    finally:
        lock.release()
    runner = Runner(load_scenario("baseline", [*RULES, "rounds=4"]))
    with pytest.raises(ValueError, match="pause_at needs a run directory"):
        runner.run(pause_at=1)
    with pytest.raises(ValueError, match=r"pause_at=3: not a round before the last \(0-2\)"):
        runner.run(tmp_path / "run", pause_at=3)
    assert not (tmp_path / "fork").exists() and not (tmp_path / "run").exists()


# -- (f) a damaged parent ------------------------------------------------------------------------------


def test_f_a_tampered_snapshot_is_refused_by_its_hash(parent: Path, tmp_path: Path) -> None:
    copy = tmp_path / "parent"
    shutil.copytree(parent, copy)
    snap = copy / "snapshots" / f"round-{T:06d}.snap"
    data = bytearray(snap.read_bytes())
    data[len(data) // 2] ^= 1
    snap.write_bytes(bytes(data))
    with pytest.raises(RunDirError, match=r"round-000005.snap: SHA-256 \w+ is not the \w+ the manifest recorded"):
        tokenomy.fork(copy, at_round=T, out=tmp_path / "fork")
    code, _, stderr = _cli(["fork", copy, "--at-round", T, "--out", tmp_path / "fork", "-q"])
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "cannot be forked from it" in stderr, stderr
    assert not (tmp_path / "fork").exists()
    tokenomy.fork(copy, at_round=T - 1, out=tmp_path / "fork")  # another snapshot is intact


def test_f_a_parent_its_rounds_do_not_reproduce_is_refused(sparse: Path, tmp_path: Path) -> None:
    copy = tmp_path / "parent"
    shutil.copytree(sparse, copy)
    metrics = pd.read_parquet(copy / "metrics.parquet")
    metrics.loc[metrics["round"] == 6, "gdp"] *= 1.01
    metrics.to_parquet(copy / "metrics.parquet", index=False)
    with pytest.raises(RunDirError, match=r"running round 6 again from the snapshot of round 4 gives gdp = "):
        tokenomy.fork(copy, at_round=7, out=tmp_path / "fork")
    assert not (tmp_path / "fork").exists()  # checked before the branch is made


# -- LLM-driven parents -------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(model="fake-model", retry_after_ms=1) as srv:
        yield srv


def test_an_llm_fork_copies_the_answers_up_to_t_and_asks_the_rest_again(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    sets = [
        "households=40",
        "firms=3",
        "banks=1",
        "rounds=6",
        "record.household_decisions=5",
        "record.snapshot_every=2",  # snapshots (and, for an LLM run, checkpoints) at 1, 3, 5
        "roles.household.policy=llm",
        "roles.household.llm_share=0.25",
        "roles.firm.policy=llm",
        "roles.regulator.policy=llm",
        'llm.model="fake-model"',
        "llm.max_retries=1",
        f'llm.base_url="{server.base_url}"',
    ]
    parent = Runner(load_scenario("baseline", sets)).run(tmp_path / "parent")
    assert parent is not None
    P = open_run(parent)
    calls = P.decisions.query("policy == 'llm'").groupby("round")["calls"].sum()
    with pytest.raises(RunDirError, match=r"cannot fork at round 2: it has no snapshot .* the run is LLM-driven"):
        tokenomy.fork(parent, at_round=2, out=tmp_path / "no")
    runner = Runner.forked(parent, at_round=3, out=tmp_path / "fork")
    with sqlite3.connect(tmp_path / "fork" / "llm-cache.sqlite") as db:  # the parent's answers of rounds 0-3
        assert db.execute("SELECT count(*) FROM answers").fetchone()[0] == calls.loc[:3].sum()
    B = open_run(runner.resume())
    assert_same_tables(B, P)  # calls, tokens, cache hits: asked again as the parent asked them
    for key in ("calls", "input_tokens", "output_tokens", "cache_hits", "decisions", "from_model"):
        assert B.manifest["llm_usage"][key] == P.manifest["llm_usage"][key], key
    with sqlite3.connect(tmp_path / "fork" / "llm-cache.sqlite") as db:
        assert db.execute("SELECT count(*) FROM answers").fetchone()[0] == calls.sum()
