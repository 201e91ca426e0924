"""``tokenomy validate``: run a scenario over seeds, then check it against the literature.

Each seed is a real run through :class:`tokenomy.Runner` (the numbers are those ``tokenomy run``
gives), in worker processes started with ``spawn`` (safe beside threads and in Jupyter; ``jobs=1``
runs in this process, so tests can monkeypatch the engine). The exact checks run beside the seeds.
Then every check is computed from the seeds' ``metrics.parquet``: the exact checks
(:mod:`tokenomy.validation.exact`), the accounting identities and the stylized facts
(:mod:`tokenomy.validation.stylized`). A check listed in the committed deviations file is shown as
``deviation`` with its reason instead of ``FAIL``; everything else must pass.

    result = validate(load_scenario("baseline", rounds=300), range(1, 6), burn_in=100, jobs=4, out=Path("v"))
    result.passed, result.to_markdown()

Runs are recorded with :data:`VALIDATION_RECORD` unless told otherwise: at 2,000 households x 300
rounds, full recording (payments per agent pair, 50 household decisions and a snapshot every round)
took 2.8-3.2 times as long as the same run unrecorded and 30-90 MB a seed; these settings 1.8-1.9
times and about 1 MB. (What remains is the metrics and the sector matrices, which the checks read.)
"""

from __future__ import annotations

import difflib
import json
import math
import multiprocessing
import os
import queue
import shutil
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

import tokenomy
from tokenomy.market.ledger import ConservationError
from tokenomy.scenario import Record, Scenario
from tokenomy.store import _git_revision, _versions, open_run, write_atomic
from tokenomy.validation.checks import Check, Kind, between, check
from tokenomy.validation.exact import exact_checks
from tokenomy.validation.stylized import SPECS, Spec, stylized_checks

__all__ = [
    "ACCOUNTING_SPECS",
    "DEFAULT_DEVIATIONS",
    "KIND_ORDER",
    "RECORD_OVERRIDES",
    "RUN_COMPLETED",
    "VALIDATION_RECORD",
    "Deviation",
    "Deviations",
    "DeviationsError",
    "ParameterChange",
    "ProgressEvent",
    "ProgressFn",
    "SeedRun",
    "Status",
    "ValidationResult",
    "apply_deviations",
    "check_names",
    "default_jobs",
    "load_deviations",
    "run_seed",
    "status",
    "validate",
]

DEFAULT_DEVIATIONS = Path(__file__).with_name("deviations.toml")
"""The committed list (read by path until pyproject.toml ships it as package data)."""

VALIDATION_RECORD = Record(snapshot_every=50, household_decisions=0, payments="role")
"""What each seed records: every metric and table, payments per role pair, no household decisions,
a snapshot every 50 rounds and the last (see the module docstring for the measured cost)."""

RECORD_OVERRIDES = tuple(
    f"record.{k}={json.dumps(v)}" for k, v in VALIDATION_RECORD.model_dump(exclude_unset=True).items()
)
""":data:`VALIDATION_RECORD` as ``--set`` items: the CLI puts them before the user's, which win."""

KIND_ORDER: tuple[Kind, ...] = ("exact", "accounting", "stylized", "automation")

RUN_COMPLETED = "every seed ran every round"

# Accounting checks not (yet) in stylized.SPECS; one named the same in SPECS replaces its entry.
_SFC_SPEC = Spec(
    "SFC matrices: every row and column sums to 0",
    between(0.0, 0.0, "= 0"),
    "Godley & Lavoie 2007, ch. 2",
    lambda s: float(np.max(np.abs(s.monthly("sfc_residual_cents", whole_run=True)))),
    "max |sfc_residual_cents| over every round, burn-in included",
    kind="accounting",
)
ACCOUNTING_SPECS: tuple[Spec, ...] = tuple(s for s in (_SFC_SPEC,) if s.name not in {x.name for x in SPECS})

Status = Literal["pass", "FAIL", "deviation"]


def status(c: Check) -> Status:
    """A check passes on its mean over seeds; failing, it is a deviation only if the committed list says so."""
    if c.passed:
        return "pass"
    return "deviation" if c.deviation is not None else "FAIL"


# -- the deviations list --------------------------------------------------------------------------
class DeviationsError(ValueError):
    """The deviations file cannot be used: bad TOML, a missing key, or a check that does not exist."""


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Deviation(_Entry):
    """A committed deviation: a check tokenomy knowingly fails, with what the literature reports."""

    check: str = Field(min_length=1, description="the check's exact name")
    literature: str = Field(min_length=1, description="what the benchmark models report")
    why: str = Field(min_length=1, description="why no rule the literature supports meets the target")
    since: date


