"""``tokenomy compare``: runs and sweeps side by side, with intervals and a test for each difference.

The unit of observation is one run (one seed): each run's metric is averaged over a window of
rounds (by default the second half: the first is mostly the economy finding its level), so a
round-by-round series, whose rounds are autocorrelated, is never treated as independent draws.
Per group of runs: the mean over runs and its 95% Student-t interval (n - 1 df). Between a group
and the reference (the first group: the first grid value, or the first input): the difference of
means, its 95% interval and a two-sided p-value, from

- a **paired t-test** on the per-seed differences when both groups hold exactly one run per seed
  and the same seeds (a sweep's design: common random numbers, so the pairs share their draws
  until the policy acts and the difference is measured with the seed's own noise removed), or
- **Welch's t-test** (unequal variances, Welch-Satterthwaite df) otherwise, or when asked.

Groups are the values of scenario fields (``by``): a sweep's grid fields by default, or the fields
on which several run directories' scenarios differ. ``compare(...)`` returns a :class:`Comparison`
(a tidy ``table``, the per-run values, the per-round paths, ``figure(path)``), for notebooks and
the command line alike. matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

import difflib
import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from tokenomy.metrics import GDP_SHARES, METRIC_COLUMNS, MIN_GDP
from tokenomy.scenario import dotted
from tokenomy.store import Run, RunDirError, read_manifest
from tokenomy.sweep import SweepError, open_sweep

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "DEFAULT_METRICS",
    "CompareError",
    "Comparison",
    "Difference",
    "Interval",
    "compare",
    "default_figure",
    "paired_t",
    "parse_window",
    "t_interval",
    "welch_t",
]

DEFAULT_METRICS = (
    "gdp",
    "consumption",
    "unemployment_rate",
    "labour_share",
    "inflation",
    "gini_income",
    "gini_wealth",
    "rent_share",
    "income_ubi",
)
LEVEL = 0.95
NOT_GROUPED = ("seed", "name", "question", "record")  # differ between runs without making them other treatments
WELCH, PAIRED = "Welch t", "paired t"
TESTS = {
    WELCH: "Welch's unequal-variance t-test, Welch-Satterthwaite df",
    PAIRED: "paired t-test on the per-seed differences, n pairs - 1 df",
}


class CompareError(ValueError):
    """An input the user can fix (a missing directory, an unknown metric, a bad window): one line."""


# -- statistics ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """A sample's mean and its two-sided t interval (``nan`` bounds when n < 2)."""

    n: int
    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class Difference:
    """``mean(y) - mean(x)``, its interval, the two-sided p-value, the df and the test used."""

    diff: float
    low: float
    high: float
    p: float
    df: float
    test: str
    n: tuple[int, int]


def _sample(x: ArrayLike) -> NDArray[np.float64]:
    v = np.asarray(x, dtype=np.float64).ravel()
    return v[np.isfinite(v)]


def t_interval(x: ArrayLike, level: float = LEVEL) -> Interval:
    """Mean and Student-t interval on n - 1 df: the runs are few, so the normal quantile would be
    too narrow (1.96 against 4.30 for three runs)."""
    v = _sample(x)
    n = int(v.size)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan)
    m = float(v.mean())
    if n < 2:
        return Interval(n, m, math.nan, math.nan)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * float(v.std(ddof=1)) / math.sqrt(n)
    return Interval(n, m, m - half, m + half)


def welch_t(x: ArrayLike, y: ArrayLike, level: float = LEVEL) -> Difference:
    """``mean(y) - mean(x)`` by Welch's t-test: no assumption that a policy leaves the spread across
    seeds unchanged (UBI = 0 has no spread in UBI income at all)."""
    a, b = _sample(x), _sample(y)
    n = (int(a.size), int(b.size))
    d = float(b.mean() - a.mean()) if min(n) > 0 else math.nan
    if min(n) < 2:
        return Difference(d, math.nan, math.nan, math.nan, math.nan, WELCH, n)
    va, vb = float(a.var(ddof=1)) / n[0], float(b.var(ddof=1)) / n[1]
    se = math.sqrt(va + vb)
    if se == 0:  # every seed agrees: the t statistic is infinite (p 0), or 0/0 when the means agree too
        return Difference(d, d, d, _p_without_spread(d), math.inf, WELCH, n)
    df = (va + vb) ** 2 / (va**2 / (n[0] - 1) + vb**2 / (n[1] - 1))
    return _t_result(d, se, df, level, WELCH, n)


