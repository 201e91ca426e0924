"""The fake OpenAI server, driven by the real langchain-openai client over real HTTP.

These tests also pin down how ``ChatOpenAI.with_structured_output(..., include_raw=True)`` surfaces a bad
answer, because the engine's fallback logic depends on it:

* ``json_schema``: the ``openai`` SDK parses the content itself, so a bad answer *raises*
  (``pydantic.ValidationError``) even with ``include_raw=True``.
* ``json_mode``: ``parsed`` is None and ``parsing_error`` is an ``OutputParserException``; but truncated
  JSON is silently repaired when the surviving prefix holds every required field.
* ``function_calling``: a tool call with unparseable arguments (or no tool call at all) gives ``parsed``
  None *and* ``parsing_error`` None; JSON that parses but fails validation gives a ``ValidationError``.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, ValidationError

from tokenomy.agents.bank import BankDecision, BankObservation
from tokenomy.agents.firm import FirmDecision, FirmObservation
from tokenomy.agents.household import HouseholdDecision, HouseholdObservation, HouseholdShareDecision
from tokenomy.agents.network import NetworkDecision, NetworkObservation
from tokenomy.agents.regulator import RegulatorDecision, RegulatorObservation
from tokenomy.testing import FakeOpenAIServer
from tokenomy.testing.fake_openai import HOSTILE_TEXT, decide

KEY = "sk-test-FAKE"
METHODS = ("json_schema", "json_mode", "function_calling")
HOUSEHOLD = HouseholdObservation(
    round=0,
    balance=5000.0,
    net_income_last_round=1200.0,
    spent_last_round=900.0,
    employed=True,
    wage=1200.0,
    reservation_wage=1000.0,
    rounds_unemployed=0,
    token_wealth=2000.0,
    rail="card",
    price_index=1.0,
    unemployment_rate=0.05,
    mean_wage=1150.0,
    rail_fees={"card": 0.02, "chain": 0.005, "bank_transfer": 0.0},
)
OBSERVATIONS: dict[type[BaseModel], BaseModel] = {
    HouseholdDecision: HOUSEHOLD,
    HouseholdShareDecision: HOUSEHOLD.model_copy(update={"employed": False, "wage": 0.0, "rounds_unemployed": 2}),
    FirmDecision: FirmObservation(
        round=0,
        balance=50_000.0,
        price=10.0,
        wage_offer=1200.0,
        workers=12,
        capital=30.0,
        inventory=5.0,
        sold_last_round=100.0,
        unmet_demand_last_round=8.0,
        unfilled_vacancies=1,
        loan=0.0,
        loan_rate=0.005,
        token_price=25.0,
        automatable_share=0.3,
        capital_price=40.0,
        mean_price=10.2,
        unemployment_rate=0.05,
        mean_wage=1150.0,
    ),
    BankDecision: BankObservation(
        round=0,
        own_funds=1e6,
        deposits=5e6,
        loans=2e6,
        depositors=1000,
        borrowers=10,
        price_index=1.0,
        unemployment_rate=0.05,
    ),
    NetworkDecision: NetworkObservation(
        round=0,
        operator="card_network",
        fee_rate=0.015,
        fee_cap=0.02,
        balance=1e5,
        card_users_share=0.7,
        chain_users_share=0.1,
    ),
    RegulatorDecision: RegulatorObservation(
        round=0,
        balance=1e6,
        income_tax=0.2,
        robot_tax=0.05,
        ubi=50.0,
        ubi_financing="tax",
        card_fee_cap=0.02,
        unemployment_rate=0.05,
        price_index=1.0,
        mean_wage=1150.0,
    ),
}


@pytest.fixture
def srv() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(model="fake-model", latency_s=0.0) as server:
        yield server


def chat(srv: FakeOpenAIServer, **kw: Any) -> ChatOpenAI:
    opts: dict[str, Any] = {"max_retries": 2, "timeout": 5, **kw}
    return ChatOpenAI(model="fake-model", base_url=srv.base_url, api_key=KEY, use_responses_api=False, **opts)


def prompt(decision: type[BaseModel], system: str = "You are a household.") -> list[tuple[str, str]]:
    obs = OBSERVATIONS[decision].model_dump_json()
    user = f"Round 0. Observation:\n```json\n{obs}\n```\nReply with a JSON object for {decision.__name__}."
    return [("system", system), ("user", user)]


def expected(decision: type[BaseModel], persona: str = "") -> dict[str, Any]:
    answer = decide(decision.__name__, OBSERVATIONS[decision].model_dump(), persona)
    return {k: v for k, v in answer.items() if k != "rationale"}


def outcome(
    srv: FakeOpenAIServer, decision: type[BaseModel], method: str, system: str = "You are a household."
) -> tuple[Any, BaseException | None]:
    """(parsed, error), where error is the parsing_error or what invoke raised (json_schema raises)."""
    runnable = chat(srv).with_structured_output(decision, method=method, include_raw=True)
    try:
        out = runnable.invoke(prompt(decision, system))
    except ValidationError as e:
        return None, e
    return out["parsed"], out["parsing_error"]


def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    """A raw POST, so tests can see status codes and headers the client would hide behind retries."""
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.load(e)


def test_models_endpoint_lists_the_served_model(srv: FakeOpenAIServer) -> None:
    client = openai.OpenAI(base_url=srv.base_url, api_key=KEY)
    assert [m.id for m in client.models.list()] == ["fake-model"]


@pytest.mark.parametrize("decision", [HouseholdDecision, FirmDecision])
@pytest.mark.parametrize("method", METHODS)
def test_every_structured_output_method_parses(srv: FakeOpenAIServer, method: str, decision: type[BaseModel]) -> None:
    out = chat(srv).with_structured_output(decision, method=method, include_raw=True).invoke(prompt(decision))
    assert out["parsing_error"] is None
    assert isinstance(out["parsed"], decision)
    assert out["parsed"].model_dump(exclude={"rationale"}) == expected(decision)
    usage = out["raw"].usage_metadata
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    body = srv.requests[-1]["body"]
    style = {"json_schema": "json_schema", "json_mode": "json_object"}.get(method)
    if style:
        assert body["response_format"]["type"] == style
    else:
        assert body["tools"][0]["function"]["name"] == decision.__name__
    assert srv.stats["by_decision"] == {decision.__name__: 1}


def test_rule_based_answers_are_sensible(srv: FakeOpenAIServer) -> None:
    firm = expected(FirmDecision)
    assert firm["price"] == pytest.approx(10.05) and firm["target_workers"] == 13  # sold out, vacancies unfilled
    hh = expected(HouseholdDecision)
    assert hh["consumption_budget"] == pytest.approx(0.85 * 1200 + 0.01 * 7000)
    assert hh["reservation_wage"] == 1200.0 and hh["rail"] == "card"
    assert expected(HouseholdShareDecision)["reservation_wage_factor"] == 0.95  # unemployed representative


@pytest.mark.parametrize(
    "decision", [HouseholdShareDecision, BankDecision, NetworkDecision, RegulatorDecision], ids=lambda d: d.__name__
)
def test_other_decisions_validate(srv: FakeOpenAIServer, decision: type[BaseModel]) -> None:
    parsed, error = outcome(srv, decision, "json_schema")
    assert error is None and isinstance(parsed, decision)
    assert parsed.model_dump(exclude={"rationale"}) == expected(decision)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", ["malformed_json", "wrong_types", "out_of_range", "hostile", "ignore_schema"])
def test_bad_answers_fail_to_parse(srv: FakeOpenAIServer, mode: str, method: str) -> None:
    srv.set(faults=[mode])
    parsed, error = outcome(srv, HouseholdDecision, method)
    assert parsed is None
    if method != "function_calling" or mode in ("wrong_types", "out_of_range", "hostile"):
        assert error is not None  # function_calling with unparseable arguments fails silently: parsed None only
    assert srv.stats["by_mode"] == {mode: 1}
    assert srv.requests[-1]["faults"] == [mode]


def test_hostile_answers(srv: FakeOpenAIServer) -> None:
    client = openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0)
    messages: list[Any] = [{"role": m, "content": c} for m, c in prompt(FirmDecision)]
    srv.set(faults="hostile")
    raw = client.chat.completions.create(model="fake-model", messages=messages, response_format={"type": "json_object"})
    answer = json.loads(raw.choices[0].message.content or "")
    assert answer["transfer_to"] == 0 and answer["amount"] == 1e12 and answer["rationale"] == HOSTILE_TEXT
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        FirmDecision.model_validate(answer)
    # The variant without extra fields is a *valid* decision that carries the text in its string fields.
    srv.set(faults="hostile_field")
    parsed, error = outcome(srv, FirmDecision, "function_calling")
    assert error is None and parsed.rationale == HOSTILE_TEXT


def test_truncated_json_is_repaired_by_json_mode(srv: FakeOpenAIServer) -> None:
    """A canary: langchain's json_mode parser closes truncated JSON, so only finish_reason tells."""
    srv.set(faults="truncated_json")
    parsed, error = outcome(srv, NetworkDecision, "json_mode")
    assert error is None and parsed.fee_rate == pytest.approx(0.015) and parsed.rationale == ""
    assert outcome(srv, NetworkDecision, "json_schema")[0] is None
    assert outcome(srv, NetworkDecision, "function_calling") == (None, None)


