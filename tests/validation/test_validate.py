"""``tokenomy validate`` and :func:`tokenomy.validation.run.validate`: a small economy over seeds,
the exact checks always in the table, planted accounting bugs caught, deviations that turn a
failure into a listed deviation (and only a listed one), and the command end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tokenomy import settlement
from tokenomy.outcome import RoundOutcome
from tokenomy.scenario import Scenario, load_scenario
from tokenomy.validation import run as vr
from tokenomy.validation.checks import Check, below
from tokenomy.validation.exact import exact_checks, korinek_suh_checks
from tokenomy.validation.figures import FIGURES
from tokenomy.validation.run import (
    DEFAULT_DEVIATIONS,
    RUN_COMPLETED,
    DeviationsError,
    ProgressEvent,
    ValidationResult,
    apply_deviations,
    check_names,
    load_deviations,
    status,
    validate,
)
from tokenomy.world import World

SMALL = ["households=200", "firms=10", "banks=2"]
ROUNDS, BURN_IN, SEEDS = 60, 12, (1, 2)
SCRIPT = Path(sys.executable).parent / "tokenomy"
HANG_GUARD = 600  # seconds; only so a hung child cannot block the suite, never asserted on
COUNTERPART = "money without a counterpart"
SFC = "SFC matrices: every row and column sums to 0"
EXACT_COUNT = 12  # 5 Korinek & Suh results + 7 exchange models


def small() -> Scenario:
    return load_scenario("baseline", SMALL, rounds=ROUNDS)


def write_deviations(path: Path, names: list[str], why: str = "a test says so") -> Path:
    entries = [
        f'[[deviation]]\ncheck = "{n}"\nliterature = "what the literature reports"\nwhy = "{why}"\nsince = 2026-12-01\n'
        for n in names
    ]
    path.write_text("\n".join(entries), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[ValidationResult, list[ProgressEvent]]:
    """The small economy over two seeds, in this process, written to a directory."""
    events: list[ProgressEvent] = []
    out = tmp_path_factory.mktemp("clean") / "validation"
    result = validate(small(), SEEDS, burn_in=BURN_IN, jobs=1, out=out, quick_exact=True, progress=events.append)
    return result, events


@pytest.fixture
def fast_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the Korinek & Suh exact checks (milliseconds), for tests about the economy's checks."""
    monkeypatch.setattr(vr, "exact_checks", lambda seed=0, quick=False: korinek_suh_checks())


# -- the clean run ------------------------------------------------------------------------------
@pytest.mark.slow
def test_exact_checks_are_always_in_the_result(clean: tuple[ValidationResult, list[ProgressEvent]]) -> None:
    result, _ = clean
    exact = [c for c in result.checks if c.kind == "exact"]
    assert len(exact) == EXACT_COUNT
    assert {c.name for c in korinek_suh_checks()} <= {c.name for c in exact}
    assert all(len(c.per_seed) == 1 for c in exact)
    assert all(status(c) == "pass" for c in exact), [c.name for c in exact if not c.passed]
    kinds = [c.kind for c in result.checks]
    assert kinds == sorted(kinds, key=vr.KIND_ORDER.index)  # grouped: exact, accounting, stylized


@pytest.mark.slow
def test_clean_run_keeps_the_books(clean: tuple[ValidationResult, list[ProgressEvent]]) -> None:
    result, _ = clean
    by_name = {c.name: c for c in result.checks}
    for name in (RUN_COMPLETED, COUNTERPART, SFC):
        c = by_name[name]
        assert c.kind == "accounting"
        assert c.per_seed == (1.0, 1.0) if name == RUN_COMPLETED else c.per_seed == (0.0, 0.0)
        assert status(c) == "pass"
    assert [len(f) for f in result.frames] == [ROUNDS, ROUNDS]
    assert all(r.error is None and r.rounds_run == ROUNDS for r in result.runs)
    # every stylized fact is in the table, measured or not
    assert {s.name for s in vr.SPECS} <= set(by_name)
    assert result.passed == (not result.failures)


@pytest.mark.slow
def test_progress_reports_every_round_of_every_seed(clean: tuple[ValidationResult, list[ProgressEvent]]) -> None:
    _, events = clean
    assert events[0].kind == "exact"  # in-process: the exact checks first, so a bad deviation fails early
    for s in SEEDS:
        rounds = [e.round for e in events if e.kind == "round" and e.seed == s]
        assert rounds == list(range(ROUNDS))
    assert [e.seed for e in events if e.kind == "seed"] == list(SEEDS)


