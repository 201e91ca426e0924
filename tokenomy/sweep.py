"""``tokenomy sweep``: one scenario over a grid of field values x seeds, every run a real run directory,
and one tidy table of them all.

    plan = plan_sweep("baseline", {"roles.regulator.ubi": [0, 500]}, seeds=4, rounds=40)
    path = plan.run("sweeps/ubi", jobs=4)             # or run_sweep(...) in one call; executor="ray"
    sw = open_sweep(path)
    sw.table.groupby(["roles.regulator.ubi", "round"])["gdp"].mean()

Layout of the sweep directory::

    sweep.json       the scenario as given and as resolved (``scenario_data``), the grid, seeds, rounds,
                     --set items, every run (path, cell, seed, values, status), versions, executor, times;
                     written before any run starts, updated as runs end
    sweep.lock       flock-ed by the sweep process writing the directory
    runs/c000-s1/    one run directory per cell x seed (``sweep.json`` maps ids to values: values can be
                     long paths, so names do not carry them)
    sweep.parquet    one row per run x round: ``run`` (its path relative to the sweep directory), one column
                     per grid field (its dotted name), ``seed``, then every column of the run's metrics.parquet

Runs are independent and deterministic per seed, so the table does not depend on ``jobs`` or the
executor. Running the same sweep again on its directory skips finished runs (their directories are
only read), resumes stopped ones from their last checkpoint, clears and restarts a run directory that
never reached a checkpoint, and starts the rest; a run a ``ConservationError`` stopped is not run
again (it would stop the same way: that is the economy's result).
"""

from __future__ import annotations

import copy
import fcntl
import io
import itertools
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from tokenomy.scenario import Scenario, ScenarioError, _parse_value, dotted, load_scenario
from tokenomy.store import RunDirError, _git_revision, _now, _versions, lock_holder, read_manifest, write_atomic

__all__ = [
    "Cell",
    "Executor",
    "PlannedRun",
    "Sweep",
    "SweepError",
    "SweepEvent",
    "SweepManifest",
    "SweepPlan",
    "SweepRun",
    "open_sweep",
    "parse_grid",
    "plan_sweep",
    "run_sweep",
    "share_llm_limits",
    "split_values",
]

Executor = Literal["local", "ray"]
MANIFEST = "sweep.json"
TABLE = "sweep.parquet"
LOCK = "sweep.lock"
RUNS = "runs"
RESERVED = ("run", "seed")  # the table's own columns: no grid field may take their names
FINAL_ERRORS = ("ConservationError",)
"""A run that failed with one of these is the economy's result, not an accident: it is not run again."""
LOCK_WAIT_S = 15.0  # a worker of a killed sweep exits at once; its run's lock goes with it


class SweepError(ValueError):
    """A sweep that cannot start: a bad grid, seeds or sweep directory; one line naming what and why."""