def test_fenced_json_only_parses_in_json_mode(srv: FakeOpenAIServer) -> None:
    srv.set(faults="fenced_json")
    assert isinstance(outcome(srv, HouseholdDecision, "json_mode")[0], HouseholdDecision)
    assert outcome(srv, HouseholdDecision, "json_schema")[0] is None


def test_rate_limit_then_ok(srv: FakeOpenAIServer) -> None:
    srv.set(faults="rate_limit_then_ok")
    out = chat(srv).with_structured_output(HouseholdDecision, include_raw=True).invoke(prompt(HouseholdDecision))
    assert isinstance(out["parsed"], HouseholdDecision)
    assert srv.stats["completions"] == 2
    assert [r["status"] for r in srv.requests] == [429, 200]
    # On the wire: 429 with Retry-After: 0 and an OpenAI-style body, then the same request succeeds.
    body = {"model": "fake-model", "messages": [{"role": m, "content": c} for m, c in prompt(FirmDecision)]}
    status, headers, err = post(f"{srv.base_url}/chat/completions", body)
    assert status == 429 and headers["Retry-After"] == "0" and err["error"]["code"] == "rate_limit_exceeded"
    assert post(f"{srv.base_url}/chat/completions", body)[0] == 200


def test_server_error_raises_after_retries(srv: FakeOpenAIServer) -> None:
    srv.set(faults="server_error", retry_after_ms=1)  # retry at once instead of the client's ~0.5 s, 1 s backoff
    with pytest.raises(openai.InternalServerError):
        chat(srv).with_structured_output(HouseholdDecision, include_raw=True).invoke(prompt(HouseholdDecision))
    assert srv.stats["completions"] == 3  # the first attempt and max_retries=2
    assert srv.stats["by_status"] == {"500": 3}


