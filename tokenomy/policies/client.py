"""One configured model over HTTP: ``ChatOpenAI`` clients, structured-output binding, strict parsing.

``ModelClient.call_many`` sends a batch of decision requests concurrently with one structured-output
method and turns every answer into a ``CallOutcome``: a validated Decision, or no decision and the
reason (HTTP errors after openai-python's own retries, timeouts, malformed, wrong-typed,
out-of-range or extra fields). It never raises because of an answer. It holds no cache, caps or
method choice (those are the decider's), so the same class runs in the caller's process or in a
worker process (``tokenomy.policies.workers``).
"""

from __future__ import annotations

import asyncio
import functools
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

__all__ = ["CallOutcome", "LLMConfigError", "ModelClient", "Request", "read_key", "redact", "schema_of"]

SHARD = 16  # concurrent calls per HTTP client (see ModelClient._make_chats)
_KEYLIKE = re.compile(r"sk-[A-Za-z0-9_\-]{8,}")


class LLMConfigError(ValueError):
    """The LLM configuration cannot be used (for example: no API key in the environment)."""


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
    """One decision to ask for: the Decision model the answer must fit, and the two messages."""

    decision: type[BaseModel]
    system: str
    user: str


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

    @property
    def called(self) -> bool:
        return self.calls > 0


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
        try:
            msg = await self._bound(method, r.decision).ainvoke([("system", r.system), ("user", r.user)])
        except Exception as exc:  # openai errors after retries, timeouts: never stop the run
            out = self._fail(method, t0, f"{type(exc).__name__}: {exc}")
            out.transient = _is_transient(exc)
            return out
        latency = (time.perf_counter() - t0) * 1000
        usage = getattr(msg, "usage_metadata", None) or {}
        tin, tout = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
        try:
            parsed = parse_answer(method, msg, r.decision)
        except (ValidationError, ValueError) as exc:
            why = _summarise(exc) if isinstance(exc, ValidationError) else str(exc)
            out = self._fail(method, t0, f"invalid answer: {why}")
            out.input_tokens, out.output_tokens = tin, tout
            return out
        rationale = str(getattr(parsed, "rationale", ""))[: self.cfg.rationale_chars]
        return CallOutcome(parsed, rationale, "", latency, tin, tout, False, method, calls=1)

    def _fail(self, method: str, t0: float, reason: str) -> CallOutcome:
        return CallOutcome(
            None,
            fallback_reason=redact(reason, (self._key,))[:500],
            latency_ms=(time.perf_counter() - t0) * 1000,
            method=method,
            calls=1,
        )


def _is_transient(exc: Exception) -> bool:
    """Timeouts, lost connections, 429 and 5xx after the retries: the server's state, not the request's fault."""
    import openai

    transient = (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError, TimeoutError)
    return isinstance(exc, transient)


@functools.cache
def schema_of(decision: type[BaseModel]) -> dict[str, Any]:
    return decision.model_json_schema()


_FENCED = re.compile(r"```(?:json)?\s*\n(.*?)\n\s*```", re.DOTALL)


def parse_answer(method: str, msg: Any, decision: type[BaseModel]) -> BaseModel:
    """The answer as a validated Decision, or ``ValidationError``/``ValueError`` saying why not.

    Strict: pydantic checks types, ranges and forbids extra fields, whatever the server claims
    about honouring the schema. The one leniency is a JSON object wrapped in a ```json fence, as
    chatty models send it.
    """
    if method == "tools":
        calls = getattr(msg, "tool_calls", None) or []
        if not calls:
            bad = getattr(msg, "invalid_tool_calls", None) or []
            raise ValueError(f"tool arguments are not valid JSON: {bad[0].get('error') if bad else 'no tool call'}")
        return decision.model_validate(calls[0]["args"])
    text = msg.content if isinstance(msg.content, str) else ""
    text = text.strip()
    if not text.startswith("{"):
        fenced = _FENCED.search(text)
        if fenced is None:
            raise ValueError(f"no JSON object in the answer: {text[:80]!r}")
        text = fenced.group(1)
    return decision.model_validate_json(text)


def _summarise(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:3]:
        loc = ".".join(str(x) for x in e["loc"]) or "(answer)"
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)