# -- the grid -----------------------------------------------------------------------------------------
def split_values(raw: str) -> list[str]:
    """``V1,V2,...`` at its top-level commas: a comma inside a TOML string, array or inline table stays."""
    out, cur, depth, quote, i = [], [], 0, "", 0
    while i < len(raw):
        ch = raw[i]
        if quote:
            if ch == "\\" and quote == '"' and i + 1 < len(raw):
                cur.append(raw[i : i + 2])
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            i += 1
            continue
        cur.append(ch)
        i += 1
    out.append("".join(cur).strip())
    return out


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``--grid FIELD=V1,V2,...`` items as field -> values, each value read as ``--set`` reads one (TOML;
    a bare word that is not TOML is a string).

    Raises:
        SweepError: no ``=``, an empty field or value, a field given twice, a value repeated.
    """
    grid: dict[str, list[Any]] = {}
    for item in items:
        if "=" not in item:
            raise SweepError(f"--grid {item!r}: expected FIELD=V1,V2,..., e.g. --grid roles.regulator.ubi=0,500")
        key, raw = (s.strip() for s in item.split("=", 1))
        if not key or not all(key.split(".")):
            raise SweepError(f"--grid {item!r}: empty field name")
        if key in grid:
            raise SweepError(f"--grid {key}: given twice; list all its values in one --grid {key}=V1,V2,...")
        raws = split_values(raw)
        if any(not r for r in raws):
            raise SweepError(f"--grid {item!r}: an empty value (expected FIELD=V1,V2,...)")
        grid[key] = [_parse_value(r) for r in raws]
    return grid


def _json(x: Any) -> Any:
    """As sweep.json holds it (TOML dates as text)."""
    return json.loads(json.dumps(x, default=str))


def _check_grid(grid: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for key, values in grid.items():
        values = list(values)
        if key == "seed":
            raise SweepError("--grid seed: seeds are not a grid field; use --seeds N (seeds 1..N)")
        if key in RESERVED:
            raise SweepError(f"--grid {key}: {key!r} names a column of the sweep's table; not a scenario field")
        if not values:
            raise SweepError(f"--grid {key}: no values")
        seen = [json.dumps(_json(v), sort_keys=True) for v in values]
        if len(set(seen)) != len(seen):
            dup = next(s for s in seen if seen.count(s) > 1)
            raise SweepError(f"--grid {key}: the value {dup} is given twice")
        out[key] = values
    return out


def _seeds(seeds: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(seeds, int):
        if seeds < 1:
            raise SweepError(f"--seeds {seeds}: need at least one seed")
        return tuple(range(1, seeds + 1))
    out = tuple(int(s) for s in seeds)
    if not out or any(s < 0 for s in out) or len(set(out)) != len(out):
        raise SweepError(f"seeds {list(out)}: need distinct seeds >= 0, at least one")
    return out


def _put(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for i, p in enumerate(parts[:-1]):
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise SweepError(f"--grid {key}: '{'.'.join(parts[: i + 1])}' is a value, not a section")
        node = nxt
    node[parts[-1]] = copy.deepcopy(value)


def _shown(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(_json(v))}" for k, v in values.items())


def _grid_error(exc: ValidationError, values: Mapping[str, Any]) -> str:
    """The first error, one line, naming the --grid value that made it."""
    e = exc.errors()[0]
    loc = ".".join(str(x) for x in e["loc"])
    key = next((k for k in values if loc == k or loc.startswith(k + ".") or k.startswith(loc + ".")), None)
    where = f"--grid {key}={json.dumps(_json(values[key]))}" if key is not None else f"--grid cell ({_shown(values)})"
    msg = "unknown field (check its spelling and section)" if e["type"] == "extra_forbidden" else e["msg"]
    given = e.get("input")
    shown = "" if e["type"] in ("extra_forbidden", "missing") or isinstance(given, dict) else f" (got {given!r:.60})"
    return f"{where}: field '{loc or '(top level)'}': {msg}{shown}"


# -- the plan -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """One combination of grid values, and the scenario it makes (the base's seed)."""

    index: int
    values: dict[str, Any]
    scenario: Scenario


@dataclass(frozen=True)
class PlannedRun:
    """One cell x seed: run ``id``, in ``runs/<id>`` of the sweep directory."""

    id: str
    cell: Cell
    seed: int

    @property
    def path(self) -> str:
        return f"{RUNS}/{self.id}"

    @property
    def scenario(self) -> Scenario:
        return self.cell.scenario.model_copy(update={"seed": self.seed})


@dataclass(frozen=True)
class SweepEvent:
    """What ``progress`` is told: a run recorded a round, or a run ended (``status``; skipped ones too)."""

    kind: Literal["round", "run"]
    run: str
    rounds: int  # the run's rounds
    round: int | None = None
    status: str | None = None
    skipped: bool = False  # a run that had ended before this sweep process started: not run again


ProgressFn = Callable[[SweepEvent], None]


def share_llm_limits(scenario: Scenario, concurrent: int) -> Scenario:
    """``scenario`` with its endpoint's limits split over ``concurrent`` runs at once: each gets
    ``llm.max_concurrency // concurrent`` (at least 1) calls in flight and ``llm.requests_per_second /
    concurrent``. Limits shape when calls are made, never what they ask or answer (``--replay`` lets
    them differ too), so this changes a sweep's timing, never its tables. Budgets stay per run."""
    if concurrent <= 1 or not scenario.llm_roles():
        return scenario
    llm = scenario.llm
    update: dict[str, Any] = {"max_concurrency": max(1, llm.max_concurrency // concurrent)}
    if llm.requests_per_second is not None:
        update["requests_per_second"] = llm.requests_per_second / concurrent
    return scenario.model_copy(update={"llm": llm.model_copy(update=update)})


@dataclass(frozen=True)
class SweepPlan:
    """Every run of a sweep, each scenario validated; :meth:`run` executes it into a directory."""

    scenario: str  # the scenario's name or path, as given
    base: Scenario  # with --set and --rounds applied
    grid: dict[str, list[Any]]
    seeds: tuple[int, ...]
    sets: tuple[str, ...]
    cells: tuple[Cell, ...]
    runs: tuple[PlannedRun, ...]

    def estimate_usd(self) -> float:
        """The dry-run estimate (``tokenomy run --dry-run``) of every run, summed; each run's at most its
        ``llm.budget_usd`` (past it the rules decide). A rule-only run costs 0."""
        from tokenomy.policies.llm import estimate
        from tokenomy.simulation import Simulation

        total = 0.0
        for r in self.runs:
            sc = r.scenario
            if not sc.llm_roles():
                continue
            sim = Simulation(sc)
            cost = sum(float(row["cost_usd"]) for row in estimate(sc, sim.world, sim.observe()))
            total += cost if sc.llm.budget_usd is None else min(cost, sc.llm.budget_usd)
        return total

    def check_budget(self, budget_usd: float) -> float:
        """The estimate, or :class:`SweepError` with both figures when it is over ``budget_usd``."""
        cost = self.estimate_usd()
        if cost > budget_usd:
            raise SweepError(
                f"--budget-usd {budget_usd:g}: the {len(self.runs)} runs are estimated at ${cost:,.4f}"
                f" (the dry-run estimate of each, summed), over the sweep's budget of ${budget_usd:,.4f};"
                " nothing was run"
            )
        return cost

    def check_directory(self, out: str | Path) -> bool:
        """Whether ``out`` holds this sweep already (True: running it continues it) or can take it (False).

        Raises:
            SweepError: ``out`` is a file, a non-empty directory without a sweep, or another sweep's
                (naming what differs).
        """
        return _open_dir(Path(out), self) is not None

    def run(
        self,
        out: str | Path,
        *,
        jobs: int | None = None,
        executor: Executor = "local",
        address: str | None = None,
        budget_usd: float | None = None,
        progress: ProgressFn | None = None,
    ) -> Path:
        """Run (or continue) the sweep in ``out``; see :func:`run_sweep`."""
        return _execute(self, Path(out), jobs, executor, address, budget_usd, progress)


def plan_sweep(
    scenario: str | Path,
    grid: Mapping[str, Sequence[Any]],
    seeds: int | Sequence[int],
    *,
    rounds: int | None = None,
    sets: Sequence[str] = (),
) -> SweepPlan:
    """Every cell of ``grid`` (field -> values; ``parse_grid`` reads them from ``--grid`` text) x every
    seed (``N``: seeds 1..N), each cell's scenario validated and checked to fit in memory, and the
    prompts and API key of LLM-driven cells checked: a bad field or value fails here, before
    anything runs.

    Raises:
        ScenarioError: the scenario or a ``--set`` (naming the file, field and line).
        SweepError: a grid field or value, the seeds, an LLM cell's prompt or key (one line).
    """
    from tokenomy.initial import check_scale
    from tokenomy.policies.client import LLMConfigError
    from tokenomy.policies.prompts import PromptError

    grid = _check_grid(grid)
    seed_list = _seeds(seeds)
    base = load_scenario(scenario, list(sets), rounds=rounds)
    base_data = base.model_dump(mode="json")
    cells: list[Cell] = []
    for i, combo in enumerate(itertools.product(*grid.values())):
        values = dict(zip(grid, combo, strict=True))
        data = copy.deepcopy(base_data)
        for key, value in values.items():
            _put(data, key, value)
        try:
            sc = Scenario.model_validate(data)
        except ValidationError as exc:
            raise SweepError(_grid_error(exc, values)) from None
        try:
            check_scale(sc)
            _check_llm(sc)
        except (ScenarioError, LLMConfigError, PromptError) as exc:
            raise SweepError(f"{_shown(values)}: {exc}" if values else str(exc)) from None
        cells.append(Cell(i, values, sc))
    width = max(3, len(str(len(cells) - 1)))
    runs = tuple(PlannedRun(f"c{c.index:0{width}d}-s{s}", c, s) for c in cells for s in seed_list)
    return SweepPlan(str(scenario), base, grid, seed_list, tuple(sets), tuple(cells), runs)


def _check_llm(sc: Scenario) -> None:
    """An LLM cell's prompts load and its API key is set (the runs would each fail on them otherwise)."""
    if not sc.llm_roles():
        return
    from tokenomy.policies.llm import LLMDecider, LLMPolicy

    LLMPolicy(sc, LLMDecider(sc.llm, seed=sc.seed))


def run_sweep(
    scenario: str | Path,
    grid: Mapping[str, Sequence[Any]],
    seeds: int | Sequence[int],
    out: str | Path,
    *,
    rounds: int | None = None,
    sets: Sequence[str] = (),
    jobs: int | None = None,
    executor: Executor = "local",
    address: str | None = None,
    budget_usd: float | None = None,
    progress: ProgressFn | None = None,
) -> Path:
    """Run ``scenario`` over every cell of ``grid`` x seed into ``out``; returns ``out``.

    ``jobs``: runs at once (default: one per core; 1 runs them in this process, where roles registered
    from your own code exist). ``executor="ray"``: one Ray task per run, on the cluster at ``address``
    or on one started here with ``jobs`` CPUs (the run directories must be on a file system every Ray
    worker sees at the same path). ``budget_usd``: refuse, before anything runs, a sweep whose LLM
    runs are estimated to cost more. Running it again on ``out`` continues it (see the module
    docstring). A sweep whose runs did not all finish warns; ``open_sweep(out).failed`` lists them.

    Raises:
        ScenarioError, SweepError: bad input, a budget exceeded, an unusable ``out`` (nothing is run).
        ImportError: ``executor="ray"`` without Ray installed.
        KeyboardInterrupt: Ctrl-C, or SIGTERM/SIGHUP as ``tokenomy.runner.RunInterrupted``; the runs in
            flight end ``interrupted``, and running the sweep again continues them.
    """
    plan = plan_sweep(scenario, grid, seeds, rounds=rounds, sets=sets)
    return plan.run(out, jobs=jobs, executor=executor, address=address, budget_usd=budget_usd, progress=progress)


# -- sweep.json ---------------------------------------------------------------------------------------
class SweepRun(BaseModel):
    """One run as ``sweep.json`` lists it. ``status``: ``pending`` (not begun), or its manifest's:
    ``finished``, ``interrupted``, ``failed`` (``error`` says why), ``killed`` (its process died)."""

    model_config = ConfigDict(extra="allow")
    path: str
    cell: int
    seed: int
    values: dict[str, Any]
    status: str = "pending"
    error: str | None = None


class SweepManifest(BaseModel):
    """``sweep.json``: what was asked (scenario, grid, seeds, rounds, --set), every run, and how it went."""

    model_config = ConfigDict(extra="allow")
    scenario: str
    scenario_data: dict[str, Any]
    grid: dict[str, list[Any]]
    seeds: list[int]
    rounds: int
    sets: list[str]
    runs: list[SweepRun]
    status: str = "running"  # running | finished | failed (a run failed) | interrupted | stopped
    executor: str = "local"
    address: str | None = None
    jobs: int = 1
    versions: dict[str, str] = {}
    git_revision: str | None = None
    started: str | None = None
    restarted: list[str] = []
    finished: str | None = None


def _read(out: Path) -> SweepManifest:
    f = out / MANIFEST
    try:
        return SweepManifest.model_validate_json(f.read_bytes())
    except OSError as exc:
        raise SweepError(f"{f}: cannot read ({exc.strerror})") from None
    except ValidationError as exc:
        e = exc.errors()[0]
        where = ".".join(str(x) for x in e["loc"]) or "(top level)"
        raise SweepError(f"{f}: damaged, not a sweep's sweep.json ({where}: {e['msg']})") from None


def _write(out: Path, m: SweepManifest) -> None:
    write_atomic(out / MANIFEST, m.model_dump_json(indent=2).encode())



def _differences(was: SweepManifest, plan: SweepPlan) -> str | None:
    """What makes ``plan`` another sweep than the one recorded, or None."""
    grid = _json(plan.grid)
    if list(was.grid.items()) != list(grid.items()):  # in order too: a run's id is its place in the product
        return f"the grid ({_grid_text(grid)}; recorded: {_grid_text(was.grid)})"
    if was.seeds != list(plan.seeds):
        return f"the seeds ({_seeds_text(plan.seeds)}; recorded: {_seeds_text(was.seeds)})"
    a, b = dotted(was.scenario_data), dotted(plan.base.model_dump(mode="json"))
    differ = [k for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]
    if differ:
        shown = "; ".join(f"{k} = {json.dumps(b.get(k))}, recorded {json.dumps(a.get(k))}" for k in differ[:3])
        more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
        return f"the scenario ({shown}{more})"
    return None


def _grid_text(grid: Mapping[str, list[Any]]) -> str:
    return " ".join(f"{k}={','.join(json.dumps(v) for v in vs)}" for k, vs in grid.items()) or "no grid"


def _seeds_text(seeds: Sequence[int]) -> str:
    s = list(seeds)
    return f"1..{len(s)}" if s == list(range(1, len(s) + 1)) else ",".join(map(str, s))


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold ``sweep.lock``: a second sweep process on the same directory is refused, not interleaved."""
    fh: IO[str] = open(out / LOCK, "a+", encoding="utf-8")  # closed below
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            pid = fh.read().strip()
            who = f"pid {pid}" if pid.isdigit() else "another process"
            raise SweepError(f"{out}: a sweep ({who}) is running in this directory; wait for it to end") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield
    finally:
        fh.close()


def _open_dir(out: Path, plan: SweepPlan) -> SweepManifest | None:
    """The recorded sweep in ``out`` if it is this one, None for a new or empty directory.

    Raises:
        SweepError: ``out`` is a file, a non-empty directory that holds no sweep, or another sweep's.
    """
    if out.exists() and not out.is_dir():
        raise SweepError(f"{out}: exists and is not a directory (choose another --out)")
    if not (out / MANIFEST).exists():
        if out.exists() and any(p.name != LOCK for p in out.iterdir()):
            raise SweepError(f"{out}: directory exists, is not empty and holds no sweep.json (choose another --out)")
        return None
    was = _read(out)
    diff = _differences(was, plan)
    if diff is not None:
        raise SweepError(
            f"{out}: holds another sweep: {diff} differs; rerun it with the recorded values to continue it,"
            " or choose another --out"
        )
    return was


# -- the runs' state on disk --------------------------------------------------------------------------
def _wait_unlocked(path: Path) -> None:
    deadline = time.monotonic() + LOCK_WAIT_S
    while (who := lock_holder(path)) is not None:
        if time.monotonic() > deadline:
            raise SweepError(f"{path}: a run ({who}) is writing into this directory; wait for it to end")
        time.sleep(0.05)


def _disk_status(path: Path) -> tuple[str, str | None]:
    """A run's status as its directory says it (``pending`` without a manifest)."""
    try:
        m = read_manifest(path)
    except RunDirError:
        return "pending", None
    status = str(m.get("status", "pending"))
    if status == "running" and lock_holder(path) is None:
        status = "killed"
    return status, m.get("error")


def _what_to_do(path: Path, run: PlannedRun | None = None) -> Literal["skip", "start", "resume"]:
    """Finished (or failed for good): skip; a checkpoint to go on from: resume; else clear and start.

    A run recorded with other grid values or another seed than ``run`` plans is refused
    (:class:`SweepError`): kept, it would be labelled as a cell it is not."""
    if not path.exists():
        return "start"
    _wait_unlocked(path)
    try:
        m = read_manifest(path)
    except RunDirError:  # made but never written (killed at once), or not a run: nothing to keep
        shutil.rmtree(path)
        return "start"
    if run is not None:
        _check_recorded(path, m.get("scenario") or {}, run)
    status, error = m.get("status"), str(m.get("error") or "")
    if status == "finished" or (status == "failed" and error.startswith(FINAL_ERRORS)):
        return "skip"
    if not m.get("checkpoint"):  # stopped before its first checkpoint: nothing to resume from
        shutil.rmtree(path)
        return "start"
    return "resume"


def _check_recorded(path: Path, scenario: Mapping[str, Any], run: PlannedRun) -> None:
    recorded, planned = dotted(scenario), dotted(run.scenario.model_dump(mode="json"))
    want = {k: planned.get(k) for k in ("seed", *run.cell.values)}
    wrong = [k for k, v in want.items() if k in recorded and recorded[k] != v]
    if wrong:
        shown = "; ".join(f"{k} = {json.dumps(recorded[k])}, planned {json.dumps(want[k])}" for k in wrong[:3])
        raise SweepError(f"{path}: this run was made for another cell ({shown}); use a new --out for this sweep")


# -- running ------------------------------------------------------------------------------------------
def _execute(
    plan: SweepPlan,
    out: Path,
    jobs: int | None,
    executor: Executor,
    address: str | None,
    budget_usd: float | None,
    progress: ProgressFn | None,
) -> Path:
    from tokenomy import sweep_executors as ex

    if executor not in ("local", "ray"):
        raise SweepError(f"executor {executor!r}: expected 'local' or 'ray'")
    if jobs is not None and jobs < 1:
        raise SweepError(f"--jobs {jobs}: need at least 1")
    if address is not None and executor != "ray":
        raise SweepError("--address is the Ray cluster's: give it with --executor ray")
    ray = ex.import_ray() if executor == "ray" else None  # ImportError naming the extra, before anything is made
    if budget_usd is not None:
        plan.check_budget(budget_usd)
    _open_dir(out, plan)  # refused before anything is made in it
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SweepError(f"{out}: cannot create the sweep directory ({exc.strerror})") from None
    with _locked(out):
        was = _open_dir(out, plan)  # again, now that no other sweep can write here
        m = was or _new_manifest(plan)
        if was is not None:
            m.restarted.append(_now())
        m.status, m.finished, m.executor, m.address = "running", None, executor, address
        m.versions, m.git_revision = _versions(), _git_revision()
        if ray is not None:
            m.versions["ray"] = str(getattr(ray, "__version__", "unknown"))
        (out / RUNS).mkdir(exist_ok=True)
        records = {r.id: rec for r, rec in zip(plan.runs, m.runs, strict=True)}
        planned = {r.id: r for r in plan.runs}

        def refresh(run_id: str, outcome: ex.Outcome | None = None) -> None:
            """The run's status as its directory says; a run that ended before it had one keeps its outcome."""
            rec = records[run_id]
            path = out / planned[run_id].path
            rec.status, rec.error = _disk_status(path)
            if rec.status == "pending" and outcome is not None and outcome.status != "not started":
                if outcome.status == "failed" and not path.exists() and "BrokenProcessPool" in (outcome.error or ""):
                    return  # the pool broke before this run began (a signal while workers started): not a failure
                rec.status, rec.error = outcome.status, outcome.error

        for r in plan.runs:
            refresh(r.id)
        _write(out, m)  # before any run: what the sweep is, and how its runs stand

        todo: list[tuple[PlannedRun, Literal["start", "resume"]]] = []
        for r in plan.runs:
            what = _what_to_do(out / r.path, r)
            if what == "skip":
                if progress is not None:
                    progress(SweepEvent("run", r.id, r.scenario.rounds, status=records[r.id].status, skipped=True))
            else:
                todo.append((r, what))

        def on_round(run_id: str, round_no: int) -> None:
            if progress is not None:
                progress(SweepEvent("round", run_id, planned[run_id].scenario.rounds, round=round_no))

        outcomes: dict[str, ex.Outcome] = {}

        def on_done(o: ex.Outcome) -> None:
            outcomes[o.id] = o
            refresh(o.id, o)
            _write(out, m)
            if progress is not None:
                progress(SweepEvent("run", o.id, planned[o.id].scenario.rounds, status=records[o.id].status))

        try:
            with ex.interrupt_on_signals():
                _dispatch(ex, ray, out, todo, jobs, address, m, on_round, on_done)
        except BaseException as exc:
            for r, _ in todo:
                refresh(r.id, outcomes.get(r.id))
            m.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            _write(out, m)
            raise
        ended = {rec.status for rec in m.runs}
        m.status = "finished" if ended == {"finished"} else "failed" if ended <= {"finished", "failed"} else "stopped"
        if m.status != "stopped":  # every run ended: the table is whole
            _write_table(out, m)
        m.finished = _now()
        _write(out, m)
    if m.status != "finished":
        bad = [rec.path for rec in m.runs if rec.status != "finished"]
        warnings.warn(f"{out}: {len(bad)} of {len(m.runs)} runs did not finish: {', '.join(bad[:5])}", stacklevel=3)
    return out


def _new_manifest(plan: SweepPlan) -> SweepManifest:
    return SweepManifest(
        scenario=plan.scenario,
        scenario_data=plan.base.model_dump(mode="json"),
        grid=_json(plan.grid),
        seeds=list(plan.seeds),
        rounds=plan.base.rounds,
        sets=list(plan.sets),
        runs=[SweepRun(path=r.path, cell=r.cell.index, seed=r.seed, values=_json(r.cell.values)) for r in plan.runs],
        started=_now(),
    )


def _dispatch(
    ex: Any,
    ray: Any,
    out: Path,
    todo: list[tuple[PlannedRun, Literal["start", "resume"]]],
    jobs: int | None,
    address: str | None,
    m: SweepManifest,
    on_round: Callable[[str, int], None],
    on_done: Callable[[Any], None],
) -> None:
    """Hand the runs to the executor, the endpoint's LLM limits shared over the runs at once."""
    if not todo:
        return
    n = jobs if jobs is not None else os.cpu_count() or 1
    cwd = os.getcwd()

    def job_list(concurrent: int) -> list[Any]:
        return [
            ex.Job(
                r.id,
                str((out / r.path).resolve()),
                what,
                share_llm_limits(r.scenario, concurrent).model_dump(mode="json") if what == "start" else None,
                cwd,
            )
            for r, what in todo
        ]

    if ray is not None:
        with ex.ray_cluster(address, n) as connected:
            if jobs is None:  # one run per CPU of the cluster
                n = ex.ray_cpus(connected)
            concurrent = max(1, min(n, len(todo)))
            m.jobs = concurrent
            _write(out, m)
            ex.run_on_ray(connected, job_list(concurrent), concurrent, on_done)
        return
    concurrent = max(1, min(n, len(todo)))
    m.jobs = concurrent
    _write(out, m)
    if concurrent == 1:
        ex.run_here(job_list(1), on_round, on_done)
    else:
        ex.run_in_pool(job_list(concurrent), concurrent, on_round, on_done)


# -- the table ----------------------------------------------------------------------------------------
def _column(values: list[Any]) -> Callable[[Any], Any]:
    """How a grid field's values go into its column: as they are when they are all numbers, all
    booleans or all strings; as JSON text otherwise (arrays, tables, mixed types)."""
    kinds = {bool if isinstance(v, bool) else float if isinstance(v, int | float) else type(v) for v in values}
    if len(kinds) == 1 and kinds <= {bool, float, str}:
        return lambda v: v
    return lambda v: json.dumps(v, sort_keys=True)


def build_table(out: Path, m: SweepManifest) -> Any:
    """One row per run x round: ``run``, the grid fields, ``seed``, then the run's metrics columns
    (the rounds each run recorded; a run never begun adds none)."""
    import pandas as pd

    from tokenomy.store import Run

    as_column = {k: _column(vs) for k, vs in m.grid.items()}
    frames = []
    for rec in m.runs:
        path = out / rec.path
        if not (path / "manifest.json").exists():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            metrics = Run(path).metrics
        ids: dict[str, Any] = {"run": rec.path}
        ids |= {k: as_column[k](rec.values[k]) for k in m.grid}
        ids["seed"] = rec.seed
        head = pd.DataFrame({k: [v] * len(metrics) for k, v in ids.items()})
        frames.append(pd.concat([head, metrics.reset_index(drop=True)], axis=1))
    if not frames:
        return pd.DataFrame(columns=["run", *m.grid, "seed"])
    return pd.concat(frames, ignore_index=True)


def _write_table(out: Path, m: SweepManifest) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(build_table(out, m), preserve_index=False)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    write_atomic(out / TABLE, buf.getvalue())


# -- reading a sweep back -----------------------------------------------------------------------------
@dataclass
class Sweep:
    """A sweep directory read back: ``table`` (one row per run x round), ``grid``, ``runs``."""

    path: Path
    manifest: SweepManifest = field(repr=False)

    @property
    def grid(self) -> dict[str, list[Any]]:
        return self.manifest.grid

    @property
    def seeds(self) -> list[int]:
        return self.manifest.seeds

    @property
    def runs(self) -> list[SweepRun]:
        return self.manifest.runs

    @property
    def status(self) -> str:
        return self.manifest.status

    @property
    def failed(self) -> list[SweepRun]:
        """Runs that did not finish (failed, interrupted, killed or never begun)."""
        return [r for r in self.runs if r.status != "finished"]

    @cached_property
    def table(self) -> Any:
        """``sweep.parquet`` as a DataFrame; for a sweep that has not ended, the rounds its runs hold so far."""
        import pandas as pd

        f = self.path / TABLE
        if self.status in ("finished", "failed") and f.is_file():
            return pd.read_parquet(f)
        return build_table(self.path, self.manifest)

    def run(self, which: int | str) -> Any:
        """One run as ``tokenomy.open_run`` opens it: by index in ``runs``, id (``c000-s1``) or path."""
        from tokenomy.store import open_run

        if isinstance(which, int):
            return open_run(self.path / self.runs[which].path)
        rel = which if which.startswith(f"{RUNS}/") else f"{RUNS}/{which}"
        if not any(r.path == rel for r in self.runs):
            raise KeyError(f"{which!r}: not a run of {self.path}")
        return open_run(self.path / rel)


def open_sweep(path: str | Path) -> Sweep:
    """Open a sweep directory (``sweep.json``; ``SweepError`` naming the file if it is missing or damaged)."""
    p = Path(path)
    if not (p / MANIFEST).is_file():
        raise SweepError(f"{p}: not a sweep directory (no {MANIFEST})")
    return Sweep(p, _read(p))
