"""LLM-driven decisions through ``langchain-openai`` against any OpenAI-compatible endpoint.

``LLMDecider`` turns a round's (system prompt, observation) pairs into validated Decisions: answers
come from the replay cache or from the model (through ``client.ModelClient``, in this process or in
``llm.workers`` worker processes), are checked with pydantic whatever the server claims, and on
any failure (malformed JSON, wrong types, out-of-range or extra fields, HTTP errors after the
client's own retries, timeouts, budget caps) there is no decision and a reason, so the caller
keeps the rule-based decision. An answer that does not validate is re-asked once with the
validation error, clipped, or dropped (``llm.on_invalid``), and the raw answer is kept. It never
raises because of an answer; it raises ``LLMUnavailableError`` when the endpoint refuses the
configuration itself (a wrong key, model or URL), so a run never quietly becomes a rule run, and
``check_fallback_share`` raises ``LLMFallbackError`` when too few answers were the model's.

Retries with backoff (honouring ``Retry-After``) are openai-python's: ``llm.max_retries`` is
passed to it, not re-implemented. ``structured_output = "auto"`` tries json_schema, then tools,
then JSON mode with the schema in the prompt, in one round whatever the failure, and keeps the
first that gives a valid answer; only methods that failed transiently are tried again later.

``LLMPolicy`` runs a round: it picks the LLM-driven agents (fixed by the seed), groups households
into archetypes when asked, sends every call of the round concurrently under a semaphore, and
writes the answers into the role's decision batch before validation clips them.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel

from tokenomy import registry
from tokenomy.agents.base import Batch, MarketView
from tokenomy.policies.cache import AnswerCache, CachedAnswer, request_key
from tokenomy.policies.client import (
    CallOutcome,
    LLMConfigError,
    LLMUnavailableError,
    ModelClient,
    Request,
    read_key,
    redact,
    schema_of,
)
from tokenomy.policies.prompts import PromptTemplate, load_prompt, user_message
from tokenomy.scenario import LLM, Scenario
from tokenomy.world import World

if TYPE_CHECKING:
    from tokenomy.policies.workers import WorkerPool

__all__ = [
    "CallOutcome",
    "LLMConfigError",
    "LLMDecider",
    "LLMFallbackError",
    "LLMPolicy",
    "LLMUnavailableError",
    "archetype_groups",
    "estimate",
    "redact",
    "select_agents",
]

AUTO_ORDER = ("json_schema", "tools", "json_mode")
CAP_PREFIX = "budget:"  # how a decision handed to the rules by a cap says so (and is told from a failure)
log = logging.getLogger(__name__)


class LLMFallbackError(RuntimeError):
    """More of the run's decisions got no valid answer than ``llm.max_fallback_share`` allows.

    Raised after a round, so the tables up to it are kept and the manifest says ``failed``: a run
    mostly decided by the rules must not be published as an LLM run.
    """


@dataclass
class Usage:
    """Totals kept by the decider (for the summary, the manifest and the fallback-share check)."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_hits: int = 0
    fallbacks: int = 0
    cost_usd: float = 0.0
    capped: str = ""  # why the LLM stopped being asked, if a cap was reached
    capped_round: int | None = None
    decisions: int = 0  # LLM-driven decisions of the run
    from_model: int = 0  # of them, decided by a valid (possibly repaired) answer of the model
    repaired: int = 0  # of those, after a clip or a re-ask
    capped_decisions: int = 0  # handed to the rules by max_calls or budget_usd (not failures)
    failed: int = 0  # asked of the model (or meant to be) and no valid answer
    reasons: dict[str, int] = field(default_factory=dict)  # why they failed, for the error and the manifest
    counted_input_tokens: int = 0  # of the calls counted (and priced) so far: what a call's cost is estimated from
    counted_output_tokens: int = 0
    by_role: dict[str, dict[str, float]] = field(default_factory=dict)

    def add(self, role: str, o: CallOutcome) -> None:
        r = self.by_role.setdefault(
            role,
            {
                "decisions": 0,
                "calls": 0,
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_hits": 0,
                "fallbacks": 0,
                "repaired": 0,
                "failed": 0,
            },
        )
        ok = o.decision is not None
        r["decisions"] += 1
        r["calls"] += o.calls
        r["input_tokens"] += o.input_tokens if o.called else 0
        r["output_tokens"] += o.output_tokens if o.called else 0
        r["cache_hits"] += int(o.cache_hit)
        r["fallbacks"] += int(not ok)
        r["repaired"] += int(ok and bool(o.repair))
        r["failed"] += int(o.failed)
        self.cache_hits += int(o.cache_hit)
        self.fallbacks += int(not ok)
        self.decisions += 1
        self.from_model += int(ok)
        self.repaired += int(ok and bool(o.repair))
        self.capped_decisions += int(o.capped)
        if o.failed:
            self.failed += 1
            why = o.fallback_reason[:160]
            self.reasons[why] = self.reasons.get(why, 0) + 1
        if o.called:
            self.input_tokens += o.input_tokens
            self.output_tokens += o.output_tokens

    @property
    def model_share(self) -> float | None:
        """Share of the LLM-driven decisions the model's answers made (None before any)."""
        return self.from_model / self.decisions if self.decisions else None

    @property
    def failed_share(self) -> float:
        """Share of the decisions asked of the model that got no valid answer (caps left out)."""
        asked = self.decisions - self.capped_decisions
        return self.failed / asked if asked else 0.0

    def summary(self) -> dict[str, Any]:
        """The decision counts for the manifest."""
        share = self.model_share
        return {
            "decisions": self.decisions,
            "from_model": self.from_model,
            "model_share": round(share, 6) if share is not None else None,
            "repaired": self.repaired,
            "capped_decisions": self.capped_decisions,
            "failed": self.failed,
            "failed_share": round(self.failed_share, 6),
            "top_failure_reasons": [{"reason": k, "count": n} for k, n in self.top_reasons(5)],
        }

    def top_reasons(self, n: int) -> list[tuple[str, int]]:
        """The ``n`` most common failure reasons, most common first."""
        return sorted(self.reasons.items(), key=lambda kv: -kv[1])[:n]


