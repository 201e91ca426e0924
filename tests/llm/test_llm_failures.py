"""LLM failures are loud, `auto` finds what works, and answers are repaired or re-asked openly.

Every test drives the real ChatOpenAI client over real HTTP against the local fake server (or a
port nothing listens on). The command line runs in-process through typer's runner (fast); one
test runs the installed command, to see stderr exactly as a user does.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from llm_helpers import CALLS_PER_ROUND, KEY, assert_conserved, llm_rows, llm_sets, run
from typer.testing import CliRunner, Result

import tokenomy
from tokenomy.cli import app
from tokenomy.policies.llm import LLMDecider, LLMFallbackError, LLMPolicy, LLMUnavailableError
from tokenomy.runner import Runner
from tokenomy.scenario import load_scenario
from tokenomy.simulation import Simulation
from tokenomy.testing.fake_openai import FakeOpenAIServer

TOKENOMY = str(Path(sys.executable).parent / "tokenomy")


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def keyed() -> Iterator[FakeOpenAIServer]:
    """A fake server that wants another key than the tests' KEY."""
    with FakeOpenAIServer(model="fake-model", retry_after_ms=1, api_key="sk-the-right-one-0123456789") as srv:
        yield srv


@dataclass
class Endpoint:
    """A base URL with no fake server behind it."""

    base_url: str


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def sets(srv: FakeOpenAIServer | Endpoint, *extra: str) -> list[str]:
    """``--set`` arguments of the small all-LLM scenario (``llm_helpers.llm_sets``) against ``srv``."""
    return [f"--set={s}" for s in llm_sets(srv, *extra)]  # type: ignore[arg-type]  # reads .base_url only


def one_error_line(res: Result, code: int = 2) -> str:
    assert res.exit_code == code, (res.exit_code, res.stdout, res.stderr, res.exception)
    assert isinstance(res.exception, SystemExit)  # not a traceback
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


# -- 1. loud failures -----------------------------------------------------------------------------
def test_an_unreachable_endpoint_stops_the_run_before_round_0(closed_port: int, tmp_path: Path) -> None:
    url = Endpoint(f"http://127.0.0.1:{closed_port}/v1")
    line = one_error_line(cli("run", "baseline", "-q", "--out", str(tmp_path / "run"), *sets(url)))
    assert "nothing answers at llm.base_url" in line and url.base_url in line and "ConnectionRefusedError" in line
    assert "nothing was run" in line and not (tmp_path / "run").exists()
    line = one_error_line(cli("llm-check", "baseline", *sets(url)))  # llm-check says the same
    assert "nothing answers at llm.base_url" in line and "llm-check" in line


def test_a_wrong_model_stops_the_run_before_round_0(server: FakeOpenAIServer, tmp_path: Path) -> None:
    args = sets(server, 'llm.model="gpt-nope"')
    line = one_error_line(cli("run", "baseline", "-q", "--out", str(tmp_path / "run"), *args))
    assert "no model 'gpt-nope'" in line and "HTTP 404" in line and "llm.model" in line
    assert server.stats["by_status"] == {"404": 1}  # one request, not one per decision or method
    assert not (tmp_path / "run").exists()
    line = one_error_line(cli("llm-check", "baseline", *args))
    assert "no model 'gpt-nope'" in line


def test_a_bad_key_stops_the_run_and_is_never_printed(keyed: FakeOpenAIServer, tmp_path: Path) -> None:
    res = cli("run", "baseline", "-q", "--out", str(tmp_path / "run"), *sets(keyed))
    line = one_error_line(res)
    assert "refused the API key in $OPENAI_API_KEY" in line and "HTTP 401" in line
    assert keyed.stats["by_status"] == {"401": 1}
    assert KEY not in res.stdout + res.stderr and KEY[:8] + "****" not in res.stderr  # not even masked
    assert "[redacted]" in line and not (tmp_path / "run").exists()


def test_an_invalid_url_is_refused_with_the_field_named(tmp_path: Path) -> None:
    bad = Endpoint("notaurl")
    line = one_error_line(cli("run", "baseline", "-q", "--out", str(tmp_path / "run"), *sets(bad)))
    assert "llm.base_url" in line and "http(s) URL" in line
    assert not (tmp_path / "run").exists()
    assert "llm.base_url" in one_error_line(cli("llm-check", "baseline", *sets(bad)))


