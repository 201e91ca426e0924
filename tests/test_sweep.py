"""``tokenomy sweep``: a grid of field values x seeds, one run directory each, one tidy table.

The table has a row per run x round with the grid fields, seed and run as columns, and the values
change the runs; it is the same whatever the number of jobs, LLM-driven runs included (each gets
its share of the endpoint's limits); a sweep killed (SIGKILL) or stopped
(Ctrl-C at the terminal) and run again finishes with the uninterrupted sweep's table without
touching the runs that had finished; bad input is one line and exit 2 before anything runs; a sweep
whose estimated LLM cost is over ``--budget-usd`` is refused. The Ray executor is in
``test_sweep_ray.py``.

Kills are triggered by observed progress (a run finished, another one checkpointed), never by a
sleep; the poll's pause only paces the loop.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from tokenomy.cli import app
from tokenomy.policies.llm import estimate
from tokenomy.scenario import load_scenario
from tokenomy.simulation import Simulation
from tokenomy.store import lock_holder, open_run
from tokenomy.sweep import (
    SweepError,
    open_sweep,
    parse_grid,
    plan_sweep,
    run_sweep,
    share_llm_limits,
    split_values,
)

SCRIPT = Path(sys.executable).parent / "tokenomy"
HANG_GUARD = 300.0  # seconds; only so a hung child cannot block the suite, never what triggers a signal
SETS = ["households=60", "firms=4", "banks=2", "record.flush_every=2", "record.household_decisions=5"]
ROUNDS = 12
GRID = {"roles.regulator.ubi": [0, 500]}
SEEDS = 2
CLI_ARGS = [
    "sweep", "baseline", "--grid", "roles.regulator.ubi=0,500", "--seeds", str(SEEDS), "--rounds", str(ROUNDS),
    *(a for s in SETS for a in ("--set", s)), "--quiet",
]  # fmt: skip


LLM_SETS = [  # LLM-driven households and firms, at an endpoint never called (estimates call nothing)
    *SETS,
    "roles.household.policy=llm",
    "roles.household.llm_share=0.25",
    "roles.firm.policy=llm",
    'llm.model="fake-model"',
    'llm.base_url="http://127.0.0.1:9/v1"',
    "llm.price_input_per_million=150",
    "llm.price_output_per_million=600",
    "llm.max_concurrency=33",
    "llm.requests_per_second=10",
]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "PYTHONPATH")}
    return {**env, "NO_COLOR": "1"}


def _cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], env=_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=HANG_GUARD, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sweep run once, uninterrupted, in this process (jobs=1)."""
    out = tmp_path_factory.mktemp("ref") / "sweep"
    return run_sweep("baseline", GRID, SEEDS, out, rounds=ROUNDS, sets=SETS, jobs=1)


def _table(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path / "sweep.parquet")


def _stats(path: Path) -> dict[str, tuple[int, int]]:
    """Inode and mtime of every file of a run directory: a run rewritten shows in either."""
    return {str(f.relative_to(path)): (f.stat().st_ino, f.stat().st_mtime_ns) for f in path.rglob("*") if f.is_file()}