def test_fault_every_picks_requests_by_counter(srv: FakeOpenAIServer) -> None:
    srv.set(faults="server_error", fault_every=2)
    llm = chat(srv, max_retries=0)
    results = []
    for _ in range(4):
        try:
            llm.invoke(prompt(BankDecision))
            results.append("ok")
        except openai.InternalServerError:
            results.append("500")
    assert results == ["ok", "500", "ok", "500"]


def test_no_json_schema_refused_outright(srv: FakeOpenAIServer) -> None:
    srv.set(faults="no_json_schema")
    with pytest.raises(openai.BadRequestError, match="json_schema not supported"):
        outcome(srv, HouseholdDecision, "json_schema")
    assert isinstance(outcome(srv, HouseholdDecision, "json_mode")[0], HouseholdDecision)
    assert isinstance(outcome(srv, HouseholdDecision, "function_calling")[0], HouseholdDecision)


def test_json_schema_500_like_llama_cpp_python(srv: FakeOpenAIServer) -> None:
    srv.set(faults="json_schema_500", retry_after_ms=1)
    with pytest.raises(openai.InternalServerError, match="Input should be 'text' or 'json_object'"):
        chat(srv, max_retries=0).with_structured_output(HouseholdDecision, method="json_schema").invoke(
            prompt(HouseholdDecision)
        )
    assert isinstance(outcome(srv, HouseholdDecision, "function_calling")[0], HouseholdDecision)
    assert isinstance(outcome(srv, HouseholdDecision, "json_mode")[0], HouseholdDecision)
    assert srv.stats["by_status"] == {"500": 1, "200": 2}


