"""The ``tokenomy`` command line: run a scenario, resume a stopped run, validate one against the
literature, list the bundled ones, check an LLM endpoint.

Errors a user can fix (a bad scenario, a bad ``--set``, an unusable output directory) print one
message and exit with code 2; no traceback.
"""

from __future__ import annotations

import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from tokenomy.scenario import ScenarioError, bundled_scenarios, dotted, load_scenario

if TYPE_CHECKING:
    from tokenomy.runner import Runner
    from tokenomy.scenario import Scenario

app = typer.Typer(add_completion=False, no_args_is_help=True, help="tokenomy: a multi-agent economy sandbox.")
console = Console()
err = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from importlib import metadata

        console.print(f"tokenomy {metadata.version('tokenomy')}", highlight=False)  # the installed distribution's
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """tokenomy: a multi-agent economy sandbox."""


SUMMARY = (
    ("gdp", "GDP", "{:,.0f}"),
    ("consumption", "consumption", "{:,.0f}"),
    ("potential_output", "potential output", "{:,.0f}"),
    ("labour_share", "labour share", "{:.3f}"),
    ("unemployment_rate", "unemployment", "{:.1%}"),
    ("wage_mean", "mean wage", "{:,.0f}"),
    ("inflation", "inflation / round", "{:+.2%}"),
    ("gini_wealth", "Gini (wealth)", "{:.3f}"),
    ("top10_wealth_share", "top-10% wealth", "{:.1%}"),
    ("rent_share", "rent share of GDP", "{:.2%}"),
    ("automation_share", "automatable share", "{:.3f}"),
)
def _mean(rows: list[dict[str, Any]], key: str, fmt: str) -> str:
    """One cell of the summary: the rows' mean of ``key``, formatted (or n/a: see ``metrics.GDP_SHARES``)."""
    from tokenomy.metrics import GDP_SHARES, MIN_GDP

    kept = [r[key] for r in rows if key not in GDP_SHARES or r["gdp"] >= MIN_GDP]
    return fmt.format(sum(kept) / len(kept)) if kept else "n/a"


def _progress(quiet: bool, unit: str) -> Progress:
    """The progress bar every long command shows on stderr; ``unit`` is the counter's label."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=quiet,
        transient=False,
    )


def _fail(message: str, code: int = 2) -> NoReturn:
    # soft_wrap: a long path in the message stays on one line (greppable, copyable from logs)
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _interrupted(exc: KeyboardInterrupt, path: Path | None) -> NoReturn:
    """A run stopped by Ctrl-C, SIGTERM or SIGHUP (its directory already finished): say what was
    kept and how to go on, and exit 128 + the signal's number, as a shell does."""
    from tokenomy.runner import RunInterrupted

    signum = exc.signum if isinstance(exc, RunInterrupted) else int(signal.SIGINT)
    kept = f": its tables are kept in {path}; `tokenomy resume {path}` continues it" if path is not None else ""
    err.print(f"interrupted by {signal.Signals(signum).name}{escape(kept)}", highlight=False, soft_wrap=True)
    raise typer.Exit(128 + signum)


def _write_failed(exc: OSError, runner: Runner, rows: list[dict[str, Any]]) -> str:
    """The one line for a run a failed write stopped (a full disk): which file, in which round, what its
    manifest says now and how to go on."""
    from tokenomy.store import RunDirError, read_manifest

    where, what = exc.filename or "a file of the run", exc.strerror or str(exc)
    if runner.path is None:
        return f"{where}: {what}; nothing was run"
    try:
        manifest = read_manifest(runner.path)
    except RunDirError:
        manifest = {}
    ck = manifest.get("checkpoint")
    after = f"after round {ck['round']}" if isinstance(ck, dict) and "round" in ck else "from its first round"
    said = (
        "manifest status 'failed'"
        if manifest.get("status") == "failed"
        else "its manifest could not be updated (it still says 'running')"
    )
    kept = f"rounds {rows[0]['round']}-{rows[-1]['round']} ran" if rows else "no round ran"
    return (
        f"{where}: {what} (writing round {runner.outcome.round}); the run stopped: {kept}, {said}; once the"
        f" disk has room, `tokenomy resume {runner.path}` continues it {after}"
    )


REPLAY_FREE = (
    "name",
    "question",
    "record",
    "llm.api_key_env",
    "llm.max_concurrency",
    "llm.max_fallback_share",
    "llm.max_retries",
    "llm.requests_per_second",
    "llm.timeout_s",
    "llm.workers",
)
"""Scenario fields a ``--replay`` may change: they shape neither the economy nor the questions asked
(``rounds`` may be fewer than were recorded)."""