def paired_t(x: ArrayLike, y: ArrayLike, level: float = LEVEL) -> Difference:
    """``mean(y - x)`` by a paired t-test: ``x[i]`` and ``y[i]`` are the same seed's runs."""
    a, b = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length ({a.size} and {b.size})")
    dv = _sample(b - a)
    n = int(dv.size)
    d = float(dv.mean()) if n else math.nan
    if n < 2:
        return Difference(d, math.nan, math.nan, math.nan, math.nan, PAIRED, (n, n))
    se = float(dv.std(ddof=1)) / math.sqrt(n)
    if se == 0:  # every pair differs by the same amount
        return Difference(d, d, d, _p_without_spread(d), n - 1.0, PAIRED, (n, n))
    return _t_result(d, se, n - 1.0, level, PAIRED, (n, n))


def _p_without_spread(d: float) -> float:
    """The t-test's limit as the spread goes to 0: p 0 for any difference, 1 for none (what a
    constant policy metric, UBI income under UBI = 0 against UBI = 500, should show: not n/a)."""
    return 0.0 if d != 0 else 1.0


def _t_result(d: float, se: float, df: float, level: float, test: str, n: tuple[int, int]) -> Difference:
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    p = float(2 * stats.t.sf(abs(d / se), df))
    return Difference(d, d - half, d + half, p, df, test, n)


# -- the window -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """Rounds ``start`` .. ``stop - 1`` (a slice's bounds; None: open, negative: from the end)."""

    start: int | None = None
    stop: int | None = None
    text: str | None = None  # as the user gave it; None: the default

    def resolve(self, lo: int, hi: int) -> tuple[int, int]:
        """The absolute bounds over the recorded rounds ``lo .. hi - 1``."""
        if self.text is None:
            return lo + (hi - lo) // 2, hi

        def at(x: int | None, default: int) -> int:
            return default if x is None else (hi + x if x < 0 else x)

        return at(self.start, lo), at(self.stop, hi)


def parse_window(text: str | slice | None) -> Window:
    """``"A:B"``, ``"A:"``, ``":B"`` (or a ``slice``) as a :class:`Window`; None is the default."""
    if text is None:
        return Window()
    if isinstance(text, slice):
        if text.step not in (None, 1):
            raise CompareError(f"window {text}: a step is not supported")
        return Window(text.start, text.stop, f"{'' if text.start is None else text.start}:"
                      f"{'' if text.stop is None else text.stop}")  # fmt: skip
    parts = text.strip().split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start, stop = (int(p) if p.strip() else None for p in parts)
    except ValueError:
        raise CompareError(
            f"--window {text!r}: expected A:B, rounds A to B-1 like a Python slice (A: and :B allowed, e.g. 60:120)"
        ) from None
    return Window(start, stop, text.strip())


# -- inputs ---------------------------------------------------------------------------------------
@dataclass
class _Run:
    """One run: where it came from, its seed, its grid values (sweeps), its metrics rows."""

    name: str  # how tables and notes name it
    source: int  # index of the input it came from
    seed: int | None
    status: str
    frame: pd.DataFrame
    grid: dict[str, Any] = field(default_factory=dict)
    manifest_dir: Path | None = None  # read for a field not in the grid
    base: dict[str, Any] | None = None  # the scenario when no manifest can be read (a sweep's scenario_data)
    _scenario: dict[str, Any] | None = None

    @property
    def scenario(self) -> dict[str, Any]:
        if self._scenario is None:
            if self.manifest_dir is not None and (self.manifest_dir / "manifest.json").is_file():
                try:
                    self._scenario = read_manifest(self.manifest_dir)["scenario"]
                except RunDirError as exc:
                    raise CompareError(str(exc)) from None
            else:
                self._scenario = {**(self.base or {}), "seed": self.seed}
        return self._scenario

    def value(self, name: str) -> Any:
        """The scenario field ``name`` (a dotted path) of this run: the grid's, else the manifest's."""
        if name in self.grid:
            return self.grid[name]
        return _dotted(self.scenario, name, self.name)


_MISSING = object()


def _dotted(data: Mapping[str, Any], name: str, where: str) -> Any:
    node: Any = data
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            close = difflib.get_close_matches(name, list(dotted(data)), n=3)
            hint = f" (close: {', '.join(close)})" if close else ""
            raise CompareError(f"--by {name}: no such scenario field in {where}{hint}")
        node = node[part]
    return node



@dataclass
class _Input:
    given: str
    runs: list[_Run]
    grid: dict[str, list[Any]] | None  # None: a run directory


