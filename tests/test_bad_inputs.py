"""Bad input never gets a traceback: a corpus of bad inputs, each through the command line.

Every case must exit 2 with one error line naming the file, field or path and what was expected,
show no traceback, and leave no run directory that says it finished. The corpus runs the CLI
in-process (typer's ``CliRunner``: fast, and an unhandled exception is caught and reported, not
lost); a handful run the installed ``tokenomy`` executable, so no traceback reaches a real stderr.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from typer.testing import CliRunner

import tokenomy
from tokenomy import cli, initial, store
from tokenomy.runner import Runner
from tokenomy.scenario import ScenarioError, load_scenario
from tokenomy.store import RunDirError, _git_revision, open_run
from tokenomy.testing.fake_openai import FakeOpenAIServer
from tokenomy.world import World

TINY = ["--set", "households=20", "--set", "firms=2", "--set", "banks=1", "--rounds", "2"]
TINY_SETS = ["households=20", "firms=2", "banks=1", "rounds=2"]
KEY = "sk-test-bad-inputs-0123456789"


def _finished(root: Path) -> set[Path]:
    """Run directories under ``root`` whose manifest says ``finished``."""
    out = set()
    for m in root.rglob("manifest.json"):
        try:
            if json.loads(m.read_text()).get("status") == "finished":
                out.add(m.parent)
        except (OSError, ValueError, AttributeError):
            continue
    return out


def squash(text: str) -> str:
    return "".join(text.split())


# -- what the cases share: a recorded LLM run, a rule run --------------------------------------------


@dataclass(frozen=True)
class Runs:
    llm: Path  # a finished run with an LLM-driven firm, recorded against the fake server
    rules: Path  # a finished run with no LLM roles
    base_url: str


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    root = tmp_path_factory.mktemp("recorded")
    with FakeOpenAIServer(model="fake-model") as srv, pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_API_KEY", KEY)
        sets = [*TINY_SETS, "roles.firm.policy=llm", f'llm.base_url="{srv.base_url}"', 'llm.model="fake-model"']
        llm = Runner(load_scenario("baseline", sets)).run(root / "llm")
        rules = Runner(load_scenario("baseline", TINY_SETS)).run(root / "rules")
        assert llm is not None and rules is not None
        yield Runs(llm, rules, srv.base_url)


@dataclass
class Ctx:
    tmp: Path
    runs: Runs
    mp: pytest.MonkeyPatch

    def file(self, text: str | bytes, name: str = "s.toml") -> Path:
        p = self.tmp / name
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        return p

    def run_file(self, text: str | bytes, *extra: str) -> list[str]:
        return ["run", str(self.file(text)), *extra, "--out", str(self.tmp / "run"), "-q"]

    def run_sets(self, *overrides: str, scenario: str = "baseline") -> list[str]:
        sets = [a for o in overrides for a in ("--set", o)]
        return ["run", scenario, *TINY, *sets, "--out", str(self.tmp / "run"), "-q"]

    def llm_sets(self, *overrides: str) -> list[str]:
        """A tiny run with an LLM-driven firm at an address nothing answers (nothing may get that far)."""
        self.mp.setenv("OPENAI_API_KEY", KEY)
        return self.run_sets(
            "roles.firm.policy=llm", 'llm.base_url="http://127.0.0.1:9/v1"', "llm.max_retries=0", *overrides
        )

    def manifest(self, content: str | bytes) -> Path:
        d = self.tmp / "stopped"
        d.mkdir(exist_ok=True)
        (d / "manifest.json").write_bytes(content if isinstance(content, bytes) else content.encode())
        return d

    def replay(self, *extra: str) -> list[str]:
        return ["run", *extra, "--replay", str(self.runs.llm), "--out", str(self.tmp / "replay"), "-q"]

    def recorded_llm_sets(self) -> list[str]:
        """The --set the recorded LLM run was made with (its LLM side: on another scenario)."""
        sets = ["roles.firm.policy=llm", f'llm.base_url="{self.runs.base_url}"', 'llm.model="fake-model"']
        return [a for o in sets for a in ("--set", o)]

    def copy_without_answers(self) -> Path:
        return Path(shutil.copytree(self.runs.llm, self.tmp / "copy", ignore=shutil.ignore_patterns("llm-*")))


Make = Callable[[Ctx], list[str]]


def _full_disk(ctx: Ctx) -> list[str]:
    """Writes of table parts fail as on a full disk (ENOSPC from ``write``, naming no file); the small
    manifest still fits, as it does on a real disk once the failed part's temporary file is removed."""
    real_open = open

    class Full:
        def __init__(self, fh: IO[bytes]) -> None:
            self._fh = fh

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name: str) -> Any:
            return getattr(self._fh, name)

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self._fh.close()

    def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        fh = real_open(file, mode, *args, **kwargs)
        return Full(fh) if "parts" in str(file) and str(file).endswith(".parquet.tmp") else fh

    ctx.mp.setattr(store, "open", fake_open, raising=False)
    return ctx.run_sets("record.flush_every=1")


