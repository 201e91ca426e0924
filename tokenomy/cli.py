"""The ``tokenomy`` command line: run a scenario, validate one against the literature, list the
bundled ones, check an LLM endpoint.

Errors a user can fix (a bad scenario, a bad ``--set``, an unusable output directory) print one
message and exit with code 2; no traceback.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from tokenomy.scenario import ScenarioError, bundled_scenarios, load_scenario

if TYPE_CHECKING:
    from tokenomy.runner import Runner
    from tokenomy.scenario import Scenario

app = typer.Typer(add_completion=False, no_args_is_help=True, help="tokenomy: a multi-agent economy sandbox.")
console = Console()
err = Console(stderr=True)

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


def _fail(message: str) -> None:
    # soft_wrap: a long path in the message stays on one line (greppable, copyable from logs)
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@app.command()
def run(
    scenario: Annotated[
        str, typer.Argument(help="bundled scenario name (see `tokenomy scenarios`) or path to a TOML file")
    ],
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
        Path | None, typer.Option("--replay", help="replay the LLM answers recorded in this run directory (no network)")
    ] = None,
) -> None:
    """Run a scenario and write its run directory."""
    from tokenomy.policies.llm import LLMConfigError
    from tokenomy.policies.prompts import PromptError
    from tokenomy.runner import Runner
    from tokenomy.store import RunDirError

    try:
        sc = load_scenario(scenario, set_ or [], rounds=rounds, seed=seed)
    except ScenarioError as exc:
        _fail(str(exc))
        return
    if dry_run:
        _dry_run(sc)
        return
    if out is None:
        out = Path("runs") / f"{sc.name}-{datetime.now():%Y%m%d-%H%M%S}"
    runner = Runner(sc)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with _progress(quiet, "rounds") as bar:
        task = bar.add_task(sc.name, total=sc.rounds)

        def on_round(r: int, row: dict[str, Any]) -> None:
            rows.append(row)
            bar.advance(task)

        try:
            path = runner.run(out, overwrite=overwrite, on_round=on_round, replay_from=replay)
        except (RunDirError, LLMConfigError, PromptError) as exc:
            _fail(str(exc))
            return
        finally:
            runner.close()
    elapsed = time.perf_counter() - started
    _summary(sc.name, rows, elapsed, sc.households)
    if runner.llm is not None:
        _llm_summary(runner)
    console.print(f"run directory: [bold]{path}[/]  (open with tokenomy.open_run)")


def _summary(name: str, rows: list[dict[str, Any]], elapsed: float, households: int) -> None:
    if not rows:
        return
    k = max(1, min(10, len(rows) // 2))
    first, last = rows[:k], rows[-k:]
    t = Table(title=f"{name}: mean of the first and last {k} rounds", title_justify="left")
    t.add_column("metric")
    t.add_column(f"rounds {first[0]['round']}-{first[-1]['round']}", justify="right")
    t.add_column(f"rounds {last[0]['round']}-{last[-1]['round']}", justify="right")
    for key, label, fmt in SUMMARY:
        a = sum(r[key] for r in first) / len(first)
        b = sum(r[key] for r in last) / len(last)
        t.add_row(label, fmt.format(a), fmt.format(b))
    console.print(t)
    console.print(
        f"{len(rows)} rounds in {elapsed:.1f} s "
        f"({households * len(rows) / max(elapsed, 1e-9):,.0f} household-rounds/s); money conserved every round"
    )


def _llm_summary(runner: Runner) -> None:
    assert runner.llm is not None
    d = runner.llm.decider
    u = d.usage
    t = Table(title="LLM usage", title_justify="left")
    for col in ("role", "decisions", "calls", "input tokens", "output tokens", "cache hits", "fallbacks"):
        t.add_column(col, justify="left" if col == "role" else "right")
    for role, r in u.by_role.items():
        t.add_row(
            role,
            *(
                f"{int(r[k]):,}"
                for k in ("decisions", "calls", "input_tokens", "output_tokens", "cache_hits", "fallbacks")
            ),
        )
    console.print(t)
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
    except PromptError as exc:
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
    """Send one real decision request per LLM role and report what came back."""
    import asyncio

    from tokenomy import registry
    from tokenomy.policies.llm import LLMConfigError, LLMDecider
    from tokenomy.policies.prompts import PromptError, load_prompt, user_message
    from tokenomy.simulation import Simulation

    try:
        sc = load_scenario(scenario, set_ or [])
        decider = LLMDecider(sc.llm, seed=sc.seed)
    except (ScenarioError, LLMConfigError) as exc:
        _fail(str(exc))
        return
    sim = Simulation(sc, llm=None)
    view = sim.observe()
    roles = sc.llm_roles() or [s.name for s in registry.roles() if s.llm]  # no LLM roles yet: check them all
    t = Table(title=f"llm-check: {sc.llm.model} at {sc.llm.base_url or 'api.openai.com'}", title_justify="left")
    for col in ("role", "valid decision", "method", "latency ms", "input tokens", "output tokens"):
        t.add_column(col)

    async def check() -> bool:
        ok = True
        for role in roles:
            spec, cfg = registry.role(role), sc.roles.section(role)
            r = spec.role
            try:
                system = load_prompt(str(spec.prompt_name), cfg.prompt).render(
                    decision=r.decision_model, persona=cfg.persona, policy_text=cfg.policy_text
                )
            except PromptError as exc:
                _fail(str(exc))
            o = await decider.ask(
                r.decision_model, system, user_message(0, r.observe(sim.world, view, 0), r.decision_model)
            )
            ok &= o.decision is not None
            valid = "[green]yes[/]" if o.decision is not None else f"[red]no[/]: {escape(o.fallback_reason)}"
            method = o.method if o.decision is not None else "-"
            t.add_row(role, valid, method or "-", f"{o.latency_ms:,.0f}", str(o.input_tokens), str(o.output_tokens))
        return ok

    try:
        ok = asyncio.run(check())
    finally:
        decider.close()
    console.print(t)
    if not ok:
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
    from tokenomy.policies.llm import LLMConfigError
    from tokenomy.policies.prompts import PromptError
    from tokenomy.store import RunDirError
    from tokenomy.validation.run import RECORD_OVERRIDES, DeviationsError, ProgressEvent, default_jobs, validate

    try:
        sc = load_scenario(scenario, [*RECORD_OVERRIDES, *(set_ or [])], rounds=rounds)
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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