def _replay_scenario(
    replay: Path, scenario: str | None, sets: list[str], *, rounds: int | None, seed: int | None
) -> Scenario:
    """The scenario of a ``--replay``: the replayed run's own, from its manifest, or ``scenario`` (and
    ``--set``) when it asks the same questions: another scenario would find no recorded answer for any
    of its requests, and every decision would silently go to the rules.

    Raises:
        ScenarioError: naming the run directory, and the fields that differ.
    """
    from tokenomy.scenario import scenario_from_data
    from tokenomy.store import RunDirError, read_manifest

    try:
        manifest = read_manifest(replay)
    except RunDirError as exc:  # no run directory, or a damaged manifest: the message names the file
        raise ScenarioError(str(exc)) from None
    source = replay / "manifest.json"
    recorded = scenario_from_data(manifest["scenario"], source)
    if not recorded.llm_roles():
        raise ScenarioError(f"--replay {replay}: that run had no LLM-driven roles, so it recorded no answers to replay")
    if not (replay / "llm-cache.sqlite").is_file():
        raise ScenarioError(f"--replay {replay}: no recorded LLM answers to replay (llm-cache.sqlite missing)")
    if scenario is None:
        sc = scenario_from_data(manifest["scenario"], source, sets, rounds=rounds, seed=seed)
    else:
        sc = load_scenario(scenario, sets, rounds=rounds, seed=seed)
    if not sc.llm_roles():
        raise ScenarioError(
            f"--replay {replay}: {scenario or 'the scenario'} has no LLM-driven roles, so there is nothing to replay"
            f" (the run recorded answers for {', '.join(recorded.llm_roles())}); leave SCENARIO out to replay it"
        )
    was, now = dotted(recorded.model_dump(mode="json")), dotted(sc.model_dump(mode="json"))
    differ = [
        k
        for k in sorted(was.keys() | now.keys())
        if was.get(k) != now.get(k)
        and not any(k == free or k.startswith(free + ".") for free in REPLAY_FREE)
        and not (k == "rounds" and sc.rounds <= recorded.rounds)
    ]
    if differ:
        shown = "; ".join(f"{k} = {now.get(k)!r}, recorded {was.get(k)!r}" for k in differ[:3])
        more = f" and {len(differ) - 3} more field{'s' if len(differ) > 4 else ''}" if len(differ) > 3 else ""
        given = "SCENARIO and --set" if scenario is not None else "--set, --rounds or --seed"
        raise ScenarioError(
            f"--replay {replay}: not the scenario that run recorded ({shown}{more}), so its answers are not to"
            f" the questions this run would ask; leave {given} out to replay the recorded scenario"
        )
    return sc


@app.command()
def run(
    scenario: Annotated[
        str | None,
        typer.Argument(
            help="bundled scenario name (see `tokenomy scenarios`) or path to a TOML file; with --replay, the"
            " replayed run's scenario by default",
            show_default=False,
        ),
    ] = None,
    rounds: Annotated[
        int | None, typer.Option("--rounds", "-n", min=1, help="rounds to run (default: the scenario's)")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="random seed (default: the scenario's)")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="run directory (default: runs/<scenario>-<time>)")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="override a field: --set households=10000")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="reuse a non-empty --out directory")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the LLM calls, tokens and cost the run would make; call nothing")
    ] = False,
    replay: Annotated[
        Path | None,
        typer.Option(
            "--replay",
            help="replay the LLM answers recorded in this run directory (no network); its scenario unless"
            " SCENARIO is given, which must then be the same",
        ),
    ] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="write no report.html into the run directory")] = False,
) -> None:
    """Run a scenario and write its run directory.

    Exits 2 on bad input, a missing key or an LLM endpoint that refuses the configuration (before
    any round), or a write that fails (a full disk: the manifest says 'failed'), and 1 when an LLM
    run stops because too few of its decisions came from the model.
    """
    try:  # before the engine is imported: a bad scenario is one line within a second
        if replay is not None:
            sc = _replay_scenario(replay, scenario, set_ or [], rounds=rounds, seed=seed)
        elif scenario is None:
            raise ScenarioError("missing SCENARIO: a bundled scenario name (see `tokenomy scenarios`) or a TOML file")
        else:
            sc = load_scenario(scenario, set_ or [], rounds=rounds, seed=seed)
    except ScenarioError as exc:
        _fail(str(exc))
        return
    from tokenomy.policies.llm import LLMConfigError, LLMFallbackError
    from tokenomy.policies.prompts import PromptError
    from tokenomy.runner import Runner
    from tokenomy.store import RunDirError, RunWriter

    if dry_run:
        _dry_run(sc)
        return
    unique = out is None  # a default name is made atomically, suffixed if taken: two runs never share it
    if out is None:
        out = Path("runs") / f"{sc.name}-{datetime.now():%Y%m%d-%H%M%S-%f}"
    if replay is not None and out.resolve() == replay.resolve():
        _fail(f"--out {out} is the run being replayed: write the replay into another directory")
    try:
        runner = Runner(sc)  # checks the population fits in memory, and the money in int64 cents, first
    except ScenarioError as exc:
        _fail(f"{scenario if scenario is not None else Path(str(replay), 'manifest.json')}: {exc}")
        return
    try:  # before the progress bar: a wrong key, model or URL is one line on stderr, and nothing is written
        RunWriter.check(out, overwrite=overwrite)
        runner.preflight(replay=replay is not None)
    except (RunDirError, LLMConfigError, PromptError) as exc:
        runner.close()
        _fail(str(exc))
        return
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    stopped: LLMFallbackError | None = None
    with _progress(quiet, "rounds") as bar:
        task = bar.add_task(sc.name, total=sc.rounds)

        def on_round(r: int, row: dict[str, Any]) -> None:
            rows.append(row)
            bar.advance(task)

        try:
            path = runner.run(out, overwrite=overwrite, on_round=on_round, replay_from=replay, unique=unique)
        except (RunDirError, LLMConfigError, PromptError) as exc:
            _fail(str(exc))
            return
        except OSError as exc:  # a full disk, a file system gone read-only: the file, the round, the manifest
            _fail(_write_failed(exc, runner, rows))
            return
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP: the run directory is finished already
            _interrupted(exc, runner.path)
        except LLMFallbackError as exc:
            stopped = exc
        finally:
            runner.close()
    if stopped is not None:  # the usage (and the share from the model) first, then why it stopped
        _llm_summary(runner)
        kept = f"rounds {rows[0]['round']}-{rows[-1]['round']}" if rows else "no round"
        _fail(f"{stopped} ({kept} recorded in {out}, manifest status 'failed')", code=1)
        return
    elapsed = time.perf_counter() - started
    _summary(sc.name, rows, elapsed, sc.households)
    if runner.llm is not None:
        _llm_summary(runner)
    console.print(f"run directory: [bold]{path}[/]  (open with tokenomy.open_run)", soft_wrap=True)
    if not no_report and path is not None:
        _auto_report(path)


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(help="directory of a run that stopped (killed, interrupted or failed)")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    no_report: Annotated[bool, typer.Option("--no-report", help="write no report.html into the run directory")] = False,
) -> None:
    """Continue a stopped run from its last complete round, in its own directory.

    The checkpoint's snapshot is checked against its SHA-256, the table parts past it are dropped,
    and the LLM usage and caps go on from where they were; the finished tables equal an
    uninterrupted run's. Exits 2 when the directory cannot be resumed (finished, still being
    written, damaged), 1 when an LLM run stops because too few decisions came from the model.
    """
    from tokenomy.policies.llm import LLMConfigError
    from tokenomy.policies.prompts import PromptError
    from tokenomy.runner import Runner
    from tokenomy.store import RunDirError

    try:
        runner = Runner.from_run(run_dir)
    except (RunDirError, LLMConfigError, PromptError, ScenarioError) as exc:
        _fail(str(exc))
        return
    left = runner.resume_rounds
    path = _continue(runner, runner.scenario.name, f"resumed in {run_dir}", quiet)
    console.print(
        f"resumed after round {left.start - 1}: run directory [bold]{path}[/] (open with tokenomy.open_run)",
        soft_wrap=True,
    )
    if not no_report:  # as a run that was never stopped would have
        _auto_report(path)


