"""LLM-driven decisions through ``langchain-openai`` against any OpenAI-compatible endpoint.

``LLMDecider`` turns one (system prompt, observation) pair into a validated Decision: it calls
``ChatOpenAI`` with structured output, checks the answer with pydantic whatever the server claims,
and on any failure (malformed JSON, wrong types, out-of-range or extra fields, HTTP errors after
the client's own retries, timeouts, budget caps) returns no decision and a reason, so the caller
keeps the rule-based decision. It never raises because of an answer.

Retries with backoff (honouring ``Retry-After``) are openai-python's: ``llm.max_retries`` is
passed to it, not re-implemented. ``structured_output = "auto"`` tries json_schema, then tools,
then JSON mode with the schema in the prompt, and remembers the first that gives a valid answer.

``LLMPolicy`` runs a round: it picks the LLM-driven agents (fixed by the seed), groups households
into archetypes when asked, sends every call of the round concurrently under a semaphore, and
writes the answers into the role's decision batch before validation clips them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ValidationError

from tokenomy.policies.cache import AnswerCache, CachedAnswer, request_key
from tokenomy.policies.prompts import PromptTemplate, load_prompt, user_message

if TYPE_CHECKING:
    from tokenomy.agents.base import Batch
    from tokenomy.scenario import LLM, Scenario
    from tokenomy.simulation import Simulation

__all__ = [
    "CallOutcome",
    "LLMConfigError",
    "LLMDecider",
    "LLMPolicy",
    "archetype_groups",
    "estimate",
    "redact",
    "select_agents",
]

SHARD = 16  # concurrent calls per HTTP client (see LLMDecider._make_chat)
AUTO_ORDER = ("json_schema", "tools", "json_mode")
ROLE_ORDER = ("household", "firm", "bank", "network", "regulator")
log = logging.getLogger(__name__)
_KEYLIKE = re.compile(r"sk-[A-Za-z0-9_\-]{8,}")


class LLMConfigError(ValueError):
    """The LLM configuration cannot be used (for example: no API key in the environment)."""


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove secrets (and anything shaped like an OpenAI key) from text we record or print."""
    for s in secrets:
        if s:
            text = text.replace(s, "[redacted]")
    return _KEYLIKE.sub("[redacted]", text)


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
    called: bool = False  # a request went over the network