@pytest.mark.slow
def test_files_written(clean: tuple[ValidationResult, list[ProgressEvent]]) -> None:
    result, _ = clean
    out = result.out
    assert out is not None
    data = json.loads((out / "validation.json").read_text())
    assert data["seeds"] == list(SEEDS)
    assert data["rounds"] == ROUNDS and data["burn_in"] == BURN_IN
    assert data["scenario"]["households"] == 200
    record = {"snapshot_every": 50, "household_decisions": 0, "payments": "role", "flush_every": None}
    assert data["scenario"]["record"] == record
    assert "full recording" in data["recording"]["note"]
    assert data["passed"] == result.passed and data["exit_code"] == (0 if result.passed else 1)
    assert [c["name"] for c in data["checks"]] == [c.name for c in result.checks]
    assert {c["status"] for c in data["checks"]} <= {"pass", "FAIL", "deviation"}
    assert data["passed"] == all(c["status"] != "FAIL" for c in data["checks"])
    assert set(data["timings"]) >= {"exact_s", "seeds_s", "total_s", "jobs"}
    assert data["versions"]["tokenomy"]
    assert data["deviations"]["file"] == str(DEFAULT_DEVIATIONS)
    md = (out / "validation.md").read_text()
    assert md == result.to_markdown()
    for c in result.checks:
        assert c.name.replace("|", "\\|") in md
    for name in FIGURES:
        png = out / "figures" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert data["figures"] == [f"figures/{n}" for n in FIGURES]
    for s in SEEDS:
        manifest = json.loads((out / f"seed-{s}" / "manifest.json").read_text())
        assert manifest["status"] == "finished" and manifest["seed"] == s
        assert (out / f"seed-{s}" / "metrics.parquet").is_file()


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    sc = small()
    with pytest.raises(ValueError, match="burn-in"):
        validate(sc, [1], burn_in=ROUNDS, jobs=1, out=None)
    with pytest.raises(ValueError, match="repeat"):
        validate(sc, [1, 1], burn_in=1, jobs=1, out=None)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not an empty directory"):
        validate(sc, [1], burn_in=1, jobs=1, out=tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "precious"


# -- planted bugs: a posting that bypasses settlement -------------------------------------------
Step = Callable[[World, RoundOutcome, Scenario], None]


def _planted(monkeypatch: pytest.MonkeyPatch, step: Step, tmp_path: Path) -> ValidationResult:
    monkeypatch.setattr(settlement, "STEPS", (*settlement.STEPS, step))
    # every check but the two that must catch the bug is a listed deviation: only they can fail
    devs = write_deviations(tmp_path / "devs.toml", [n for n in check_names([]) if n not in (COUNTERPART, SFC)])
    return validate(small(), [1], burn_in=BURN_IN, jobs=1, out=None, deviations=devs)


@pytest.mark.slow
@pytest.mark.usefixtures("fast_exact")
def test_money_with_no_counterpart_is_caught(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def leak(w: World, o: RoundOutcome, s: Scenario) -> None:
        if w.round == 5:  # new money in a household's account: no loan, no advance, no net worth behind it
            w.ledger.issue("wage", w.layout.first("household"), 100)

    result = _planted(monkeypatch, leak, tmp_path)
    by_name = {c.name: c for c in result.checks}
    assert by_name[COUNTERPART].per_seed == (100.0,)
    assert status(by_name[COUNTERPART]) == "FAIL"
    assert status(by_name[SFC]) == "FAIL"
    assert by_name[RUN_COMPLETED].passed  # the ledger's own conservation check cannot see it: issuance is explicit
    assert not result.passed
    assert {c.name for c in result.failures} == {COUNTERPART, SFC}
    assert any(c.kind == "exact" for c in result.checks)


@pytest.mark.slow
@pytest.mark.usefixtures("fast_exact")
def test_write_off_no_bank_books_is_caught(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cut: list[int] = []

    def write_off(w: World, o: RoundOutcome, s: Scenario) -> None:
        with_loan = np.flatnonzero(w.f_loan > 1_000)
        if not cut and w.round >= 5 and with_loan.size:  # once, a firm that owes; its bank is not charged
            w.f_loan[with_loan[0]] -= 1_000
            cut.append(w.round)

    result = _planted(monkeypatch, write_off, tmp_path)
    assert cut, "no firm borrowed: the planted write-off never happened"
    by_name = {c.name: c for c in result.checks}
    assert by_name[COUNTERPART].per_seed == (1_000.0,)
    assert {c.name for c in result.failures} == {COUNTERPART, SFC}
    assert not result.passed


# -- deviations -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_deviation_turns_a_failure_into_deviation(
    clean: tuple[ValidationResult, list[ProgressEvent]], tmp_path: Path
) -> None:
    result, _ = clean
    failing = [c.name for c in result.checks if status(c) != "pass"]  # FAIL, or a committed deviation
    if not failing:  # every check of the economy passes: plant a failing one
        bad = Check("always fails", below(-1.0), "a test", (0.0,), kind="stylized")
        result = ValidationResult(result.scenario, result.seeds, result.burn_in, [*result.checks, bad],
                                  result.frames, result.runs, result.deviations)  # fmt: skip
        failing = [bad.name]
    one = result.with_deviations(write_deviations(tmp_path / "one.toml", failing[:1], why="no rule meets it"))
    c = next(c for c in one.checks if c.name == failing[0])
    assert status(c) == "deviation"
    assert c.deviation is not None and "no rule meets it" in c.deviation
    assert one.passed == (len(failing) == 1)
    assert any("no rule meets it" in n for n in one.notes())  # always printed with its reason
    assert "| deviation |" in one.to_markdown()
    every = result.with_deviations(write_deviations(tmp_path / "all.toml", failing))
    assert every.passed and not every.failures
    assert every.to_dict()["exit_code"] == 0
    assert every.to_dict()["counts"]["deviation"] == len(failing)


@pytest.mark.slow
def test_a_passing_deviation_is_reported_stale(
    clean: tuple[ValidationResult, list[ProgressEvent]], tmp_path: Path
) -> None:
    result, _ = clean
    again = result.with_deviations(write_deviations(tmp_path / "d.toml", [COUNTERPART]))
    c = next(c for c in again.checks if c.name == COUNTERPART)
    assert status(c) == "pass"
    assert any("passes (remove it)" in n and COUNTERPART in n for n in again.notes())


def test_unknown_check_name_is_an_error(tmp_path: Path) -> None:
    checks = korinek_suh_checks()
    devs = load_deviations(write_deviations(tmp_path / "d.toml", ["money without a counterpar"]))
    with pytest.raises(DeviationsError, match=r"no such check: 'money without a counterpar' \(did you mean"):
        apply_deviations([*checks, Check(COUNTERPART, below(1.0), "x", (0.0,), kind="accounting")], devs)


@pytest.mark.usefixtures("fast_exact")
def test_unknown_check_name_fails_before_any_seed_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("a seed ran although the deviations file names no real check")

    monkeypatch.setattr(vr, "run_seed", never)
    devs = write_deviations(tmp_path / "d.toml", ["no such check at all"])
    with pytest.raises(DeviationsError, match="no such check"):
        validate(small(), [1], burn_in=1, jobs=1, out=tmp_path / "v", deviations=devs)
    assert not (tmp_path / "v").exists()  # made for this validation, removed with it


_ONE = "[[deviation]]\ncheck = 'x'\nliterature = 'l'\nwhy = 'w'\nsince = 2026-12-01\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[deviation]]\ncheck = 'x'\nliterature = 'l'\nsince = 2026-12-01\n", "deviation.0.why: Field required"),
        ("[[deviation]]\ncheck = 'x'\nliterature = 'l'\nwhy = 'w'\nsince = 2026-12-01\nextra = 1\n", "unknown key"),
        ("[[deviation]]\ncheck = 'x'\nliterature = 'l'\nwhy = 'w'\nsince = 'soon'\n", "deviation.0.since"),
        ("[[deviaton]]\ncheck = 'x'\n", "deviaton: unknown key"),
        ("[[deviation]\n", "invalid TOML"),
        (_ONE * 2, "listed as a deviation twice"),
        ("[[parameter_change]]\nfield = 'roles.firm.eta_wag'\nold = 1\nnew = 2\nreason = 'r'\n",
         "not a scenario field"),
    ],
)  # fmt: skip
def test_malformed_deviations_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "d.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DeviationsError, match=r"d\.toml") as info:
        load_deviations(path)
    assert message in str(info.value)