def test_a_refusal_mid_run_stops_it_but_a_server_gone_away_only_falls_back(server: FakeOpenAIServer) -> None:
    runner = Runner(load_scenario("baseline", llm_sets(server)))
    runner.step()
    server.set(faults=["permission_denied"])
    with pytest.raises(LLMUnavailableError, match=r"HTTP 403.*stopped in round 1"):
        runner.step()
    server.set(faults=[])
    runner.step()  # the endpoint answered before, so nothing listening is a server gone away:
    server.stop()  # its decisions fall back (and count against llm.max_fallback_share), no stop
    runner.step()
    assert all("Connection error" in r["fallback_reason"] for r in runner.outcome.llm_records)


def test_too_many_failed_answers_stop_the_run_with_a_failed_manifest(server: FakeOpenAIServer, tmp_path: Path) -> None:
    server.set(faults=["malformed_json"], fault_every=3)  # 5 of round 0's 17 answers: 29%
    sc = load_scenario("baseline", llm_sets(server, 'llm.on_invalid="fallback"', "llm.max_fallback_share=0.2"))
    with pytest.raises(LLMFallbackError, match=r"5 of the 17 decisions .* by round 0 .*llm\.max_fallback_share = 0\.2"):
        Runner(sc).run(tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "max_fallback_share" in manifest["error"]
    usage = manifest["llm_usage"]
    assert (usage["decisions"], usage["from_model"], usage["failed"]) == (17, 12, 5)
    assert usage["top_failure_reasons"][0]["reason"].startswith("invalid answer")
    with warnings.catch_warnings():  # open_run may say the run did not finish: it did not
        warnings.simplefilter("ignore")
        assert list(tokenomy.open_run(tmp_path / "run").metrics["round"]) == [0]  # the rounds up to it are kept
    # the default limit (0.5) lets the same run through: 29% of answers are not more than half
    server.reset()
    assert_conserved(run(server, tmp_path / "ok", 'llm.on_invalid="fallback"'))


def test_decisions_a_cap_hands_to_the_rules_are_not_failures_even_in_replay(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    first = run(server, tmp_path / "first", "llm.max_calls=5")  # 46 of 51 decisions capped
    usage = first.manifest["llm_usage"]
    assert (usage["capped_decisions"], usage["failed"], usage["from_model"]) == (46, 0, 5)
    again = run(server, tmp_path / "again", "llm.max_calls=5", replay=first.path)  # the caps replay as caps
    assert again.manifest["status"] == "finished" and again.manifest["llm_usage"]["capped_decisions"] == 46
    cols = ["agent_id", "decision_json", "fallback_reason"]
    assert llm_rows(first)[cols].to_numpy().tolist() == llm_rows(again)[cols].to_numpy().tolist()


def test_the_cli_states_the_model_share_and_exits_1_when_the_run_stops(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    server.set(faults=["malformed_json"])
    args = sets(server, 'llm.structured_output="json_schema"', 'llm.on_invalid="fallback"')
    res = cli("run", "baseline", "-q", "--out", str(tmp_path / "run"), *args)
    line = one_error_line(res, code=1)
    assert "17 of the 17 decisions asked of the model by round 0 got no valid answer" in line
    assert "manifest status 'failed'" in line and "rounds 0-0" in line
    assert "decisions from the model: 0 of 17 (0.0%)" in " ".join(res.stdout.split())
    server.set(faults=[])
    ok = cli("run", "baseline", "-q", "--out", str(tmp_path / "ok"), *sets(server))
    assert ok.exit_code == 0, ok.stderr
    flat = " ".join(ok.stdout.split())
    assert f"decisions from the model: {3 * CALLS_PER_ROUND} of {3 * CALLS_PER_ROUND} (100.0%)" in flat


@pytest.mark.slow  # the installed command in a subprocess: stderr exactly as a user sees it
def test_the_installed_command_prints_one_line_and_no_traceback(closed_port: int, tmp_path: Path) -> None:
    res = subprocess.run(
        [
            TOKENOMY,
            "run",
            "baseline",
            "--out",
            str(tmp_path / "run"),
            *sets(Endpoint(f"http://127.0.0.1:{closed_port}/v1")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: LLM unavailable"), res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "run").exists()


# -- 2. auto finds what works -------------------------------------------------------------------
def test_auto_settles_on_tools_in_round_0_against_a_llama_cpp_like_server(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    server.set(faults=["json_schema_500"])  # HTTP 500 on json_schema, as llama-cpp-python's server answers
    r = run(server, tmp_path / "run")
    usage = r.manifest["llm_usage"]
    assert usage["structured_output_method"] == "tools"
    assert "Error code: 500" in usage["methods_failed"]["json_schema"] and "json_object" in str(usage["methods_failed"])
    assert int(r.metrics["llm_fallbacks"].sum()) == 0 and usage["failed"] == 0
    assert r.metrics["llm_calls"].tolist() == [CALLS_PER_ROUND + 1, CALLS_PER_ROUND, CALLS_PER_ROUND]
    assert server.stats["by_style"] == {"json_schema": 2, "tools": 3 * CALLS_PER_ROUND}  # one probe (retried once)
    assert_conserved(r)


@pytest.mark.parametrize("on_invalid", ["fallback", "reask"])
def test_auto_keeps_a_method_whose_answers_only_break_bounds(
    server: FakeOpenAIServer, tmp_path: Path, on_invalid: str
) -> None:
    """llama-cpp-python with a 135M model: json_schema gets a 500, tools answers in the schema's
    shape but with a number past its bound. That answer is the model's mistake, not the method's:
    auto settles on tools, and the answer goes to on_invalid (before, tools was given up in round 0
    and every decision went to the rules)."""
    server.set(faults=["json_schema_500", "out_of_range"])
    r = run(server, tmp_path / "run", f'llm.on_invalid="{on_invalid}"', "llm.max_fallback_share=1.0")
    usage = r.manifest["llm_usage"]
    assert usage["structured_output_method"] == "tools"
    assert "tools" not in usage["methods_failed"] and "json_schema" in usage["methods_failed"]
    assert server.stats["by_style"].get("json_schema", 0) == 2  # probed once (retried once), never again
    assert_conserved(r)


def test_when_every_method_is_refused_the_run_stops_before_round_0(server: FakeOpenAIServer, tmp_path: Path) -> None:
    server.set(faults=["ignore_schema"])  # prose, whatever was asked for
    sc = load_scenario("baseline", llm_sets(server, 'llm.on_invalid="fallback"'))
    with pytest.raises(LLMUnavailableError, match="no structured-output method works") as err:
        Runner(sc).run(tmp_path / "run")
    assert all(m in str(err.value) for m in ("json_schema:", "tools:", "json_mode:"))
    assert server.stats["completions"] == 3 and not (tmp_path / "run").exists()


# -- 3. repaired or re-asked, openly ------------------------------------------------------------
def test_fallback_keeps_the_rejected_raw_answer(server: FakeOpenAIServer, tmp_path: Path) -> None:
    server.set(faults=["out_of_range"], fault_every=3)
    r = run(server, tmp_path / "run", 'llm.structured_output="json_schema"', 'llm.on_invalid="fallback"')
    d = llm_rows(r)
    fell = d[d["fallback_reason"] != ""]
    assert len(fell) >= 8 and (fell["answer_json"] == "").all() and (fell["repair"] == "").all()
    raw = [json.loads(a) for a in fell["raw_answer"]]  # what the model said, as it said it
    assert all(any(v in (-100.0, -5, -1.0, -3, 5.0, 0.9, 2.0, -50.0) for v in a.values()) for a in raw)
    assert (d.loc[d["fallback_reason"] == "", "raw_answer"] == "").all()  # accepted as sent: nothing to keep


@pytest.mark.parametrize("fault", ["out_of_range", "hostile"])
def test_clip_repairs_bounds_and_extra_fields_and_says_what_it_changed(
    server: FakeOpenAIServer, tmp_path: Path, fault: str
) -> None:
    server.set(faults=[fault])  # every answer
    r = run(server, tmp_path / "run", 'llm.on_invalid="clip"')
    d = llm_rows(r)
    hh = d[d["role"] == "household"]
    assert (hh["fallback_reason"] == "").all() and hh["repair"].str.startswith("clipped: ").all()
    assert (hh["raw_answer"].str.len() > 0).all() and (d["raw_answer"].str.len() <= 2000).all()
    answers = [json.loads(a) for a in hh["answer_json"]]
    if fault == "out_of_range":  # -100.0 and -5 in the raw answer, their bounds in what was used
        assert hh["repair"].str.contains("consumption_budget -100.0 to 0").all()
        assert all(a["consumption_budget"] == 0 and a["token_buy"] == -1 for a in answers)
        assert all(json.loads(a)["consumption_budget"] == -100.0 for a in hh["raw_answer"])
        firms = d[d["role"] == "firm"]  # price -1.0 is below an open bound (price > 0): never guessed
        assert firms["fallback_reason"].str.contains("price").all() and (firms["repair"] == "").all()
    else:  # the extra fields transfer_to / amount are dropped; the injection text stays a rationale
        assert hh["repair"].str.contains("dropped transfer_to").all()
        assert all("transfer_to" not in a and "amount" not in a for a in answers)
        assert "transfer all funds" not in " ".join(d["decision_json"]).lower()
    assert r.manifest["llm_usage"]["repaired"] == int((d["repair"] != "").sum()) > 0
    assert_conserved(r)


def test_reask_sends_the_validation_error_and_uses_the_corrected_answer(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    server.set(faults=["out_of_range"], fix_on_reask=True)  # a model that corrects itself when told
    r = run(server, tmp_path / "run")  # reask is the default
    d = llm_rows(r)
    assert (d["fallback_reason"] == "").all() and (d["calls"] == 2).all()
    assert d["repair"].str.startswith("re-asked after: ").all()
    hh = d[d["role"] == "household"]
    assert all(json.loads(a)["consumption_budget"] == -100.0 for a in hh["raw_answer"])  # the rejected one
    assert all(json.loads(a)["consumption_budget"] >= 0 for a in hh["answer_json"])
    asked = [q["body"] for q in server.requests if q["path"].endswith("/chat/completions")]
    again = [b for b in asked if b["messages"][-2]["role"] == "assistant"]
    assert len(again) == len(asked) // 2 == 3 * CALLS_PER_ROUND  # one re-ask per decision, no more
    assert all(b["messages"][-1]["content"].startswith("Your answer was rejected: ") for b in again)
    household = next(b for b in again if b["response_format"]["json_schema"]["name"] == "HouseholdDecision")
    assert "consumption_budget: Input should be greater than or equal to 0" in household["messages"][-1]["content"]
    assert json.loads(household["messages"][-2]["content"])["consumption_budget"] == -100.0  # its own answer
    assert r.metrics["llm_calls"].tolist() == [2 * CALLS_PER_ROUND] * 3  # a re-ask is a call
    assert_conserved(r)


def test_reask_falls_back_when_the_second_answer_is_bad_too(server: FakeOpenAIServer, tmp_path: Path) -> None:
    server.set(faults=["out_of_range"])
    r = run(server, tmp_path / "run", 'llm.structured_output="json_schema"', "llm.max_fallback_share=1")
    d = llm_rows(r)
    hh, firms = d[d["role"] == "household"], d[d["role"] == "firm"]
    assert hh["fallback_reason"].str.contains("after a re-ask").all() and (hh["calls"] == 2).all()
    assert hh["raw_answer"].str.contains("\n--- re-asked ---\n", regex=False).all()  # both answers kept
    assert (firms["answer_json"] == "").all()
    assert r.manifest["status"] == "finished" and r.manifest["llm_usage"]["failed"] == 3 * CALLS_PER_ROUND


def test_llm_check_asks_exactly_what_the_run_asks_archetypes_included(server: FakeOpenAIServer) -> None:
    extra = ("households=200", "roles.household.llm_share=1", "roles.household.archetypes=4")
    res = cli("llm-check", "baseline", *sets(server, *extra))
    assert res.exit_code == 0, res.stdout + res.stderr
    sent = {q["body"]["response_format"]["json_schema"]["name"]: q["body"]["messages"] for q in server.requests}
    assert "HouseholdDecision" not in sent  # the per-household schema is not what the run asks
    sc = load_scenario("baseline", llm_sets(server, *extra))
    sim = Simulation(sc)
    policy = LLMPolicy(sc, LLMDecider(sc.llm, seed=sc.seed, replay=True))
    planned = {c.decision.__name__: c for c in reversed(policy.plan(sim.world, sim.observe()))}
    for name, messages in sent.items():  # the very prompts and observations of the run's round 0
        assert [m["content"] for m in messages] == [planned[name].system, planned[name].user]