def test_like_a_real_endpoint_wrong_model_bad_key_forbidden() -> None:
    with FakeOpenAIServer(model="fake-model", api_key="sk-right-key-0123456789") as srv:
        body = {"model": "fake-model", "messages": [{"role": m, "content": c} for m, c in prompt(FirmDecision)]}
        status, _, err = post(f"{srv.base_url}/chat/completions", body)  # no key at all
        assert status == 401 and err["error"]["code"] == "invalid_api_key"
        wrong = "sk-wrong-key-0123456789abcdef"
        with pytest.raises(openai.AuthenticationError, match=r"sk-wrong\*\*\*\*cdef"):  # masked, as OpenAI does
            openai.OpenAI(base_url=srv.base_url, api_key=wrong, max_retries=0).chat.completions.create(**body)
        right = openai.OpenAI(base_url=srv.base_url, api_key="sk-right-key-0123456789", max_retries=0)
        with pytest.raises(openai.NotFoundError, match="The model `gpt-nope` does not exist"):
            right.chat.completions.create(**{**body, "model": "gpt-nope"})
        srv.set(faults="permission_denied")
        with pytest.raises(openai.PermissionDeniedError):
            right.chat.completions.create(**body)


def test_fix_on_reask_spares_a_corrected_conversation(srv: FakeOpenAIServer) -> None:
    srv.set(faults="out_of_range", fix_on_reask=True)
    client = openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0)
    messages: list[Any] = [{"role": m, "content": c} for m, c in prompt(HouseholdDecision)]
    fmt: Any = {"type": "json_object"}
    bad = client.chat.completions.create(model="fake-model", messages=messages, response_format=fmt)
    first = bad.choices[0].message.content or ""
    assert json.loads(first)["consumption_budget"] == -100.0
    again = [*messages, {"role": "assistant", "content": first}]
    again.append({"role": "user", "content": "Rejected: too low. Reply with a JSON object for HouseholdDecision."})
    fixed = client.chat.completions.create(model="fake-model", messages=again, response_format=fmt)
    answer = HouseholdDecision.model_validate_json(fixed.choices[0].message.content or "")
    assert answer.model_dump(exclude={"rationale"}) == expected(HouseholdDecision)  # the observation still read


def test_stop_closes_open_keep_alive_connections() -> None:
    srv = FakeOpenAIServer(model="fake-model").start()
    client = openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0)
    assert [m.id for m in client.models.list()] == ["fake-model"]  # a pooled connection is now open
    srv.stop()
    with pytest.raises(openai.APIConnectionError):
        client.models.list()


@pytest.mark.parametrize("method", ["json_mode", "function_calling"])
def test_persona_hook(srv: FakeOpenAIServer, method: str) -> None:
    base = expected(HouseholdDecision)["consumption_budget"]
    frugal, _ = outcome(srv, HouseholdDecision, method, "You are a FRUGAL household.")
    assert frugal.consumption_budget == pytest.approx(base / 2)
    spender, _ = outcome(srv, HouseholdDecision, method, "You are a spendthrift household.")
    assert spender.consumption_budget == HOUSEHOLD.balance
    share = expected(HouseholdShareDecision)["consume_share"]
    assert outcome(srv, HouseholdShareDecision, method, "Be frugal.")[0].consume_share == pytest.approx(share / 2, 1e-3)
    assert outcome(srv, HouseholdShareDecision, method, "Be a spendthrift.")[0].consume_share == 1.0


async def test_requests_are_served_concurrently(srv: FakeOpenAIServer) -> None:
    llm = chat(srv).with_structured_output(HouseholdDecision, method="json_schema")
    await llm.ainvoke(prompt(HouseholdDecision))  # warm up the client's connection pool
    srv.set(latency_s=0.2)
    srv.reset()
    results = await asyncio.gather(*(llm.ainvoke(prompt(HouseholdDecision)) for _ in range(20)))
    assert all(isinstance(r, HouseholdDecision) for r in results)
    # concurrency shown by the server's own count of requests in flight at once (no clock: CI is noisy)
    assert srv.stats["in_flight_peak"] >= 5, srv.stats  # a one-at-a-time server would show 1