@app.command()
def fork(
    run_dir: Annotated[Path, typer.Argument(help="directory of the run to branch from (finished or stopped)")],
    at_round: Annotated[int, typer.Option("--at-round", "-t", help="branch from the end of this round")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the fork's run directory (new or empty)")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="change a field from the next round: --set roles.regulator.ubi=500"),
    ] = None,
    rounds: Annotated[
        int | None,
        typer.Option("--rounds", "-n", min=1, help="rounds to run after --at-round (default: to the parent's last)"),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="reuse a non-empty --out directory")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    no_report: Annotated[bool, typer.Option("--no-report", help="write no report.html into the run directory")] = False,
) -> None:
    """Branch a counterfactual from the end of round T of a recorded run.

    The fork's rounds up to T are the parent's (its table rows, snapshots and LLM answers, linked or
    copied); from T+1 it runs with the --set changes, to the parent's last round or --rounds more.
    Without --set its tables equal the parent's but for the timings (unless the parent changed its
    scenario after T: the fork keeps round T's, and says so). Exits 2 on bad input (no such
    run, T not recorded, a field that cannot change mid-run, a non-empty --out), 1 when an LLM run
    stops because too few decisions came from the model.
    """
    from tokenomy.changes import parse_sets
    from tokenomy.policies.llm import LLMConfigError
    from tokenomy.policies.prompts import PromptError
    from tokenomy.runner import Runner
    from tokenomy.store import RunDirError, read_manifest

    try:
        sets = parse_sets(set_ or [])
        runner = Runner.forked(run_dir, at_round=at_round, out=out, set=sets, rounds=rounds, overwrite=overwrite)
    except (RunDirError, LLMConfigError, PromptError, ScenarioError) as exc:
        _fail(str(exc))
        return
    sc, left = runner.scenario, runner.resume_rounds
    for c in read_manifest(Path(out))["fork"].get("not_carried", []):  # the parent's own later policy changes
        shown = "; ".join(f"{k} = {v!r}" for k, v in c["set"].items())
        err.print(f"note: the parent changed {escape(shown)} from round {c['round']}; this fork does not")
    path = _continue(runner, f"{sc.name} (fork)", f"forked into {out}", quiet, first=left.start)
    changed = "; ".join(f"{k} = {v!r}" for k, v in sets.items()) or "nothing changed"
    console.print(
        f"forked {run_dir} after round {left.start - 1} ({escape(changed)} from round {left.start}):"
        f" run directory [bold]{path}[/] (open with tokenomy.open_run)",
        soft_wrap=True,
    )
    if not no_report:
        _auto_report(path)


