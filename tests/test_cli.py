"""The installed ``tokenomy`` command, run as a real subprocess (console script and ``python -m``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from tokenomy.scenario import bundled_scenarios
from tokenomy.store import open_run

pytestmark = pytest.mark.slow  # the installed command in subprocesses

SCRIPT = Path(sys.executable).parent / "tokenomy"
TINY = ["--set", "households=60", "--set", "firms=4", "--set", "banks=1", "--rounds", "3"]
ROUNDS = 3
TABLES = ("metrics", "trades", "payments", "decisions")
INT_COLUMNS = ("money_supply_cents", "issued_cents", "destroyed_cents")
FLOAT_COLUMNS = (
    "gdp", "potential_output", "consumption", "investment", "wage_mean", "labour_share", "unemployment_rate",
    "price_index", "inflation", "gini_wealth", "gini_income", "top10_wealth_share", "rent_share", "ubi_paid",
    "income_wages", "income_dividends", "income_interest", "income_ubi", "automation_share",
)  # fmt: skip
HANG_GUARD = 300  # seconds; only so a hung child cannot block the suite, never asserted on


def _env() -> dict[str, str]:
    """The user's environment minus anything that changes how rich lays out its output."""
    env = dict(os.environ)
    for key in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "PYTHONPATH"):
        env.pop(key, None)
    env["NO_COLOR"] = "1"
    return env


def cli(args: list[str], cwd: Path, entry: str = "script") -> subprocess.CompletedProcess[str]:
    cmd = [str(SCRIPT)] if entry == "script" else [sys.executable, "-m", "tokenomy.cli"]
    return subprocess.run(
        [*cmd, *[str(a) for a in args]],
        cwd=cwd,
        env=_env(),
        stdin=subprocess.DEVNULL,  # no tty anywhere: rich uses its default 80-column width
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )


def squash(text: str) -> str:
    """Drop all whitespace, so checks do not depend on where rich wraps a line."""
    return "".join(text.split())


def finished_manifests(root: Path) -> list[Path]:
    out = []
    for m in root.rglob("manifest.json"):
        try:
            if json.loads(m.read_text()).get("status") == "finished":
                out.append(m)
        except (OSError, ValueError):
            continue
    return out


def _check_run_dir(path: Path, *, name: str, seed: int) -> pd.DataFrame:
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["status"] == "finished"
    assert manifest["scenario"]["name"] == name
    assert manifest["scenario"]["households"] == 60
    assert manifest["scenario"]["firms"] == 4
    assert manifest["scenario"]["banks"] == 1
    assert manifest["scenario"]["rounds"] == ROUNDS
    assert manifest["scenario"]["seed"] == seed
    for table in TABLES:
        assert (path / f"{table}.parquet").is_file(), f"{table}.parquet missing"
        assert not (path / f"{table}.parquet.tmp").exists()
    assert (path / "snapshots" / f"round-{ROUNDS - 1:06d}.snap").is_file()
    metrics = pd.read_parquet(path / "metrics.parquet")
    assert len(metrics) == ROUNDS
    assert metrics["round"].tolist() == list(range(ROUNDS))
    return metrics


# -- a successful run ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("baseline_run")
    out = cwd / "run"
    proc = cli(["run", "baseline", *TINY, "--out", out], cwd=cwd, entry="script")
    return cwd, out, proc


def test_console_script_is_installed_next_to_python():
    assert SCRIPT.is_file()
    assert os.access(SCRIPT, os.X_OK)


def test_run_bundled_name_exits_0_and_prints_summary(baseline_run):
    cwd, out, proc = baseline_run
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "error" not in proc.stderr.lower()
    stdout = proc.stdout
    assert "baseline: mean of the first and last 1 rounds" in stdout
    for label in ("GDP", "consumption", "potential output", "labour share", "unemployment", "Gini (wealth)"):
        assert label in stdout, f"summary lacks {label!r}"
    assert "rounds 0-0" in stdout
    assert f"rounds {ROUNDS - 1}-{ROUNDS - 1}" in stdout
    assert f"{ROUNDS} rounds in" in stdout
    assert str(out) in squash(stdout)
    # the summary shows the recorded numbers
    metrics = pd.read_parquet(out / "metrics.parquet")
    assert f"{metrics['gdp'].iloc[0]:,.0f}" in stdout
    assert f"{metrics['gdp'].iloc[-1]:,.0f}" in stdout
    # nothing written outside --out
    assert sorted(p.name for p in cwd.iterdir()) == ["run"]


def test_run_directory_layout(baseline_run):
    _, out, proc = baseline_run
    assert proc.returncode == 0, proc.stderr
    _check_run_dir(out, name="baseline", seed=1)
    run = open_run(out)
    assert run.manifest["status"] == "finished"
    assert run.snapshot_rounds() == list(range(ROUNDS))
    for table in TABLES:  # trades and events may be empty in three rounds; their files are there (above)
        if table not in ("trades", "events"):
            assert not getattr(run, table).empty, f"{table} is empty"


