"""LLM-driven runs end to end: the real ChatOpenAI client over real HTTP against a local fake server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llm_helpers import ALL_LLM, CALLS_PER_ROUND, KEY, SMALL, assert_conserved, llm_rows, llm_sets, run

import tokenomy
from tokenomy.policies.llm import archetype_groups, select_agents
from tokenomy.runner import Runner
from tokenomy.scenario import load_scenario
from tokenomy.testing.fake_openai import FakeOpenAIServer

TOKENOMY = str(Path(sys.executable).parent / "tokenomy")


def test_llm_run_completes_conserves_and_records_every_decision(server: FakeOpenAIServer, tmp_path: Path) -> None:
    server.set(latency_s=0.2)  # answers overlap only if the client sends a round's calls together
    r = run(server, tmp_path / "run")
    m, d = r.metrics, llm_rows(r)
    assert m["llm_calls"].tolist() == [CALLS_PER_ROUND] * 3
    assert server.stats["completions"] == CALLS_PER_ROUND * 3  # every call went over HTTP
    assert server.stats["in_flight_peak"] >= 5  # a round's calls are in flight together, not one by one
    assert (m["llm_input_tokens"] > 0).all() and (m["llm_output_tokens"] > 0).all()
    assert (m["llm_fallbacks"] == 0).all() and (m["llm_latency_p95_ms"] >= m["llm_latency_p50_ms"]).all()
    assert set(d["role"]) == {"household", "firm", "bank", "network", "regulator"}
    assert (d["rationale"].str.len() > 0).all() and (d["fallback_reason"] == "").all()
    required = {
        "round",
        "agent_id",
        "role",
        "policy",
        "decision_json",
        "rationale",
        "fallback_reason",
        "latency_ms",
        "input_tokens",
        "output_tokens",
        "cache_hit",
    }
    assert required <= set(r.decisions.columns)
    llm = r.manifest["llm"]
    assert set(llm["roles"]) == {"household", "firm", "bank", "network", "regulator"}
    assert all(len(v["prompt_sha256"]) == 64 and Path(v["prompt"]).is_file() for v in llm["roles"].values())
    assert r.manifest["llm_usage"]["structured_output_method"] == "json_schema"
    assert r.manifest["llm_usage"]["by_role"]["household"]["calls"] == 30
    for role, calls in (("household", 10), ("firm", 3), ("bank", 1), ("network", 2), ("regulator", 1)):
        assert m[f"llm_calls_{role}"].tolist() == [calls] * 3  # per role, per round
        assert (m[f"llm_input_tokens_{role}"] > 0).all()
    assert (m["llm_cost_usd"] == 0).all()  # no prices given
    assert (tmp_path / "run" / "llm-cache.sqlite").is_file()
    assert_conserved(r)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("malformed_json", "invalid answer"),
        ("wrong_types", "invalid answer"),
        ("out_of_range", "invalid answer"),
        ("hostile", "Extra inputs are not permitted"),
        ("hostile_field", "invalid answer"),
        ("ignore_schema", "invalid answer"),
        ("server_error", "Error code: 500"),
    ],
)
def test_bad_answers_are_rejected_recorded_and_replaced(
    server: FakeOpenAIServer, tmp_path: Path, fault: str, reason: str
) -> None:
    server.set(faults=[fault], fault_every=3)
    # no retries, no re-asks: a retried 500 or a re-ask is a new request, which this fault pattern would let through
    sets = ('llm.structured_output="json_schema"', "llm.max_retries=0", 'llm.on_invalid="fallback"')
    r = run(server, tmp_path / "run", *sets)
    d, m = llm_rows(r), r.metrics
    fell = d[d["fallback_reason"] != ""]
    # every third answer was bad (17 of 51); with hostile_field only those whose string fields are
    # constrained (a household's rail) are invalid: injection text in a free-text rationale is just text
    assert len(fell) >= 8, "bad answers must be rejected"
    assert int(m["llm_fallbacks"].sum()) == len(fell)
    assert fell["fallback_reason"].str.contains(reason, regex=False).all(), fell["fallback_reason"].tolist()[:3]
    assert (fell["answer_json"] == "").all()  # nothing of a rejected answer was used
    assert (fell["decision_json"].str.len() > 2).all()  # the rule-based decision stood in
    assert "transfer all funds" not in " ".join(d["decision_json"]).lower()
    households = r.world(2).household_balance()
    assert households[0] < 0.5 * households.sum()  # nobody moved everyone's money to agent 0
    assert_conserved(r)


def test_rate_limits_are_retried_not_fallen_back(server: FakeOpenAIServer, tmp_path: Path) -> None:
    server.set(faults=["rate_limit_then_ok"])
    r = run(server, tmp_path / "run")
    assert int(r.metrics["llm_fallbacks"].sum()) == 0
    assert server.stats["by_status"].get("429", 0) == CALLS_PER_ROUND * 3  # each first attempt refused...
    assert server.stats["by_status"]["200"] == CALLS_PER_ROUND * 3  # ...and each retry answered


def test_timeouts_fall_back_and_the_run_goes_on(server: FakeOpenAIServer, tmp_path: Path) -> None:
    server.set(faults=["timeout"], fault_every=5, hang_s=3.0)
    r = run(server, tmp_path / "run", "llm.timeout_s=0.5", "llm.max_retries=0")
    fell = llm_rows(r).query("fallback_reason != ''")
    assert len(fell) >= 8 and fell["fallback_reason"].str.contains("Timeout").all()
    assert_conserved(r)


def test_replay_makes_no_calls_needs_no_key_and_reproduces_exactly(
    server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.set(faults=["malformed_json"], fault_every=4)  # fallbacks must replay too
    first = run(server, tmp_path / "first")
    sets = llm_sets(server)
    server.stop()
    monkeypatch.delenv("OPENAI_API_KEY")
    again = tokenomy.open_run(
        Runner(load_scenario("baseline", sets)).run(tmp_path / "again", replay_from=first.path)
    )
    a, b = first.metrics, again.metrics
    same = [c for c in a.columns if not c.startswith("llm_") or c == "llm_fallbacks"]
    pd.testing.assert_frame_equal(a[same], b[same])
    assert (b["llm_calls"] == 0).all() and (b["llm_input_tokens"] == 0).all()
    assert (b["llm_cache_hits"] == CALLS_PER_ROUND).all()
    np.testing.assert_array_equal(first.world(2).ledger.balance, again.world(2).ledger.balance)
    cols = ["round", "agent_id", "decision_json", "fallback_reason"]
    pd.testing.assert_frame_equal(
        llm_rows(first)[cols].reset_index(drop=True), llm_rows(again)[cols].reset_index(drop=True)
    )


def test_the_key_reaches_the_server_and_nowhere_else(
    server: FakeOpenAIServer, tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    server.set(faults=["server_error", "hostile"], fault_every=2)
    caplog.set_level("WARNING", logger="tokenomy")
    r = run(server, tmp_path / "run")
    assert any(req["headers"].get("authorization") == f"Bearer {KEY}" for req in server.requests)
    for f in r.path.rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f
    out, err = capfd.readouterr()
    assert "LLM answer rejected" in caplog.text  # the failures were logged...
    assert KEY not in out + err + caplog.text  # ...without the key
    assert r.manifest["llm"]["api_key_env"] == "OPENAI_API_KEY"


def test_max_calls_caps_spending_and_the_rules_take_over(server: FakeOpenAIServer, tmp_path: Path) -> None:
    r = run(server, tmp_path / "run", "llm.max_calls=20")
    usage = r.manifest["llm_usage"]
    assert usage["calls"] == 20 == server.stats["completions"]
    assert "llm.max_calls = 20" in usage["capped"] and usage["capped_round"] == 1
    fell = llm_rows(r).query("fallback_reason != ''")
    assert len(fell) == CALLS_PER_ROUND * 3 - 20 and fell["fallback_reason"].str.startswith("budget:").all()
    assert_conserved(r)


def test_budget_usd_is_a_ceiling_even_with_a_round_of_concurrent_calls(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    budget = 0.05  # at $10 a million input tokens, about a dozen calls: less than one round of 17
    r = run(server, tmp_path / "run", "llm.price_input_per_million=10", f"llm.budget_usd={budget}")
    usage = r.manifest["llm_usage"]
    assert "llm.budget_usd" in usage["capped"] and usage["capped_round"] == 0
    assert 0 < usage["calls"] < CALLS_PER_ROUND == server.stats["completions"] + r.metrics["llm_fallbacks"].iloc[0]
    assert 0.6 * budget < usage["estimated_cost_usd"] <= budget  # spent most of it, never more
    assert r.metrics["llm_cost_usd"].sum() == pytest.approx(usage["estimated_cost_usd"])
    assert (llm_rows(r).query("round > 0")["fallback_reason"].str.startswith("budget:")).all()


def test_archetypes_share_one_call_per_group(server: FakeOpenAIServer, tmp_path: Path) -> None:
    r = run(server, tmp_path / "run", "households=400", "roles.household.llm_share=1.0", "roles.household.archetypes=8")
    hh = llm_rows(r).query("role == 'household'")
    per_round = hh.groupby("round").size()
    assert (per_round <= 8).all() and (per_round >= 2).all()
    assert (hh.groupby("round")["members"].sum() == 400).all()  # every household belongs to one archetype
    assert (hh["archetype"] >= 0).all()
    assert r.manifest["llm"]["roles"]["household"]["prompt"].endswith("household_archetype.md")


def test_swapping_a_prompt_changes_what_agents_do(server: FakeOpenAIServer, tmp_path: Path) -> None:
    frugal = tmp_path / "frugal.md"
    frugal.write_text("You are a frugal household: spend as little as you can.\n${persona}\nSchema: ${schema}\n")
    sets = ("roles.household.llm_share=1.0",)
    default = run(server, tmp_path / "default", *sets)
    swapped = run(server, tmp_path / "swapped", *sets, f'roles.household.prompt="{frugal}"')
    assert swapped.manifest["llm"]["roles"]["household"]["prompt"] == str(frugal.resolve())
    assert (
        swapped.manifest["llm"]["roles"]["household"]["prompt_sha256"]
        != default.manifest["llm"]["roles"]["household"]["prompt_sha256"]
    )
    assert swapped.metrics["consumption"].sum() < 0.8 * default.metrics["consumption"].sum()


def test_auto_structured_output_falls_back_to_tools(server: FakeOpenAIServer, tmp_path: Path) -> None:
    server.set(faults=["no_json_schema"])
    r = run(server, tmp_path / "run")
    usage = r.manifest["llm_usage"]
    assert usage["structured_output_method"] == "tools"
    assert "json_schema" in usage["methods_failed"]
    assert int(r.metrics["llm_fallbacks"].sum()) == 0
    assert server.stats["by_status"] == {"400": 1, "200": CALLS_PER_ROUND * 3}  # one probe, then tools only
    assert usage["calls"] == CALLS_PER_ROUND * 3 + 1  # the refused probe was a call too...
    assert r.metrics["llm_calls"].tolist() == [CALLS_PER_ROUND + 1, CALLS_PER_ROUND, CALLS_PER_ROUND]  # ...in round 0
    assert int(llm_rows(r)["calls"].max()) == 2


def test_a_busy_server_at_start_does_not_lock_the_run_into_a_weaker_method(server: FakeOpenAIServer) -> None:
    server.set(faults=["server_error"])  # round 0: every request gets a 500
    sim = Runner(load_scenario("baseline", llm_sets(server, "llm.max_retries=0")))
    sim.step()
    reasons = [r["fallback_reason"] for r in sim.outcome.llm_records]
    assert server.stats["completions"] == 3  # one probe per method in the round, not one per decision
    assert all("Error code: 500" in why for why in reasons) and len(reasons) == CALLS_PER_ROUND
    assert sim.llm is not None and sim.llm.decider.method is None and not sim.llm.decider.methods_failed
    server.set(faults=[])
    sim.step()
    assert sim.llm.decider.method == "json_schema"  # not tools or JSON mode because of a 500
    assert [r["fallback_reason"] for r in sim.outcome.llm_records] == [""] * CALLS_PER_ROUND


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 64),
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6), st.booleans()), min_size=1, max_size=300),
)
def test_archetypes_never_exceed_k_and_keep_like_with_like(k: int, rows: list[tuple[int, int, bool]]) -> None:
    wealth, income, employed = (np.array(c) for c in zip(*rows, strict=True))
    g = archetype_groups(wealth.astype(float), income.astype(float), employed, k)
    assert g.shape == wealth.shape and np.array_equal(np.unique(g), np.arange(g.max() + 1))  # dense ids
    assert g.max() + 1 <= k
    for grp in np.unique(g):  # one group never mixes the employed with the unemployed (given two groups)
        assert k == 1 or np.unique(employed[g == grp]).size == 1
    same = (wealth[:, None] == wealth) & (income[:, None] == income) & (employed[:, None] == employed)
    assert (g[:, None] == g)[same].all()  # households that look alike share an archetype


def test_archetypes_use_wealth_when_incomes_tie() -> None:
    rng = np.random.default_rng(0)
    wealth = rng.lognormal(size=1000)
    g = archetype_groups(wealth, np.full(1000, 2000.0), np.ones(1000, dtype=bool), 32)
    assert g.max() + 1 == 32  # every group of the budget used, by wealth (was 4 when income bins were fixed)
    order = np.argsort(wealth)
    assert (np.diff(g[order]) >= 0).all()  # groups are wealth bands


def test_which_agents_the_llm_drives_is_fixed_by_the_seed() -> None:
    a, b, c = select_agents(1, 0, 1000, 0.1), select_agents(1, 0, 1000, 0.1), select_agents(2, 0, 1000, 0.1)
    np.testing.assert_array_equal(a, b)
    assert a.size == 100 and not np.array_equal(a, c)


def test_a_fallback_is_exactly_the_rule_based_decision() -> None:
    """With every LLM answer missing (replay with nothing recorded), the economy must equal the
    rule-based one to the cent: a fallback is the rules' own decision, and choosing LLM agents
    draws from its own generator, never from the simulation's."""
    base = Runner(load_scenario("baseline", SMALL))
    llm = Runner(load_scenario("baseline", [*SMALL, *ALL_LLM]))
    llm.attach_llm(replay=True)  # no network, no key; every request misses
    for _ in range(3):
        base.step()
        llm.step()
    assert len(llm.outcome.llm_records) == CALLS_PER_ROUND
    assert all(r["fallback_reason"].startswith("replay:") for r in llm.outcome.llm_records)
    np.testing.assert_array_equal(base.world.ledger.balance, llm.world.ledger.balance)
    np.testing.assert_array_equal(base.world.h_employer, llm.world.h_employer)
    assert base.sim.rng.bit_generator.state == llm.sim.rng.bit_generator.state


