"""``tokenomy compare``: the statistics against hand computations and scipy, grouping and windows on
synthetic sweeps, and UBI = 0 against 500 on small real runs through the installed command."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

import tokenomy
from tokenomy import cli
from tokenomy.compare import (
    PAIRED,
    WELCH,
    CompareError,
    Comparison,
    compare,
    paired_t,
    parse_window,
    t_interval,
    welch_t,
)
from tokenomy.store import open_run
from tokenomy.sweep import SweepManifest, SweepRun

SCRIPT = Path(sys.executable).parent / "tokenomy"
TINY = ["households=200", "firms=10", "banks=2", "rounds=20", "record.household_decisions=0",
        "record.snapshot_every=20"]  # fmt: skip
SEEDS = (1, 2, 3)
UBI = "roles.regulator.ubi"


# -- a sweep directory in the format `tokenomy sweep` writes (sweep.json + sweep.parquet) -----------------
def write_sweep(
    root: Path, grid: dict[str, list[Any]], runs: Sequence[tuple[dict[str, Any], int, pd.DataFrame]]
) -> Path:
    """``runs``: (grid values, seed, metrics rows) per run, as ``runs/cNNN-sS`` in the sweep directory."""
    root.mkdir(parents=True, exist_ok=True)
    combos = [tuple(v.items()) for v, _, _ in runs]
    index = {c: i for i, c in enumerate(dict.fromkeys(combos))}
    entries, frames = [], []
    for (values, seed, frame), combo in zip(runs, combos, strict=True):
        rel = f"runs/c{index[combo]:03d}-s{seed}"
        entries.append(SweepRun(path=rel, cell=index[combo], seed=seed, values=values, status="finished"))
        frames.append(frame.assign(**values, seed=seed, run=rel))
    spec = SweepManifest(
        scenario="baseline",
        scenario_data={"name": "baseline", "seed": 1, "roles": {"regulator": {"ubi": 0.0, "income_tax": 0.2}}},
        grid=grid,
        seeds=sorted({s for _, s, _ in runs}),
        rounds=int(max(len(f) for _, _, f in runs)),
        sets=[],
        runs=entries,
        status="finished",
    )
    (root / "sweep.json").write_text(spec.model_dump_json())
    pd.concat(frames, ignore_index=True).to_parquet(root / "sweep.parquet")
    return root


def frame(rounds: int = 10, **columns: Any) -> pd.DataFrame:
    """Metrics rows: ``round`` 0..rounds-1 and the given columns (scalars or per-round sequences)."""
    data = {k: np.broadcast_to(np.asarray(v, dtype=float), rounds) for k, v in columns.items()}
    return pd.DataFrame({"round": np.arange(rounds)} | data)


# -- the statistics -------------------------------------------------------------------------------------
def test_t_interval_is_the_textbook_one() -> None:
    # 1..5: mean 3, s = sqrt(2.5), t(0.975, 4) = 2.776 (any t table): 3 -+ 2.776 * sqrt(2.5 / 5)
    iv = t_interval([1, 2, 3, 4, 5])
    assert (iv.n, iv.mean) == (5, 3.0)
    assert iv.low == pytest.approx(3 - 2.776445 * math.sqrt(0.5), abs=1e-5)
    assert (iv.low, iv.high) == pytest.approx((1.0368, 4.9632), abs=1e-4)
    one = t_interval([7.0, math.nan])  # one finite value: a mean, no interval
    assert one.n == 1 and one.mean == 7.0 and math.isnan(one.low) and math.isnan(one.high)


def test_welch_matches_the_textbook_example_and_scipy() -> None:
    # Welch's t-test, Wikipedia's first example: t = -2.46, df = 25.0, p = 0.021
    a1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    a2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    d = welch_t(a2, a1)  # mean(a1) - mean(a2), as the example states t
    se = math.sqrt(np.var(a1, ddof=1) / 15 + np.var(a2, ddof=1) / 15)
    assert d.diff / se == pytest.approx(-2.46, abs=0.005)
    assert d.df == pytest.approx(25.0, abs=0.05)
    assert d.p == pytest.approx(0.021, abs=0.0005)
    assert d.test == WELCH and d.n == (15, 15)
    rng = np.random.default_rng(3)
    for nx, ny in ((3, 3), (4, 9), (12, 5)):
        x, y = rng.normal(0, 1, nx), rng.normal(0.8, 3, ny)
        ref = stats.ttest_ind(y, x, equal_var=False)
        got = welch_t(x, y)
        ci = ref.confidence_interval(0.95)
        assert got.p == pytest.approx(ref.pvalue, rel=1e-10)
        assert got.df == pytest.approx(ref.df, rel=1e-10)
        assert (got.low, got.high) == pytest.approx((ci.low, ci.high), rel=1e-10)
        assert got.diff == pytest.approx(y.mean() - x.mean())


def test_paired_matches_scipy_and_n_below_two_is_no_crash() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(10, 4, 6)
    y = x + rng.normal(0.5, 0.3, 6)  # the seeds' common noise cancels in the differences
    ref = stats.ttest_rel(y, x)
    got = paired_t(x, y)
    ci = ref.confidence_interval(0.95)
    assert got.test == PAIRED and got.df == 5
    assert got.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert (got.low, got.high) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert got.p < welch_t(x, y).p  # what pairing buys
    for d in (welch_t([1.0], [2.0, 3.0]), paired_t([1.0], [2.0])):
        assert d.diff == pytest.approx(1.0 if d.test == PAIRED else 1.5)
        assert math.isnan(d.p) and math.isnan(d.low)


@pytest.mark.parametrize(
    ("text", "bounds"),
    [("5:8", (5, 8)), ("5:", (5, 10)), (":3", (0, 3)), ("-4:", (6, 10)), (":-1", (0, 9)), (None, (5, 10))],
)
def test_window_bounds_are_a_slice_of_the_rounds(text: str | None, bounds: tuple[int, int]) -> None:
    assert parse_window(text).resolve(0, 10) == bounds


@pytest.mark.parametrize("text", ["x", "1:2:3", "1.5:4", "", "a:"])
def test_a_bad_window_is_refused(text: str) -> None:
    with pytest.raises(CompareError, match="expected A:B"):
        parse_window(text)


# -- synthetic sweeps: grouping, labels, windows, ratios over a dead GDP -----------------------------------
PROMPT = "roles.household.prompt"
PROMPTS = ["/work/a/household.md", "/work/b/household.md", "/work/short.md"]


@pytest.fixture
def prompt_sweep(tmp_path: Path) -> tuple[Path, dict[tuple[int, int], float]]:
    """Three prompts x seeds 1-3; gdp is the round number plus a value per (prompt, seed)."""
    level = {(p, s): 100.0 * p + 7.0 * s**2 for p in range(3) for s in SEEDS}
    runs = [
        ({PROMPT: PROMPTS[p]}, s, frame(gdp=np.arange(10) + level[p, s], consumption=level[p, s] / 2))
        for p in range(3)
        for s in SEEDS
    ]
    return write_sweep(tmp_path / "sweep", {PROMPT: PROMPTS}, runs), level


def test_a_sweep_groups_by_its_grid_with_readable_labels(
    prompt_sweep: tuple[Path, dict[tuple[int, int], float]],
) -> None:
    path, level = prompt_sweep
    c = compare(path, metrics=["gdp"])
    assert c.by == [PROMPT]
    assert [g.label for g in c.groups] == ["household.md#1", "household.md#2", "short.md"]  # the grid's order
    assert any("household.md#1 = /work/a/household.md" in n for n in c.notes)
    assert c.window == (5, 10) and c.window_default and "second half" in c.window_text
    t = c.table.set_index("group")
    for p, g in enumerate(c.groups):
        per_seed = [level[p, s] + 7.0 for s in SEEDS]  # rounds 5..9 average 7
        assert t.loc[g.label, "mean"] == pytest.approx(np.mean(per_seed))
        assert t.loc[g.label, "n"] == 3
    ref = [level[0, s] + 7 for s in SEEDS]
    for p in (1, 2):  # the same seeds in every group: paired on them
        row = t.loc[c.groups[p].label]
        assert row["test"] == PAIRED
        assert row["diff"] == pytest.approx(100.0 * p)
        # the seeds' common part (7 s^2) cancels: the differences are all 100 p, no variance: p is 0
        assert row["p"] == 0.0 and row["diff_low"] == pytest.approx(100.0 * p)
    welch = compare(path, metrics=["gdp"], paired=False).table.set_index("group")
    row = welch.loc["short.md"]
    ref_test = stats.ttest_ind([level[2, s] + 7 for s in SEEDS], ref, equal_var=False)
    assert row["test"] == WELCH and row["p"] == pytest.approx(ref_test.pvalue, rel=1e-10)


def test_the_window_and_gdp_ratios_left_out(tmp_path: Path) -> None:
    gdp = np.array([100.0] * 8 + [0.5, 0.0])  # the last two rounds: no economy to take a share of
    share = np.array([0.5] * 8 + [40.0, 0.0])
    runs = [({UBI: u}, s, frame(gdp=gdp, labour_share=share + u / 1000 + s / 100)) for u in (0.0, 500.0) for s in SEEDS]
    path = write_sweep(tmp_path / "sw", {UBI: [0.0, 500.0]}, runs)
    c = compare(path, metrics=["labour_share"], window="6:")
    assert c.window == (6, 10) and not c.window_default
    t = c.table.set_index("group")
    assert t.loc["0", "mean"] == pytest.approx(0.52)  # rounds 6 and 7 only, mean over seeds of 0.5 + s/100
    assert t.loc["500", "diff"] == pytest.approx(0.5)
    assert any("labour_share: 12 rounds of the window left out (GDP under 1" in n for n in c.notes), c.notes
    gone = compare(path, metrics=["labour_share"], window="8:")  # nothing left in any run
    assert gone.table["n"].tolist() == [0, 0] and "6 runs had none left" in " ".join(gone.notes)


def test_a_group_of_one_run_has_no_interval(tmp_path: Path) -> None:
    runs = [({UBI: 0.0}, s, frame(gdp=100.0 + s)) for s in SEEDS] + [({UBI: 500.0}, 1, frame(gdp=150.0))]
    c = compare(write_sweep(tmp_path / "sw", {UBI: [0.0, 500.0]}, runs), metrics=["gdp"])
    row = c.table.set_index("group").loc["500"]
    assert row["n"] == 1 and row["test"] == WELCH  # the seeds differ: not paired
    assert row["diff"] == pytest.approx(48.0) and math.isnan(row["p"]) and math.isnan(row["ci_low"])
    assert "n/a" in render(c)
    c.figure(tmp_path / "one.png")
    assert (tmp_path / "one.png").read_bytes()[:4] == b"\x89PNG"


def squash(text: str) -> str:
    return "".join(text.split())


def render(c: Comparison) -> str:
    from rich.console import Console

    console = Console(width=200, record=True, file=io.StringIO())
    for t in c.rich_tables():
        console.print(t)
    return console.export_text()


# -- real runs: UBI 0 against 500 ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ubi(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """Seeds 1-3 at UBI 0 and 500, tiny; as run directories and as a sweep directory over them."""
    root = tmp_path_factory.mktemp("ubi") / "sweep"
    runs, paths = [], []
    for i, u in enumerate((0, 500)):
        for s in SEEDS:
            sc = tokenomy.load_scenario("baseline", [*TINY, f"seed={s}", f"{UBI}={u}"])
            path = tokenomy.Runner(sc).run(root / f"runs/c{i:03d}-s{s}")
            paths.append(path)
            runs.append(({UBI: u}, s, open_run(path).metrics))
    return write_sweep(root, {UBI: [0, 500]}, runs), paths


@pytest.mark.slow
def test_ubi_raises_ubi_income_significantly_through_the_command(ubi: tuple[Path, list[Path]], tmp_path: Path) -> None:
    sweep, _ = ubi
    out = subprocess.run(
        [str(SCRIPT), "compare", str(sweep), "--metric", "income_ubi", "--metric", "gdp", "--json", "c.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "COLUMNS": "100", "HOME": str(tmp_path)},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    text, flat = out.stdout, squash(out.stdout)
    assert squash("6 runs in 2 groups, by roles.regulator.ubi; reference 0") in flat
    assert squash("window rounds 10-19 (the second half: the default") in flat
    assert squash("paired t-test on the per-seed differences") in flat
    rows = [line.split() for line in text.splitlines() if line.strip()]
    titles = [i for i, r in enumerate(rows) if r in (["income_ubi"], ["gdp"])]
    assert len(titles) == 2 and rows[titles[0] + 1][:4] == ["ubi", "n", "mean", "95%"]
    ref, treated = rows[titles[0] + 3], rows[titles[0] + 4]  # title, header, rule, then a row per group
    assert ref[:4] == ["0", "3", "0", "[0,"] and ref[-1] == "ref"
    assert treated[:2] == ["500", "3"] and treated[-2:] == ["paired", "t"] and treated[5].startswith("+")  # diff
    assert (sweep / "compare.png").read_bytes()[:4] == b"\x89PNG"  # by default beside the sweep's data
    data = json.loads((tmp_path / "c.json").read_text())
    row = next(r for r in data["table"] if r["metric"] == "income_ubi" and r["group"] == "500")
    assert row["diff"] > 0 and row["diff_low"] > 0 and row["p"] < 0.05 and row["test"] == PAIRED
    base = next(r for r in data["table"] if r["metric"] == "income_ubi" and r["group"] == "0")
    assert base["mean"] == 0 and base["reference"]
    assert len([v for v in data["values"] if v["metric"] == "gdp"]) == 6


@pytest.mark.slow
def test_run_directories_group_by_the_field_they_differ_on(ubi: tuple[Path, list[Path]]) -> None:
    sweep, paths = ubi
    runs = compare(paths, metrics=["income_ubi", "consumption"])
    assert runs.by == [UBI]  # not the seed, nor anything else: only the UBI differs
    assert [g.label for g in runs.groups] == ["0", "500"]
    swept = compare(sweep, metrics=["income_ubi", "consumption"])
    cols = ["metric", "group", "n", "mean", "ci_low", "ci_high", "diff", "diff_low", "diff_high", "p", "test"]
    pd.testing.assert_frame_equal(runs.table[cols], swept.table[cols])
    by_path = compare(paths[:2], metrics=["gdp"])  # two seeds of one scenario: each its own group
    assert by_path.by == [] and [g.label for g in by_path.groups] == [str(p) for p in paths[:2]]
    seeds = compare(paths[:3], by=["seed"], metrics=["gdp"], window=":5")
    assert [g.label for g in seeds.groups] == ["1", "2", "3"] and seeds.window == (0, 5)
    assert compare(paths[:3], metrics=["gdp"], window="10:100").window == (10, 20)  # what the runs hold


@pytest.mark.slow
def test_a_sweep_still_running_is_read_from_its_run_directories(ubi: tuple[Path, list[Path]], tmp_path: Path) -> None:
    sweep, paths = ubi
    running = tmp_path / "running"
    running.mkdir()
    (running / "runs").symlink_to(sweep / "runs")
    spec = json.loads((sweep / "sweep.json").read_text()) | {"status": "running"}
    (running / "sweep.json").write_text(json.dumps(spec))
    live = compare(running, metrics=["income_ubi"])
    assert any("still running" in n for n in live.notes)
    cols = ["group", "n", "mean", "diff", "p", "test"]
    pd.testing.assert_frame_equal(live.table[cols], compare(sweep, metrics=["income_ubi"]).table[cols])
    both = compare([sweep, paths[0]], metrics=["gdp"])  # a run given again, inside its sweep: counted once
    assert sum(len(g.runs) for g in both.groups) == 6 and any("given twice" in n for n in both.notes)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["{tmp}/nowhere"], ["{tmp}/nowhere", "no such run or sweep directory"]),
        (["{tmp}/empty"], ["{tmp}/empty: neither a run directory", "nor a sweep directory"]),
        (["{sweep}", "--metric", "incme_ubi"], ["--metric incme_ubi", "close: income_ubi"]),
        (["{sweep}", "--window", "ten:"], ["--window 'ten:'", "expected A:B"]),
        (["{sweep}", "--window", "30:40"], ["no recorded round", "rounds 0-19"]),
        (["{sweep}", "--window", "12:8"], ["--window 12:8", "holds no round"]),
        (["{sweep}", "--by", "roles.regulator.ubx"], ["--by roles.regulator.ubx", "close: roles.regulator.ubi"]),
        (["{sweep}", "-m", "gdp", "--out", "{tmp}/no/such/f.png"], ["--out {tmp}/no/such/f.png", "no such directory"]),
        (["{sweep}", "-m", "gdp", "--out", "{tmp}/f.txt"], ["--out {tmp}/f.txt", "not supported"]),
    ],
)
def test_bad_input_exits_2_with_one_line(
    args: list[str], fragments: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "500")  # one line stays one line
    monkeypatch.chdir(tmp_path)
    runs = [({UBI: u}, s, frame(20, gdp=100.0 + s, income_ubi=u)) for u in (0.0, 500.0) for s in SEEDS]
    sweep = write_sweep(tmp_path / "sweep", {UBI: [0.0, 500.0]}, runs)
    (tmp_path / "empty").mkdir()
    fill = {"tmp": str(tmp_path), "sweep": str(sweep)}
    result = CliRunner().invoke(cli.app, ["compare", *(a.format(**fill) for a in args)])
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for f in fragments:
        assert f.format(**fill) in lines[0]
    assert result.stdout.strip() == "" and not (tmp_path / "compare.png").exists()


def test_seeds_that_agree_exactly_give_p_zero_for_a_difference_and_one_for_none() -> None:
    for d in (welch_t([0.0, 0.0, 0.0], [5.0, 5.0, 5.0]), paired_t([1.0, 2.0, 3.0], [6.0, 7.0, 8.0])):
        assert d.diff == 5.0 and d.p == 0.0 and (d.low, d.high) == (5.0, 5.0)
    assert welch_t([2.0, 2.0], [2.0, 2.0]).p == 1.0 and paired_t([1.0, 2.0], [1.0, 2.0]).p == 1.0


def test_the_paths_per_round_are_t_intervals_over_each_groups_runs(tmp_path: Path) -> None:
    runs = [({UBI: u}, s, frame(gdp=np.arange(10) * (s + 1) + u)) for u in (0.0, 500.0) for s in SEEDS]
    c = compare(write_sweep(tmp_path / "sw", {UBI: [0.0, 500.0]}, runs), metrics=["gdp"])
    p = c.paths.set_index(["group", "round"])
    for u, label in ((0.0, "0"), (500.0, "500")):
        for r in (0, 4, 9):
            iv = t_interval([r * (s + 1) + u for s in SEEDS])
            row = p.loc[(label, r)]
            assert row["n"] == len(SEEDS) and row["mean"] == pytest.approx(iv.mean)
            assert (row["ci_low"], row["ci_high"]) == pytest.approx((iv.low, iv.high))