def test_metrics_columns_and_dtypes(baseline_run):
    _, out, proc = baseline_run
    assert proc.returncode == 0, proc.stderr
    metrics = pd.read_parquet(out / "metrics.parquet")
    missing = {"round", *INT_COLUMNS, *FLOAT_COLUMNS} - set(metrics.columns)
    assert not missing, f"metrics lacks {sorted(missing)}"
    assert pd.api.types.is_integer_dtype(metrics["round"])
    for col in INT_COLUMNS:
        assert metrics[col].dtype == np.int64, f"{col}: {metrics[col].dtype}"
    for col in FLOAT_COLUMNS:
        assert pd.api.types.is_float_dtype(metrics[col]), f"{col}: {metrics[col].dtype}"
        assert np.isfinite(metrics[col]).all(), f"{col} has non-finite values"
    assert (metrics["gdp"] > 0).all()
    assert (metrics["money_supply_cents"] > 0).all()
    assert metrics["unemployment_rate"].between(0, 1).all()
    assert metrics["gini_wealth"].between(0, 1).all()
    assert metrics["automation_share"].between(0, 1).all()
    pdt.assert_frame_equal(open_run(out).metrics, metrics)


def test_run_toml_path_with_python_m(baseline_run, tmp_path):
    _, base_out, base_proc = baseline_run
    assert base_proc.returncode == 0, base_proc.stderr
    scenario = tmp_path / "my_copy.toml"
    shutil.copyfile(bundled_scenarios()["baseline"], scenario)
    out = tmp_path / "run"
    # a relative path to the file, resolved against the working directory
    proc = cli(["run", "my_copy.toml", *TINY, "--out", "run", "-q"], cwd=tmp_path, entry="module")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "GDP" in proc.stdout
    metrics = _check_run_dir(out, name="baseline", seed=1)
    # same scenario and seed as the run by name: identical results
    pdt.assert_frame_equal(metrics, pd.read_parquet(base_out / "metrics.parquet"))
    assert scenario.read_bytes() == bundled_scenarios()["baseline"].read_bytes()