class ParameterChange(_Entry):
    """A parameter changed after a check failed: what it was, what it is, and why."""

    field: str = Field(min_length=1, description="dotted scenario field, as for --set")
    old: bool | int | float | str
    new: bool | int | float | str
    reason: str = Field(min_length=1)
    check: str | None = Field(None, description="the failing check that prompted it")
    since: date | None = None


class _File(_Entry):
    deviation: tuple[Deviation, ...] = ()
    parameter_change: tuple[ParameterChange, ...] = ()


@dataclass(frozen=True)
class Deviations:
    """The deviations file, read and checked for form (its check names are checked against the run)."""

    path: Path
    deviations: tuple[Deviation, ...] = ()
    parameter_changes: tuple[ParameterChange, ...] = ()

    def reason(self, name: str) -> str | None:
        d = next((d for d in self.deviations if d.check == name), None)
        return None if d is None else f"{d.why} (literature: {d.literature}; since {d.since.isoformat()})"

    def named_checks(self) -> list[str]:
        return [d.check for d in self.deviations] + [p.check for p in self.parameter_changes if p.check is not None]

    def unknown(self, names: Sequence[str]) -> list[str]:
        """Entries naming a check that is not in ``names``, each with the closest real name."""
        out = []
        for name in dict.fromkeys(self.named_checks()):
            if name not in names:
                near = difflib.get_close_matches(name, names, n=1)
                out.append(f"{name!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "deviation": [d.model_dump(mode="json") for d in self.deviations],
            "parameter_change": [p.model_dump(mode="json") for p in self.parameter_changes],
        }


def _is_scenario_field(dotted: str) -> bool:
    model: type[BaseModel] | None = Scenario
    for part in dotted.split("."):
        if model is None:
            return False
        info = model.model_fields.get(part)
        if info is None:
            return False
        ann = info.annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return True


def load_deviations(path: Path | None = None) -> Deviations:
    """Read and check a deviations file (default: the committed one).

    Raises:
        DeviationsError: naming the file and entry; a parameter change must name a real scenario
            field and a check may be listed once.
    """
    path = DEFAULT_DEVIATIONS if path is None else Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DeviationsError(f"{path}: cannot read deviations file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise DeviationsError(f"{path}: invalid TOML: {exc}") from None
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc'])}: {'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}"
            for e in exc.errors()
        )
        raise DeviationsError(f"{path}: {problems}") from None
    seen: set[str] = set()
    for d in parsed.deviation:
        if d.check in seen:
            raise DeviationsError(f"{path}: check {d.check!r} is listed as a deviation twice")
        seen.add(d.check)
    for p in parsed.parameter_change:
        if not _is_scenario_field(p.field):
            raise DeviationsError(f"{path}: parameter_change field {p.field!r} is not a scenario field")
    return Deviations(path, parsed.deviation, parsed.parameter_change)


def apply_deviations(checks: Sequence[Check], deviations: Deviations) -> list[Check]:
    """The checks with each listed deviation's reason attached.

    Raises:
        DeviationsError: when an entry names a check that does not exist (so the list cannot rot).
    """
    unknown = deviations.unknown([c.name for c in checks])
    if unknown:
        raise DeviationsError(f"{deviations.path}: no such check: {', '.join(unknown)}")
    return [replace(c, deviation=deviations.reason(c.name)) for c in checks]


def check_names(exact: Sequence[Check]) -> list[str]:
    """Every check a validation reports, given its exact checks (the others are known up front)."""
    specs = [*SPECS, *ACCOUNTING_SPECS]
    return [*(c.name for c in exact), RUN_COMPLETED, *(s.name for s in specs)]


# -- one seed ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeedRun:
    """How one seed's run went (its metrics are in :attr:`ValidationResult.frames`)."""

    seed: int
    path: Path | None  # its run directory, when kept
    rounds: int  # rounds asked for
    rounds_run: int  # rounds recorded
    seconds: float
    error: str | None = None  # the ConservationError that stopped it


@dataclass(frozen=True)
class ProgressEvent:
    """What ``validate(progress=...)`` is told: a seed finished a round, a seed finished, the exact checks finished."""

    kind: Literal["round", "seed", "exact"]
    seed: int | None = None
    round: int | None = None