def test_hanging_request_does_not_block_others(srv: FakeOpenAIServer) -> None:
    srv.set(faults="timeout", hang_s=10)
    errors: list[BaseException] = []

    def hang() -> None:
        try:
            chat(srv, timeout=1.0, max_retries=0).invoke(prompt(BankDecision))
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=hang)
    t.start()
    while srv.stats["completions"] == 0:
        time.sleep(0.01)
    srv.set(faults=())
    assert isinstance(outcome(srv, BankDecision, "json_mode")[0], BankDecision)
    assert t.is_alive()  # still hanging while the other request was answered
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], openai.APITimeoutError)


def test_api_key_only_in_the_authorization_header(srv: FakeOpenAIServer) -> None:
    for method in METHODS:
        outcome(srv, HouseholdDecision, method)
    records = srv.requests
    assert len(records) == 3
    for rec in records:
        assert rec["headers"]["authorization"] == f"Bearer {KEY}"
        others = {k: v for k, v in rec["headers"].items() if k != "authorization"}
        assert KEY not in json.dumps(rec["body"]) and KEY not in json.dumps(others)


def test_control_endpoint_and_errors(srv: FakeOpenAIServer) -> None:
    status, _, state = post(
        f"{srv.base_url.removesuffix('/v1')}/_control", {"faults": ["server_error"], "latency_s": 0}
    )
    assert status == 200 and state["config"]["faults"] == ["server_error"] and srv.config["faults"] == ["server_error"]
    assert post(f"{srv.base_url}/_control", {"faults": ["nope"]})[0] == 400
    assert post(f"{srv.base_url}/_control", {"reset": True, "faults": []})[2]["stats"]["requests"] == 0
    with urllib.request.urlopen(f"{srv.base_url}/_control", timeout=5) as r:
        assert json.load(r)["config"]["faults"] == []
    with pytest.raises(ValueError, match="unknown switches"):
        srv.set(colour="red")
    client = openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0)
    unknown = "```json\n{}\n```\nReply with a JSON object for MysteryDecision."
    with pytest.raises(openai.BadRequestError, match="unknown decision"):
        client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": unknown}])


def test_max_tokens_truncates_with_length(srv: FakeOpenAIServer) -> None:
    client = openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0)
    messages: list[Any] = [{"role": m, "content": c} for m, c in prompt(FirmDecision)]
    out = client.chat.completions.create(model="fake-model", messages=messages, max_tokens=5)
    assert out.choices[0].finish_reason == "length" and out.usage is not None and out.usage.completion_tokens == 5
    with pytest.raises(openai.LengthFinishReasonError):  # raised through include_raw: the SDK parses first
        chat(srv, max_tokens=5).with_structured_output(FirmDecision, method="json_mode", include_raw=True).invoke(
            prompt(FirmDecision)
        )


def test_streaming(srv: FakeOpenAIServer) -> None:
    llm = chat(srv, stream_usage=True)
    chunks = list(llm.stream(prompt(FirmDecision)))
    text = "".join(str(c.content) for c in chunks)
    assert {k: v for k, v in json.loads(text).items() if k != "rationale"} == expected(FirmDecision)
    assert sum((c.usage_metadata or {}).get("output_tokens", 0) for c in chunks) > 0
    *_, last = chat(srv).with_structured_output(FirmDecision, method="function_calling").stream(prompt(FirmDecision))
    assert isinstance(last, FirmDecision)


def test_command_line() -> None:
    cmd = [sys.executable, "-m", "tokenomy.testing.fake_openai", "--port", "0", "--model", "cli-model"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            url = re.search(r"http://\S+/v1", proc.stdout.readline())
            assert url is not None
            with urllib.request.urlopen(f"{url.group(0)}/models", timeout=5) as r:
                assert json.load(r)["data"][0]["id"] == "cli-model"
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