# name -> (what to run, fragments the error line must contain; "{tmp}" is the case's directory)
CASES: dict[str, tuple[Make, list[str]]] = {
    # -- money: no inf, no nan, nothing that overflows int64 cents -----------------------------------------
    "wage_inf": (lambda c: c.run_file("[initial]\nwage = inf\n"), ["{tmp}/s.toml:2", "initial.wage", "finite"]),
    "deposits_minus_inf": (
        lambda c: c.run_file("[initial]\nhousehold_deposits = -inf\n"),
        ["s.toml:2", "initial.household_deposits", "finite"],
    ),
    "wage_nan": (lambda c: c.run_file("[initial]\nwage = nan\n"), ["s.toml:2", "initial.wage", "finite"]),
    "deposits_1e300": (
        lambda c: c.run_file("[initial]\nhousehold_deposits = 1e300\n"),
        ["s.toml:2", "initial.household_deposits", "less than or equal to", "1e+300"],
    ),
    "bank_capital_1e300": (
        lambda c: c.run_file("[initial]\nbank_capital = 1e300\n"),
        ["initial.bank_capital", "less than or equal to"],
    ),
    "wage_1e300": (lambda c: c.run_file("[initial]\nwage = 1e300\n"), ["initial.wage", "less than or equal to"]),
    "min_wage_1e300": (
        lambda c: c.run_file("[roles.firm]\nmin_wage = 1e300\n"),
        ["roles.firm.min_wage", "less than or equal to"],
    ),
    "subsistence_inf": (
        lambda c: c.run_file("[roles.household]\nsubsistence = inf\n"),
        ["roles.household.subsistence", "finite"],
    ),
    "ubi_inf": (lambda c: c.run_file("[roles.regulator]\nubi = inf\n"), ["s.toml:2", "roles.regulator.ubi", "finite"]),
    "ubi_1e300": (lambda c: c.run_file("[roles.regulator]\nubi = 1e300\n"), ["roles.regulator.ubi", "less than"]),
    "ubi_overflows_over_the_run": (
        lambda c: c.run_file("households = 1000\nrounds = 120\n[roles.regulator]\nubi = 1e12\n"),
        ["s.toml", "roles.regulator.ubi", "int64"],
    ),
    "deposits_overflow_the_population": (
        lambda c: c.run_file('households = 100000\n[initial]\ndeposits = "mean"\nhousehold_deposits = 1e12\n'),
        ["households x initial.household_deposits", "int64"],
    ),
    "household_deposits_with_steady_deposits": (
        lambda c: c.run_file("[initial]\nhousehold_deposits = 5000\n"),
        ["initial", "household_deposits applies only with deposits"],
    ),
    "wage_overflows_the_capital_stock": (
        lambda c: c.run_file("households = 100000\n[initial]\nwage = 1e12\n"),
        ["initial.wage", "int64"],
    ),
    "capital_price_overflows": (
        lambda c: c.run_file("households = 100000\n[automation]\ncapital_price0 = 1e9\n"),
        ["automation.capital_price0", "int64"],
    ),
    "productivity_1e300": (
        lambda c: c.run_file("[production]\nA = 1e300\n"),
        ["production.A", "less than or equal to"],
    ),
    "sigma_underflows": (lambda c: c.run_file("[production]\nsigma = 0.001\n"), ["production.sigma", "0.05"]),
    "ownership_pareto_tiny": (
        lambda c: c.run_file("[initial]\nownership_pareto = 1e-9\n"),
        ["initial.ownership_pareto", "greater than or equal to"],
    ),
    "shares_per_issuer_huge": (
        lambda c: c.run_file("[initial]\nshares_per_issuer = 1000000000000000\n"),
        ["initial.shares_per_issuer"],
    ),
    "max_leverage_huge": (
        lambda c: c.run_file("[roles.bank]\nmax_leverage = 1e6\n"),
        ["roles.bank.max_leverage", "less than or equal to 100"],
    ),
    "wage_below_a_cent": (
        lambda c: c.run_file("[initial]\nwage = 1e-9\n"),
        ["initial.wage", "greater than or equal to 0.01"],
    ),
    # -- the file itself: encoding, kind, name ------------------------------------------------------------
    "binary_file": (lambda c: c.run_file(bytes(range(256)) * 4), ["{tmp}/s.toml", "binary file"]),
    "not_utf8_bytes": (lambda c: c.run_file(b'name = "x"\n\xff\xfe\xfd\n'), ["{tmp}/s.toml:2", "not UTF-8", "0xff"]),
    "latin1_file": (
        lambda c: c.run_file('name = "café"\n'.encode("latin-1")),
        ["{tmp}/s.toml:1", "not UTF-8", "0xe9", "UTF-8"],
    ),
    "latin1_on_line_3": (
        lambda c: c.run_file('# a comment\nname = "x"\nquestion = "für wen?"\n'.encode("latin-1")),
        ["s.toml:3", "not UTF-8"],
    ),
    "utf16_file": (lambda c: c.run_file('name = "x"\n'.encode("utf-16")), ["s.toml", "binary file"]),
    "directory": (
        lambda c: ["run", str(c.tmp), *TINY, "--out", str(c.tmp / "run"), "-q"],
        ["{tmp}", "is a directory", "TOML file"],
    ),
    "dev_null": (
        lambda c: ["run", "/dev/null", "--out", str(c.tmp / "run"), "-q"],
        ["/dev/null", "not a regular file"],
    ),
    "name_too_long": (
        lambda c: ["run", "a" * 5000 + ".toml", "--out", str(c.tmp / "run"), "-q"],
        ["5005 characters", "name too long"],
    ),
    "missing_file": (
        lambda c: ["run", str(c.tmp / "nope.toml"), "--out", str(c.tmp / "run"), "-q"],
        ["{tmp}/nope.toml", "no such scenario file"],
    ),
    "unknown_bundled_name": (
        lambda c: ["run", "no_such_scenario", "--out", str(c.tmp / "run"), "-q"],
        ["no_such_scenario", "bundled:", "baseline"],
    ),
    "invalid_toml_duplicate_key": (
        lambda c: c.run_file("households = 1\nhouseholds = 2\n"),
        ["s.toml", "invalid TOML"],
    ),
    "invalid_toml_unterminated": (lambda c: c.run_file('name = "x\n'), ["s.toml", "invalid TOML", "line 1"]),
    # -- types: strict, so nothing is silently converted ------------------------------------------------
    "households_true": (
        lambda c: c.run_file("households = true\n"),
        ["{tmp}/s.toml:1", "field 'households'", "valid integer", "True"],
    ),
    "households_float": (lambda c: c.run_file("households = 10.0\n"), ["field 'households'", "valid integer"]),
    "households_string": (lambda c: c.run_file('households = "100"\n'), ["field 'households'", "valid integer"]),
    "households_zero": (lambda c: c.run_file("households = 0\n"), ["field 'households'", "greater than or equal to 1"]),
    "households_negative": (lambda c: c.run_file("households = -5\n"), ["field 'households'", "greater than"]),
    "rounds_true": (lambda c: c.run_file("rounds = true\n"), ["field 'rounds'", "valid integer"]),
    "seed_negative": (lambda c: c.run_file("seed = -1\n"), ["field 'seed'", "greater than or equal to 0"]),
    "wage_string": (lambda c: c.run_file('[initial]\nwage = "2000"\n'), ["initial.wage", "valid number"]),
    "chain_enabled_int": (lambda c: c.run_file("[rails]\nchain_enabled = 1\n"), ["rails.chain_enabled", "boolean"]),
    "policy_unknown": (
        lambda c: c.run_file('[roles.household]\npolicy = "LLM"\n'),
        ["roles.household.policy", "'heuristic' or 'llm'"],
    ),
    "personas_not_a_list": (
        lambda c: c.run_file('[roles.household]\npersonas = "frugal"\n'),
        ["roles.household.personas", "valid list"],
    ),
    "phi0_above_1": (lambda c: c.run_file("[automation]\nphi0 = 2\n"), ["automation.phi0", "less than or equal to 1"]),
    "roles_not_a_section": (lambda c: c.run_file("roles = 5\n"), ["field 'roles'"]),
    "unknown_section": (lambda c: c.run_file("[bogus]\nx = 1\n"), ["s.toml:1", "field 'bogus'", "unknown field"]),
    "unknown_key": (lambda c: c.run_file("[initial]\nwages = 1\n"), ["s.toml:2", "initial.wages", "unknown field"]),
    "base_url_not_a_url": (lambda c: c.run_file('[llm]\nbase_url = "notaurl"\n'), ["llm.base_url", "http(s) URL"]),
    # -- populations: memory is checked before anything is allocated --------------------------------------
    "households_a_billion": (
        lambda c: c.run_file("households = 1000000000\n"),
        ["{tmp}/s.toml", "households = 1,000,000,000", "of memory", "available"],
    ),
    "firms_ten_million": (
        lambda c: c.run_file("households = 1000000\nfirms = 10000000\n"),
        ["firms = 10,000,000", "of memory", "available"],
    ),
    "banks_a_trillion": (lambda c: c.run_file("banks = 1000000000000\n"), ["banks = 1,000,000,000,000", "of memory"]),
    # -- --set: the value came from the command line, and the error says so -------------------------------
    "set_bool_as_int": (lambda c: c.run_sets("households=true"), ["--set households=true", "valid integer"]),
    "set_inf": (lambda c: c.run_sets("initial.wage=inf"), ["--set initial.wage=inf", "finite"]),
    "set_nan": (lambda c: c.run_sets("initial.wage=nan"), ["--set initial.wage=nan", "finite"]),
    "set_1e300": (lambda c: c.run_sets("roles.regulator.ubi=1e300"), ["roles.regulator.ubi", "less than"]),
    "set_a_billion_households": (
        lambda c: c.run_sets("households=1000000000"),
        ["households = 1,000,000,000", "of memory"],
    ),
    "set_without_equals": (lambda c: c.run_sets("households"), ["--set 'households'", "FIELD=VALUE"]),
    "set_into_a_value": (lambda c: c.run_sets("households.x=1"), ["'households' is a value, not a section"]),
    "set_empty_field": (lambda c: c.run_sets("=5"), ["--set '=5'", "empty field name"]),
    "set_table": (lambda c: c.run_sets("initial={wage=-1}"), ["initial.wage", "greater than or equal to 0.01"]),
    "set_unknown_field": (lambda c: c.run_sets("bogus=1"), ["--set bogus=1", "unknown field"]),
    # -- --out ----------------------------------------------------------------------------------------------
    "out_under_proc": (
        lambda c: ["run", "baseline", *TINY, "--out", "/proc/tokenomy-run", "-q"],
        ["/proc/tokenomy-run", "cannot create a run directory in /proc"],
    ),
    "out_under_sys": (
        lambda c: ["run", "baseline", *TINY, "--out", "/sys/tokenomy-run", "-q"],
        ["/sys/tokenomy-run", "cannot create a run directory in /sys"],
    ),
    "out_below_a_file": (
        lambda c: ["run", "baseline", *TINY, "--out", str(c.file("x", "afile") / "sub"), "-q"],
        ["{tmp}/afile/sub", "{tmp}/afile is a file, not a directory"],
    ),
    "out_is_a_file": (
        lambda c: ["run", "baseline", *TINY, "--out", str(c.file("x", "afile")), "-q"],
        ["{tmp}/afile", "exists and is not a directory"],
    ),
    "out_not_empty": (
        lambda c: ["run", "baseline", *TINY, "--out", str(c.file("x", "keep.txt").parent), "-q"],
        ["{tmp}", "not empty", "--overwrite"],
    ),
    "out_name_too_long": (
        lambda c: ["run", "baseline", *TINY, "--out", str(c.tmp / ("d" * 300) / "run"), "-q"],
        ["cannot be a run directory", "name too long"],
    ),
    # -- prompt files ---------------------------------------------------------------------------------------
    "prompt_empty": (
        lambda c: c.llm_sets(f"roles.firm.prompt={c.file('', 'p.md')}"),
        ["{tmp}/p.md", "prompt template is empty"],
    ),
    "prompt_blank": (
        lambda c: c.llm_sets(f"roles.firm.prompt={c.file(chr(10) * 3 + '   ', 'p.md')}"),
        ["{tmp}/p.md", "is empty"],
    ),
    "prompt_latin1": (
        lambda c: c.llm_sets(f"roles.firm.prompt={c.file('Vous êtes une entreprise'.encode('latin-1'), 'p.md')}"),
        ["{tmp}/p.md", "not UTF-8", "0xea"],
    ),
    "prompt_unknown_placeholder": (
        lambda c: c.llm_sets(f"roles.firm.prompt={c.file('You are ${bogus}', 'p.md')}"),
        ["{tmp}/p.md", "unknown placeholder", "${{bogus}}"],
    ),
    "prompt_missing": (
        lambda c: c.llm_sets(f"roles.firm.prompt={c.tmp / 'nope.md'}"),
        ["{tmp}/nope.md", "cannot read prompt template"],
    ),
    "prompt_directory": (
        lambda c: c.llm_sets(f"roles.firm.prompt={c.tmp}"),
        ["{tmp}", "cannot read prompt template", "directory"],
    ),
    # -- --replay: the recorded scenario by default, a mismatch refused -------------------------------------
    "replay_another_scenario": (
        lambda c: c.replay("full_automation", *TINY, *c.recorded_llm_sets()),
        ["--replay", "not the scenario that run recorded", "automation.", "leave SCENARIO and --set out"],
    ),
    "replay_set_differs": (
        lambda c: c.replay("--set", "households=30"),
        ["not the scenario that run recorded", "households = 30, recorded 20", "--set"],
    ),
    "replay_more_rounds": (lambda c: c.replay("--rounds", "5"), ["rounds = 5, recorded 2"]),
    "replay_scenario_without_llm_roles": (
        lambda c: c.replay("baseline", *TINY),
        ["--replay", "baseline has no LLM-driven roles", "firm"],
    ),
    "replay_a_rule_run": (
        lambda c: ["run", "--replay", str(c.runs.rules), "--out", str(c.tmp / "replay"), "-q"],
        ["that run had no LLM-driven roles"],
    ),
    "replay_into_itself": (
        lambda c: ["run", "--replay", str(c.runs.llm), "--out", str(c.runs.llm), "--overwrite", "-q"],
        ["is the run being replayed"],
    ),
    "replay_not_a_run": (
        lambda c: ["run", "--replay", str(c.tmp), "--out", str(c.tmp / "replay"), "-q"],
        ["{tmp}: not a run directory (no manifest.json)"],
    ),
    "replay_damaged_manifest": (
        lambda c: ["run", "--replay", str(c.manifest("{nope")), "--out", str(c.tmp / "replay"), "-q"],
        ["{tmp}/stopped/manifest.json: damaged"],
    ),
    "replay_without_answers": (
        lambda c: ["run", "--replay", str(c.copy_without_answers()), "--out", str(c.tmp / "replay"), "-q"],
        ["{tmp}/copy", "llm-cache.sqlite missing"],
    ),
    "no_scenario": (lambda c: ["run", "--out", str(c.tmp / "run"), "-q"], ["missing SCENARIO"]),
    # -- resume and damaged manifests -----------------------------------------------------------------------
    "resume_missing_directory": (lambda c: ["resume", str(c.tmp / "nope"), "-q"], ["{tmp}/nope: not a run directory"]),
    "resume_a_file": (lambda c: ["resume", str(c.file("x", "afile")), "-q"], ["{tmp}/afile: not a run directory"]),
    "manifest_not_json": (
        lambda c: ["resume", str(c.manifest('{"scenario": {"name": "x"}, "status": "run')), "-q"],
        ["{tmp}/stopped/manifest.json: damaged, not the JSON manifest of a run"],
    ),
    "manifest_a_list": (lambda c: ["resume", str(c.manifest("[1, 2]")), "-q"], ["manifest.json: damaged"]),
    "manifest_without_scenario": (
        lambda c: ["resume", str(c.manifest('{"status": "running"}')), "-q"],
        ["manifest.json: damaged", "no scenario"],
    ),
    "manifest_bad_scenario": (
        lambda c: ["resume", str(c.manifest('{"scenario": {"households": "x"}, "checkpoint": null}')), "-q"],
        ["manifest.json: its scenario does not validate", "scenario.households"],
    ),
    "manifest_bad_checkpoint": (
        lambda c: ["resume", str(c.manifest('{"scenario": {}, "checkpoint": {"round": "x"}}')), "-q"],
        ["manifest.json: damaged", "checkpoint.round"],
    ),
    "manifest_checkpoint_not_a_table": (
        lambda c: ["resume", str(c.manifest('{"scenario": {}, "checkpoint": "yes"}')), "-q"],
        ["manifest.json: damaged", "checkpoint"],
    ),
    "manifest_bad_round_range": (
        lambda c: ["resume", str(c.manifest('{"scenario": {}, "checkpoint": null, "round_range": "x"}')), "-q"],
        ["manifest.json: damaged", "round_range"],
    ),
    "manifest_binary": (lambda c: ["resume", str(c.manifest(bytes(range(256)))), "-q"], ["manifest.json: damaged"]),
    "resume_a_finished_run": (
        lambda c: ["resume", str(shutil.copytree(c.runs.rules, c.tmp / "done")), "-q"],
        ["{tmp}/done: the run finished; there is nothing to resume"],
    ),
    # -- a full disk: the file, the round, and a manifest that says 'failed' --------------------------------
    "disk_full": (
        _full_disk,
        ["{tmp}/run/parts/", ".parquet", "No space left on device", "writing round 0", "manifest status 'failed'"],
    ),
    # -- the other commands -------------------------------------------------------------------------------
    "validate_bool_as_int": (
        lambda c: ["validate", str(c.file("households = true\n")), "--seeds", "1", "--out", str(c.tmp / "v"), "-q"],
        ["s.toml:1", "households", "valid integer"],
    ),
    "validate_a_billion_households": (
        lambda c: ["validate", "baseline", "--set", "households=1000000000", "--out", str(c.tmp / "v"), "-q"],
        ["households = 1,000,000,000", "of memory"],
    ),
    "validate_burn_in_past_the_end": (
        lambda c: ["validate", "baseline", "--rounds", "5", "--burn-in", "5", "--out", str(c.tmp / "v"), "-q"],
        ["--burn-in 5 leaves no rounds to measure"],
    ),
    "llm_check_a_directory": (lambda c: ["llm-check", str(c.tmp)], ["{tmp}", "is a directory"]),
    "llm_check_inf": (lambda c: ["llm-check", str(c.file("[initial]\nwage = inf\n"))], ["initial.wage", "finite"]),
    "dry_run_a_billion_households": (
        lambda c: ["run", "baseline", "--set", "households=1000000000", "--set", "roles.firm.policy=llm", "--dry-run"],
        ["households = 1,000,000,000", "of memory"],
    ),
}


