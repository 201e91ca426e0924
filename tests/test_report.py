"""``tokenomy report``: one self-contained HTML page per run or sweep, its figures rendered in a browser.

The page needs nothing from the network (every figure a ``data:`` PNG, no script, no link), has every
section, says prominently when a run did not finish, and opens in headless Chromium without a
console error, every image decoded. The numbers behind the figures are checked against the run's own
tables: rent by intermediary adds up to the ``rent`` metric in every round, the grouped market graph
keeps every payment of its round, and a sweep's bands are Student-t intervals over seeds.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import tokenomy
from tokenomy import figures
from tokenomy.cli import app
from tokenomy.report import ReportError, grouped_graph, rent_flows, sweep_frame, write_report
from tokenomy.scenario import load_scenario
from tokenomy.store import Run
from tokenomy.sweep import SweepManifest, SweepRun
from tokenomy.testing.fake_openai import FakeOpenAIServer

TINY = ["households=60", "firms=4", "banks=1"]
# every rail in use, so rent has all three kinds of collector; more households, firms and banks than
# the market graph draws one by one
RUN = ["households=150", "firms=12", "banks=6", "rounds=6", "rails.chain_adoption=0.3", "rails.bank_transfer_fee=0.002"]
SECTIONS = ["output", "wages", "income", "labour", "inequality", "rent", "llm", "graph"]
PNG = b"\x89PNG\r\n\x1a\n"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


class _Page(HTMLParser):
    """Every tag, its attributes, the ids of the sections and the images' sources."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def of(self, tag: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag]

    @property
    def sections(self) -> list[str]:
        return [str(a.get("id")) for a in self.of("section")]

    @property
    def images(self) -> list[bytes]:
        out = []
        for a in self.of("img"):
            src = str(a.get("src"))
            assert src.startswith("data:image/png;base64,"), src[:60]
            out.append(base64.b64decode(src.split(",", 1)[1], validate=True))
        return out


def _self_contained(page: _Page) -> None:
    """No script, style sheet, frame or object to fetch; every link within the page; every image inline."""
    assert not [t for t, _ in page.tags if t in ("script", "link", "iframe", "object", "embed", "base")]
    for _, attrs in page.tags:
        for name in ("src", "href", "srcset", "poster", "data"):
            value = attrs.get(name)
            if value is None:
                continue
            assert not value.lower().startswith(("http:", "https:", "//", "file:")), f"{name}={value[:80]}"
            assert value.startswith(("data:image/png;base64,", "#")), f"{name}={value[:80]}"
    assert all(img[:8] == PNG for img in page.images)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sc = load_scenario("baseline", RUN)
    return tokenomy.Runner(sc).run(tmp_path_factory.mktemp("report") / "run")


@pytest.fixture(scope="module")
def report(run_dir: Path) -> Path:
    return write_report(run_dir)


# -- one run -------------------------------------------------------------------------------------------
def test_a_run_report_is_one_self_contained_page_with_every_section(report: Path, run_dir: Path) -> None:
    assert report == run_dir / "report.html"
    text = report.read_text(encoding="utf-8")
    page = _Page(text)
    _self_contained(page)
    assert page.sections == SECTIONS
    assert len(page.images) == 7  # five series, rent, the graph; no LLM figure: no role was LLM-driven
    assert "No role was LLM-driven in this run" in text
    assert "tokenomy report: baseline, seed 1</h1>" in text
    assert "did not finish" not in text
    assert "sound in every round" in text  # the books' identity, from the metrics
    assert "150 households, 12 firms, 6 banks" in text
    assert "6 of 6 recorded (rounds 0-5)" in text
    assert "Round 5: 150 households in 10 equal groups by wealth, 12 firms in 5 equal groups by workforce" in text


def test_rent_by_intermediary_adds_up_to_the_rent_metric(run_dir: Path) -> None:
    run = Run(run_dir)
    rent, margin = rent_flows(run, run.world(5).layout)
    per_round = rent.groupby("round")["amount"].sum()
    np.testing.assert_allclose(
        per_round.reindex(run.metrics["round"]).fillna(0).to_numpy(), run.metrics["rent"], atol=1e-6
    )
    assert set(rent["intermediary"]) == {"card network (card fees)", "chain operator (chain fees)",
                                         "banks (bank-transfer fees)"}  # fmt: skip
    banks = rent.loc[rent["intermediary"] == "banks (bank-transfer fees)", "collector"]
    assert banks.nunique() > 1 and banks.str.fullmatch(r"b\d").all()  # named, one by one
    p = run.payments
    kind = p["kind"].astype(str)
    expected = (
        p[kind == "loan_interest"].groupby("round")["amount"].sum()
        - p[kind == "deposit_interest"].groupby("round")["amount"].sum()
    ).fillna(0)
    got = margin.set_index("round")["amount"]
    np.testing.assert_allclose(got.reindex(expected.index).fillna(0), expected, atol=1e-6)