def _without_credentials(url: str | None) -> str | None:
    """An endpoint fit for the manifest: ``user:password@`` removed."""
    if not url or "@" not in url:
        return url
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


class LLMDecider:
    """One configured model, its method choice, the answer cache and the spending caps.

    The calls themselves go through a ``ModelClient`` in this process, or through
    ``llm.workers`` worker processes (``tokenomy.policies.workers``); both are made on first use,
    so a replay or a dry run starts no client and no process.
    """

    def __init__(self, cfg: LLM, *, seed: int, cache: AnswerCache | None = None, replay: bool = False) -> None:
        self.cfg = cfg
        self.seed = cfg.seed if cfg.seed is not None else seed
        self.cache = cache
        self.replay = replay
        self.usage = Usage()
        self.method: str | None = None if cfg.structured_output == "auto" else cfg.structured_output
        self.methods_failed: dict[str, str] = {}
        self.reached = False  # the endpoint has answered over HTTP at least once
        self._key = "" if replay else read_key(cfg)
        self._client: ModelClient | None = None
        self._pool: WorkerPool | None = None
        self.worker_failure = ""  # why the worker processes were given up, if they were
        self._reserved = 0  # calls admitted so far (max_calls counts these)
        self._pending_usd = 0.0  # expected cost of the calls admitted this round and not yet answered
        self._chars_sent = 0  # prompt characters of the calls answered so far (tokens per character)
        self._primed: dict[str, CallOutcome] = {}  # preflight answers, counted, waiting for their round

    # -- transport --------------------------------------------------------------------------------
    async def _send(self, method: str, requests: list[Request]) -> list[CallOutcome]:
        if self._pool is None and self.cfg.workers > 1 and not self.worker_failure:
            from tokenomy.policies.workers import WorkerPool

            self._pool = WorkerPool(self.cfg, seed=self.seed, n=self.cfg.workers)
            weakref.finalize(self, self._pool.close)
        if self._pool is not None:
            out = await self._pool.call_many(method, requests)
            if self._pool.broken:  # those calls fell back; the rest of the run calls from this process
                self.worker_failure = self._pool.broken
                log.warning("%s; LLM calls continue in the main process", self.worker_failure)
                self.close()
            return out
        if self._client is None:
            self._client = ModelClient(self.cfg, seed=self.seed, key=self._key)
        return await self._client.call_many(method, requests)

    async def _ask(self, method: str, requests: list[Request], where: str) -> list[CallOutcome]:
        """Send with ``method``; stop on a fatal endpoint error; re-ask invalid answers once (``reask``).

        A re-ask is a call like any other (``max_calls`` and ``budget_usd`` admit it or the answer
        falls back, saying so). It repeats the conversation with the rejected answer as the
        assistant's message and the validation error as the user's, as instructor-style clients do.
        """
        outs = await self._send(method, requests)
        self._stop_if_fatal(outs, where)
        if self.cfg.on_invalid != "reask":
            return outs
        again: list[int] = []
        for i, o in enumerate(outs):
            if not o.invalid:
                continue
            if reason := self._cap_reason(expected := self._expected_cost(requests[i])):
                o.fallback_reason = f"{o.fallback_reason} (not re-asked: {reason})"[:500]
                continue
            self._reserved += 1
            self._pending_usd += expected
            again.append(i)
        if again:
            retried = await self._send(method, [_reask(requests[i], outs[i]) for i in again])
            self._stop_if_fatal(retried, where)
            for i, second in zip(again, retried, strict=True):
                outs[i] = _after_reask(outs[i], second)
        return outs

    def _stop_if_fatal(self, outs: list[CallOutcome], where: str) -> None:
        """Raise ``LLMUnavailableError`` for an answer that says the configuration cannot work.

        Nothing listening at the URL is fatal only until the endpoint has answered once: later it
        is a server that went away, whose failures count against ``max_fallback_share`` instead.
        """
        self.reached = self.reached or any(o.responded for o in outs)
        for o in outs:
            if o.fatal and (o.fatal != "unreachable" or not self.reached):
                raise LLMUnavailableError(self._unavailable(o.fatal, o.fallback_reason, where))

    def _unavailable(self, kind: str, detail: str, where: str) -> str:
        c = self.cfg
        url = _without_credentials(c.base_url) or "https://api.openai.com/v1"
        what = {
            "auth": f"the endpoint {url} refused the API key in ${c.api_key_env} (HTTP 401: check the key,"
            " or llm.api_key_env)",
            "forbidden": f"the API key in ${c.api_key_env} may not use model {c.model!r} at {url} (HTTP 403)",
            "not_found": f"no model {c.model!r} at {url} (HTTP 404: check llm.model and llm.base_url)",
            "unreachable": f"nothing answers at llm.base_url = {url} (is the server running, is the URL right?)",
            "methods": f"no structured-output method works with model {c.model!r} at {url}"
            " (set llm.structured_output, or try another model)",
        }[kind]
        detail = " ".join(redact(detail, (self._key,)).split())[:400]
        return f"LLM unavailable: {what}; {where}. {detail}"

    def close(self) -> None:
        """Stop the worker processes, if any (they also stop when the decider is collected or at exit)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    # -- caps -----------------------------------------------------------------------------------
    def _cap_reason(self, expected_usd: float) -> str:
        """Why one more call may not be sent, or ``""``.

        ``max_calls`` is exact. ``budget_usd`` is a ceiling on the estimated spend: a call goes out only
        if what has been spent, plus the expected cost of the calls already sent this round, plus its
        own expected cost stays within it (so a round of many concurrent calls cannot overshoot it).
        """
        c, u = self.cfg, self.usage
        if c.max_calls is not None and self._reserved >= c.max_calls:
            return f"{CAP_PREFIX} llm.max_calls = {c.max_calls} reached"
        if c.budget_usd is not None and u.cost_usd + self._pending_usd + expected_usd > c.budget_usd:
            return (
                f"{CAP_PREFIX} llm.budget_usd = {c.budget_usd} reached (estimated ${u.cost_usd:.4f} spent"
                f" and ${self._pending_usd:.4f} committed to calls in flight)"
            )
        return ""

    def _expected_cost(self, r: Request) -> float:
        """A call's cost before it is made: from the tokens per prompt character and the output tokens
        seen so far, or (before the first answer) from the dry run's rule of thumb. Only a budget needs it."""
        c = self.cfg
        if c.budget_usd is None or not (c.price_input_per_million or c.price_output_per_million):
            return 0.0
        u, chars = self.usage, len(r.system) + len(r.user)
        if u.calls and self._chars_sent:
            return self.cost_of(chars * u.counted_input_tokens / self._chars_sent, u.counted_output_tokens / u.calls)
        return self.cost_of(chars / 4, min(TYPICAL_OUTPUT_TOKENS, self.cfg.max_output_tokens))

    def cost_of(self, input_tokens: float, output_tokens: float) -> float:
        c = self.cfg
        return (input_tokens * c.price_input_per_million + output_tokens * c.price_output_per_million) / 1e6

    def check_fallback_share(self, round_no: int) -> None:
        """Raise ``LLMFallbackError`` once more than ``llm.max_fallback_share`` of the decisions asked of
        the model so far got no valid answer (decisions a cap handed to the rules are not counted)."""
        u, limit = self.usage, self.cfg.max_fallback_share
        if u.failed_share <= limit:
            return
        asked = u.decisions - u.capped_decisions
        (reason, n), *_ = u.top_reasons(1)
        raise LLMFallbackError(
            f"{u.failed} of the {asked} decisions asked of the model by round {round_no} got no valid answer"
            f" ({u.failed_share:.0%}, more than llm.max_fallback_share = {limit}): the run stopped rather than"
            f" pass the rules' decisions off as the model's. Most common reason ({n}x): {reason}"
        )

    # -- decisions ------------------------------------------------------------------------------
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
                "schema": schema_of(decision),
            }
        )

    async def ask(self, decision: type[BaseModel], system: str, user: str, *, round_no: int = 0) -> CallOutcome:
        return (await self.ask_all([Request(decision, system, user)], round_no=round_no))[0]

    async def ask_all(
        self, requests: list[Request], *, round_no: int = 0, where: str | None = None
    ) -> list[CallOutcome]:
        """Answers for a round's requests, in order: from the cache, from the model, or a fallback.

        Cache hits and caps are settled first; every remaining request then goes out at once. With
        ``structured_output = "auto"`` and no method found yet, one request first tries json_schema,
        tools and JSON mode in turn; if none gives a valid answer the round's other requests are not
        sent (the rules decide them, saying why), and the next round tries again the methods that
        failed only transiently. Raises ``LLMUnavailableError`` when the endpoint refuses the
        configuration (``where`` says where the run was, for the message).
        """
        outs, keys, sent, primed = await self._answer(requests, round_no, where or f"stopped in round {round_no}")
        for i, (o, r) in enumerate(zip(outs, requests, strict=True)):
            if i in sent:
                self._count(o, r)
            if not o.cache_hit:
                self._record(keys[i], o, logged=i in sent or i in primed)
        self._pending_usd = 0.0
        return outs

    async def preflight(self, r: Request, *, round_no: int = 0) -> CallOutcome | None:
        """Send the run's first request before anything is written, so a wrong key, model or URL stops
        the run with ``LLMUnavailableError`` before its first round. The answer (or failure) is
        counted now and kept for that round, which uses it instead of asking again (None: nothing sent)."""
        if self.replay or self.reached:
            return None
        where = "nothing was run"
        outs, keys, sent, _ = await self._answer([r], round_no, where)
        self._pending_usd = 0.0
        if not sent:
            return None
        self._count(outs[0], r)
        self._primed[keys[0]] = outs[0]
        return outs[0]

    async def _answer(
        self, requests: list[Request], round_no: int, where: str
    ) -> tuple[list[CallOutcome], list[str], set[int], set[int]]:
        """Every request settled (cache, preflight, cap, model), its cache key, and which were sent now
        and which by the preflight."""
        outs: list[CallOutcome | None] = [None] * len(requests)
        keys = [self.key_for(r.decision, r.system, r.user) for r in requests]
        todo: list[int] = []
        primed: set[int] = set()
        for i, (r, key) in enumerate(zip(requests, keys, strict=True)):
            if (early := self._primed.pop(key, None)) is not None:
                outs[i] = early
                primed.add(i)
                continue
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None and (hit.ok or self.replay):
                outs[i] = o = self._from_cache(r.decision, hit)
                if o.capped and not self.usage.capped:  # a replayed cap: the summary says so too
                    self.usage.capped, self.usage.capped_round = o.fallback_reason, round_no
            elif self.replay:
                outs[i] = CallOutcome(None, fallback_reason="replay: no recorded answer for this request")
            elif reason := self._cap_reason(expected := self._expected_cost(r)):
                if not self.usage.capped:
                    self.usage.capped, self.usage.capped_round = reason, round_no
                outs[i] = CallOutcome(None, fallback_reason=reason, capped=True)
            else:
                self._reserved += 1
                self._pending_usd += expected
                todo.append(i)
        sent = set(todo)
        if todo and self.method is None:
            if primed:  # the preflight probed for this round already and found nothing: not twice
                probed = outs[min(primed)]
                assert probed is not None
                first, rest = None, todo
            else:
                first, rest = todo[0], todo[1:]
                probed = outs[first] = await self._probe(requests[first], where)
            if self.method is None:
                why = f"no structured-output method worked this round ({probed.fallback_reason})"[:500]
                for i in rest:
                    outs[i] = CallOutcome(None, fallback_reason=why)
                self._reserved -= len(rest)
                sent, todo = ({first} if first is not None else set()), []
            else:
                todo = rest
        if todo:
            assert self.method is not None
            asked = await self._ask(self.method, [requests[i] for i in todo], where)
            for i, o in zip(todo, asked, strict=True):
                outs[i] = o
        answered = [o for o in outs if o is not None]
        assert len(answered) == len(outs), "every request is settled: from the cache, the model, or a fallback"
        return answered, keys, sent, primed

    async def _probe(self, r: Request, where: str) -> CallOutcome:
        """Try each structured-output method on one request, in this round, until one gives a valid answer.

        Whatever the failure (a 400, a 500 like llama-cpp-python's answer to json_schema, a timeout,
        an answer of another shape), the next method is tried at once, and the first that works is
        kept; the ones before it are given up. A method works when its answer validates or has the
        schema's shape with a value out of bounds (that answer is then handled by
        ``llm.on_invalid`` like any other): measured against llama-cpp-python with a 135M model,
        counting such an answer as a failure gave up ``tools`` in round 0 and every decision went
        to the rules. When none works, those that failed transiently (timeouts,
        429, 5xx) are tried again next round, so a server still warming up does not lose a method
        for good; if every method has been refused for good, the endpoint is unusable
        (``LLMUnavailableError``). Every attempt is a call (capped by ``max_calls``); the last is
        returned, carrying the count and the tokens of the attempts before it.
        """
        out = CallOutcome(None, fallback_reason="no structured-output method worked")
        tried: dict[str, CallOutcome] = {}
        for m in AUTO_ORDER:
            if m in self.methods_failed:
                continue
            if tried:
                if self.cfg.max_calls is not None and self._reserved >= self.cfg.max_calls:
                    break
                self._reserved += 1
            (out,) = await self._ask(m, [r], where)
            tried[m] = out
            if out.decision is not None or out.well_formed:
                self.method = m  # a well-formed answer with a value out of bounds: the method works
                break
        for m, o in tried.items():
            if m != self.method and o.decision is None and (self.method is not None or not o.transient):
                self.methods_failed[m] = o.fallback_reason
        if self.method is None and len(self.methods_failed) == len(AUTO_ORDER):
            detail = "; ".join(f"{m}: {why[:120]}" for m, why in self.methods_failed.items())
            raise LLMUnavailableError(self._unavailable("methods", detail, where))
        for m, o in tried.items():
            if m in self.methods_failed:
                log.warning("structured output %s did not work: %s", m, redact(o.fallback_reason, (self._key,)))
        earlier = [o for o in tried.values() if o is not out]
        for o in earlier:  # the refused attempts were calls too: count them with the answer
            out.calls += o.calls
            out.input_tokens += o.input_tokens
            out.output_tokens += o.output_tokens
        if out.decision is not None and earlier and not out.raw_answer:
            out.raw_answer = earlier[-1].raw_answer  # what the refused method's answer was, if one came
        return out

    def _count(self, out: CallOutcome, r: Request) -> None:
        if out.called:
            self.usage.calls += out.calls
            self.usage.cost_usd += self.cost_of(out.input_tokens, out.output_tokens)
            self._chars_sent += out.calls * (len(r.system) + len(r.user))
            self.usage.counted_input_tokens += out.input_tokens
            self.usage.counted_output_tokens += out.output_tokens

    def _record(self, key: str, out: CallOutcome, *, logged: bool) -> None:
        """Log a rejected answer and record the outcome for replay (a failure never replaces an answer)."""
        if out.decision is None and logged:
            log.warning(
                "LLM answer rejected (%s), the rule-based decision stands in: %s",
                out.method,
                redact(out.fallback_reason, (self._key,)),
            )
        if self.cache is None:
            return
        if out.decision is None and (old := self.cache.get(key)) is not None and old.ok:
            return  # the same request answered before (two agents alike): keep that answer for replay
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
                out.raw_answer,
                out.repair,
            ),
        )

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
            raw_answer=hit.raw_answer,
            repair=hit.repair,
            capped=not hit.ok and hit.fallback_reason.startswith(CAP_PREFIX),
        )