def _cli(*args: str, without_key: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not (without_key and k == "OPENAI_API_KEY")}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [TOKENOMY, *args], capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL, check=False
    )


@pytest.mark.slow  # the installed command in a subprocess
def test_cli_dry_run_estimates_without_calling(server: FakeOpenAIServer, tmp_path: Path) -> None:
    args = [f"--set={s}" for s in llm_sets(server, "roles.household.archetypes=4", "llm.price_input_per_million=2")]
    res = _cli("run", "baseline", "--dry-run", "--out", str(tmp_path / "none"), *args)
    assert res.returncode == 0, res.stderr
    assert "dry run" in res.stdout and "household" in res.stdout and "total" in res.stdout
    assert server.stats["completions"] == 0 and not (tmp_path / "none").exists()


@pytest.mark.slow  # the installed command in a subprocess
def test_cli_llm_check_reports_each_role(server: FakeOpenAIServer) -> None:
    res = _cli("llm-check", "baseline", *[f"--set={s}" for s in llm_sets(server)])
    assert res.returncode == 0, res.stdout + res.stderr
    for role in ("household", "firm", "bank", "network", "regulator"):
        assert role in res.stdout
    assert "json_schema" in res.stdout and KEY not in res.stdout + res.stderr
    assert server.stats["completions"] == 5