ProgressFn = Callable[[ProgressEvent], None]


def run_seed(
    scenario: Scenario, seed: int, out: Path | None, on_round: Callable[[int], None] | None = None
) -> tuple[SeedRun, pd.DataFrame]:
    """One seed, recorded to ``out`` (or to a temporary directory, removed after: metrics are only
    computed while recording). A ConservationError stops the run and is reported, not raised: it is
    an accounting failure, and the rounds before it are still measured."""
    sc = scenario.model_copy(update={"seed": seed})
    started = time.perf_counter()
    with _run_dir(out) as path:
        runner = tokenomy.Runner(sc)
        error = None
        try:
            runner.run(path, on_round=(lambda r, _row: on_round(r)) if on_round else None)
        except ConservationError as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            runner.close()
        frame = open_run(path).metrics.copy()
    info = SeedRun(seed, out, sc.rounds, len(frame), time.perf_counter() - started, error)
    return info, frame


@contextmanager
def _run_dir(out: Path | None) -> Iterator[Path]:
    if out is not None:
        yield out
        return
    with tempfile.TemporaryDirectory(prefix="tokenomy-validate-") as tmp:
        yield Path(tmp) / "run"


# In a worker process: the queue its rounds are reported on (set by the pool's initializer, since a
# multiprocessing queue can only be handed to a process when it starts).
_PROGRESS: Any = None


def _init_worker(progress: Any) -> None:
    global _PROGRESS
    _PROGRESS = progress


def _seed_job(data: dict[str, Any], seed: int, out: str | None) -> tuple[SeedRun, pd.DataFrame]:
    # The scenario crosses as data: its roles model is built at run time by the registry, so a
    # Scenario does not pickle. Roles registered from your own code exist here only with jobs=1.
    sc = Scenario.model_validate(data)
    report = _PROGRESS
    return run_seed(sc, seed, Path(out) if out else None, (lambda r: report.put((seed, r))) if report else None)


def _exact_job(seed: int, quick: bool) -> tuple[list[Check], float]:
    started = time.perf_counter()
    checks = exact_checks(seed, quick)
    return checks, time.perf_counter() - started