def _continue(runner: Runner, title: str, where: str, quiet: bool, *, first: int = 0) -> Path:
    """Run what :meth:`Runner.resume` has left (a resumed run, a fork), then print the summary of the
    rounds from ``first``: the ending ``tokenomy resume`` and ``tokenomy fork`` share. Bad input,
    a full disk, a signal and an LLM run that fell back too often end it as ``run`` does."""
    from tokenomy.policies.llm import LLMConfigError, LLMFallbackError
    from tokenomy.policies.prompts import PromptError
    from tokenomy.store import RunDirError, open_run

    sc, left = runner.scenario, runner.resume_rounds
    ran: list[int] = []
    started = time.perf_counter()
    with _progress(quiet, "rounds") as bar:
        task = bar.add_task(title, total=left.stop - left.start)

        def on_round(r: int, row: dict[str, Any]) -> None:
            ran.append(r)
            bar.advance(task)

        try:
            path = runner.resume(on_round=on_round)
        except (RunDirError, LLMConfigError, PromptError) as exc:
            _fail(str(exc))
        except OSError as exc:  # a full disk
            _fail(_write_failed(exc, runner, [{"round": r} for r in ran]))
        except KeyboardInterrupt as exc:
            _interrupted(exc, runner.path)
        except LLMFallbackError as exc:
            _fail(f"{exc} ({where}, manifest status 'failed')", code=1)
        finally:
            runner.close()
    elapsed = time.perf_counter() - started
    rows = [r for r in open_run(path).metrics.to_dict("records") if r["round"] >= first]
    _summary(sc.name, rows, elapsed, sc.households, ran=len(ran))
    if runner.llm is not None:
        _llm_summary(runner)
    return path