def _load(path: Path, index: int, notes: list[str]) -> _Input:
    given = str(path)
    if not path.exists():
        raise CompareError(f"{given}: no such run or sweep directory")
    if not path.is_dir():
        raise CompareError(f"{given}: not a directory (give a run directory or a sweep directory)")
    if (path / "sweep.json").is_file():
        return _load_sweep(path, index, notes)
    if not (path / "manifest.json").is_file():
        raise CompareError(f"{given}: neither a run directory (no manifest.json) nor a sweep directory (no sweep.json)")
    try:
        run = Run(path)
        frame = run.metrics
    except RunDirError as exc:
        raise CompareError(str(exc)) from None
    except (OSError, ValueError) as exc:  # a damaged table
        raise CompareError(f"{given}: cannot read its metrics ({exc})") from None
    seed = run.manifest["scenario"].get("seed")
    r = _Run(given, index, seed, run.status, frame, manifest_dir=path, _scenario=run.manifest["scenario"])
    return _Input(given, [r], None)


def _load_sweep(path: Path, index: int, notes: list[str]) -> _Input:
    """A sweep's runs, from ``tokenomy.sweep.open_sweep``: its table once every run ended, else the
    rounds its run directories hold so far."""
    given = str(path)
    try:
        sw = open_sweep(path)
        rows = sw.table
    except SweepError as exc:
        raise CompareError(str(exc)) from None
    except (OSError, ValueError) as exc:  # a damaged table
        raise CompareError(f"{path / 'sweep.parquet'}: cannot be read ({exc})") from None
    if sw.status not in ("finished", "failed"):
        notes.append(f"{given}: still running (no whole sweep.parquet yet), read from its run directories")
    if "run" not in rows.columns:
        raise CompareError(f"{path / 'sweep.parquet'}: no 'run' column (the run directory of each row)")
    frames = {str(k): f.drop(columns="run") for k, f in rows.groupby("run", sort=False)}
    runs: list[_Run] = []
    empty = []
    for rec in sw.runs:
        frame = frames.get(rec.path)
        if frame is None or frame.empty:
            empty.append(rec.path)
            continue
        values, base = dict(rec.values), sw.manifest.scenario_data
        runs.append(_Run(f"{given}/{rec.path}", index, rec.seed, rec.status, frame, values, path / rec.path, base))
    if empty:
        notes.append(f"{given}: {len(empty)} of {len(sw.runs)} runs have no rounds recorded (left out)")
    return _Input(given, runs, dict(sw.grid))


# -- grouping -------------------------------------------------------------------------------------
def _key(v: Any) -> Any:
    """A hashable stand-in for a scenario value (lists and tables from TOML are not hashable)."""
    if isinstance(v, Mapping):
        return tuple(sorted((k, _key(x)) for k, x in v.items()))
    if isinstance(v, list | tuple):
        return tuple(_key(x) for x in v)
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)  # a grid's 500 and a manifest's 500.0 are the same treatment
    return v


def _show(v: Any) -> str:
    """A value as a short label: paths (a prompt A/B) by their file name."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str):
        return (Path(v).name or v) if ("/" in v or len(v) > 24) else v
    if isinstance(v, int):
        return str(v)
    return json.dumps(v, default=str)


def _labels(values: Sequence[Any]) -> tuple[dict[Any, str], dict[str, Any]]:
    """Labels of one field's distinct values, in order, and the values behind labels that needed an
    index: two values that would read the same (``a/x.md``, ``b/x.md``) become ``x.md#1``, ``x.md#2``."""
    shown = {_key(v): (_show(v), v) for v in values}
    count: dict[str, int] = {}
    for s, _ in shown.values():
        count[s] = count.get(s, 0) + 1
    seen: dict[str, int] = {}
    out: dict[Any, str] = {}
    indexed: dict[str, Any] = {}
    for k, (s, v) in shown.items():
        if count[s] > 1:
            seen[s] = seen.get(s, 0) + 1
            s = f"{s}#{seen[s]}"
            indexed[s] = v
        out[k] = s
    return out, indexed


def _default_by(inputs: Sequence[_Input]) -> list[str]:
    """A sweep's grid fields; with run directories among the inputs, the fields whose values differ
    (not the seed, the name or what was recorded: ``record.*`` shapes the tables, not the economy)."""
    if all(i.grid is not None for i in inputs):
        return list(dict.fromkeys(f for i in inputs for f in (i.grid or {})))
    flats = [(dotted(r.scenario) | r.grid) for i in inputs for r in i.runs]
    keys = list(dict.fromkeys(k for f in flats for k in f))
    return [
        k
        for k in keys
        if k.split(".")[0] not in NOT_GROUPED and len({_key(f.get(k, _MISSING)) for f in flats}) > 1
    ]


def _short(by: Sequence[str]) -> list[str]:
    """The fields' last parts (``ubi``), or their whole dotted names when two would read the same."""
    shorts = [f.rsplit(".", 1)[-1] for f in by]
    return shorts if len(set(shorts)) == len(shorts) else list(by)


