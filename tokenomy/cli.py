"""The ``tokenomy`` command line: run a scenario, list the bundled ones.

Errors a user can fix (a bad scenario, a bad ``--set``, an unusable output directory) print one
message and exit with code 2; no traceback.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from tokenomy.scenario import ScenarioError, bundled_scenarios, load_scenario
from tokenomy.store import RunDirError

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
) -> None:
    """Run a scenario and write its run directory."""
    from tokenomy.simulation import Simulation

    try:
        sc = load_scenario(scenario, set_ or [], rounds=rounds, seed=seed)
    except ScenarioError as exc:
        _fail(str(exc))
        return
    if out is None:
        out = Path("runs") / f"{sc.name}-{datetime.now():%Y%m%d-%H%M%S}"
    sim = Simulation(sc)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rounds"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=quiet,
        transient=False,
    ) as bar:
        task = bar.add_task(sc.name, total=sc.rounds)

        def on_round(r: int, row: dict[str, Any]) -> None:
            rows.append(row)
            bar.advance(task)

        try:
            path = sim.run(out, overwrite=overwrite, on_round=on_round)
        except RunDirError as exc:
            _fail(str(exc))
            return
    elapsed = time.perf_counter() - started
    _summary(sc.name, rows, elapsed, sc.households)
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