def _check(name: str, code: int, stdout: str, stderr: str, tmp: Path, before: set[Path]) -> None:
    """What every bad input must give: exit 2, one error line with the case's fragments, no traceback,
    nothing on stdout, and no run directory presented as finished."""
    _, fragments = CASES[name]
    assert "Traceback" not in stdout + stderr, stderr
    assert code == 2, (code, stderr, stdout)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    for fragment in fragments:
        assert squash(fragment.format(tmp=tmp)) in squash(lines[0]), f"{fragment!r} not in {lines[0]!r}"
    assert stdout.strip() == ""
    assert _finished(tmp) == before


@pytest.fixture
def ctx(tmp_path: Path, runs: Runs, monkeypatch: pytest.MonkeyPatch) -> Ctx:
    monkeypatch.chdir(tmp_path)  # a default run directory would land here
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("COLUMNS", "500")  # rich's width: a line it wrapped would count as two
    return Ctx(tmp_path, runs, monkeypatch)


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_exits_2_with_one_line(name: str, ctx: Ctx) -> None:
    make, _ = CASES[name]
    args = make(ctx)
    before = _finished(ctx.tmp)
    result = CliRunner().invoke(cli.app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    _check(name, result.exit_code, result.stdout, result.stderr, ctx.tmp, before)


def test_a_full_disk_marks_the_manifest_failed_and_keeps_what_was_checkpointed(ctx: Ctx) -> None:
    result = CliRunner().invoke(cli.app, _full_disk(ctx))
    assert result.exit_code == 2, result.stderr
    manifest = json.loads((ctx.tmp / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert "No space left on device" in manifest["error"] and "/parts/" in manifest["error"]
    assert not list((ctx.tmp / "run").rglob("*.tmp"))  # the failed part's temporary file is gone
    with pytest.warns(tokenomy.store.UnfinishedRunWarning, match="failed"):
        assert not open_run(ctx.tmp / "run").finished


# -- a handful through the installed executable: nothing reaches a real stderr ----------------------------

SUBPROCESS = ("wage_inf", "binary_file", "directory", "households_a_billion", "out_under_proc")


@pytest.mark.slow  # subprocesses
def test_the_installed_command_prints_no_traceback(tmp_path_factory: pytest.TempPathFactory, runs: Runs) -> None:
    script = Path(sys.executable).parent / "tokenomy"
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "PYTHONPATH")}
    env |= {"NO_COLOR": "1", "COLUMNS": "500"}

    def one(name: str) -> tuple[str, Path, set[Path], subprocess.CompletedProcess[str]]:
        tmp = tmp_path_factory.mktemp(name)
        with pytest.MonkeyPatch.context() as mp:
            args = CASES[name][0](Ctx(tmp, runs, mp))
        before = _finished(tmp)
        proc = subprocess.run(
            [str(script), *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        return name, tmp, before, proc

    with ThreadPoolExecutor(max_workers=3) as pool:
        for name, tmp, before, proc in pool.map(one, SUBPROCESS):
            _check(name, proc.returncode, proc.stdout, proc.stderr, tmp, before)


# -- what bad input is accepted, and the smaller fixes ---------------------------------------------------


def test_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes('households = 20\nname = "bom"\n'.encode("utf-8-sig"))
    sc = load_scenario(path)
    assert (sc.name, sc.households) == ("bom", 20)


def test_version(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    result = CliRunner().invoke(cli.app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"tokenomy {metadata.version('tokenomy')}"


def test_replay_reads_the_recorded_scenario(runs: Runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a replay needs no key and no network
    result = CliRunner().invoke(cli.app, ["run", "--replay", str(runs.llm), "--out", str(tmp_path / "r"), "-q"])
    assert result.exit_code == 0, result.stderr
    replayed, recorded = open_run(tmp_path / "r"), open_run(runs.llm)
    assert replayed.manifest["scenario"] == recorded.manifest["scenario"]
    usage = replayed.manifest["llm_usage"]
    assert usage["from_model"] == usage["decisions"] > 0  # every answer found: the same questions were asked
    assert replayed.metrics["gdp"].tolist() == recorded.metrics["gdp"].tolist()
    # fewer rounds, and the fields that do not change the questions, may differ
    args = ["run", "--replay", str(runs.llm), "--rounds", "1", "--set", "record.snapshot_every=5"]
    result = CliRunner().invoke(cli.app, [*args, "--out", str(tmp_path / "r1"), "-q"])
    assert result.exit_code == 0, result.stderr
    assert open_run(tmp_path / "r1").metrics["round"].tolist() == [0]


def test_summary_shares_over_a_near_zero_gdp_are_left_out(capsys: pytest.CaptureFixture[str]) -> None:
    row = {key: 0.5 for key, _, _ in cli.SUMMARY} | {"gdp": 3600.0, "rent_share": 0.01}
    dead = row | {"gdp": 9.4e-9, "rent_share": 1.15e9, "labour_share": 0.0}
    rows = [{"round": r} | d for r, d in enumerate([row, row, dead, row])]
    cli._summary("tiny", rows, 1.0, 3)  # windows of 2: rounds 0-1 and 2-3
    out = capsys.readouterr().out
    assert "115" not in out.replace(",", "")  # no share of a billion percent
    assert "1.00%" in out  # the last window's share, from its one live round
    assert "leave out 1 round whose GDP was under 1" in out
    cli._summary("dead", [{"round": 0} | dead, {"round": 1} | dead], 1.0, 3)
    out = capsys.readouterr().out
    assert out.count("n/a") == 4  # labour and rent share in both windows


def test_git_revision_only_for_the_packages_own_checkout() -> None:
    package = Path(tokenomy.__file__).parent
    head = subprocess.run(["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    if head.returncode != 0 or not (package.parent / ".git").exists():
        pytest.skip("not running from a git checkout")
    assert _git_revision(package) == head.stdout.strip()
    # a directory inside the same work tree, as an installed copy inside someone's project would be: none
    assert _git_revision(package / "policies") is None


def test_world_size_estimate_matches_a_built_world() -> None:
    import dataclasses

    import numpy as np

    sim = Runner(load_scenario("baseline", ["households=3000", "firms=50", "banks=3"])).sim
    w = sim.world
    actual = sum(getattr(w, f.name).nbytes for f in dataclasses.fields(w) if isinstance(getattr(w, f.name), np.ndarray))
    actual += w.ledger.balance.nbytes + w.ledger.floor.nbytes + w.ledger.balance.size  # issuer flags
    estimate = World.estimated_nbytes(
        accounts=w.layout.n_accounts,
        households=3000,
        firms=50,
        banks=3,
        tokens=w.t_issuer.size,
        holders=w.holder_accounts.size,
    )
    assert abs(estimate - actual) <= 0.01 * actual


def test_memory_check_reads_the_available_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    sc = load_scenario("baseline", ["households=200000"])  # ~1 GiB for a run
    initial.check_scale(sc)
    monkeypatch.setattr(initial, "available_memory", lambda: 256 * 2**20)
    with pytest.raises(ScenarioError, match=r"households = 200,000.*more than the 256\.0 MiB available"):
        initial.check_scale(sc)
    initial.check_scale(load_scenario("baseline", ["households=2000"]))  # a small one still fits


@pytest.mark.parametrize(
    "content",
    ["{nope", "[1]", '{"status": "running"}', '{"scenario": {}, "checkpoint": {"round": 1}}', b"\xff\xfe"],
    ids=["not-json", "list", "no-scenario", "checkpoint-incomplete", "binary"],
)
def test_open_run_refuses_a_damaged_manifest(tmp_path: Path, content: str | bytes) -> None:
    (tmp_path / "manifest.json").write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(RunDirError, match=r"manifest.json: damaged"):
        open_run(tmp_path)


def test_a_full_disk_in_the_runner_names_the_file(ctx: Ctx) -> None:
    """Without the CLI: the run raises the OSError naming the part, and its manifest says failed."""
    _full_disk(ctx)
    with pytest.raises(OSError, match=r"No space left on device: '.*/parts/.*\.parquet'") as info:
        Runner(load_scenario("baseline", [*TINY_SETS, "record.flush_every=1"])).run(ctx.tmp / "unit")
    assert info.value.errno == errno.ENOSPC
    assert json.loads((ctx.tmp / "unit" / "manifest.json").read_text())["status"] == "failed"