@dataclass(frozen=True)
class Group:
    """Runs that share the ``by`` fields' values (or an input, when nothing differs)."""

    label: str
    values: dict[str, Any]
    runs: tuple[str, ...]
    seeds: tuple[int | None, ...]


def _groups(inputs: Sequence[_Input], by: Sequence[str]) -> tuple[list[Group], dict[str, str], list[str]]:
    """The groups in order (the reference first), each run's group label, and notes on the labels."""
    runs = [r for i in inputs for r in i.runs]
    if not by:
        groups = [
            Group(i.given, {}, tuple(r.name for r in i.runs), tuple(r.seed for r in i.runs)) for i in inputs if i.runs
        ]
        return groups, {r.name: inputs[r.source].given for r in runs}, []
    values = {r.name: tuple(r.value(f) for f in by) for r in runs}
    notes: list[str] = []
    grids: dict[str, list[Any]] = {}
    for i in inputs:
        for f, vs in (i.grid or {}).items():
            grids.setdefault(f, []).extend(v for v in vs if _key(v) not in {_key(x) for x in grids.get(f, [])})

    def rank(j: int, v: Any, seen: list[Any]) -> int:
        grid = [_key(x) for x in grids.get(by[j], [])]
        return grid.index(_key(v)) if _key(v) in grid else len(grid) + seen.index(_key(v))

    seen_per_field: list[list[Any]] = [list(dict.fromkeys(_key(v[j]) for v in values.values())) for j in range(len(by))]
    order = sorted(
        {tuple(_key(x) for x in v): v for v in values.values()}.items(),
        key=lambda kv: tuple(rank(j, x, seen_per_field[j]) for j, x in enumerate(kv[1])),
    )
    labelled = [_labels([v[j] for _, v in order]) for j in range(len(by))]
    per_field = [lab for lab, _ in labelled]
    for f, (_, indexed) in zip(by, labelled, strict=True):
        if indexed:
            notes.append(f"{f}: " + "; ".join(f"{lab} = {v}" for lab, v in indexed.items()))
    names = _short(by)

    def label(key: tuple[Any, ...]) -> str:
        parts = [per_field[j][k] for j, k in enumerate(key)]
        return parts[0] if len(by) == 1 else ", ".join(f"{n}={p}" for n, p in zip(names, parts, strict=True))

    groups, of = [], {}
    for key, v in order:
        members = [r for r in runs if tuple(_key(x) for x in values[r.name]) == key]
        lab = label(key)
        groups.append(Group(lab, dict(zip(by, v, strict=True)), tuple(r.name for r in members),
                            tuple(r.seed for r in members)))  # fmt: skip
        of.update({r.name: lab for r in members})
    return groups, of, notes


