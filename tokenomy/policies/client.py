"""One configured model over HTTP: ``ChatOpenAI`` clients, structured-output binding, strict parsing.

``ModelClient.call_many`` sends a batch of decision requests concurrently with one structured-output
method and turns every answer into a ``CallOutcome``: a validated Decision, or no decision and the
reason (HTTP errors after openai-python's own retries, timeouts, malformed, wrong-typed,
out-of-range or extra fields). It never raises because of an answer. Each failure is classified
from openai-python's exception types: *fatal* (401, 403, 404, nothing listening at the URL: the
configuration is wrong, and the decider stops the run), *transient* (timeouts, lost connections,
408/409/429/5xx: the server's state, worth trying again later), or an answer that came back and did
not validate (kept, redacted, for the record; ``llm.on_invalid = "clip"`` repairs what can be
repaired here). It holds no cache, caps or method choice (those are the decider's, and so are
re-asks, which are calls), so the same class runs in the caller's process or in a worker process
(``tokenomy.policies.workers``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from langchain_core.language_models import LanguageModelInput
    from langchain_core.messages import AIMessage
    from langchain_core.runnables import Runnable
    from langchain_openai import ChatOpenAI

    from tokenomy.scenario import LLM

__all__ = [
    "CallOutcome",
    "LLMConfigError",
    "LLMUnavailableError",
    "ModelClient",
    "Request",
    "clip_answer",
    "read_key",
    "redact",
    "schema_of",
    "well_formed",
]

SHARD = 16  # concurrent calls per HTTP client (see ModelClient._make_chats)
RAW_ANSWER_CHARS = 2000  # of a rejected or repaired answer kept for the record
_KEYLIKE = re.compile(r"sk-[A-Za-z0-9_\-*]{8,}")  # masked forms too (servers echo "sk-ab****yz")


class LLMConfigError(ValueError):
    """The LLM configuration cannot be used (for example: no API key in the environment)."""


class LLMUnavailableError(LLMConfigError):
    """The endpoint refuses the configuration (wrong key, model or URL): no later call can succeed.

    Raised by the decider rather than falling back, so a run never silently becomes a rule run;
    the message is one line, names the setting to check and never contains the key.
    """


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove secrets (and anything shaped like an OpenAI key) from text we record or print."""
    for s in secrets:
        if s:
            text = text.replace(s, "[redacted]")
    return _KEYLIKE.sub("[redacted]", text)


def read_key(cfg: LLM) -> str:
    """The API key, from the environment only (local servers take any key)."""
    key = os.environ.get(cfg.api_key_env, "")
    if key:
        return key
    if cfg.base_url and "api.openai.com" not in cfg.base_url:  # local servers (vLLM, Ollama, llama.cpp) take any key
        return "not-needed"
    raise LLMConfigError(
        f"LLM roles need an API key: set the environment variable {cfg.api_key_env} "
        "(or llm.api_key_env to another variable's name, or llm.base_url for a local server)"
    )


@dataclass(frozen=True)
class Request:
    """One decision to ask for: the Decision model the answer must fit, and the messages.

    ``history`` follows the user message as (role, content) pairs: a re-ask sends the rejected
    answer as the assistant's and the validation error as the user's next message.
    """

    decision: type[BaseModel]
    system: str
    user: str
    history: tuple[tuple[str, str], ...] = ()


@dataclass
class CallOutcome:
    decision: BaseModel | None
    rationale: str = ""
    fallback_reason: str = ""
    latency_ms: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_hit: bool = False
    method: str | None = None
    calls: int = 0  # requests sent over the network for this decision (more than one while probing)
    transient: bool = False  # failed for a reason that says nothing about the request (busy, down, timeout)
    fatal: str = ""  # the endpoint refuses the configuration: "auth", "forbidden", "not_found", "unreachable"
    responded: bool = False  # an HTTP answer came back, so the endpoint is reachable
    invalid: str = ""  # an answer came back and did not validate: why (what a re-ask tells the model)
    raw_answer: str = ""  # a rejected or repaired answer as the model sent it (redacted, bounded)
    repair: str = ""  # what made the answer valid: the fields clipped or dropped, or a re-ask
    capped: bool = False  # handed to the rules by llm.max_calls or llm.budget_usd: never asked
    well_formed: bool = False  # the answer had the schema's shape (only values were wrong): the method works

    @property
    def called(self) -> bool:
        return self.calls > 0

    @property
    def failed(self) -> bool:
        """Asked of the model (or meant to be) and no valid answer: what ``llm.max_fallback_share`` limits."""
        return self.decision is None and not self.capped