# -- the result -------------------------------------------------------------------------------------
@dataclass
class ValidationResult:
    """Every check of one validation, the seeds' metrics, and how the runs went."""

    scenario: Scenario
    seeds: tuple[int, ...]
    burn_in: int
    checks: list[Check]
    frames: list[pd.DataFrame]
    runs: list[SeedRun]
    deviations: Deviations
    timings: dict[str, Any] = field(default_factory=dict)
    exact_seed: int = 0
    quick_exact: bool = False
    out: Path | None = None
    figures: list[Path] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every check passes or is a committed deviation."""
        return all(status(c) != "FAIL" for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if status(c) == "FAIL"]

    @property
    def stale_deviations(self) -> list[Check]:
        """Checks listed as deviations that pass now (the entry can go)."""
        return [c for c in self.checks if c.deviation is not None and c.passed]

    def by_kind(self) -> list[tuple[Kind, list[Check]]]:
        return [
            (k, [c for c in self.checks if c.kind == k]) for k in KIND_ORDER if any(c.kind == k for c in self.checks)
        ]

    def with_deviations(self, path: Path | None) -> ValidationResult:
        """The same measurements judged against another deviations file."""
        devs = load_deviations(path)
        return replace(self, checks=apply_deviations(self.checks, devs), deviations=devs)

    def headline(self) -> str:
        counts = {s: sum(status(c) == s for c in self.checks) for s in ("pass", "FAIL", "deviation")}
        window = f"rounds {self.burn_in}-{self.scenario.rounds - 1}"
        return (
            f"{self.scenario.name}: {len(self.seeds)} seeds x {self.scenario.rounds} rounds, window {window}"
            f" (0-based; burn-in {self.burn_in}): {counts['pass']} pass, {counts['FAIL']} FAIL,"
            f" {counts['deviation']} deviation"
        )

    def rows(self) -> list[tuple[Kind, Check, list[str]]]:
        """The table's cells: check | expected | source | measured | [min, max] | result."""
        out = []
        for kind, checks in self.by_kind():
            for c in checks:
                r = c.range
                span = f"[{_fmt(r[0])}, {_fmt(r[1])}]" if r is not None and len(c.per_seed) > 1 else ""
                out.append((kind, c, [c.name, str(c.target), c.source, _fmt(c.measured), span, status(c)]))
        return out

    def seed_rows(self) -> list[list[str]]:
        """Every seed's value of each check measured per seed (the exact checks have none)."""
        return [[c.name, *(_fmt(v) for v in c.per_seed)] for c in self.checks if c.kind != "exact"]

    def notes(self) -> list[str]:
        """Why each non-passing check is what it is, every deviation's reason, and stale entries."""
        out = [f"{c.name}: {c.note}" for c in self.checks if status(c) == "FAIL" and c.note]
        out += [f"deviation, {c.name}: {c.deviation}" for c in self.checks if status(c) == "deviation"]
        out += [f"listed as a deviation but passes (remove it): {c.name}" for c in self.stale_deviations]
        for p in self.deviations.parameter_changes:
            out.append(f"parameter changed: {p.field} {p.old!r} -> {p.new!r}: {p.reason}")
        out += [
            f"seed {r.seed} stopped after {r.rounds_run} of {r.rounds} rounds: {r.error}" for r in self.runs if r.error
        ]
        return out

    def rich_tables(self) -> list[RenderableType]:
        """The table, every seed's values and the notes, for a rich console (what the CLI prints)."""
        style = {"pass": "green", "FAIL": "bold red", "deviation": "yellow"}
        t = Table(title=self.headline(), title_justify="left")
        t.add_column("check", ratio=3)
        t.add_column("expected", ratio=2)
        t.add_column("source", ratio=2)
        t.add_column(escape("measured\n[min, max]"), justify="right", no_wrap=True)
        t.add_column("result", no_wrap=True)
        by_kind = self.by_kind()
        for i, (kind, checks) in enumerate(by_kind):
            names = {c.name for c in checks}
            t.add_row(f"[bold]{kind}[/]")
            rows = [(c, cells) for k, c, cells in self.rows() if k == kind and c.name in names]
            for j, (c, (name, expected, source, mean, span, result)) in enumerate(rows):
                measured = f"{mean}\n{span}" if span else mean
                t.add_row(
                    *map(escape, (name, expected, source, measured)),
                    f"[{style[status(c)]}]{result}[/]",
                    end_section=j == len(rows) - 1 and i < len(by_kind) - 1,
                )
        out: list[RenderableType] = [t]
        seeds = self.seed_rows()
        if seeds:
            st = Table(title="every seed", title_justify="left")
            st.add_column("check")
            for s in self.seeds:
                st.add_column(f"seed {s}", justify="right")
            for r in seeds:
                st.add_row(*map(escape, r))
            out.append(st)
        notes = self.notes()
        if notes:
            out.append(Text("notes:\n" + "\n".join(f"- {n}" for n in notes)))
        return out

    def to_markdown(self) -> str:
        """The table as Markdown, for pasting into the README."""
        lines = [f"**{_md(self.headline())}**", ""]
        head = ["check", "expected", "source", "measured (mean)", "[min, max] over seeds", "result"]
        for kind, checks in self.by_kind():
            names = {c.name for c in checks}
            lines += [f"### {kind}", "", _md_row(head), _md_row(["---"] * len(head))]
            lines += [_md_row(cells) for k, c, cells in self.rows() if k == kind and c.name in names]
            lines.append("")
        seeds = self.seed_rows()
        if seeds:
            head = ["check", *(f"seed {s}" for s in self.seeds)]
            lines += ["### every seed", "", _md_row(head), _md_row(["---"] * len(head))]
            lines += [_md_row(r) for r in seeds]
            lines.append("")
        notes = self.notes()
        if notes:
            lines += ["### notes", "", *(f"- {_md(n)}" for n in notes), ""]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Everything ``validation.json`` holds."""
        sc = self.scenario
        data: dict[str, Any] = _finite(
            {
                "scenario": sc.model_dump(mode="json"),
                "seeds": list(self.seeds),
                "rounds": sc.rounds,
                "burn_in": self.burn_in,
                "window": [self.burn_in, sc.rounds - 1],
                "passed": self.passed,
                "exit_code": 0 if self.passed else 1,
                "counts": {s: sum(status(c) == s for c in self.checks) for s in ("pass", "FAIL", "deviation")},
                "checks": [{**c.as_dict(), "status": status(c)} for c in self.checks],
                "deviations": self.deviations.as_dict(),
                "recording": {
                    **sc.record.model_dump(mode="json"),
                    "note": _record_note(sc.record),
                },
                "exact": {"seed": self.exact_seed, "quick": self.quick_exact},
                "runs": [
                    {
                        "seed": r.seed,
                        "path": _rel(r.path, self.out),
                        "rounds_run": r.rounds_run,
                        "seconds": round(r.seconds, 3),
                        "error": r.error,
                    }
                    for r in self.runs
                ],
                "timings": self.timings,
                "figures": [_rel(p, self.out) for p in self.figures],
                "versions": _versions(),
                "git_revision": _git_revision(),
                "command": sys.argv,
                "written": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        return data


def _record_note(record: Record) -> str:
    if record == VALIDATION_RECORD:
        return (
            "cheaper than full recording: payments per role pair, no household decisions, a snapshot every 50"
            " rounds (and the last). At 2,000 households x 300 rounds full recording took 2.8-3.2x the time of"
            " the unrecorded run and 30-90 MB a seed, these settings 1.8-1.9x and about 1 MB. Every metric and"
            " the sector matrices are recorded either way."
        )
    return "the scenario's own recording settings"


def _fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    if abs(v) >= 1e5:
        return f"{v:,.0f}"
    if abs(v) < 1e-3:
        return f"{v:.2e}"
    return f"{v:.4g}"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(_md(c) for c in cells) + " |"


def _rel(path: Path | None, root: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return str(path.relative_to(root)) if root is not None else str(path)
    except ValueError:
        return str(path)


def _finite(x: Any) -> Any:
    """NaN and infinities as null: ``validation.json`` stays strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