@dataclass
class Usage:
    """Totals kept by the decider (for the summary and the manifest)."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_hits: int = 0
    fallbacks: int = 0
    cost_usd: float = 0.0
    capped: str = ""  # why the LLM stopped being asked, if a cap was reached
    capped_round: int | None = None
    by_role: dict[str, dict[str, float]] = field(default_factory=dict)

    def add(self, role: str, o: CallOutcome) -> None:
        r = self.by_role.setdefault(
            role, {"decisions": 0, "calls": 0, "input_tokens": 0, "output_tokens": 0, "cache_hits": 0, "fallbacks": 0}
        )
        r["decisions"] += 1
        r["calls"] += int(o.called)
        r["input_tokens"] += o.input_tokens if o.called else 0
        r["output_tokens"] += o.output_tokens if o.called else 0
        r["cache_hits"] += int(o.cache_hit)
        r["fallbacks"] += int(o.decision is None)
        self.cache_hits += int(o.cache_hit)
        self.fallbacks += int(o.decision is None)
        if o.called:
            self.input_tokens += o.input_tokens
            self.output_tokens += o.output_tokens


def _without_credentials(url: str | None) -> str | None:
    """An endpoint fit for the manifest: ``user:password@`` removed."""
    if not url or "@" not in url:
        return url
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def _read_key(cfg: LLM) -> str:
    key = os.environ.get(cfg.api_key_env, "")
    if key:
        return key
    if cfg.base_url and "api.openai.com" not in cfg.base_url:  # local servers (vLLM, Ollama, llama.cpp) take any key
        return "not-needed"
    raise LLMConfigError(
        f"LLM roles need an API key: set the environment variable {cfg.api_key_env} "
        "(or llm.api_key_env to another variable's name, or llm.base_url for a local server)"
    )


class LLMDecider:
    """One configured model, its method choice, the answer cache and the spending caps."""

    def __init__(self, cfg: LLM, *, seed: int, cache: AnswerCache | None = None, replay: bool = False) -> None:
        self.cfg = cfg
        self.seed = cfg.seed if cfg.seed is not None else seed
        self.cache = cache
        self.replay = replay
        self.usage = Usage()
        self.method: str | None = None if cfg.structured_output == "auto" else cfg.structured_output
        self.methods_failed: dict[str, str] = {}
        self._key = "" if replay else _read_key(cfg)
        self._chats: list[Any] = [] if replay else self._make_chat()
        self._runnables: dict[tuple[str, str, int], Any] = {}
        self._turn = 0
        self._probe: asyncio.Lock | None = None
        self._reserved = 0

    def _make_chat(self) -> list[Any]:
        """``ChatOpenAI`` clients, one per ``SHARD`` concurrent calls.

        httpcore's pool scans every connection for every request, so one pool of 128 connections
        costs quadratically more CPU than eight of 16 (measured: 0.46 s against 0.28 s of client
        CPU for 110 concurrent calls on a 2-core machine). Calls go round-robin over the shards.
        """
        import openai
        from langchain_core.rate_limiters import InMemoryRateLimiter
        from langchain_openai import ChatOpenAI
        from openai._base_client import DEFAULT_CONNECTION_LIMITS
        from pydantic import SecretStr

        c = self.cfg
        limiter = InMemoryRateLimiter(requests_per_second=c.requests_per_second) if c.requests_per_second else None
        shards = max(1, -(-c.max_concurrency // SHARD))
        per = max(1, -(-c.max_concurrency // shards))
        limits = type(DEFAULT_CONNECTION_LIMITS)(
            max_connections=per, max_keepalive_connections=per, keepalive_expiry=60.0
        )
        return [
            ChatOpenAI(
                model=c.model,
                base_url=c.base_url,
                api_key=SecretStr(self._key),
                temperature=c.temperature,
                seed=self.seed,
                timeout=c.timeout_s,
                max_retries=c.max_retries,
                max_tokens=c.max_output_tokens,
                use_responses_api=False,
                rate_limiter=limiter,  # shared: the limit is per run, not per shard
                http_async_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=c.timeout_s),
            )
            for _ in range(shards)
        ]

    # -- caps -----------------------------------------------------------------------------------
    def _cap_reason(self) -> str:
        c, u = self.cfg, self.usage
        if c.max_calls is not None and self._reserved >= c.max_calls:
            return f"budget: llm.max_calls = {c.max_calls} reached"
        if c.budget_usd is not None and u.cost_usd >= c.budget_usd:
            return f"budget: llm.budget_usd = {c.budget_usd} reached (estimated ${u.cost_usd:.4f})"
        return ""

    def cost_of(self, input_tokens: int, output_tokens: int) -> float:
        c = self.cfg
        return (input_tokens * c.price_input_per_million + output_tokens * c.price_output_per_million) / 1e6

    # -- one decision ---------------------------------------------------------------------------
    def key_for(self, decision: type[BaseModel], system: str, user: str) -> str:
        c = self.cfg
        return request_key(
            {
                "model": c.model,
                "base_url": c.base_url,
                "messages": [system, user],
                "temperature": c.temperature,
                "seed": self.seed,
                "max_tokens": c.max_output_tokens,
                "schema": _schema(decision),
            }
        )

    async def ask(self, decision: type[BaseModel], system: str, user: str, *, round_no: int = 0) -> CallOutcome:
        key = self.key_for(decision, system, user)
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is not None and (hit.ok or self.replay):
            return self._from_cache(decision, hit)
        if self.replay:
            return CallOutcome(None, fallback_reason="replay: no recorded answer for this request", cache_hit=False)
        reason = self._cap_reason()
        if reason:
            if not self.usage.capped:
                self.usage.capped, self.usage.capped_round = reason, round_no
            return CallOutcome(None, fallback_reason=reason)
        self._reserved += 1
        out = await self._call(decision, system, user)
        self.usage.calls += 1
        self.usage.cost_usd += self.cost_of(out.input_tokens, out.output_tokens)
        if self.cache is not None:
            self.cache.put(
                key,
                CachedAnswer(
                    out.decision is not None,
                    out.decision.model_dump_json() if out.decision else None,
                    out.rationale,
                    out.fallback_reason,
                    out.method,
                    out.input_tokens,
                    out.output_tokens,
                    out.latency_ms,
                ),
            )
        return out

    def _from_cache(self, decision: type[BaseModel], hit: CachedAnswer) -> CallOutcome:
        parsed = decision.model_validate_json(hit.decision_json) if hit.ok and hit.decision_json else None
        return CallOutcome(
            parsed,
            hit.rationale,
            hit.fallback_reason,
            0.0,
            hit.input_tokens,
            hit.output_tokens,
            cache_hit=True,
            method=hit.method,
        )

    async def _call(self, decision: type[BaseModel], system: str, user: str) -> CallOutcome:
        if self.method is not None:
            return await self._call_with(self.method, decision, system, user)
        if self._probe is None:
            self._probe = asyncio.Lock()
        async with self._probe:  # one call finds a method that works while the others wait...
            if self.method is None:
                out = CallOutcome(None, fallback_reason="no structured-output method worked")
                for m in AUTO_ORDER:
                    out = await self._call_with(m, decision, system, user)
                    if out.decision is not None:
                        self.method = m
                        return out
                    self.methods_failed[m] = out.fallback_reason
                return out
        return await self._call_with(self.method, decision, system, user)  # ...then call outside the lock

    def _bound(self, method: str, decision: type[BaseModel]) -> Any:
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
            name, schema = decision.__name__, _schema(decision)
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

    async def _call_with(self, method: str, decision: type[BaseModel], system: str, user: str) -> CallOutcome:
        t0 = time.perf_counter()
        try:
            msg = await self._bound(method, decision).ainvoke([("system", system), ("user", user)])
        except Exception as exc:  # openai errors after retries, timeouts: never stop the run
            return self._fail(method, t0, f"{type(exc).__name__}: {exc}", called=True)
        latency = (time.perf_counter() - t0) * 1000
        usage = getattr(msg, "usage_metadata", None) or {}
        tin, tout = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
        try:
            parsed = _parse(method, msg, decision)
        except (ValidationError, ValueError) as exc:
            why = _summarise(exc) if isinstance(exc, ValidationError) else str(exc)
            out = self._fail(method, t0, f"invalid answer: {why}", called=True)
            out.input_tokens, out.output_tokens = tin, tout
            return out
        rationale = str(getattr(parsed, "rationale", ""))[: self.cfg.rationale_chars]
        return CallOutcome(parsed, rationale, "", latency, tin, tout, False, method, True)

    def _fail(self, method: str, t0: float, reason: str, *, called: bool) -> CallOutcome:
        text = redact(reason, (self._key,))[:500]
        log.warning("LLM answer rejected (%s), the rule-based decision stands in: %s", method, text)
        return CallOutcome(
            None, fallback_reason=text, latency_ms=(time.perf_counter() - t0) * 1000, method=method, called=called
        )


@functools.cache
def _schema(decision: type[BaseModel]) -> dict[str, Any]:
    return decision.model_json_schema()


_FENCED = re.compile(r"```(?:json)?\s*\n(.*?)\n\s*```", re.DOTALL)


def _parse(method: str, msg: Any, decision: type[BaseModel]) -> BaseModel:
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


# -- which agents, and archetypes -----------------------------------------------------------------
def select_agents(seed: int, role_index: int, n: int, share: float) -> NDArray[np.int64]:
    """LLM-driven agents of a role: a seed-fixed subset, drawn from its own generator so that
    choosing them never shifts the simulation's random stream."""
    k = round(share * n)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    rng = np.random.default_rng([seed, 7919, role_index])
    return np.sort(rng.permutation(n)[:k]).astype(np.int64)