def _summary(name: str, rows: list[dict[str, Any]], elapsed: float, households: int, *, ran: int | None = None) -> None:
    """The first and last rounds' means; ``ran``: the rounds this process ran (the speed), if not all."""
    from tokenomy.metrics import MIN_GDP

    if not rows:
        return
    k = max(1, min(10, len(rows) // 2))
    first, last = rows[:k], rows[-k:]
    t = Table(title=f"{name}: mean of the first and last {k} rounds", title_justify="left")
    t.add_column("metric")
    t.add_column(f"rounds {first[0]['round']}-{first[-1]['round']}", justify="right")
    t.add_column(f"rounds {last[0]['round']}-{last[-1]['round']}", justify="right")
    for key, label, fmt in SUMMARY:
        t.add_row(label, _mean(first, key, fmt), _mean(last, key, fmt))
    console.print(t)
    if dead := sum(r["gdp"] < MIN_GDP for r in {id(r): r for r in (*first, *last)}.values()):
        s = "s" if dead != 1 else ""
        console.print(f"(shares of GDP leave out {dead} round{s} whose GDP was under {MIN_GDP:g})")
    n = len(rows) if ran is None else ran
    console.print(
        f"{n} rounds in {elapsed:.1f} s "
        f"({households * n / max(elapsed, 1e-9):,.0f} household-rounds/s); money conserved every round"
    )


def _llm_summary(runner: Runner) -> None:
    assert runner.llm is not None
    d = runner.llm.decider
    u = d.usage
    t = Table(title="LLM usage", title_justify="left")
    cols = ("decisions", "calls", "input_tokens", "output_tokens", "cache_hits", "repaired", "fallbacks")
    for col in ("role", *cols):
        t.add_column(col.replace("_", " "), justify="left" if col == "role" else "right")
    for role, r in u.by_role.items():
        t.add_row(role, *(f"{int(r.get(k, 0)):,}" for k in cols))
    console.print(t)
    share = u.model_share
    console.print(  # always: how much of this "LLM run" the model actually decided
        f"decisions from the model: {u.from_model:,} of {u.decisions:,}"
        + (f" ({share:.1%})" if share is not None else "")
        + f"; {u.repaired:,} of them repaired (llm.on_invalid = {d.cfg.on_invalid!r});"
        f" {u.failed:,} failed answers, {u.capped_decisions:,} handed to the rules by a cap",
        style="bold" if share == 1.0 else "yellow",
        highlight=False,
    )
    cost = (
        f"estimated cost ${u.cost_usd:,.4f}"
        if d.cfg.price_input_per_million or d.cfg.price_output_per_million
        else "no prices set (llm.price_input_per_million, llm.price_output_per_million)"
    )
    console.print(f"model {d.cfg.model}; structured output: {d.method or 'none worked'}; {cost}")
    if u.capped:
        console.print(
            f"[yellow]{u.capped} in round {u.capped_round}: the rest of the run used the rule-based policy[/]"
        )
    if d.worker_failure:
        console.print(f"[yellow]{escape(d.worker_failure)}: the calls after it were made from the main process[/]")


def _dry_run(sc: Scenario) -> None:
    from tokenomy.policies.llm import TYPICAL_OUTPUT_TOKENS, estimate
    from tokenomy.policies.prompts import PromptError
    from tokenomy.simulation import Simulation

    if not sc.llm_roles():
        console.print(f'{sc.name}: no LLM-driven roles (set roles.<role>.policy = "llm"): 0 calls, no cost')
        return
    try:
        sim = Simulation(sc)
        rows = estimate(sc, sim.world, sim.observe())
    except (PromptError, ScenarioError) as exc:
        _fail(str(exc))
        return
    t = Table(title=f"{sc.name}: LLM calls over {sc.rounds} rounds (dry run: nothing was called)", title_justify="left")
    for col in ("role", "LLM agents", "calls / round", "calls", "input tokens", "output tokens", "cost USD"):
        t.add_column(col, justify="left" if col == "role" else "right")
    for r in rows:
        t.add_row(
            r["role"],
            f"{r['agents']:,}",
            f"{r['calls_per_round']:,}",
            f"{r['calls']:,}",
            f"{r['input_tokens']:,}",
            f"{r['output_tokens']:,}",
            f"{r['cost_usd']:,.4f}",
        )
    t.add_row(
        "total",
        "",
        "",
        f"{sum(r['calls'] for r in rows):,}",
        f"{sum(r['input_tokens'] for r in rows):,}",
        f"{sum(r['output_tokens'] for r in rows):,}",
        f"{sum(r['cost_usd'] for r in rows):,.4f}",
        style="bold",
    )
    console.print(t)
    console.print(
        f"model {sc.llm.model}; input tokens = prompt characters / 4; output tokens assume {TYPICAL_OUTPUT_TOKENS}"
        f" a call (ceiling llm.max_output_tokens = {sc.llm.max_output_tokens})"
        + ("; capped by llm.max_calls" if sc.llm.max_calls is not None else "")
    )


@app.command("llm-check")
def llm_check(
    scenario: Annotated[str, typer.Argument(help="bundled scenario name or TOML path")] = "baseline",
    set_: Annotated[list[str] | None, typer.Option("--set", "-s", help="override a field: --set llm.model=...")] = None,
) -> None:
    """Send each LLM role's first request of round 0, exactly as the run would, and report what came back.

    The prompts and schemas are the run's own (archetypes included), and so are the
    structured-output probing and llm.on_invalid. Exits 2 when the endpoint refuses the
    configuration (wrong key, model or URL: a run would stop there too), 1 when a role got no
    valid decision.
    """
    import asyncio

    from tokenomy import registry
    from tokenomy.initial import check_scale
    from tokenomy.policies.client import Request
    from tokenomy.policies.llm import LLMConfigError, LLMDecider, LLMPolicy
    from tokenomy.policies.prompts import PromptError
    from tokenomy.simulation import Simulation

    try:
        sc = load_scenario(scenario, set_ or [])
        if not sc.llm_roles():  # no LLM roles yet: check every role a model may drive
            every = [f"roles.{s.name}.policy=llm" for s in registry.roles() if s.llm]
            sc = load_scenario(scenario, [*(set_ or []), *every])
        check_scale(sc)  # the round-0 world is built below
        decider = LLMDecider(sc.llm, seed=sc.seed)
        policy = LLMPolicy(sc, decider)
    except (ScenarioError, LLMConfigError, PromptError) as exc:
        _fail(str(exc))
        return
    sim = Simulation(sc, llm=None)
    first: dict[str, Any] = {}
    for c in policy.plan(sim.world, sim.observe()):  # the calls of round 0 as the run makes them
        first.setdefault(c.role, c)
    requests = [Request(c.decision, c.system, c.user) for c in first.values()]
    try:
        outs = asyncio.run(decider.ask_all(requests, where="found by llm-check (a run would stop before round 0)"))
    except LLMConfigError as exc:
        _fail(str(exc))
        return
    finally:
        decider.close()
    t = Table(title=f"llm-check: {sc.llm.model} at {sc.llm.base_url or 'api.openai.com'}", title_justify="left")
    for col in ("role", "asks for", "valid decision", "method", "calls", "latency ms", "input tokens", "output tokens"):
        t.add_column(col)
    for role in policy.roles:
        if role not in first:
            t.add_row(role, "-", "[yellow]no LLM-driven agent[/] (llm_share too small)", "-", "0", "-", "-", "-")
    for c, o in zip(first.values(), outs, strict=True):
        if o.decision is None:
            valid = f"[red]no[/]: {escape(o.fallback_reason)}"
        else:
            valid = "[green]yes[/]" + (f" ({escape(o.repair)})" if o.repair else "")
        method = o.method if o.decision is not None else "-"
        t.add_row(
            c.role,
            c.decision.__name__,
            valid,
            method or "-",
            str(o.calls),
            f"{o.latency_ms:,.0f}",
            str(o.input_tokens),
            str(o.output_tokens),
        )
    console.print(t)
    if decider.methods_failed:
        given_up = "; ".join(f"{m}: {escape(why[:160])}" for m, why in decider.methods_failed.items())
        console.print(f"structured output given up: {given_up}", highlight=False)
    if not all(o.decision is not None for o in outs):
        raise typer.Exit(1)


@app.command("validate")
def validate_command(
    scenario: Annotated[
        str, typer.Argument(help="bundled scenario name (see `tokenomy scenarios`) or path to a TOML file")
    ] = "baseline",
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="run seeds 1..N")] = 5,
    rounds: Annotated[int, typer.Option("--rounds", "-n", min=1, help="rounds per seed")] = 300,
    burn_in: Annotated[
        int, typer.Option("--burn-in", min=0, help="rounds before the stylized facts' window (0-based rounds >= this)")
    ] = 100,
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", min=1, help="worker processes (default: one per core; 1: this one)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="output directory (default: runs/validate-<scenario>-<time>)")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="override a field: --set households=2000")
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="smaller exact checks (2,000 agents, tolerance 0.02; the test suite's)")
    ] = False,
    deviations: Annotated[
        Path | None, typer.Option("--deviations", help="deviations file (default: the committed one)")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Check a scenario against the literature: exact results, accounting identities and stylized
    facts, measured over seeds.

    Each seed is a full `tokenomy run`, recorded under --out/seed-<n> with record.payments="role",
    record.household_decisions=0 and record.snapshot_every=50 (full recording more than doubles the
    time; --set record.<field>=... overrides). Writes validation.json, validation.md and figures/.
    Exits 0 when every check passes or is a committed deviation, 1 otherwise, 2 on bad input.
    """
    from tokenomy.initial import check_scale
    from tokenomy.policies.llm import LLMConfigError
    from tokenomy.policies.prompts import PromptError
    from tokenomy.store import RunDirError
    from tokenomy.validation.run import RECORD_OVERRIDES, DeviationsError, ProgressEvent, default_jobs, validate

    try:
        sc = load_scenario(scenario, [*RECORD_OVERRIDES, *(set_ or [])], rounds=rounds)
        check_scale(sc)  # here, not in a worker process for every seed
    except ScenarioError as exc:
        _fail(str(exc))
        return
    if burn_in >= sc.rounds:
        _fail(f"--burn-in {burn_in} leaves no rounds to measure: it must be below --rounds ({sc.rounds})")
    if out is None:
        out = Path("runs") / f"validate-{sc.name}-{datetime.now():%Y%m%d-%H%M%S-%f}"
    n_jobs = jobs if jobs is not None else default_jobs()
    with _progress(quiet, "{task.fields[unit]}") as bar:
        rounds_task = bar.add_task(f"{sc.name}, {seeds} seeds", total=seeds * sc.rounds, unit="seed-rounds")
        exact_task = bar.add_task("exact checks", total=1, unit="")
        seen: dict[int, int] = {}

        def on_progress(e: ProgressEvent) -> None:
            if e.kind == "exact":
                bar.update(exact_task, completed=1)
                return
            assert e.seed is not None
            done = seen.get(e.seed, 0)  # a finished seed fills its rounds: their reports may still be queued
            step = min(1 if e.kind == "round" else sc.rounds, sc.rounds - done)
            seen[e.seed] = done + step
            bar.advance(rounds_task, step)

        try:
            result = validate(
                sc,
                range(1, seeds + 1),
                burn_in=burn_in,
                jobs=n_jobs,
                out=out,
                quick_exact=quick,
                deviations=deviations,
                progress=on_progress,
                record=None,  # RECORD_OVERRIDES are in the scenario already, under the user's --set
            )
        except (DeviationsError, FileExistsError, LLMConfigError, PromptError, RunDirError) as exc:
            _fail(str(exc))
            return
    for part in result.rich_tables():
        console.print(part)
    t = result.timings
    console.print(
        f"{seeds} seed{'s' if seeds != 1 else ''} x {sc.rounds} rounds ({sc.households:,} households) in"
        f" {t['runs_wall_s']:.1f} s with {t['jobs']} job{'s' if t['jobs'] != 1 else ''} (exact checks"
        f" {t['exact_s']:.1f} s); total {t['total_s']:.1f} s"
    )
    verdict = "[green]passed[/]" if result.passed else f"[bold red]{len(result.failures)} checks failed[/]"
    console.print(f"validation {verdict}; written to [bold]{escape(str(out))}[/] (validation.json, validation.md)")
    raise typer.Exit(0 if result.passed else 1)


@app.command()
def scenarios() -> None:
    """List the bundled scenarios and the question each asks."""
    t = Table(show_header=True)
    t.add_column("name", style="bold")
    t.add_column("question")
    for name, path in bundled_scenarios().items():
        try:
            q = load_scenario(path).question
        except ScenarioError as exc:
            q = f"[red]invalid: {exc}[/]"
        t.add_row(name, q)
    console.print(t)


# -- sweep (issue #10) --------------------------------------------------------------------------------
SWEEP_SUMMARY = ("gdp", "consumption", "unemployment_rate", "labour_share")
"""The metrics the sweep's closing table shows per cell (``tokenomy compare`` tests the differences)."""


@app.command("sweep")
def sweep_command(
    scenario: Annotated[
        str,
        typer.Argument(
            help="bundled scenario name (see `tokenomy scenarios`) or path to a TOML file", show_default=False
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="the sweep directory; the same command again continues it", show_default=False
        ),
    ],
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            "-g",
            help="a field and its values, each read as --set reads one: --grid roles.regulator.ubi=0,500"
            " (repeat for more fields: every combination runs)",
        ),
    ] = None,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="run seeds 1..N of every cell")] = 1,
    rounds: Annotated[
        int | None, typer.Option("--rounds", "-n", min=1, help="rounds per run (default: the scenario's)")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="override a field in every run: --set households=500")
    ] = None,
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", min=1, help="runs at once (default: one per core; 1: this process)")
    ] = None,
    executor: Annotated[
        str, typer.Option("--executor", help="local (worker processes) or ray (one Ray task per run)")
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="with --executor ray: the cluster to connect to (default: start a local one); its workers must"
            " see --out at the same path (a shared file system)",
        ),
    ] = None,
    budget_usd: Annotated[
        float | None,
        typer.Option("--budget-usd", min=0, help="refuse to start if the runs' estimated LLM cost, summed, exceeds it"),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Run a scenario over a grid of field values x seeds: a run directory per cell and seed in
    --out/runs, sweep.json, and sweep.parquet (one row per run x round: run, the grid fields, seed,
    and every metrics column).

    The same command again continues a stopped sweep: finished runs are skipped, stopped ones resumed
    from their last checkpoint. The endpoint's LLM limits (llm.max_concurrency,
    llm.requests_per_second) are split over the runs at once (timing only, never results); budgets
    stay per run. Exits 2 on bad input (before anything runs), 1 when a run failed, 128 + the signal
    when interrupted.
    """
    import warnings
    from typing import Literal

    from tokenomy.sweep import SweepError, SweepEvent, open_sweep, parse_grid, plan_sweep

    if executor not in ("local", "ray"):
        _fail(f"--executor {executor!r}: expected local or ray")
    where: Literal["local", "ray"] = "ray" if executor == "ray" else "local"
    try:
        plan = plan_sweep(scenario, parse_grid(grid or []), seeds, rounds=rounds, sets=set_ or [])
        if where == "ray":
            from tokenomy.sweep_executors import import_ray

            import_ray()
        cost = plan.check_budget(budget_usd) if budget_usd is not None else None
        plan.check_directory(out)  # another sweep's directory is one line too, before the progress bar
    except (ScenarioError, SweepError, ImportError) as exc:
        _fail(str(exc))
        return
    started = time.perf_counter()
    skipped = 0
    with _progress(quiet, "{task.fields[unit]}") as bar:
        n_cells, n_seeds = len(plan.cells), len(plan.seeds)
        title = f"{plan.base.name}: {n_cells} cell{'s' * (n_cells != 1)} x {n_seeds} seed{'s' * (n_seeds != 1)}"
        runs_task = bar.add_task(title, total=len(plan.runs), unit="runs")
        total_rounds = sum(r.scenario.rounds for r in plan.runs)
        rounds_task = bar.add_task("rounds", total=total_rounds, unit="run-rounds") if where == "local" else None
        seen: dict[str, int] = {}

        def on_event(e: SweepEvent) -> None:
            nonlocal skipped
            if rounds_task is not None:  # a resumed run's first report fills the rounds it had
                upto = e.rounds if e.kind == "run" else min(e.rounds, (e.round or 0) + 1)
                if upto > seen.get(e.run, 0):
                    bar.advance(rounds_task, upto - seen.get(e.run, 0))
                    seen[e.run] = upto
            if e.kind == "run":
                skipped += e.skipped
                bar.advance(runs_task)

        try:
            with warnings.catch_warnings():  # the closing lines say which runs did not finish
                warnings.simplefilter("ignore")
                plan.run(out, jobs=jobs, executor=where, address=address, progress=on_event)
        except (SweepError, ImportError) as exc:
            _fail(str(exc))
            return
        except OSError as exc:  # a full disk writing sweep.json or the table: the runs are kept, run it again
            _fail(f"{exc.filename or out}: {exc.strerror or exc}; once fixed, the same command continues the sweep")
            return
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP: the runs in flight ended interrupted
            _sweep_interrupted(exc, out)
    elapsed = time.perf_counter() - started
    sw = open_sweep(out)
    _sweep_summary(sw)
    how = f"{where}, {sw.manifest.jobs} at once" + (f"; {skipped} done before" if skipped else "")
    console.print(
        f"{len(sw.runs)} runs x {plan.base.rounds} rounds ({plan.base.households:,} households) in {elapsed:.1f} s"
        f" ({how if skipped < len(sw.runs) else 'all done before'})"
        + (f"; estimated LLM cost ${cost:,.4f} of --budget-usd {budget_usd:g}" if cost is not None else ""),
        highlight=False,
    )
    table = (
        f"sweep.parquet: {len(sw.table):,} rows, one per run x round"
        if (out / "sweep.parquet").is_file()
        else f"no sweep.parquet: the sweep is {sw.manifest.status}"
    )
    console.print(
        f"sweep directory: [bold]{escape(str(out))}[/] (sweep.json; {table}; open with tokenomy.open_sweep)",
        soft_wrap=True,
    )
    if sw.failed:
        shown = "; ".join(f"{r.path}: {r.status}" + (f" ({r.error})" if r.error else "") for r in sw.failed[:3])
        more = f" and {len(sw.failed) - 3} more" if len(sw.failed) > 3 else ""
        _fail(
            f"{len(sw.failed)} of {len(sw.runs)} runs did not finish: {shown}{more}; the table holds the rounds"
            " they recorded",
            code=1,
        )


def _sweep_interrupted(exc: KeyboardInterrupt, out: Path) -> NoReturn:
    """A sweep stopped by Ctrl-C, SIGTERM or SIGHUP: what is kept, and the command that continues it."""
    import shlex

    from tokenomy.runner import RunInterrupted
    from tokenomy.sweep import SweepError, open_sweep

    signum = exc.signum if isinstance(exc, RunInterrupted) else int(signal.SIGINT)
    try:
        runs = open_sweep(out).runs
        done = sum(r.status == "finished" for r in runs)
        stopped = sum(r.status in ("interrupted", "killed") for r in runs)
        kept = f"{done} of {len(runs)} runs finished, {stopped} stopped in flight (their tables kept)"
    except SweepError:
        kept = "no run began"
    again = shlex.join(["tokenomy", *sys.argv[1:]])
    err.print(
        f"interrupted by {signal.Signals(signum).name}: {kept}; the same command continues the sweep: {escape(again)}",
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(128 + signum)


def _sweep_summary(sw: Any) -> None:
    """Per cell: its values, runs finished, and the mean of the last rounds over its seeds."""
    import json

    t = sw.table
    if t.empty:
        return
    k = max(1, min(10, sw.manifest.rounds // 2))
    tail = t[t["round"] > t.groupby("run")["round"].transform("max") - k]
    labels = {key: (label, fmt) for key, label, fmt in SUMMARY}
    name = sw.manifest.scenario_data["name"]
    tab = Table(title=f"{name}: mean of the last {k} rounds, over seeds", title_justify="left")
    for f in sw.grid:  # the field's last two parts: roles.regulator.ubi is "regulator.ubi"
        header = ".".join(f.split(".")[-2:])
        tab.add_column(header, min_width=min(len(header), 20))
    tab.add_column("runs", justify="right")
    for key in SWEEP_SUMMARY:
        tab.add_column(labels[key][0], justify="right")
    cells: dict[int, list[Any]] = {}
    for r in sw.runs:
        cells.setdefault(r.cell, []).append(r)
    for runs in cells.values():
        rows = tail[tail["run"].isin([r.path for r in runs])].to_dict("records")
        values = [v if isinstance(v := runs[0].values[f], str) else json.dumps(v) for f in sw.grid]
        shown = [v if len(v) <= 32 else "..." + v[-29:] for v in values]  # a long path: its end says most
        finished = f"{sum(r.status == 'finished' for r in runs)}/{len(runs)}"
        means = [_mean(rows, key, labels[key][1]) if rows else "n/a" for key in SWEEP_SUMMARY]
        tab.add_row(*map(escape, shown), finished, *means)
    console.print(tab)


# -- compare (issue #10) ------------------------------------------------------------------------------
@app.command("compare")
def compare_command(
    inputs: Annotated[
        list[Path], typer.Argument(help="run directories and/or sweep directories", show_default=False)
    ],
    by: Annotated[
        list[str] | None,
        typer.Option(
            "--by",
            help="group by this scenario field, dotted (repeatable); default: a sweep's grid fields, or the fields"
            " the runs' scenarios differ on apart from the seed",
        ),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", "-m", help="a metrics.parquet column (repeatable); default: gdp, consumption, ..."),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(
            "--window", help="rounds A:B, A to B-1 like a Python slice (A: and :B too); default: the second half"
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="the figure; default: compare.png in the first sweep directory, else here"
        ),
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the numbers to this JSON file")] = None,
    unpaired: Annotated[
        bool, typer.Option("--unpaired", help="Welch's test even where two groups share their seeds")
    ] = False,
) -> None:
    """Compare runs and sweeps: per group of runs, each metric's mean over the window with its 95%
    interval, and each group's difference from the first with its interval and p-value.

    One run (seed) is one observation. The test is a paired t-test where both groups hold the same
    seeds once each (a sweep's common random numbers), else Welch's t-test. Exits 2 on bad input.
    """
    from tokenomy.compare import CompareError, compare, default_figure

    try:
        c = compare(inputs, by=by, metrics=metric, window=window, paired=not unpaired)
    except CompareError as exc:
        _fail(str(exc))
        return
    figure = out if out is not None else default_figure(inputs)
    if not figure.parent.is_dir():
        _fail(f"--out {figure}: no such directory {figure.parent}")
    try:  # before anything is printed: an unwritable --out is the one line
        c.figure(figure)
        if json_out is not None:
            c.write_json(json_out)
    except OSError as exc:
        _fail(f"{exc.filename or figure}: {exc.strerror or exc}")
    except ValueError as exc:  # matplotlib: an extension it cannot write
        _fail(f"--out {figure}: {exc}")
    console.print(escape(c.describe()), highlight=False)
    for t in c.rich_tables():
        console.print()
        console.print(t)
    console.print()
    console.print(escape(c.legend), highlight=False)
    for note in c.notes:
        console.print(f"note: {escape(note)}", highlight=False)
    wrote = f"; numbers: [bold]{escape(str(json_out))}[/]" if json_out is not None else ""
    console.print(f"figure: [bold]{escape(str(figure))}[/]{wrote}")


# -- report (issue #10) -------------------------------------------------------------------------------
@app.command("report")
def report_command(
    path: Annotated[Path, typer.Argument(help="a run directory, or a sweep directory (one with sweep.json)")],
    round_: Annotated[
        int | None,
        typer.Option("--round", min=0, help="the round whose market graph is drawn (a snapshot's; default: the last)"),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="the HTML file (default: PATH/report.html)")] = None,
    run_: Annotated[
        str | None,
        typer.Option("--run", help="sweep: the run whose rent and market graph are drawn (its path in sweep.json)"),
    ] = None,
) -> None:
    """Write one self-contained HTML page of a run's or a sweep's figures (no network needed to view it).

    Output and potential output, wages and the labour share, consumption and income by source,
    unemployment and inflation, inequality, rent by intermediary, LLM usage, and the market graph of
    one round; a sweep's as means over seeds with 95% bands per grid combination. A run that did not
    finish gets a report too, saying so at the top. Exits 2 on bad input.
    """
    from tokenomy.report import ReportError, write_report
    from tokenomy.store import RunDirError

    started = time.perf_counter()
    try:
        written = write_report(path, out, round=round_, run=run_)
    except (ReportError, RunDirError) as exc:
        _fail(str(exc))
        return
    except OSError as exc:
        _fail(f"{exc.filename or out or path}: {exc.strerror or exc}")
        return
    console.print(f"report: [bold]{escape(str(written))}[/] ({time.perf_counter() - started:.1f} s)", soft_wrap=True)


def _auto_report(path: Path) -> None:
    """The report at the end of ``tokenomy run``: a failure to write it is a warning, never the run's
    failure (the run directory is complete; ``tokenomy report`` can try again)."""
    from tokenomy.report import write_report

    started = time.perf_counter()
    try:
        written = write_report(path)
    except Exception as exc:  # whatever went wrong, the finished run stands
        err.print(
            f"[yellow]warning:[/] no report written ({escape(type(exc).__name__)}: {escape(str(exc))});"
            f" the run is complete: `tokenomy report {escape(str(path))}` tries again",
            highlight=False,
            soft_wrap=True,
        )
        return
    console.print(f"report: [bold]{escape(str(written))}[/] ({time.perf_counter() - started:.1f} s)", soft_wrap=True)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