# -- the whole validation ---------------------------------------------------------------------------
def validate(
    scenario: Scenario,
    seeds: Sequence[int],
    *,
    burn_in: int,
    jobs: int,
    out: Path | None,
    quick_exact: bool = False,
    deviations: Path | None = None,
    progress: ProgressFn | None = None,
    record: Record | None = VALIDATION_RECORD,
    exact_seed: int = 0,
) -> ValidationResult:
    """Run ``scenario`` once per seed (``scenario.rounds`` rounds each) and check it.

    ``out``: a new or empty directory for ``seed-<n>/`` run directories, ``validation.json``,
    ``validation.md`` and ``figures/``; None keeps nothing. ``record``: the recording settings of
    each run (None keeps the scenario's). ``jobs``: worker processes (1 runs in this process).

    Raises:
        ValueError: no seeds, a repeated seed, or a burn-in that leaves no window.
        DeviationsError: the deviations file is malformed or names a check that does not exist
            (found as soon as the exact checks are done, before the seeds finish).
        FileExistsError: ``out`` exists and is not an empty directory.
    """
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("need at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds repeat: {list(seeds)}")
    if not 0 <= burn_in < scenario.rounds:
        raise ValueError(f"burn-in must be in [0, rounds): got {burn_in} with {scenario.rounds} rounds")
    devs = load_deviations(deviations)
    sc = scenario if record is None else scenario.model_copy(update={"record": record})
    created = False
    if out is not None:
        out = Path(out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise FileExistsError(f"{out}: exists and is not an empty directory (choose another --out)")
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    seed_dir = {s: (out / f"seed-{s}" if out is not None else None) for s in seeds}

    def check_early(exact: list[Check]) -> None:
        unknown = devs.unknown(check_names(exact))
        if unknown:
            raise DeviationsError(f"{devs.path}: no such check: {', '.join(unknown)}")

    try:
        if jobs <= 1:
            exact, exact_s = _exact_job(exact_seed, quick_exact)
            check_early(exact)
            if progress:
                progress(ProgressEvent("exact"))
            results = {}
            for s in seeds:
                results[s] = run_seed(sc, s, seed_dir[s], _round_reporter(progress, s))
                if progress:
                    progress(ProgressEvent("seed", s))
        else:
            exact, exact_s, results = _in_pool(
                sc, seeds, seed_dir, jobs, quick_exact, exact_seed, progress, check_early
            )
    except DeviationsError:
        if created and out is not None:  # a bad input: nothing in the directory made here is worth keeping
            shutil.rmtree(out, ignore_errors=True)
        raise
    runs = [results[s][0] for s in seeds]
    frames = [results[s][1] for s in seeds]
    checks = [*exact, _completed_check(runs), *stylized_checks(frames, burn_in, [*SPECS, *ACCOUNTING_SPECS])]
    checks = sorted(checks, key=lambda c: KIND_ORDER.index(c.kind))
    result = ValidationResult(
        scenario=sc,
        seeds=seeds,
        burn_in=burn_in,
        checks=apply_deviations(checks, devs),
        frames=frames,
        runs=runs,
        deviations=devs,
        exact_seed=exact_seed,
        quick_exact=quick_exact,
        out=out,
    )
    result.timings = {
        "jobs": max(1, min(jobs, len(seeds) + 1)),
        "exact_s": round(exact_s, 3),
        "seeds_s": {str(r.seed): round(r.seconds, 3) for r in runs},
        "runs_wall_s": round(time.perf_counter() - started, 3),
    }
    if out is not None:
        _write(result, out)
    result.timings["total_s"] = round(time.perf_counter() - started, 3)
    if out is not None:  # once more, with the total
        write_atomic(out / "validation.json", json.dumps(result.to_dict(), indent=2).encode())
    return result


def _round_reporter(progress: ProgressFn | None, seed: int) -> Callable[[int], None] | None:
    if progress is None:
        return None
    return lambda r: progress(ProgressEvent("round", seed, r))


def _completed_check(runs: Sequence[SeedRun]) -> Check:
    errors = sorted({r.error for r in runs if r.error})
    return check(
        RUN_COMPLETED,
        between(1.0, 1.0, "all rounds"),
        "ledger conservation, checked as every round closes",
        [r.rounds_run / r.rounds for r in runs],
        kind="accounting",
        note="share of the scenario's rounds each seed recorded" + "".join(f"; {e}" for e in errors),
    )


def _write(result: ValidationResult, out: Path) -> None:
    from tokenomy.validation.figures import write_figures

    t = time.perf_counter()
    result.figures = write_figures(
        out / "figures",
        result.frames,
        result.seeds,
        burn_in=result.burn_in,
        name=result.scenario.name,
        checks=result.checks,
    )
    result.timings["figures_s"] = round(time.perf_counter() - t, 3)
    write_atomic(out / "validation.md", result.to_markdown().encode())
    write_atomic(out / "validation.json", json.dumps(result.to_dict(), indent=2).encode())


def _in_pool(
    sc: Scenario,
    seeds: tuple[int, ...],
    seed_dir: dict[int, Path | None],
    jobs: int,
    quick_exact: bool,
    exact_seed: int,
    progress: ProgressFn | None,
    check_early: Callable[[list[Check]], None],
) -> tuple[list[Check], float, dict[int, tuple[SeedRun, pd.DataFrame]]]:
    """The exact checks and every seed in ``spawn`` worker processes; rounds reported as they finish."""
    ctx = multiprocessing.get_context("spawn")
    rounds_q: Any = ctx.Queue()
    pool = ProcessPoolExecutor(
        max_workers=min(jobs, len(seeds) + 1), mp_context=ctx, initializer=_init_worker, initargs=(rounds_q,)
    )
    data = sc.model_dump(mode="json")
    done_seeds: set[int] = set()

    def drain() -> None:
        while True:
            try:
                s, r = rounds_q.get_nowait()
            except queue.Empty:
                return
            if progress and s not in done_seeds:
                progress(ProgressEvent("round", s, r))

    exact: list[Check] = []
    exact_s = 0.0
    results: dict[int, tuple[SeedRun, pd.DataFrame]] = {}
    try:
        exact_future = pool.submit(_exact_job, exact_seed, quick_exact)
        futures: dict[Future[Any], int] = {
            pool.submit(_seed_job, data, s, None if seed_dir[s] is None else str(seed_dir[s])): s for s in seeds
        }
        pending: set[Future[Any]] = {exact_future, *futures}
        while pending:
            done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            drain()
            for f in done:
                if f is exact_future:
                    exact, exact_s = f.result()
                    check_early(exact)
                    if progress:
                        progress(ProgressEvent("exact"))
                else:
                    s = futures[f]
                    results[s] = f.result()
                    done_seeds.add(s)
                    if progress:
                        progress(ProgressEvent("seed", s))
    except BaseException:
        _stop(pool)
        raise
    finally:
        pool.shutdown(wait=True)
        rounds_q.close()
        rounds_q.join_thread()
    return exact, exact_s, results


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers this pool started, by their own handles
    (a failed validation should not wait for minutes of seeds nobody will read)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # no public handle before Python 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=10)


def default_jobs() -> int:
    """One worker per core."""
    return os.cpu_count() or 1