class ModelClient:
    """``ChatOpenAI`` shards for one configured model; any number of concurrent calls."""

    def __init__(self, cfg: LLM, *, seed: int, key: str, requests_per_second: float | None = None) -> None:
        self.cfg = cfg
        self.seed = seed
        self._key = key
        self._rps = requests_per_second if requests_per_second is not None else cfg.requests_per_second
        self._chats = self._make_chats()
        self._runnables: dict[tuple[str, str, int], Runnable[LanguageModelInput, AIMessage]] = {}
        self._turn = 0

    def _make_chats(self) -> list[ChatOpenAI]:
        """``ChatOpenAI`` clients, one per ``SHARD`` concurrent calls.

        httpcore's pool scans every connection for every request, so one pool of 128 connections
        costs quadratically more CPU than eight of 16 (measured: 0.46 s against 0.28 s of client
        CPU for 110 concurrent calls on a 2-core machine). Calls go round-robin over the shards.
        """
        import httpx2  # the HTTP client package openai-python is built on (DefaultAsyncHttpxClient's base)
        import openai
        from langchain_core.rate_limiters import InMemoryRateLimiter
        from langchain_openai import ChatOpenAI
        from pydantic import SecretStr

        c = self.cfg
        limiter = InMemoryRateLimiter(requests_per_second=self._rps) if self._rps else None
        shards = max(1, -(-c.max_concurrency // SHARD))
        per = max(1, -(-c.max_concurrency // shards))
        limits = httpx2.Limits(max_connections=per, max_keepalive_connections=per, keepalive_expiry=60.0)
        return [
            ChatOpenAI(  # by field name, not alias (model=, base_url=...): same object, and what mypy can check
                model_name=c.model,
                openai_api_base=c.base_url,
                openai_api_key=SecretStr(self._key),
                temperature=c.temperature,
                seed=self.seed,
                request_timeout=c.timeout_s,
                max_retries=c.max_retries,
                max_tokens=c.max_output_tokens,
                use_responses_api=False,
                rate_limiter=limiter,  # shared: the limit is per client, not per shard
                http_async_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=c.timeout_s),
            )
            for _ in range(shards)
        ]

    def _bound(self, method: str, decision: type[BaseModel]) -> Runnable[LanguageModelInput, AIMessage]:
        """A ``ChatOpenAI`` shard bound to one structured-output style for one Decision (built once).

        ``bind`` rather than ``with_structured_output``, and the schema in ``extra_body``: openai-python
        otherwise re-walks the whole JSON schema as typed parameters on every request (~3 ms a call
        here), and ``with_structured_output`` adds its own chain. The request on the wire is the
        same. Parsing ourselves also gives one strict rule for every method (langchain repairs
        truncated JSON in JSON mode, and returns ``None`` without an error for broken tool arguments).
        """
        self._turn = (self._turn + 1) % len(self._chats)
        key = (method, decision.__name__, self._turn)
        bound = self._runnables.get(key)
        if bound is None:
            name, schema = decision.__name__, schema_of(decision)
            body: dict[str, object]
            if method == "json_schema":
                body = {"response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}}
            elif method == "tools":
                tool = {
                    "type": "function",
                    "function": {"name": name, "description": decision.__doc__ or name, "parameters": schema},
                }
                body = {"tools": [tool], "tool_choice": {"type": "function", "function": {"name": name}}}
            else:
                body = {"response_format": {"type": "json_object"}}
            bound = self._chats[self._turn].bind(extra_body=body)
            self._runnables[key] = bound
        return bound

    async def call_many(
        self, method: str, requests: list[Request], concurrency: int | None = None
    ) -> list[CallOutcome]:
        """Every request at once (at most ``concurrency`` in flight), answers in request order."""
        sem = asyncio.Semaphore(concurrency or self.cfg.max_concurrency)

        async def one(r: Request) -> CallOutcome:
            async with sem:
                return await self.call(method, r)

        return list(await asyncio.gather(*(one(r) for r in requests)))

    async def call(self, method: str, r: Request) -> CallOutcome:
        t0 = time.perf_counter()
        messages = [("system", r.system), ("user", r.user), *r.history]
        try:
            msg = await self._bound(method, r.decision).ainvoke(messages)
        except Exception as exc:  # openai errors after retries, timeouts: classified, never raised here
            out = self._fail(method, t0, describe_error(exc))
            out.transient, out.fatal, out.responded = classify_error(exc)
            return out
        latency = (time.perf_counter() - t0) * 1000
        usage = getattr(msg, "usage_metadata", None) or {}
        tin, tout = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
        try:
            parsed, repair = parse_answer(method, msg, r.decision, clip=self.cfg.on_invalid == "clip")
        except (ValidationError, ValueError) as exc:
            why = _summarise(exc) if isinstance(exc, ValidationError) else str(exc)
            out = self._fail(method, t0, f"invalid answer: {why}")
            out.input_tokens, out.output_tokens, out.responded = tin, tout, True
            out.invalid, out.raw_answer = redact(why, (self._key,))[:500], self._keep(raw_text(method, msg))
            out.well_formed = isinstance(exc, ValidationError) and well_formed(exc)
            return out
        rationale = str(getattr(parsed, "rationale", ""))[: self.cfg.rationale_chars]
        out = CallOutcome(parsed, rationale, "", latency, tin, tout, False, method, calls=1, responded=True)
        if repair:
            out.repair, out.raw_answer = redact(repair, (self._key,))[:500], self._keep(raw_text(method, msg))
        return out

    def _keep(self, text: str) -> str:
        """Text fit for the record: redacted, bounded (only rejected or repaired answers are kept)."""
        return redact(text, (self._key,))[:RAW_ANSWER_CHARS]

    def _fail(self, method: str, t0: float, reason: str) -> CallOutcome:
        return CallOutcome(
            None,
            fallback_reason=redact(reason, (self._key,))[:500],
            latency_ms=(time.perf_counter() - t0) * 1000,
            method=method,
            calls=1,
        )


_SHAPE_ERRORS = frozenset(
    {"missing", "extra_forbidden", "json_invalid", "json_type", "model_type", "model_attributes_type"}
)


def well_formed(err: ValidationError) -> bool:
    """Whether an answer that failed validation still had the schema's shape: every field there,
    none extra, only values out of range or of the wrong type. Such an answer says the method
    works on this server (a grammar-constrained ``tools`` call with one number past its bound);
    an answer of another shape (an echoed observation, missing fields) says it does not."""
    return all(e["type"] not in _SHAPE_ERRORS for e in err.errors())


def classify_error(exc: BaseException) -> tuple[bool, str, bool]:
    """(transient, fatal kind, the server answered) for an exception of a call, after openai's retries.

    Fatal: 401, 403, 404, and nothing listening at the URL (connection refused, unknown host, a
    URL httpx cannot use). Transient: timeouts, connections lost mid-request, 408, 409, 429, 5xx.
    Anything else (400, 422: a request this endpoint will not take) is neither: a method to give up.
    """
    import httpx2  # the HTTP client package openai-python is built on
    import openai

    if isinstance(exc, openai.AuthenticationError):
        return False, "auth", True
    if isinstance(exc, openai.PermissionDeniedError):
        return False, "forbidden", True
    if isinstance(exc, openai.NotFoundError):
        return False, "not_found", True
    if isinstance(exc, openai.APITimeoutError):  # before APIConnectionError, its base class
        return True, "", False
    if isinstance(exc, openai.APIConnectionError):
        nobody = (httpx2.ConnectError, httpx2.UnsupportedProtocol, httpx2.InvalidURL)
        return (False, "unreachable", False) if _cause(exc, nobody) is not None else (True, "", False)
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500, "", True
    return isinstance(exc, TimeoutError), "", False


def describe_error(exc: BaseException) -> str:
    """The exception as one line, with the root cause openai-python's "Connection error." hides."""
    import httpx2
    import openai

    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, openai.APIConnectionError):  # the socket's or httpx's own words: refused, unknown host
        root = _cause(exc, (OSError, httpx2.TransportError), deepest=True)
        if root is not None and str(root):
            text += f" ({type(root).__name__}: {root})"
    return " ".join(text.split())


def _cause(
    exc: BaseException, kinds: tuple[type[BaseException], ...], *, deepest: bool = False
) -> BaseException | None:
    """The first (or the deepest) exception of ``kinds`` in ``exc``'s chain of causes."""
    found: BaseException | None = None
    seen: set[int] = set()
    e: BaseException | None = exc.__cause__ or exc.__context__
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, kinds):
            found = e
            if not deepest:
                return e
        e = e.__cause__ or e.__context__
    return found


@functools.cache
def schema_of(decision: type[BaseModel]) -> dict[str, Any]:
    return decision.model_json_schema()


_FENCED = re.compile(r"```(?:json)?\s*\n(.*?)\n\s*```", re.DOTALL)


def raw_text(method: str, msg: Any) -> str:
    """The answer as the model sent it: the tool call's arguments, or the message text."""
    if method == "tools":
        calls = getattr(msg, "tool_calls", None) or []
        if calls:
            return json.dumps(calls[0].get("args"), ensure_ascii=False)
        bad = getattr(msg, "invalid_tool_calls", None) or []
        if bad:
            return str(bad[0].get("args") or "")
    return msg.content if isinstance(msg.content, str) else json.dumps(msg.content, default=str)


def parse_answer(method: str, msg: Any, decision: type[BaseModel], *, clip: bool = False) -> tuple[BaseModel, str]:
    """The answer as a validated Decision and what was repaired (``""``: nothing), or
    ``ValidationError``/``ValueError`` saying why not.

    Strict: pydantic checks types, ranges and forbids extra fields, whatever the server claims
    about honouring the schema. The one leniency is a JSON object wrapped in a ```json fence, as
    chatty models send it. With ``clip``, numbers outside their bounds are set to the bound and
    extra fields dropped (:func:`clip_answer`); anything else still rejects the answer.
    """
    data: Any
    if method == "tools":
        calls = getattr(msg, "tool_calls", None) or []
        if not calls:
            bad = getattr(msg, "invalid_tool_calls", None) or []
            why = str(bad[0].get("error") or "") if bad else "no tool call"
            why = why.split("Received ", 1)[-1].split("\n", 1)[0]  # langchain's long message: its gist
            raise ValueError(f"tool arguments are not valid JSON: {why}")
        data = calls[0]["args"]
        try:
            return decision.model_validate(data), ""
        except ValidationError as err:
            if not clip:
                raise
            first = err
    else:
        text = msg.content if isinstance(msg.content, str) else ""
        text = text.strip()
        if not text.startswith("{"):
            fenced = _FENCED.search(text)
            if fenced is None:
                raise ValueError(f"no JSON object in the answer: {text[:80]!r}")
            text = fenced.group(1)
        try:
            return decision.model_validate_json(text), ""
        except ValidationError as err:
            if not clip:
                raise
            first = err
        try:
            data = json.loads(text)
        except ValueError:
            raise first from None
    fixed, notes = clip_answer(decision, data, first)
    if not notes:
        raise first
    return decision.model_validate(fixed), "clipped: " + "; ".join(notes)


_BOUNDS = {
    "greater_than_equal": ("ge", 0),
    "less_than_equal": ("le", 0),
    "greater_than": ("gt", 1),
    "less_than": ("lt", -1),
}


def clip_answer(decision: type[BaseModel], data: Any, err: ValidationError) -> tuple[Any, list[str]]:
    """``data`` with what ``err`` found out of bounds set to the bound, and extra fields dropped.

    Returns the repaired data and one note per change (none: nothing could be repaired). A strict
    bound (``gt``/``lt``) is clipped only on an integer field (to the nearest integer inside it): a
    float has no nearest value inside an open interval worth acting on, so that answer is rejected.
    Wrong types, unknown choices and missing fields are never guessed.
    """
    if not isinstance(data, dict):
        return data, []
    fixed, notes = dict(data), []
    for e in err.errors():
        loc, ctx = e["loc"], e.get("ctx") or {}
        if len(loc) != 1 or not isinstance(loc[0], str):
            continue
        name = loc[0]
        if e["type"] == "extra_forbidden":
            fixed.pop(name, None)
            notes.append(f"dropped {name}")
        elif e["type"] in _BOUNDS:
            key, step = _BOUNDS[e["type"]]
            bound = ctx.get(key)
            field = decision.model_fields.get(name)
            if not isinstance(bound, int | float) or field is None:
                continue
            if step:
                if field.annotation is not int or not isinstance(bound, int):
                    continue
                bound += step
            notes.append(f"{name} {e['input']!r} to {bound!r}")
            fixed[name] = bound
    return fixed, notes


def _summarise(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:3]:
        loc = ".".join(str(x) for x in e["loc"]) or "(answer)"
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)