def _reask(r: Request, o: CallOutcome) -> Request:
    """The request again, with the rejected answer and what was wrong with it."""
    feedback = (
        f"Your answer was rejected: {o.invalid}. Reply again with one corrected JSON object for"
        f" {r.decision.__name__} that follows the schema, and nothing else."
    )
    return Request(
        r.decision, r.system, r.user, (*r.history, ("assistant", o.raw_answer or "(empty)"), ("user", feedback))
    )


def _after_reask(first: CallOutcome, second: CallOutcome) -> CallOutcome:
    """One outcome for both calls: the second answer, both calls' counts, every rejected raw answer."""
    second.calls += first.calls
    second.input_tokens += first.input_tokens
    second.output_tokens += first.output_tokens
    second.latency_ms += first.latency_ms
    second.raw_answer = first.raw_answer + (f"\n--- re-asked ---\n{second.raw_answer}" if second.raw_answer else "")
    if second.decision is not None:
        second.repair = "; ".join(x for x in (f"re-asked after: {first.invalid}", second.repair) if x)[:500]
    else:
        second.fallback_reason = f"{second.fallback_reason} (after a re-ask; first answer: {first.invalid})"[:500]
    return second


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
    """Group households into at most ``k`` archetypes: employment x income quantile x wealth quantile.

    Income gets ``q_i = min(floor(sqrt(k / e)), distinct incomes)`` quantile bins, where ``e`` is the
    number of employment states present (1 or 2); wealth gets what is left, ``floor(k / (e q_i))``.
    So when incomes tie (all wages equal at the start, say) the groups go to wealth instead of being
    lost, and there are never more than ``k``. Ties share a bin, so fewer groups can appear. Returns
    a group id per household (ids are dense from 0).
    """
    if employed.size == 0:
        return np.empty(0, dtype=np.int64)
    e = int(np.unique(employed).size) if k >= 2 else 1  # with k = 1 there is one group for everybody
    q_income = max(1, min(int(np.floor(np.sqrt(k / e))), int(np.unique(income).size)))
    q_wealth = max(1, k // (e * q_income))

    def bins(x: NDArray[np.float64], q: int) -> NDArray[np.int64]:
        edges = np.quantile(x, np.linspace(0, 1, q + 1)[1:-1])
        return np.searchsorted(edges, x, side="right").astype(np.int64)

    status = employed.astype(np.int64) if e == 2 else np.zeros(employed.size, dtype=np.int64)
    raw = (status * q_income + bins(income, q_income)) * q_wealth + bins(wealth, q_wealth)
    _, dense = np.unique(raw, return_inverse=True)
    groups: NDArray[np.int64] = dense.astype(np.int64)
    return groups


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
        order = [spec.name for spec in registry.roles()]
        for name in self.roles:
            spec, cfg = registry.role(name), scenario.roles.section(name)
            if not spec.llm:
                raise LLMConfigError(f"roles.{name}.policy = 'llm', but an LLM may not drive the {name} role")
            if cfg.archetype_count() and spec.archetype_prompt is not None:
                self.prompts[name] = load_prompt(spec.archetype_prompt, cfg.prompt)
            elif isinstance(spec.prompt, Path):
                self.prompts[name] = load_prompt(name, cfg.prompt or str(spec.prompt))
            else:
                self.prompts[name] = load_prompt(str(spec.prompt_name), cfg.prompt)
            n = int(spec.count(scenario))
            self.agents[name] = select_agents(scenario.seed, order.index(name), n, cfg.llm_share)

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
            "on_invalid": self.decider.cfg.on_invalid,
            "max_fallback_share": self.decider.cfg.max_fallback_share,
        }

    def first_request(self, world: World, view: MarketView) -> Request | None:
        """The first request the round would send (what the preflight and ``llm-check`` send)."""
        calls = self.plan(world, view)
        return Request(calls[0].decision, calls[0].system, calls[0].user) if calls else None

    def plan(self, world: World, view: MarketView) -> list[_Call]:
        """Every call of this round: the prompts as they will be sent."""
        w = world
        calls: list[_Call] = []
        for role in self.roles:
            spec, cfg = registry.role(role), self.scenario.roles.section(role)
            impl = spec.role
            ids = self.agents[role]
            share = impl.share_decision
            if share is not None and cfg.archetype_count():
                # archetypes group by employment, income and wealth: the household role's
                wealth = (w.household_balance()[ids] + w.household_token_wealth()[ids]).astype(np.float64)
                groups = archetype_groups(
                    wealth, w.h_income[ids].astype(np.float64), w.h_employer[ids] >= 0, cfg.archetype_count()
                )
                for g in range(int(groups.max()) + 1 if groups.size else 0):
                    members = ids[groups == g]
                    rep = int(members[np.argsort(wealth[groups == g], kind="stable")[members.size // 2]])
                    persona = cfg.personas[g % len(cfg.personas)] if cfg.personas else cfg.persona
                    system = self.prompts[role].render(decision=share, persona=persona, policy_text=cfg.policy_text)
                    obs = impl.observe(w, view, rep)
                    user = user_message(view.round, obs, share)
                    calls.append(_Call(role, members, f"archetype:{g}", g, share, system, user))
                continue
            system = self.prompts[role].render(
                decision=impl.decision_model, persona=cfg.persona, policy_text=cfg.policy_text
            )
            first = w.layout.first(role)
            for i in ids:
                obs = impl.observe(w, view, int(i))
                calls.append(
                    _Call(
                        role,
                        np.array([i]),
                        w.layout.name_of(first + int(i)),
                        -1,
                        impl.decision_model,
                        system,
                        user_message(view.round, obs, impl.decision_model),
                    )
                )
        return calls

    async def decide(self, world: World, view: MarketView, batches: dict[str, Batch]) -> list[dict[str, Any]]:
        """Ask the model for every LLM-driven decision of the round and write answers into ``batches``."""
        calls = self.plan(world, view)
        outcomes = await self.decider.ask_all(
            [Request(c.decision, c.system, c.user) for c in calls], round_no=world.round
        )
        records = []
        for c, o in zip(calls, outcomes, strict=True):
            self.decider.usage.add(c.role, o)
            if o.decision is not None:
                if c.archetype >= 0:
                    batches[c.role].merge_shares(world, c.ids, o.decision, self.scenario)
                else:
                    batches[c.role].merge(world, int(c.ids[0]), o.decision, self.scenario)
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
                    "calls": o.calls,
                    "answer_json": o.decision.model_dump_json() if o.decision is not None else "",
                    "raw_answer": o.raw_answer,
                    "repair": o.repair,
                }
            )
        if self.decider.cache is not None:
            self.decider.cache.commit()
        return records


# -- budgeting before spending ------------------------------------------------------------------
TYPICAL_OUTPUT_TOKENS = 120  # a one-sentence rationale and the fields; max_output_tokens is the ceiling


def estimate(scenario: Scenario, world: World, view: MarketView) -> list[dict[str, Any]]:
    """What a run would ask of the model, without calling it: per role, from round 0's prompts.

    Calls per round are the LLM-driven agents (or the archetypes of round 0); input tokens are the
    prompts' length / 4 (a common rule of thumb for English text); output tokens are a typical
    ``TYPICAL_OUTPUT_TOKENS`` and at most ``llm.max_output_tokens``.
    """
    sc = scenario
    policy = LLMPolicy(sc, LLMDecider(sc.llm, seed=sc.seed, replay=True))  # replay: no key, no client
    calls = policy.plan(world, view)
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