def _manifest(run: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((run / "manifest.json").read_text())
        return data
    except (OSError, ValueError):
        return None


# -- the table ----------------------------------------------------------------------------------------


def test_the_table_has_a_row_per_run_and_round_and_the_values_changed_the_runs(reference: Path) -> None:
    table = _table(reference)
    assert len(table) == len(GRID["roles.regulator.ubi"]) * SEEDS * ROUNDS
    assert list(table.columns[:3]) == ["run", "roles.regulator.ubi", "seed"]
    m = json.loads((reference / "sweep.json").read_text())
    assert {k for k in m} >= {"scenario", "scenario_data", "grid", "seeds", "rounds", "sets", "runs", "versions"}
    assert m["scenario"] == "baseline" and m["grid"] == GRID and m["seeds"] == [1, 2] and m["rounds"] == ROUNDS
    assert m["sets"] == SETS and m["executor"] == "local" and m["status"] == "finished"
    assert m["scenario_data"] == load_scenario("baseline", SETS, rounds=ROUNDS).model_dump(mode="json")
    assert m["started"] and m["finished"] and m["versions"]["tokenomy"]
    runs = m["runs"]
    assert [(r["path"], r["seed"], r["values"], r["status"]) for r in runs] == [
        ("runs/c000-s1", 1, {"roles.regulator.ubi": 0}, "finished"),
        ("runs/c000-s2", 2, {"roles.regulator.ubi": 0}, "finished"),
        ("runs/c001-s1", 1, {"roles.regulator.ubi": 500}, "finished"),
        ("runs/c001-s2", 2, {"roles.regulator.ubi": 500}, "finished"),
    ]
    for r in runs:  # each row block is its run's metrics.parquet, and the run is the cell's scenario
        run = open_run(reference / r["path"])
        assert run.manifest["scenario"]["roles"]["regulator"]["ubi"] == r["values"]["roles.regulator.ubi"]
        assert run.manifest["scenario"]["seed"] == r["seed"]
        rows = table[table["run"] == r["path"]].reset_index(drop=True)
        assert (rows["seed"] == r["seed"]).all()
        assert (rows["roles.regulator.ubi"] == r["values"]["roles.regulator.ubi"]).all()
        pd.testing.assert_frame_equal(rows.drop(columns=["run", "roles.regulator.ubi", "seed"]), run.metrics)
    ubi = table.groupby("roles.regulator.ubi")["income_ubi"]
    assert (ubi.min()[500] > 0) and (ubi.max()[0] == 0)  # UBI paid in every round of every ubi=500 run only
    sw = open_sweep(reference)
    assert sw.grid == GRID and [r.path for r in sw.runs] == [r["path"] for r in runs] and not sw.failed
    pd.testing.assert_frame_equal(sw.table, table)
    assert sw.run("c001-s2").manifest["scenario"]["seed"] == 2


@pytest.mark.slow  # worker processes, each with its LLM client
def test_the_number_of_jobs_does_not_change_the_table_and_llm_runs_share_the_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule-based and LLM-driven cells, at one job (this process) and two (worker processes): each LLM
    run got its share of the endpoint's limits, and the tables are equal but for the call latencies."""
    from tokenomy.testing.fake_openai import FakeOpenAIServer

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-sweep-0123456789abcdef")  # worker processes inherit it
    grid = {"roles.regulator.ubi": [0, 500], "roles.firm.policy": ["heuristic", "llm"]}
    with FakeOpenAIServer(model="fake-model", retry_after_ms=1) as srv:
        sets = [s for s in LLM_SETS if not s.startswith(("llm.base_url", "roles."))]
        sets += [f'llm.base_url="{srv.base_url}"', "firms=3", "llm.timeout_s=5"]
        one = run_sweep("baseline", grid, 1, tmp_path / "one", rounds=4, sets=sets, jobs=1)
        two = run_sweep("baseline", grid, 1, tmp_path / "two", rounds=4, sets=sets, jobs=2)
    assert json.loads((two / "sweep.json").read_text())["jobs"] == 2
    for out, shared in ((one, (33, 10.0)), (two, (16, 5.0))):  # an LLM run's share; a rule run keeps its own
        for r in open_sweep(out).runs:
            llm = open_run(out / r.path).manifest["scenario"]["llm"]
            split = r.values["roles.firm.policy"] == "llm"
            assert (llm["max_concurrency"], llm["requests_per_second"]) == (shared if split else (33, 10.0))
    a, b = _table(one), _table(two)
    asked = a["roles.firm.policy"] == "llm"
    assert (a.loc[asked, "llm_calls"] == 3).all() and (a.loc[~asked, "llm_calls"] == 0).all()
    assert (a["llm_fallbacks"] == 0).all()
    timings = [c for c in a.columns if c.startswith("llm_latency_")]
    pd.testing.assert_frame_equal(a.drop(columns=timings), b.drop(columns=timings), check_exact=True)


# -- restarts ---------------------------------------------------------------------------------------


def _wait_for(proc: subprocess.Popen[bytes], out: Path, ready: Any) -> Any:
    """Poll the runs' manifests until ``ready`` gives something truthy, and return it."""
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        manifests = {p.name: m for p in (out / "runs").glob("*") if (m := _manifest(p)) is not None}
        if found := ready(manifests):
            return found
        assert proc.poll() is None, f"the sweep ended (exit {proc.returncode}) before the moment to stop it"
        time.sleep(0.002)
    raise AssertionError("the moment to stop the sweep never came")


def _in_flight(manifests: dict[str, dict[str, Any]]) -> list[str]:
    """Runs that are running and have a checkpoint to resume from."""
    return [n for n, m in manifests.items() if m["status"] == "running" and m.get("checkpoint")]


def _unlocked(out: Path) -> None:
    """Every run's lock let go (the workers of a killed sweep exit with it)."""
    deadline = time.monotonic() + 30
    while any(lock_holder(p) for p in (out / "runs").glob("*")):
        assert time.monotonic() < deadline, "a worker outlived its killed sweep"
        time.sleep(0.01)


@pytest.mark.slow  # the installed command in subprocesses
def test_a_killed_sweep_run_again_finishes_without_rerunning_finished_runs(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    def moment(ms: dict[str, dict[str, Any]]) -> bool:  # one run finished, one checkpointed well before its end
        early = [n for n in _in_flight(ms) if ms[n]["checkpoint"]["round"] <= ROUNDS - 5]
        return any(m["status"] == "finished" for m in ms.values()) and bool(early)

    with open(tmp_path / "log", "wb") as log:
        args = [str(SCRIPT), *CLI_ARGS, "--jobs", "2", "--out", str(out)]  # worker processes: they die with it
        proc = subprocess.Popen(args, env=_env(), stdout=log, stderr=log, start_new_session=True)
        while True:  # frozen while it is looked at: under load the run in flight could finish first
            _wait_for(proc, out, moment)
            os.killpg(proc.pid, signal.SIGSTOP)
            if moment({p.name: m for p in (out / "runs").glob("*") if (m := _manifest(p)) is not None}):
                break
            os.killpg(proc.pid, signal.SIGCONT)
        proc.kill()  # the sweep process alone: its workers must leave with it
        proc.wait(timeout=HANG_GUARD)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGCONT)
    _unlocked(out)
    manifests = {p.name: _manifest(p) for p in (out / "runs").glob("*")}
    finished = sorted(n for n, m in manifests.items() if m is not None and m["status"] == "finished")
    killed = sorted(n for n, m in manifests.items() if m is not None and m["status"] == "running")
    resumable = sorted(n for n in killed if manifests[n]["checkpoint"])  # type: ignore[index]
    assert finished and resumable
    before = {n: _stats(out / "runs" / n) for n in finished}
    again = _cli([*CLI_ARGS, "--jobs", "1", "--out", str(out)])  # the other jobs, the same table
    assert again.returncode == 0, again.stderr
    assert {n: _stats(out / "runs" / n) for n in finished} == before  # only read, never rewritten
    for n in killed:  # resumed from its checkpoint, not begun again; one killed before its first, begun again
        m = _manifest(out / "runs" / n)
        assert m is not None and m["status"] == "finished"
        assert len(m.get("resumed", [])) == (n in resumable)
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["status"] == "finished" and len(sweep["restarted"]) == 1
    pd.testing.assert_frame_equal(_table(out), _table(reference), check_exact=True)


@pytest.mark.slow  # the installed command in subprocesses
def test_ctrl_c_interrupts_the_runs_in_flight_and_says_how_to_continue(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    proc = subprocess.Popen(
        [str(SCRIPT), *CLI_ARGS, "--jobs", "2", "--out", str(out)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: Ctrl-C at a terminal signals the whole group
    )
    caught = _wait_for(proc, out, lambda ms: [n for n in _in_flight(ms) if ms[n]["checkpoint"]["round"] <= ROUNDS - 5])
    os.killpg(proc.pid, signal.SIGINT)  # (well before the run's end: under load it could finish first)
    _, stderr = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 128 + signal.SIGINT, stderr
    said = stderr.decode()
    assert "interrupted by SIGINT" in said and "the same command continues the sweep: tokenomy sweep baseline" in said
    assert not any(lock_holder(p) for p in (out / "runs").glob("*"))  # no worker left running
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["status"] == "interrupted" and not (out / "sweep.parquet").exists()
    stopped = {Path(r["path"]).name: r for r in sweep["runs"] if r["status"] == "interrupted"}
    assert set(caught) <= set(stopped), sweep["runs"]
    for name in stopped:  # the run itself ended interrupted (tables written), through the sweep process's SIGTERM
        m = _manifest(out / "runs" / name)
        # the run caught in flight has its manifest; the other job may have been stopped in its first
        # round (no checkpoint) or before it wrote a manifest at all (seen in CI): then it has none
        assert (m is not None and m["status"] == "interrupted") or (m is None and name not in caught), (name, m)
    again = _cli([*CLI_ARGS, "--jobs", "1", "--out", str(out)])  # the other jobs, the same table
    assert again.returncode == 0, again.stderr
    pd.testing.assert_frame_equal(_table(out), _table(reference), check_exact=True)


def test_a_run_never_checkpointed_is_cleared_and_begun_again(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    shutil.copytree(reference, out)
    (out / "sweep.parquet").unlink()
    empty = out / "runs" / "c000-s1"  # made, and killed before its manifest was written
    shutil.rmtree(empty)
    (empty / "snapshots").mkdir(parents=True)
    (empty / "stray.tmp").write_bytes(b"half a file")
    early = out / "runs" / "c001-s2"  # killed before its first checkpoint
    m = json.loads((early / "manifest.json").read_text())
    m.update(status="running", checkpoint=None)
    (early / "manifest.json").write_text(json.dumps(m))
    kept = {n: _stats(out / "runs" / n) for n in ("c000-s2", "c001-s1")}
    run_sweep("baseline", GRID, SEEDS, out, rounds=ROUNDS, sets=SETS, jobs=1)
    assert {n: _stats(out / "runs" / n) for n in kept} == kept
    assert not (empty / "stray.tmp").exists()
    for run in (empty, early):
        m = _manifest(run)
        assert m is not None and m["status"] == "finished" and "resumed" not in m
    pd.testing.assert_frame_equal(_table(out), _table(reference), check_exact=True)


@pytest.mark.parametrize(
    ("grid", "seeds", "sets", "says"),
    [
        ({"roles.regulator.ubi": [0, 250]}, SEEDS, SETS, "the grid (roles.regulator.ubi=0,250; recorded: "),
        (GRID, 3, SETS, "the seeds (1..3; recorded: 1..2)"),
        (GRID, SEEDS, [*SETS, "households=61"], "the scenario (households = 61, recorded 60)"),
    ],
)
def test_running_another_sweep_in_a_sweep_directory_is_refused(
    reference: Path, grid: dict[str, list[Any]], seeds: int, sets: list[str], says: str
) -> None:
    before = (reference / "sweep.json").read_bytes()
    with pytest.raises(SweepError, match="holds another sweep") as caught:
        run_sweep("baseline", grid, seeds, reference, rounds=ROUNDS, sets=sets, jobs=1)
    assert says in str(caught.value) and "\n" not in str(caught.value)
    assert (reference / "sweep.json").read_bytes() == before


# -- bad input ----------------------------------------------------------------------------------------


@pytest.fixture
def cli() -> Iterator[CliRunner]:
    yield CliRunner()


def test_the_command_on_another_sweeps_directory_is_one_line(reference: Path, cli: CliRunner) -> None:
    args = [a if a != "roles.regulator.ubi=0,500" else "roles.regulator.ubi=0,250" for a in CLI_ARGS]
    result = cli.invoke(app, [*args, "--out", str(reference)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {reference}: holds another sweep: the grid (roles.regulator.ubi=0,250; recorded:"
        " roles.regulator.ubi=0,500) differs; rerun it with the recorded values to continue it, or choose another"
        " --out"
    ]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--grid", "roles.regulator.ubx=0,500"], "--grid roles.regulator.ubx=0: field 'roles.regulator.ubx': unknown"),
        (["--grid", "roles.regulator.ubi=0,abc"], "--grid roles.regulator.ubi=\"abc\": field 'roles.regulator.ubi'"),
        (["--grid", "roles.regulator.ubi=0,-5"], "greater than or equal to 0"),
        (["--grid", "roles.regulator.ubi"], "expected FIELD=V1,V2"),
        (["--grid", "roles.regulator.ubi=0,,500"], "an empty value"),
        (["--grid", "households=10,10"], "the value 10 is given twice"),
        (["--grid", "households=10", "--grid", "households=20"], "given twice"),
        (["--grid", "seed=1,2"], "use --seeds N"),
        (["--grid", "households.x=1"], "'households' is a value, not a section"),
        (["--grid", "households=10", "--set", "firms=abc"], "--set firms=abc"),
        (["--grid", "households=10", "--executor", "dask"], "expected local or ray"),
        (["--grid", "households=1000000000000"], "households"),  # the memory check, per cell
    ],
)
def test_bad_grid_input_is_one_line_and_exit_2_before_anything_runs(
    cli: CliRunner, tmp_path: Path, args: list[str], says: str
) -> None:
    out = tmp_path / "sweep"
    result = cli.invoke(app, ["sweep", "baseline", "--out", str(out), "--rounds", "3", *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert says in lines[0]
    assert not out.exists()


def test_without_ray_the_executor_is_one_line_naming_the_extra(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: `import ray` raises ImportError
    out = tmp_path / "sweep"
    result = cli.invoke(app, ["sweep", "baseline", "--out", str(out), "--grid", "households=60", "--executor", "ray"])
    assert result.exit_code == 2
    said = result.stderr.strip()
    assert said == "error: --executor ray needs Ray, an optional dependency: pip install 'tokenomy[ray]'"
    assert not out.exists()


def test_a_non_empty_directory_that_is_no_sweep_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SweepError, match=r"holds no sweep\.json"):
        run_sweep("baseline", GRID, 1, tmp_path, rounds=2, sets=SETS, jobs=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_grid_values_are_read_as_set_reads_them() -> None:
    assert split_values(' 0, 500 ,"a,b", [1, 2], {x = "y,z"}, \'c,d\'') == [
        "0", "500", '"a,b"', "[1, 2]", '{x = "y,z"}', "'c,d'",
    ]  # fmt: skip
    items = ["roles.regulator.ubi=0,500.5", "rails.chain_enabled=true,false", "roles.network.strategy=fixed,max"]
    grid = parse_grid(items)
    assert grid == {
        "roles.regulator.ubi": [0, 500.5],
        "rails.chain_enabled": [True, False],
        "roles.network.strategy": ["fixed", "max"],  # bare words: strings
    }
    assert parse_grid(["roles.household.prompt=a.md,/long/path/b.md"]) == {
        "roles.household.prompt": ["a.md", "/long/path/b.md"]
    }
    plan = plan_sweep("baseline", grid, [3, 7], rounds=2, sets=SETS)
    assert len(plan.cells) == 8 and [r.id for r in plan.runs[:3]] == ["c000-s3", "c000-s7", "c001-s3"]
    last = plan.runs[-1].scenario
    regulator, network = last.roles.section("regulator").model_dump(), last.roles.section("network").model_dump()
    assert (regulator["ubi"], network["strategy"], last.rails.chain_enabled, last.seed) == (500.5, "max", False, 7)


# -- LLM-driven sweeps --------------------------------------------------------------------------------
def _estimate(grid: dict[str, list[Any]], seeds: int, sets: list[str]) -> float:
    """The sum of every run's own dry-run estimate (what `tokenomy run --dry-run` prints for it)."""
    total = 0.0
    for r in plan_sweep("baseline", grid, seeds, rounds=ROUNDS, sets=sets).runs:
        sim = Simulation(r.scenario)
        total += sum(row["cost_usd"] for row in estimate(r.scenario, sim.world, sim.observe()))
    return total


def test_a_sweep_over_its_budget_is_refused_before_anything_runs(cli: CliRunner, tmp_path: Path) -> None:
    grid = {"roles.regulator.ubi": [0, 500], "roles.household.llm_share": [0.25, 0.5]}
    cost = _estimate(grid, SEEDS, LLM_SETS)
    assert cost > 0
    out = tmp_path / "sweep"
    args = ["sweep", "baseline", "--out", str(out), "--seeds", str(SEEDS), "--rounds", str(ROUNDS)]
    args += ["--grid", "roles.regulator.ubi=0,500", "--grid", "roles.household.llm_share=0.25,0.5"]
    args += [a for s in LLM_SETS for a in ("--set", s)]
    budget = round(cost * 0.9, 4)
    result = cli.invoke(app, [*args, "--budget-usd", str(budget)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --budget-usd"), result.stderr
    assert f"${cost:,.4f}" in lines[0] and f"${budget:,.4f}" in lines[0] and "8 runs" in lines[0]
    assert not out.exists()
    # each run's own llm.budget_usd caps what it can spend, so its estimate too
    capped = plan_sweep("baseline", grid, SEEDS, rounds=ROUNDS, sets=[*LLM_SETS, "llm.budget_usd=0.0001"])
    assert capped.estimate_usd() == pytest.approx(8 * 0.0001)
    capped.check_budget(8 * 0.0001 + 1e-9)
    # a rule-based sweep costs nothing
    assert plan_sweep("baseline", GRID, SEEDS, rounds=ROUNDS, sets=SETS).check_budget(0.0) == 0


def test_the_endpoint_limits_are_split_over_the_runs_at_once() -> None:
    sc = load_scenario("baseline", LLM_SETS)
    for n, concurrency, rps in ((1, 33, 10.0), (2, 16, 5.0), (4, 8, 2.5), (64, 1, 10 / 64)):
        llm = share_llm_limits(sc, n).llm
        assert (llm.max_concurrency, llm.requests_per_second) == (concurrency, rps)
        assert llm.budget_usd == sc.llm.budget_usd and llm.max_calls == sc.llm.max_calls  # budgets stay per run
    rules = load_scenario("baseline", SETS)
    assert share_llm_limits(rules, 4) == rules


def test_a_restart_never_labels_a_run_as_another_cell(tmp_path: Path) -> None:
    """Run ids follow the grid's order: the same grid in another order is another sweep, and a run
    directory holding another cell's run is refused rather than skipped under the wrong label."""
    grid = {"roles.regulator.ubi": [0, 500], "roles.regulator.income_tax": [0.1, 0.3]}
    out = run_sweep("baseline", grid, 1, tmp_path / "sweep", rounds=3, sets=SETS, jobs=1)
    swapped = dict(reversed(list(grid.items())))
    with pytest.raises(SweepError, match="holds another sweep: the grid"):
        run_sweep("baseline", swapped, 1, out, rounds=3, sets=SETS, jobs=1)
    a, b = out / "runs" / "c000-s1", out / "runs" / "c001-s1"  # (0, 0.1) and (0, 0.3)
    a.rename(tmp_path / "held")
    b.rename(a)
    (tmp_path / "held").rename(b)
    with pytest.raises(SweepError, match=r"c000-s1: this run was made for another cell \(roles.regulator.income_tax"):
        run_sweep("baseline", grid, 1, out, rounds=3, sets=SETS, jobs=1)