def archetype_groups(
    wealth: NDArray[np.float64], income: NDArray[np.float64], employed: NDArray[np.bool_], k: int
) -> NDArray[np.int64]:
    """Group households into at most ``k`` archetypes: employment x wealth quantile x income quantile.

    Each of wealth and income is cut into ``q = floor(sqrt(k / 2))`` quantile bins (ties share a
    bin), so there are at most ``2 q^2 <= k`` groups; empty ones are simply absent. Returns a group
    id per household (ids are dense from 0).
    """
    q = max(1, int(np.floor(np.sqrt(k / 2))))

    def bins(x: NDArray[np.float64]) -> NDArray[np.int64]:
        if x.size == 0:
            return np.empty(0, dtype=np.int64)
        edges = np.quantile(x, np.linspace(0, 1, q + 1)[1:-1])
        return np.searchsorted(edges, x, side="right").astype(np.int64)

    raw = employed.astype(np.int64) * q * q + bins(wealth) * q + bins(income)
    _, dense = np.unique(raw, return_inverse=True)
    return dense.astype(np.int64)


@dataclass
class _Call:
    role: str
    ids: NDArray[np.int64]  # agents the answer applies to (one, or an archetype's members)
    agent_id: str
    archetype: int
    decision: type[BaseModel]
    system: str
    user: str