def test_the_grouped_graph_keeps_every_payment_of_its_round_in_a_few_nodes(run_dir: Path) -> None:
    run = Run(run_dir)
    world = run.world(5)
    pay = run.payments[run.payments["round"] == 5]
    g = grouped_graph(world, pay)
    assert g.graph["round"] == 5
    roles = pd.Series({n: d["role"] for n, d in g.nodes(data=True)})
    members = pd.Series({n: d["members"] for n, d in g.nodes(data=True)})
    assert roles.value_counts()[["household", "firm", "bank"]].tolist() == [10, 5, 5]
    assert members[roles == "household"].sum() == 150 and members[roles == "firm"].sum() == 12
    wealth = (world.household_balance() + world.household_token_wealth()).sum() / 100
    assert sum(d["wealth"] for _, d in g.nodes(data=True) if d["role"] == "household") == pytest.approx(wealth)
    flows = sum(d["amount"] for _, _, d in g.edges(data=True))  # self-loops too: nothing lost
    assert flows == pytest.approx(pay["amount"].sum())
    # the poorest decile holds less than the richest
    assert g.nodes["households D1"]["wealth"] < g.nodes["households D10"]["wealth"]
    # payments recorded per role (record.payments = "role"): one node per role, the same total
    by_role = pay.groupby(["payer_role", "payee_role", "kind"], observed=True, as_index=False)["amount"].sum()
    by_role = by_role.assign(payer_id=-1, payee_id=-1)
    r = grouped_graph(world, by_role)
    assert sorted(r.nodes) == sorted([*world.layout.roles, "mint"])
    assert sum(d["amount"] for _, _, d in r.edges(data=True)) == pytest.approx(pay["amount"].sum())
    assert "one node per role" in r.graph["grouping"]


def test_round_and_out_choose_the_graph_and_the_file(run_dir: Path, tmp_path: Path) -> None:
    out = write_report(run_dir, tmp_path / "sub" / "early.html", round=2)
    assert out == tmp_path / "sub" / "early.html"
    text = out.read_text(encoding="utf-8")
    assert '<p class="caption">Round 2: ' in text
    with pytest.raises(ReportError, match=r"--round 99: no snapshot for round 99; snapshots exist for rounds 0-5"):
        write_report(run_dir, tmp_path / "late.html", round=99)
    assert not (tmp_path / "late.html").exists()


def test_a_failed_run_says_so_at_the_top(tmp_path: Path) -> None:
    def stop(r: int, row: dict[str, object]) -> None:
        if r == 2:
            raise RuntimeError("stopped on purpose")

    with pytest.raises(RuntimeError):
        tokenomy.Runner(load_scenario("baseline", [*TINY, "rounds=6"])).run(tmp_path / "run", on_round=stop)
    text = write_report(tmp_path / "run").read_text(encoding="utf-8")
    banner = text[text.index('<div class="banner bad">') :][:400]
    assert "This run did not finish. FAILED: RuntimeError: stopped on purpose." in banner
    assert "status</td><td>failed <b>(not finished)</b>" in text
    assert text.index("banner bad") < text.index("<table")  # above everything else
    assert len(_Page(text).images) == 7


def test_summarise_gives_student_t_bands_over_runs() -> None:
    from scipy import stats

    x = np.array([1.0, 2.0, 4.0, 7.0])
    frame = pd.DataFrame({"group": ["b"] * 4 + ["a"], "round": [0] * 5, "run": list("pqrst"), "v": [*x, 3.0]})
    s = figures.summarise(frame, ["v"], by="group")
    assert s["group"].tolist() == ["b", "a"]  # the frame's order of groups, not sorted
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=x.std(ddof=1) / np.sqrt(len(x)))
    assert s.loc[0, ["v", "v_lo", "v_hi", "n"]].tolist() == pytest.approx([x.mean(), lo, hi, 4])
    assert s.loc[1, "v"] == 3.0 and np.isnan(s.loc[1, "v_lo"])  # one run: no band
    one = figures.summarise(frame[frame["group"] == "a"], ["v"])  # a run's metrics: the values themselves
    assert one["v"].tolist() == [3.0] and one["v_lo"].isna().all()