def test_scenarios_lists_bundled(tmp_path):
    proc = cli(["scenarios"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    text = squash(proc.stdout)
    assert "baseline" in proc.stdout
    assert "automation_shock" in proc.stdout
    assert "invalid" not in proc.stdout
    assert squash("(the control)") in text
    assert list(tmp_path.iterdir()) == []


# -- bad inputs ---------------------------------------------------------------------------------


def _file(name: str, text: str):
    def make(tmp: Path) -> tuple[list[str], list[str]]:
        path = tmp / name
        path.write_text(text, encoding="utf-8")
        return [path], []

    return make


def _args(scenario: str, *overrides: str):
    def make(tmp: Path) -> tuple[list[str], list[str]]:
        return [scenario], [a for o in overrides for a in ("--set", o)]

    return make


BAD = {
    "unknown_key": (
        _file("typo.toml", '# typo\nname = "typo"\nhoushold = 5\n'),
        ["{file}:3:", "field 'houshold'", "unknown field"],
    ),
    "unknown_nested_key": (
        _file("nested.toml", "# nested\n[roles.household]\nmpc_income = 0.5\nbogus = 1\n"),
        ["{file}:4:", "roles.household.bogus", "unknown field"],
    ),
    "wrong_type": (
        _file("wrong.toml", '# wrong type\nhouseholds = "many"\n'),
        ["{file}:2:", "field 'households'", "'many'"],
    ),
    "missing_file": (
        lambda tmp: ([tmp / "missing.toml"], []),
        ["{file}", "no such scenario file"],
    ),
    "invalid_toml": (
        _file("bad.toml", '# bad\nname = "b"\nhouseholds = = 3\n'),
        ["{file}", "invalid TOML", "line 3"],
    ),
    "unknown_bundled_name": (
        _args("no_such_scenario"),
        ["no_such_scenario", "baseline", "automation_shock"],
    ),
    "set_without_equals": (
        _args("baseline", "households"),
        ["--set 'households'", "FIELD=VALUE"],
    ),
    "set_bad_value_type": (
        _args("baseline", "households=abc"),
        ["baseline.toml", "--set households=abc", "field 'households'", "'abc'"],
    ),
    "set_into_value": (
        _args("baseline", "households.x=1"),
        ["households.x=1", "'households' is a value, not a section"],
    ),
}


# every case through the console script, one also through ``python -m tokenomy.cli``
BAD_RUNS = [*((case, "script") for case in sorted(BAD)), ("unknown_key", "module")]


@pytest.fixture(scope="module")
def bad_results(tmp_path_factory):
    """Run all bad-input cases concurrently (independent processes, each in its own directory)."""

    def one(key: tuple[str, str]):
        case, entry = key
        tmp = tmp_path_factory.mktemp(f"bad_{case}_{entry}")
        make, _ = BAD[case]
        positional, sets = make(tmp)
        proc = cli(["run", *positional, *sets, "--rounds", "3", "--out", tmp / "run", "-q"], cwd=tmp, entry=entry)
        return key, (tmp, positional, proc)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(one, BAD_RUNS))


@pytest.mark.parametrize(("case", "entry"), BAD_RUNS, ids=[f"{c}-{e}" for c, e in BAD_RUNS])
def test_bad_input_exits_2_with_message(case, entry, bad_results):
    tmp_path, positional, proc = bad_results[case, entry]
    _, expected = BAD[case]
    out = tmp_path / "run"
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert "Traceback" not in proc.stdout
    assert "error:" in proc.stderr
    file = str(positional[0]) if positional and isinstance(positional[0], Path) else ""
    stderr = squash(proc.stderr)
    for fragment in expected:
        assert squash(fragment.format(file=file)) in stderr, f"{fragment!r} not in {proc.stderr!r}"
    assert proc.stdout.strip() == ""
    assert not out.exists()
    assert not (tmp_path / "runs").exists()
    assert finished_manifests(tmp_path) == []


def test_usage_error_exits_2_without_traceback(tmp_path):
    proc = cli(["run", "baseline", "--rounds", "0", "--out", tmp_path / "run"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "--rounds" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_error_message_keeps_long_path_on_one_line(tmp_path):
    folder = tmp_path / ("a_rather_long_directory_name_" * 3)
    folder.mkdir()
    path = folder / "typo.toml"
    path.write_text("# typo\nhoushold = 5\n", encoding="utf-8")
    proc = cli(["run", path, "--out", tmp_path / "run", "-q"], cwd=tmp_path)
    assert proc.returncode == 2
    assert squash(f"{path}:2:") in squash(proc.stderr)  # the message itself is right ...
    assert f"{path}:2:" in proc.stderr  # ... but is it printed intact?


def test_out_non_empty_directory_is_refused_and_untouched(tmp_path):
    out = tmp_path / "existing"
    (out / "sub").mkdir(parents=True)
    (out / "keep.txt").write_text("precious\n")
    (out / "metrics.parquet").write_bytes(b"not really parquet")
    (out / "sub" / "nested.txt").write_text("also precious\n")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    before_dirs = sorted(p.relative_to(out) for p in out.rglob("*"))
    proc = cli(["run", "baseline", *TINY, "--out", out, "-q"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    stderr = squash(proc.stderr)
    assert squash(str(out)) in stderr
    assert "notempty" in stderr
    assert "--overwrite" in stderr
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before_dirs
    assert finished_manifests(tmp_path) == []


def test_out_pointing_at_a_file_exits_2(tmp_path):
    target = tmp_path / "afile"
    target.write_text("keep me\n")
    proc = cli(["run", "baseline", *TINY, "--out", target, "-q"], cwd=tmp_path)
    assert target.read_text() == "keep me\n"
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 2


# -- seeds --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seed_runs(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("seeds")
    plan = {"a": 7, "b": 7}

    def one(label: str):
        out = cwd / f"run-{label}"
        return label, cli(["run", "baseline", *TINY, "--seed", plan[label], "--out", out, "-q"], cwd=cwd), out

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(one, plan))
    runs = {}
    for label, proc, out in results:
        assert proc.returncode == 0, proc.stderr
        runs[label] = (plan[label], out)
    return runs


def test_same_seed_reproduces_metrics(seed_runs):
    (seed_a, out_a), (seed_b, out_b) = seed_runs["a"], seed_runs["b"]
    assert seed_a == seed_b
    a = _check_run_dir(out_a, name="baseline", seed=seed_a)
    b = _check_run_dir(out_b, name="baseline", seed=seed_b)
    pdt.assert_frame_equal(a, b)


def test_different_seed_changes_metrics(seed_runs, baseline_run):
    """``--seed 7`` against the same tiny baseline run with the scenario's own seed (1)."""
    seed_a, out_a = seed_runs["a"]
    a = _check_run_dir(out_a, name="baseline", seed=seed_a)
    _, base_out, base_proc = baseline_run
    assert base_proc.returncode == 0, base_proc.stderr
    base = _check_run_dir(base_out, name="baseline", seed=1)
    assert seed_a != 1
    with pytest.raises(AssertionError):
        pdt.assert_frame_equal(a, base)
    assert not np.allclose(a["gdp"], base["gdp"])
    assert not np.allclose(a["gini_wealth"], base["gini_wealth"])


# -- the installed package ----------------------------------------------------------------------


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )


def test_installed_package_imports_from_outside_checkout(tmp_path):
    proc = _python(
        "import tokenomy, tokenomy.market.ledger, tokenomy.agents.household, tokenomy.scenarios; "
        "print(tokenomy.__file__)",
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    printed = Path(proc.stdout.strip().splitlines()[-1])
    assert printed.name == "__init__.py"
    assert printed.parent.name == "tokenomy"
    assert tmp_path not in printed.parents


@pytest.mark.parametrize("name", ["market", "agents"])
def test_no_top_level_package_leaks(name, tmp_path):
    proc = _python(f"import {name}", tmp_path)
    assert proc.returncode != 0
    assert "ModuleNotFoundError" in proc.stderr
    assert f"No module named '{name}'" in proc.stderr