def test_parameter_changes_are_read(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text(
        "[[parameter_change]]\nfield = 'roles.firm.eta_wage'\nold = 0.02\nnew = 0.01\nreason = 'r'\n"
        "check = 'Phillips curve (wages)'\nsince = 2026-12-01\n",
        encoding="utf-8",
    )
    devs = load_deviations(path)
    assert devs.parameter_changes[0].old == 0.02 and devs.parameter_changes[0].new == 0.01
    assert devs.unknown(check_names([])) == []
    assert devs.as_dict()["parameter_change"][0]["since"] == "2026-12-01"
    assert devs.unknown(["something else"]) == ["'Phillips curve (wages)'"]


def test_committed_deviations_file() -> None:
    devs = load_deviations()
    assert devs.path == DEFAULT_DEVIATIONS
    text = " ".join(DEFAULT_DEVIATIONS.read_text(encoding="utf-8").replace("#", " ").split())
    for rule in ("no rule the literature supports meets the target", "Never tune a parameter until a number passes"):
        assert rule in text, rule
    assert devs.unknown(check_names(exact_checks(0, quick=True))) == []  # every entry names a real check


# -- the command --------------------------------------------------------------------------------
def _env(columns: int | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "PYTHONPATH")}
    env["NO_COLOR"] = "1"
    if columns is not None:  # wide enough that no check's name wraps inside its cell
        env["COLUMNS"] = str(columns)
    return env