def test_the_figures_are_reachable_from_the_package(run_dir: Path) -> None:
    fig = tokenomy.report.figures.output_vs_potential(Run(run_dir).metrics)
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["GDP and potential output, $ per month",
                                                             "GDP / potential output"]  # fmt: skip
    assert figures.png(fig)[:8] == PNG
    assert tokenomy.write_report is write_report


# -- a sweep ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sweep directory as ``tokenomy sweep`` lays one out: runs/, sweep.json, sweep.parquet."""
    out = tmp_path_factory.mktemp("sweep")
    grid = {"roles.regulator.ubi": [0.0, 500.0]}
    seeds = [1, 2]
    runs, frames = [], []
    for cell, (ubi,) in enumerate(itertools.product(*grid.values())):
        for seed in seeds:
            rel = f"runs/c{cell:03d}-s{seed}"
            sc = load_scenario("baseline", [*TINY, "rounds=4", f"seed={seed}", f"roles.regulator.ubi={ubi}"])
            path = tokenomy.Runner(sc).run(out / rel)
            m = Run(path).metrics
            frames.append(m.assign(**{"roles.regulator.ubi": ubi, "seed": seed, "run": rel}))
            values = {"roles.regulator.ubi": ubi}
            runs.append(SweepRun(path=rel, cell=cell, seed=seed, values=values, status="finished"))
    spec = SweepManifest(scenario="baseline", scenario_data=sc.model_dump(mode="json"), grid=grid, seeds=seeds,
                         rounds=4, sets=TINY, runs=runs, status="finished")  # fmt: skip
    (out / "sweep.json").write_text(spec.model_dump_json(), encoding="utf-8")
    pd.concat(frames, ignore_index=True).to_parquet(out / "sweep.parquet")
    return out


def test_a_sweep_report_draws_each_grid_combination_over_seeds(sweep_dir: Path, tmp_path: Path) -> None:
    frame = sweep_frame(sweep_dir)
    assert frame.groupby("group")["run"].nunique().to_dict() == {
        "roles.regulator.ubi=0.0": 2,
        "roles.regulator.ubi=500.0": 2,
    }
    fig = figures.output_vs_potential(frame, by="group")
    assert len(fig.axes[0].lines) == 4  # GDP and potential output for each of two groups
    assert len(fig.axes[0].collections) == 4  # and a band around each: two seeds a group
    one = figures.output_vs_potential(Run(sweep_dir / "runs/c000-s1").metrics)
    assert len(one.axes[0].collections) == 0  # a single run has no band
    text = write_report(sweep_dir).read_text(encoding="utf-8")
    page = _Page(text)
    _self_contained(page)
    assert page.sections == SECTIONS
    assert len(page.images) == 8  # five series, the rent share, one run's rent by intermediary, its graph
    assert "roles.regulator.ubi=0.0: 2 runs<br>roles.regulator.ubi=500.0: 2 runs" in text
    assert "4 (4 finished)" in text and "did not finish" not in text
    assert "8. The market graph of run runs/c000-s1" in text
    chosen = write_report(sweep_dir, tmp_path / "r.html", run="runs/c001-s2").read_text(encoding="utf-8")
    assert "8. The market graph of run runs/c001-s2" in chosen
    with pytest.raises(ReportError, match=r"--run runs/nope: not a run of this sweep"):
        write_report(sweep_dir, tmp_path / "x.html", run="runs/nope")