class LLMPolicy:
    """The LLM side of a run: prompts, agent selection, one concurrent batch of calls per round."""

    def __init__(self, scenario: Scenario, decider: LLMDecider) -> None:
        self.scenario = scenario
        self.decider = decider
        self.roles = scenario.llm_roles()
        self.prompts: dict[str, PromptTemplate] = {}
        self.agents: dict[str, NDArray[np.int64]] = {}
        sizes = {
            "household": scenario.households,
            "firm": scenario.firms,
            "bank": scenario.banks,
            "network": 2,
            "regulator": 1,
        }
        for role in self.roles:
            cfg = getattr(scenario.roles, role)
            name = "household_archetype" if role == "household" and cfg.archetypes else role
            self.prompts[role] = load_prompt(name, cfg.prompt)
            self.agents[role] = select_agents(scenario.seed, ROLE_ORDER.index(role), sizes[role], cfg.llm_share)

    def manifest(self) -> dict[str, Any]:
        return {
            "roles": {
                r: {
                    "agents": int(self.agents[r].size),
                    "prompt": str(self.prompts[r].path),
                    "prompt_sha256": self.prompts[r].sha256,
                }
                for r in self.roles
            },
            "model": self.decider.cfg.model,
            "base_url": _without_credentials(self.decider.cfg.base_url),
            "api_key_env": self.decider.cfg.api_key_env,
            "structured_output": self.decider.cfg.structured_output,
        }

    def plan(self, sim: Simulation) -> list[_Call]:
        """Every call of this round: the prompts as they will be sent."""
        from tokenomy.agents.household import HouseholdShareDecision

        w, view = sim.world, sim.view
        assert view is not None
        calls: list[_Call] = []
        for role in self.roles:
            cfg = getattr(self.scenario.roles, role)
            role_obj = sim.roles[role]
            ids = self.agents[role]
            if role == "household" and cfg.archetypes:
                wealth = (w.household_balance()[ids] + w.token_wealth()[ids]).astype(np.float64)
                groups = archetype_groups(
                    wealth, w.h_income[ids].astype(np.float64), w.h_employer[ids] >= 0, cfg.archetypes
                )
                for g in range(int(groups.max()) + 1 if groups.size else 0):
                    members = ids[groups == g]
                    rep = int(members[np.argsort(wealth[groups == g], kind="stable")[members.size // 2]])
                    persona = cfg.personas[g % len(cfg.personas)] if cfg.personas else cfg.persona
                    system = self.prompts[role].render(
                        decision=HouseholdShareDecision, persona=persona, policy_text=cfg.policy_text
                    )
                    obs = role_obj.observe(w, view, rep)
                    calls.append(
                        _Call(
                            role,
                            members,
                            f"archetype:{g}",
                            g,
                            HouseholdShareDecision,
                            system,
                            user_message(view.round, obs, HouseholdShareDecision),
                        )
                    )
                continue
            system = self.prompts[role].render(
                decision=role_obj.decision_model, persona=cfg.persona, policy_text=cfg.policy_text
            )
            for i in ids:
                obs = role_obj.observe(w, view, int(i))
                calls.append(
                    _Call(
                        role,
                        np.array([i]),
                        role_obj.agent_name(w, int(i)),
                        -1,
                        role_obj.decision_model,
                        system,
                        user_message(view.round, obs, role_obj.decision_model),
                    )
                )
        return calls

    async def decide(self, sim: Simulation, batches: dict[str, Batch]) -> list[dict[str, Any]]:
        """Ask the model for every LLM-driven decision of the round and write answers into ``batches``."""
        calls = self.plan(sim)
        sem = asyncio.Semaphore(self.decider.cfg.max_concurrency)
        round_no = sim.world.round

        async def one(c: _Call) -> CallOutcome:
            async with sem:
                return await self.decider.ask(c.decision, c.system, c.user, round_no=round_no)

        outcomes = await asyncio.gather(*(one(c) for c in calls))
        records = []
        for c, o in zip(calls, outcomes, strict=True):
            self.decider.usage.add(c.role, o)
            if o.decision is not None:
                role_obj = sim.roles[c.role]
                if c.archetype >= 0:
                    role_obj.merge_shares(sim.world, batches[c.role], c.ids, o.decision, self.scenario)
                else:
                    role_obj.merge(sim.world, batches[c.role], int(c.ids[0]), o.decision, self.scenario)
            records.append(
                {
                    "role": c.role,
                    "agent_id": c.agent_id,
                    "ids": c.ids,
                    "archetype": c.archetype,
                    "members": int(c.ids.size),
                    "rationale": o.rationale,
                    "fallback_reason": o.fallback_reason,
                    "latency_ms": o.latency_ms,
                    "input_tokens": o.input_tokens if o.called else 0,
                    "output_tokens": o.output_tokens if o.called else 0,
                    "cache_hit": o.cache_hit,
                    "called": o.called,
                    "answer_json": o.decision.model_dump_json() if o.decision is not None else "",
                }
            )
        if self.decider.cache is not None:
            self.decider.cache.commit()
        return records


# -- budgeting before spending ------------------------------------------------------------------
TYPICAL_OUTPUT_TOKENS = 120  # a one-sentence rationale and the fields; max_output_tokens is the ceiling


def estimate(sim: Simulation) -> list[dict[str, Any]]:
    """What a run would ask of the model, without calling it: per role, from round 0's prompts.

    Calls per round are the LLM-driven agents (or the archetypes of round 0); input tokens are the
    prompts' length / 4 (a common rule of thumb for English text); output tokens are a typical
    ``TYPICAL_OUTPUT_TOKENS`` and at most ``llm.max_output_tokens``.
    """
    sc = sim.scenario
    policy = LLMPolicy(sc, LLMDecider(sc.llm, seed=sc.seed, replay=True))  # replay: no key, no client
    if sim.view is None:
        sim.observe()
    calls = policy.plan(sim)
    out_tokens = min(TYPICAL_OUTPUT_TOKENS, sc.llm.max_output_tokens)
    rows: list[dict[str, Any]] = []
    for role in policy.roles:
        mine = [c for c in calls if c.role == role]
        per_round = len(mine)
        tin = int(np.mean([(len(c.system) + len(c.user)) / 4 for c in mine])) if mine else 0
        rows.append(
            {
                "role": role,
                "agents": int(policy.agents[role].size),
                "calls_per_round": per_round,
                "calls": per_round * sc.rounds,
                "input_tokens": tin * per_round * sc.rounds,
                "output_tokens": out_tokens * per_round * sc.rounds,
            }
        )
    total_calls = sum(r["calls"] for r in rows)
    cap = sc.llm.max_calls
    scale = min(1.0, cap / total_calls) if cap is not None and total_calls else 1.0
    for r in rows:
        for k in ("calls", "input_tokens", "output_tokens"):
            r[k] = int(r[k] * scale)
        r["cost_usd"] = (
            r["input_tokens"] * sc.llm.price_input_per_million + r["output_tokens"] * sc.llm.price_output_per_million
        ) / 1e6
    return rows