def cli(args: list[str | Path], cwd: Path, columns: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *map(str, args)],
        cwd=cwd,
        env=_env(columns),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )


def squash(text: str) -> str:
    return "".join(text.split())


SMALL_ARGS = [*(x for s in SMALL for x in ("--set", s)), "--rounds", ROUNDS, "--burn-in", BURN_IN, "--quick"]


@pytest.fixture(scope="module")
def command(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    cwd = tmp_path_factory.mktemp("command")
    return cwd, cli(["validate", "baseline", "--seeds", 2, "--jobs", 2, *SMALL_ARGS, "--out", "v"], cwd, columns=200)


@pytest.mark.slow
def test_command_writes_and_exits_as_the_json_says(command: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    cwd, proc = command
    assert "Traceback" not in proc.stderr, proc.stderr
    out = cwd / "v"
    data = json.loads((out / "validation.json").read_text())
    failing = [c["name"] for c in data["checks"] if c["status"] == "FAIL"]
    assert proc.returncode == (1 if failing else 0), (proc.returncode, failing, proc.stderr)
    assert data["exit_code"] == proc.returncode
    assert data["timings"]["jobs"] == 2
    assert (out / "validation.md").is_file()
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(FIGURES)
    assert sorted(p.name for p in out.iterdir()) == ["figures", "seed-1", "seed-2", "validation.json", "validation.md"]
    assert [r["path"] for r in data["runs"]] == ["seed-1", "seed-2"]
    text = squash(proc.stdout)
    for c in data["checks"]:
        assert squash(c["name"]) in text, c["name"]
    for col in ("check", "expected", "source", "measured", "[min,max]", "result", "everyseed", "seed1", "seed2"):
        assert col in text
    assert squash("written to v") in text
    assert "seed-rounds" in proc.stderr  # the progress bar


@pytest.mark.slow
def test_command_with_every_failure_listed_exits_0(
    command: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    cwd, _ = command
    data = json.loads((cwd / "v" / "validation.json").read_text())
    failing = [c["name"] for c in data["checks"] if c["status"] != "pass"]  # FAIL, or a committed deviation
    devs = write_deviations(tmp_path / "devs.toml", failing, why="listed by the test")
    proc = cli(["validate", "--seeds", 2, "--jobs", 1, *SMALL_ARGS, "--out", "v", "-q", "--deviations", devs], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    again = json.loads((tmp_path / "v" / "validation.json").read_text())
    assert [c["name"] for c in again["checks"] if c["status"] == "deviation"] == failing  # same seeds, same numbers
    assert squash("listed by the test") in squash(proc.stdout)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["no/such/scenario.toml"], "no/such/scenario.toml: no such scenario file"),
        (["baseline", "--set", "housholds=5"], "unknown field"),
        (["baseline", "--burn-in", 300, "--rounds", 300], "--burn-in 300 leaves no rounds"),
        (["baseline", "--quick", "--jobs", 1, "--deviations", "devs.toml"], "no such check: 'not a check'"),
        (["baseline", "--deviations", "missing.toml"], "cannot read deviations file"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, args: list[str | Path], fragment: str) -> None:
    write_deviations(tmp_path / "devs.toml", ["not a check"])
    proc = cli(["validate", *args, "--out", "v"], tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and squash(fragment) in squash(errors[0]), proc.stderr
    assert proc.stdout.strip() == ""
    assert not (tmp_path / "v").exists()