# -- the comparison -------------------------------------------------------------------------------
@dataclass
class Comparison:
    """What ``compare`` found: ``table`` (tidy: one row per metric and group), ``values`` (one row
    per metric and run: the window means the statistics are computed on), ``paths`` (per metric,
    group and round: mean over runs and a 95% band), ``notes`` (what was left out and why)."""

    inputs: list[str]
    by: list[str]
    groups: list[Group]
    metrics: list[str]
    window: tuple[int, int]
    window_default: bool
    table: pd.DataFrame
    values: pd.DataFrame
    notes: list[str]
    rounds: pd.DataFrame  # run, group, round and the metrics: the per-round rows the paths are drawn from
    paired: bool = True

    @property
    def window_text(self) -> str:
        a, b = self.window
        how = " (the second half: the default; --window A:B to choose)" if self.window_default else ""
        return f"rounds {a}-{b - 1}{how}"

    @cached_property
    def paths(self) -> pd.DataFrame:
        """Per metric, group and round: runs, mean over runs, 95% t band (n/a with one run); the
        report's bands (``figures.summarise``), so the two never draw different intervals."""
        from tokenomy.figures import summarise

        out = []
        for m in self.metrics:
            s = summarise(self.rounds[["group", "round", m]].dropna(), [m], by="group")
            s = s.rename(columns={m: "mean", f"{m}_lo": "ci_low", f"{m}_hi": "ci_high"}).assign(metric=m)
            out.append(s[["metric", "group", "round", "n", "mean", "ci_low", "ci_high"]])
        cols = ["metric", "group", "round", "n", "mean", "ci_low", "ci_high"]
        return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=cols)

    def to_dict(self) -> dict[str, Any]:
        """The numbers as JSON-ready data (NaN as null)."""

        def clean(x: Any) -> Any:
            if isinstance(x, float | np.floating):
                return float(x) if math.isfinite(x) else None
            if isinstance(x, np.integer):
                return int(x)
            if isinstance(x, dict):
                return {str(k): clean(v) for k, v in x.items()}
            if isinstance(x, list | tuple):
                return [clean(v) for v in x]
            return x

        data: dict[str, Any] = clean(
            {
                "inputs": self.inputs,
                "by": self.by,
                "window": {"start": self.window[0], "stop": self.window[1], "default": self.window_default},
                "level": LEVEL,
                "tests": TESTS,
                "groups": [
                    {"label": g.label, "values": g.values, "runs": list(g.runs), "seeds": list(g.seeds)}
                    for g in self.groups
                ],
                "table": self.table.to_dict(orient="records"),
                "values": self.values.to_dict(orient="records"),
                "notes": self.notes,
            }
        )
        return data

    def write_json(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
        return p

    def describe(self) -> str:
        """One line: what was compared, how it was grouped, the reference and the window."""
        by = (
            f"by {', '.join(self.by)}"
            if self.by
            else "one per input (no scenario field differs between them but the seed)"
        )
        n, k = sum(len(g.runs) for g in self.groups), len(self.groups)
        return (
            f"{n} run{'s' if n != 1 else ''} in {k} group{'s' if k != 1 else ''}, {by};"
            f" reference {self.groups[0].label}; window {self.window_text}; each run's metric is its mean over"
            " the window"
        )

    @property
    def legend(self) -> str:
        """What the table's columns are, and which tests its rows used."""
        used = [t for t in TESTS if (self.table["test"] == t).any()]
        tests = "; ".join(f"{t}: {TESTS[t]}" for t in used)
        return (
            "mean and 95% CI over runs (Student t, n-1 df; n/a with one run); diff: group mean minus the"
            " reference's, its 95% CI and two-sided p" + (f" ({tests})" if tests else "")
        )

    def rich_tables(self) -> list[Any]:
        """One rich table per metric, for the command line (rich is imported here, not at the top)."""
        from rich import box
        from rich.table import Table

        out: list[Any] = []
        head = ", ".join(_short(self.by)) if self.by else "input"
        for m in self.metrics:
            rows = self.table[self.table["metric"] == m]
            if rows.empty:
                continue
            t = Table(title=m, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, show_edge=False,
                      collapse_padding=True)  # fmt: skip
            for col in (head, "n", "mean", "95% CI", "diff", "95% CI", "p", "test"):
                t.add_column(col, justify="left" if col in (head, "test") else "right")
            fmt = _Format(rows[["mean", "ci_low", "ci_high", "diff"]].to_numpy(dtype=np.float64))
            for r in rows.itertuples():
                ref = bool(r.reference)
                t.add_row(
                    str(r.group),
                    str(r.n),
                    fmt(float(r.mean)),
                    fmt.ci(float(r.ci_low), float(r.ci_high)),
                    "ref" if ref else fmt(float(r.diff), sign=True),
                    "" if ref else fmt.ci(float(r.diff_low), float(r.diff_high), sign=True),
                    "" if ref else _p(float(r.p)),
                    "" if ref else str(r.test),
                )
            out.append(t)
        return out

    def figure(self, path: str | Path) -> Path:
        """Write the figure: per metric, the group means with their 95% intervals (and each run's
        value as a dot), and the metric's path per group over rounds (mean over runs, 95% band),
        the window shaded. PNG through the Agg canvas: no pyplot state is touched."""
        import textwrap

        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        shown = [m for m in self.metrics if (self.table["metric"] == m).any()]
        k = max(1, len(shown))
        # long labels (several fields, paths) are tagged A, B, ... on the axes and spelled out in the legend
        long = any(len(g.label) > 16 for g in self.groups)
        tags = [_tag(i) if long else g.label for i, g in enumerate(self.groups)]
        legend = [f"{t}: {g.label}" if long else g.label for t, g in zip(tags, self.groups, strict=True)]
        legend = [f"{x} (n={len(g.runs)})" for x, g in zip(legend, self.groups, strict=True)]
        cols = 1 if long else min(4, len(self.groups) + 1)
        extra = 0.25 * (len(self.groups) + 1) / cols if long else 0.3
        fig = Figure(figsize=(12, 1.0 + extra + 2.7 * k), dpi=100, layout="constrained")
        axes = fig.subplots(k, 2, squeeze=False, gridspec_kw={"width_ratios": [1, 2.4]})
        by = ", ".join(self.by) if self.by else "input"
        title = (
            f"compare by {by}: window {self.window_text.split(' (')[0]}; error bars and bands: 95% t intervals"
            " over runs (seeds)"
        )
        fig.suptitle(textwrap.fill(title, 120), fontsize=11)
        colours = [f"C{i % 10}" for i in range(len(self.groups))]
        for row, m in enumerate(shown):
            self._means_panel(axes[row, 0], m, colours, tags)
            self._path_panel(axes[row, 1], m, colours)
            axes[row, 1].xaxis.set_major_locator(MaxNLocator(integer=True))
        handles, names = axes[0, 1].get_legend_handles_labels()
        spelled = dict(zip([g.label for g in self.groups], legend, strict=True))
        fig.legend(handles, [spelled.get(x, x) for x in names], loc="outside lower center", ncols=cols, fontsize=8)
        p = Path(path)
        FigureCanvasAgg(fig)
        with warnings.catch_warnings():  # very many groups: the layout gives up on a panel, nothing worse
            warnings.filterwarnings("ignore", "constrained_layout not applied", UserWarning)
            fig.savefig(p)
        return p

    def _means_panel(self, ax: Axes, m: str, colours: list[str], tags: list[str]) -> None:
        rows = self.table[self.table["metric"] == m].set_index("group")
        ax.set_title(f"{m}: window mean per run", fontsize=10, loc="left")
        vals = self.values[self.values["metric"] == m]
        rng = np.random.default_rng(0)  # the dots' jitter: the same figure every time
        ticks = []  # each group's tag and, under it, its difference's p-value
        for x, g in enumerate(self.groups):
            r = rows.loc[g.label]
            test = str(r["test"]).split(" ")[0]  # paired, Welch
            ticks.append(f"{tags[x]}\n(reference)" if x == 0 else f"{tags[x]}\np {_p(float(r['p']))}, {test}")
            mine = vals[vals["group"] == g.label]["value"].to_numpy(dtype=np.float64)
            ax.scatter(x + rng.uniform(-0.12, 0.12, mine.size), mine, s=12, color=colours[x], alpha=0.45, lw=0)
            if math.isfinite(r["ci_low"]):
                yerr = [[r["mean"] - r["ci_low"]], [r["ci_high"] - r["mean"]]]
                ax.errorbar([x], [r["mean"]], yerr=yerr, fmt="o", color=colours[x], capsize=4, ms=6)
            elif math.isfinite(r["mean"]):
                ax.plot([x], [r["mean"]], "o", color=colours[x], mfc="white", ms=6)  # n = 1: no interval
        ax.set_xticks(range(len(self.groups)), ticks, fontsize=8)
        ax.yaxis.set_major_formatter(_tick)
        ax.set_xlim(-0.5, len(self.groups) - 0.5)
        ax.grid(alpha=0.3, axis="y")

    def _path_panel(self, ax: Axes, m: str, colours: list[str]) -> None:
        ax.set_title(f"{m} per round: mean over runs, 95% band", fontsize=10, loc="left")
        a, b = self.window
        ax.axvspan(a - 0.5, b - 0.5, color="0.5", alpha=0.12, lw=0, label="window")
        paths = self.paths[self.paths["metric"] == m]
        for i, g in enumerate(self.groups):
            p = paths[paths["group"] == g.label].sort_values("round")
            x = p["round"].to_numpy()
            mean = p["mean"].to_numpy(dtype=np.float64)
            ax.plot(x, mean, color=colours[i], lw=1.4, label=g.label)  # drawn when empty too: the legend's entry
            ax.fill_between(x, p["ci_low"].to_numpy(dtype=np.float64), p["ci_high"].to_numpy(dtype=np.float64),
                            color=colours[i], alpha=0.18, lw=0)  # fmt: skip
        ax.set_xlabel("round (month)")
        ax.yaxis.set_major_formatter(_tick)
        ax.grid(alpha=0.3)


def _tag(i: int) -> str:
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[i] if i < 26 else f"G{i + 1}"


def _tick(v: float, _: object = None) -> str:
    """An axis tick: thousands separated, no offset or 1e6 above the axis."""
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"


class _Format:
    """One metric's numbers at a common precision: about four significant digits of its largest
    value, thousands as k and millions as M (so a row of GDP fits an 80-column terminal)."""

    def __init__(self, values: NDArray[np.float64]) -> None:
        v = np.abs(values[np.isfinite(values)])
        scale = float(v.max()) if v.size else 0.0
        self.unit, self.div = ("M", 1e6) if scale >= 1e7 else ("k", 1e3) if scale >= 1e5 else ("", 1.0)
        s = scale / self.div
        self.dec = 3 if s == 0 else int(min(8, max(0, 3 - math.floor(math.log10(s)))))

    def __call__(self, x: float, *, sign: bool = False) -> str:
        if not math.isfinite(x):
            return "n/a"
        return f"{x / self.div:{'+' if sign else ''},.{self.dec}f}{self.unit}"

    def ci(self, lo: float, hi: float, *, sign: bool = False) -> str:
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return "n/a"
        return f"[{self(lo, sign=sign)}, {self(hi, sign=sign)}]"


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return f"{p:.1e}" if p < 0.001 else f"{p:.3f}"


def default_figure(inputs: Sequence[str | Path]) -> Path:
    """Where ``tokenomy compare`` draws by default: ``compare.png`` beside the data in the first
    sweep directory (a sweep's comparison belongs with it), else in the current directory."""
    for p in inputs:
        if (Path(p) / "sweep.json").is_file():
            return Path(p) / "compare.png"
    return Path("compare.png")


def _window_values(
    runs: Sequence[_Run], metric: str, window: tuple[int, int], notes: list[str]
) -> tuple[dict[str, float], pd.DataFrame]:
    """Each run's mean of ``metric`` over the window, and the per-round rows it used; rounds whose
    value is missing (or, for a ratio over GDP, whose GDP is under ``MIN_GDP``) are left out and
    counted in ``notes``."""
    a, b = window
    out: dict[str, float] = {}
    frames = []
    dropped = rounds_without = 0
    for r in runs:
        f = r.frame
        if metric not in f.columns:
            continue
        v = pd.to_numeric(f[metric], errors="coerce").astype(np.float64)
        if metric in GDP_SHARES and "gdp" in f.columns:
            v = v.where(pd.to_numeric(f["gdp"], errors="coerce") >= MIN_GDP)
        keep = v.notna().to_numpy()
        inside = ((f["round"] >= a) & (f["round"] < b)).to_numpy()
        dropped += int((inside & ~keep).sum())
        frames.append(pd.DataFrame({"run": r.name, "round": f["round"].to_numpy()[keep], metric: v.to_numpy()[keep]}))
        w = v.to_numpy()[inside & keep]
        if w.size:
            out[r.name] = float(w.mean())
        elif inside.any():
            rounds_without += 1
    if dropped:
        why = f"GDP under {MIN_GDP:g} or no value" if metric in GDP_SHARES else "no value"
        s = "s" if dropped != 1 else ""
        left = f"; {rounds_without} run{'s' if rounds_without != 1 else ''} had none left" if rounds_without else ""
        notes.append(f"{metric}: {dropped} round{s} of the window left out ({why}){left}")
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run", "round", metric])
    return out, rows


def _check_metrics(asked: Sequence[str], runs: Sequence[_Run]) -> None:
    have = list(dict.fromkeys(c for r in runs for c in r.frame.columns if c != "round"))
    for m in asked:
        if not any(m in r.frame.columns for r in runs) or m == "round":
            known = list(dict.fromkeys([*have, *METRIC_COLUMNS]))
            close = difflib.get_close_matches(m, known, n=4, cutoff=0.6)
            hint = f"close: {', '.join(close)}" if close else "tokenomy.metrics.METRIC_COLUMNS lists the built-in ones"
            raise CompareError(f"--metric {m}: no such metric in the runs' metrics ({hint})")


def compare(
    inputs: str | Path | Sequence[str | Path],
    *,
    by: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    window: str | slice | None = None,
    paired: bool = True,
) -> Comparison:
    """Compare runs and sweeps (directories) group against group, one run = one observation.

    ``by``: dotted scenario fields to group on (default: the sweeps' grid fields; for run
    directories, the fields their scenarios differ on apart from the seed; if none, one group per
    input). ``metrics``: metrics.parquet columns (default ``DEFAULT_METRICS``). ``window``:
    ``"A:B"`` (rounds A..B-1; negative counts from the end) or a slice; default: the second half of
    the recorded rounds. ``paired``: use the paired t-test where two groups share their seeds
    (False: Welch's test throughout).

    Raises:
        CompareError: a missing or unreadable directory, an unknown field or metric, a bad window.
    """
    items = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    if not items:
        raise CompareError("nothing to compare: give run directories or sweep directories")
    win = parse_window(window)
    notes: list[str] = []
    loaded = [_load(Path(p), i, notes) for i, p in enumerate(items)]
    seen: set[Path] = set()
    for inp in loaded:  # the same run given twice (a run and the sweep it belongs to) counts once
        kept = []
        for r in inp.runs:
            where = (r.manifest_dir or Path(r.name)).resolve()
            if where in seen:
                notes.append(f"{r.name}: given twice, counted once")
                continue
            seen.add(where)
            kept.append(r)
        inp.runs = kept
    for inp in loaded:
        if none := [r.name for r in inp.runs if r.frame.empty or "round" not in r.frame.columns]:
            notes.append(f"no rounds recorded, left out: {', '.join(none)}")
            inp.runs = [r for r in inp.runs if r.name not in none]
    runs = [r for inp in loaded for r in inp.runs]
    if not runs:
        raise CompareError(f"{', '.join(map(str, items))}: no run with recorded rounds to compare")
    asked = list(metrics) if metrics else [m for m in DEFAULT_METRICS if any(m in r.frame.columns for r in runs)]
    _check_metrics(asked, runs)
    fields = list(by) if by else _default_by(loaded)
    groups, group_of, label_notes = _groups(loaded, fields)
    notes.extend(label_notes)

    recorded = sorted({int(x) for r in runs for x in r.frame["round"]})
    lo, hi = recorded[0], recorded[-1] + 1
    a, b = win.resolve(lo, hi)
    if a >= b:
        raise CompareError(f"--window {win.text}: holds no round (rounds {a} to {b - 1}: A must be below B)")
    if not any(a <= x < b for x in recorded):
        raise CompareError(
            f"--window {win.text}: no recorded round in rounds {a}-{b - 1} (the runs hold rounds {lo}-{hi - 1})"
        )
    a, b = max(a, lo), min(b, hi)  # what the window holds, as the output says it
    if outside := [r.name for r in runs if not ((r.frame["round"] >= a) & (r.frame["round"] < b)).any()]:
        notes.append(f"no round in the window, so in no sample: {', '.join(outside)}")
    unfinished = [f"{r.name} ({r.status})" for r in runs if r.status != "finished"]
    if unfinished:
        notes.append(f"not finished, their recorded rounds used: {', '.join(unfinished)}")

    seed_of = {r.name: r.seed for r in runs}
    table_rows: list[dict[str, Any]] = []
    value_rows: list[dict[str, Any]] = []
    per_round: pd.DataFrame | None = None
    for m in asked:
        vals, rows = _window_values(runs, m, (a, b), notes)
        per_round = rows if per_round is None else per_round.merge(rows, on=["run", "round"], how="outer")
        samples = {g.label: [(seed_of[n], vals[n]) for n in g.runs if n in vals] for g in groups}
        for g in groups:
            value_rows.extend(
                {"metric": m, "group": g.label, "run": n, "seed": seed_of[n], "value": vals[n]}
                for n in g.runs
                if n in vals
            )
        ref = groups[0].label
        for i, g in enumerate(groups):
            x = np.array([v for _, v in samples[g.label]], dtype=np.float64)
            iv = t_interval(x)
            row: dict[str, Any] = {
                "metric": m,
                "group": g.label,
                **{f: g.values.get(f) for f in fields},
                "n": iv.n,
                "mean": iv.mean,
                "ci_low": iv.low,
                "ci_high": iv.high,
                "reference": i == 0,
            }
            if i == 0:
                row |= {"diff": math.nan, "diff_low": math.nan, "diff_high": math.nan, "p": math.nan,
                        "df": math.nan, "test": ""}  # fmt: skip
            else:
                d = _difference(samples[ref], samples[g.label], paired=paired)
                row |= {"diff": d.diff, "diff_low": d.low, "diff_high": d.high, "p": d.p, "df": d.df, "test": d.test}
            table_rows.append(row)
    assert per_round is not None
    per_round.insert(1, "group", per_round["run"].map(group_of))
    cols = ["metric", "group", *fields, "n", "mean", "ci_low", "ci_high", "reference", "diff", "diff_low",
            "diff_high", "p", "df", "test"]  # fmt: skip
    return Comparison(
        inputs=[str(p) for p in items],
        by=fields,
        groups=groups,
        metrics=asked,
        window=(a, b),
        window_default=win.text is None,
        table=pd.DataFrame(table_rows, columns=list(dict.fromkeys(cols))),
        values=pd.DataFrame(value_rows, columns=["metric", "group", "run", "seed", "value"]),
        notes=notes,
        rounds=per_round.sort_values(["run", "round"], ignore_index=True),
        paired=paired,
    )


def _difference(
    ref: Iterable[tuple[int | None, float]], other: Iterable[tuple[int | None, float]], *, paired: bool
) -> Difference:
    """Paired on the seeds when both samples hold each of the same seeds once (at least two), else Welch."""
    x, y = list(ref), list(other)
    sx, sy = [s for s, _ in x], [s for s, _ in y]
    if (
        paired
        and None not in sx
        and None not in sy
        and len(set(sx)) == len(sx)
        and len(set(sy)) == len(sy)
        and set(sx) == set(sy)
        and len(sx) >= 2
    ):
        a, b = dict(x), dict(y)
        order = sorted(a, key=lambda s: s or 0)
        return paired_t([a[s] for s in order], [b[s] for s in order])
    return welch_t([v for _, v in x], [v for _, v in y])