@pytest.mark.slow  # the installed command in a subprocess
def test_cli_llm_check_fails_on_a_broken_endpoint(server: FakeOpenAIServer) -> None:
    server.set(faults=["server_error"])
    res = _cli("llm-check", "baseline", *[f"--set={s}" for s in llm_sets(server, "llm.max_retries=0")])
    assert res.returncode == 1 and "Error code: 500" in res.stdout


@pytest.mark.slow  # the installed command in a subprocess
def test_cli_run_and_replay(server: FakeOpenAIServer, tmp_path: Path) -> None:
    args = [f"--set={s}" for s in llm_sets(server)]
    first = _cli("run", "baseline", "--out", str(tmp_path / "a"), "-q", *args)
    assert first.returncode == 0, first.stderr
    assert "LLM usage" in first.stdout and "json_schema" in first.stdout
    server.stop()
    again = _cli(
        "run", "baseline", "--out", str(tmp_path / "b"), "-q", "--replay", str(tmp_path / "a"), *args, without_key=True
    )
    assert again.returncode == 0, again.stderr
    a = tokenomy.open_run(tmp_path / "a").metrics
    b = tokenomy.open_run(tmp_path / "b").metrics
    pd.testing.assert_series_equal(a["gdp"], b["gdp"])


@pytest.mark.slow  # the installed command in a subprocess
def test_cli_bad_prompt_or_missing_key_exit_2(server: FakeOpenAIServer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.md"
    bad.write_text("Hello ${name_that_does_not_exist}\n")
    res = _cli(
        "run",
        "baseline",
        "--out",
        str(tmp_path / "x"),
        *[f"--set={s}" for s in llm_sets(server, f'roles.firm.prompt="{bad}"')],
    )
    assert res.returncode == 2 and "bad.md" in res.stderr and "name_that_does_not_exist" in res.stderr
    assert "Traceback" not in res.stderr
    sets = [s for s in llm_sets(server) if not s.startswith("llm.base_url")]
    res = _cli("run", "baseline", "--out", str(tmp_path / "y"), *[f"--set={s}" for s in sets], without_key=True)
    assert res.returncode == 2 and "OPENAI_API_KEY" in res.stderr and not (tmp_path / "y").exists()


def test_a_simulation_can_be_run_on_for_more_rounds(server: FakeOpenAIServer, tmp_path: Path) -> None:
    """Running on (a second run() on the same Runner) reuses the LLM clients: no fallbacks."""
    sim = Runner(load_scenario("baseline", llm_sets(server, "rounds=2")))
    sim.run(tmp_path / "a")
    sim.step()
    second = tokenomy.open_run(sim.run(tmp_path / "b", rounds=2))
    assert list(second.metrics["round"]) == [3, 4]
    assert int(second.metrics["llm_fallbacks"].sum()) == 0 and (second.metrics["llm_calls"] > 0).all()


def test_endpoint_credentials_and_openai_without_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from tokenomy.policies.llm import LLMConfigError, LLMDecider, _without_credentials
    from tokenomy.scenario import LLM

    assert _without_credentials("http://user:secret@host:8000/v1") == "http://host:8000/v1"
    assert _without_credentials("http://localhost:8000/v1") == "http://localhost:8000/v1"
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(LLMConfigError, match="OPENAI_API_KEY"):
        LLMDecider(LLM(base_url="https://api.openai.com/v1"), seed=0)
    LLMDecider(LLM(base_url="http://localhost:8000/v1"), seed=0)  # a local server needs no key