def test_a_sweep_with_an_unfinished_run_says_so(sweep_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "sweep"
    shutil.copytree(sweep_dir, copy)
    m = json.loads((copy / "runs/c001-s1/manifest.json").read_text())
    (copy / "runs/c001-s1/manifest.json").write_text(json.dumps({**m, "status": "interrupted"}))
    text = write_report(copy).read_text(encoding="utf-8")
    assert '<div class="banner bad">1 of 4 runs did not finish: runs/c001-s1 (interrupted)' in text


# -- the command line ------------------------------------------------------------------------------------
def test_run_writes_a_report_unless_no_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = CliRunner()
    sets = [a for s in [*TINY, "rounds=3"] for a in ("--set", s)]
    quiet = cli.invoke(app, ["run", "baseline", *sets, "--out", str(tmp_path / "a"), "--no-report", "-q"])
    assert quiet.exit_code == 0, quiet.output
    assert (tmp_path / "a" / "manifest.json").is_file() and not (tmp_path / "a" / "report.html").exists()
    assert "report:" not in quiet.stdout
    loud = cli.invoke(app, ["run", "baseline", *sets, "--out", str(tmp_path / "b"), "-q"])
    assert loud.exit_code == 0, loud.output
    assert (tmp_path / "b" / "report.html").is_file()
    assert f"report: {tmp_path / 'b' / 'report.html'}" in " ".join(loud.stdout.split())
    # the command on its own: another file, a bad round, a directory that is no run
    again = cli.invoke(app, ["report", str(tmp_path / "a"), "--out", str(tmp_path / "a.html"), "--round", "1"])
    assert again.exit_code == 0, again.output
    assert "Round 1: " in (tmp_path / "a.html").read_text(encoding="utf-8")
    bad = cli.invoke(app, ["report", str(tmp_path / "a"), "--round", "7"])
    assert bad.exit_code == 2
    assert bad.stderr.strip().splitlines() == [
        "error: --round 7: no snapshot for round 7; snapshots exist for rounds 0-2"
    ]
    (tmp_path / "empty").mkdir()
    none = cli.invoke(app, ["report", str(tmp_path / "empty")])
    assert none.exit_code == 2 and "not a run directory (no manifest.json)" in none.stderr
    assert len(none.stderr.strip().splitlines()) == 1


def test_a_report_that_fails_does_not_fail_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: object, out: object = None, **kw: object) -> Path:
        raise MemoryError("no room for figures")

    monkeypatch.setattr("tokenomy.report.write_report", broken)
    sets = [a for s in [*TINY, "rounds=2"] for a in ("--set", s)]
    result = CliRunner().invoke(app, ["run", "baseline", *sets, "--out", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 0, result.output
    assert Run(tmp_path / "run").finished and not (tmp_path / "run" / "report.html").exists()
    warning = " ".join(result.stderr.split())
    assert "warning: no report written (MemoryError: no room for figures); the run is complete" in warning


# -- an LLM run ------------------------------------------------------------------------------------------
def test_an_llm_run_report_shows_calls_tokens_and_fallbacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-report")
    with FakeOpenAIServer(model="fake-model", faults=["malformed_json"], fault_every=4, retry_after_ms=1) as srv:
        sets = [*TINY, "rounds=3", 'llm.model="fake-model"', f'llm.base_url="{srv.base_url}"', "llm.max_retries=1",
                "llm.on_invalid=fallback", "llm.max_fallback_share=1.0", "roles.household.policy=llm",
                "roles.household.llm_share=0.2", "roles.firm.policy=llm"]  # fmt: skip
        path = tokenomy.Runner(load_scenario("baseline", sets)).run(tmp_path / "llm")
    run = Run(path)
    assert run.metrics["llm_fallbacks"].sum() > 0  # the faults made some
    text = write_report(path).read_text(encoding="utf-8")
    page = _Page(text)
    _self_contained(page)
    assert len(page.images) == 8 and "No role was LLM-driven" not in text
    assert "LLM-driven roles: household, firm." in text
    assert "decisions from the model</td>" in text and "why answers failed" in text
    fig = figures.llm_usage(run.metrics, run.decisions[run.decisions["policy"] == "llm"], roles=["household", "firm"])
    calls = sum(p.get_height() for p in fig.axes[0].patches)  # the stacked bars: every call of every role
    assert calls == run.metrics["llm_calls"].sum()


# -- in a browser ----------------------------------------------------------------------------------------
def _chromium() -> str | None:
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else shutil.which("chromium")


@pytest.mark.slow  # a browser in a subprocess
def test_the_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (a dev dependency)")
    browser_path = _chromium()
    if browser_path is None:
        pytest.skip("no Chromium: /usr/bin/chromium missing and none on PATH (.ci/run installs Debian's)")
    from PIL import Image

    errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report.resolve().as_uri(), wait_until="load")
            images = page.evaluate(
                "() => Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
            )
            shot = page.screenshot(full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []  # nothing from the network
    assert len(images) == 7 and all(done and w > 0 and h > 0 for done, w, h in images), images
    (tmp_path / "report.png").write_bytes(shot)
    img = np.asarray(Image.open(io.BytesIO(shot)).convert("L"), dtype=np.float64)
    assert len(shot) > 200_000 and img.shape[0] > 5_000 and img.shape[1] >= 1_200  # the whole long page
    assert (img < 200).mean() > 0.03 and img.std() > 20  # drawn on: text and figures, not a blank page
