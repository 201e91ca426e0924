"""Recording a round: the metrics row, trades, payments, decisions and world snapshots.

The recorder takes what it reads (the world, the round's view and outcome), never the simulation.
Whose decisions are recorded comes from the role registry: every agent of most roles, a fixed
sample of households. Every ``record.flush_every`` rounds, at a snapshot, it checkpoints: the
buffered rounds become complete table parts, then the manifest names the snapshot and its SHA-256
with the runner's state (LLM usage and caps), which is where ``tokenomy resume`` starts.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from tokenomy import accounts, registry
from tokenomy.agents.base import MarketView
from tokenomy.metrics import Metric, RoundData, metrics_row
from tokenomy.outcome import RoundOutcome
from tokenomy.scenario import Scenario
from tokenomy.store import Checkpoint, RunWriter, payments_frame
from tokenomy.world import World

__all__ = ["Recorder", "Snapshot", "manifest_of"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A world snapshot written to the run directory: what resume and fork restore, and its hash."""

    round: int
    path: Path
    sha256: str


@dataclass
class Recorder:
    writer: RunWriter
    scenario: Scenario
    picks: dict[str, NDArray[np.int64]]  # per role, the agents whose decisions are recorded every round
    metrics: Mapping[str, Metric] = field(default_factory=dict)  # the user's own columns
    rounds_written: int = 0
    state: Callable[[], dict[str, Any]] | None = None  # what the runner keeps with a checkpoint (LLM usage, caps)
    _checkpointed: int | None = None  # the round of the last checkpoint (None: not known until the first round)
    _last: tuple[Snapshot, dict[str, Any], int] | None = None  # the last snapshot, its state and rounds written
    # LangGraph runs the record node on a worker thread, and a signal stops the run on the main one
    # while that thread may still be recording: close() waits for it, and nothing is written after
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: bool = False

    @property
    def path(self) -> Path:
        return self.writer.path

    @property
    def flush_every(self) -> int:
        """Rounds between checkpoints: a round of LLM calls costs far more than writing one, and is lost
        with the rounds after the last checkpoint, so LLM runs checkpoint every round by default."""
        every = self.scenario.record.flush_every
        return every if every is not None else (1 if self.scenario.llm_roles() else 10)

    @classmethod
    def open(
        cls,
        scenario: Scenario,
        path: Path,
        *,
        llm_manifest: dict[str, Any] | None = None,
        metrics: Mapping[str, Metric] | None = None,
        overwrite: bool = False,
        unique: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> Recorder:
        """A new run directory (``unique``: a new directory, renamed if the name is taken); ``extra``
        goes into the manifest."""
        manifest = manifest_of(scenario, llm_manifest=llm_manifest, metrics=metrics, extra=extra)
        writer = RunWriter.create(path, manifest, overwrite=overwrite, unique=unique)
        return cls(writer, scenario, _picks(scenario), dict(metrics or {}))

    @classmethod
    def reopen(
        cls, scenario: Scenario, writer: RunWriter, checkpoint: Checkpoint, *, metrics: Mapping[str, Metric] | None
    ) -> Recorder:
        """Go on recording a resumed run after ``checkpoint`` (its writer truncated there)."""
        rec = cls(writer, scenario, _picks(scenario), dict(metrics or {}), checkpoint.rounds_completed)
        rec._checkpointed = checkpoint.round if checkpoint.world is not None else None
        return rec

    def record(self, world: World, view: MarketView, outcome: RoundOutcome) -> dict[str, Any]:
        """Buffer the round's metrics row and tables (all at once: never half a round); returns the row."""
        w, o = world, outcome
        if self._checkpointed is None:
            self._checkpointed = o.round - 1
        d = RoundData(w, view, o, self.scenario)
        row = metrics_row(d, self.metrics)
        frames = {"metrics": pd.DataFrame([row])}
        if o.trades:
            t = pd.DataFrame(o.trades)
            t.insert(0, "round", o.round)
            t["issuer"] = [w.layout.name_of(int(w.t_issuer[int(j)])) for j in t["token"]]
            t["price"] = t["price"] / 100
            t["value"] = t["value"] / 100
            frames["trades"] = t
        level = self.scenario.record.payments
        frames["payments"] = payments_frame(o.round, o.postings, w.layout, level)
        frames["decisions"] = self._decisions(w, o)
        if o.events:
            frames["events"] = pd.DataFrame(o.events)
        frames["accounts"] = self._accounts(d)
        with self._lock:
            if not self._closed:
                self.writer.add_round(o.round, frames)
                self.rounds_written += 1
        return row

    def snapshot(self, world: World, *, final: bool) -> Snapshot | None:
        """Snapshot the world as it enters the next round, every ``record.snapshot_every`` rounds and at
        the end; at the first snapshot ``flush_every`` rounds after the last checkpoint, checkpoint."""
        r = world.round - 1  # the round that just ended
        if not (final or (r + 1) % self.scenario.record.snapshot_every == 0):
            return None
        data = world.to_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        with self._lock:
            if self._closed:
                return None
            state = self.state() if self.state is not None else {}
            name = self.writer.snapshot(r, data, sha256=sha256, state=state)
            snap = Snapshot(r, self.path / "snapshots" / name, sha256)
            self._last = (snap, state, self.rounds_written)
            if final or r - (self._checkpointed if self._checkpointed is not None else -1) >= self.flush_every:
                self._checkpoint()
        return snap

    def _checkpoint(self) -> None:
        assert self._last is not None
        snap, state, rounds = self._last
        self.writer.checkpoint(snap.round, snap.path.name, snap.sha256, rounds_completed=rounds, state=state)
        self._checkpointed = snap.round

    def _accounts(self, d: RoundData) -> pd.DataFrame:
        """Both sector matrices of the round in long format (zero cells left out): the ones the
        metrics already built for ``money_without_counterpart`` and ``sfc_residual``."""
        o = d.outcome
        names, flows = d.flows
        parts = []
        for kind, rows, m in (("balance", accounts.BALANCE_ROWS, d.balance_sheet), ("flow", names, flows)):
            r, c = np.nonzero(m)
            parts.append(
                pd.DataFrame(
                    {
                        "round": o.round,
                        "matrix": kind,
                        "row": np.asarray(rows, dtype=object)[r],
                        "sector": np.asarray(accounts.SECTORS, dtype=object)[c],
                        "cents": m[r, c],
                    }
                )
            )
        return pd.concat(parts, ignore_index=True)

    def _decisions(self, w: World, o: RoundOutcome) -> pd.DataFrame:
        """One row per LLM call (with rationale, fallback reason, usage), and rule-based rows for the
        registry's picks (every firm, bank, operator and the regulator, a fixed sample of households)."""
        lay = w.layout
        rows: list[dict[str, Any]] = []
        llm_ids: dict[str, set[int]] = {}
        for r in o.llm_records:
            llm_ids.setdefault(r["role"], set()).update(int(i) for i in r["ids"])
            batch = o.decisions[r["role"]]
            first = int(r["ids"][0])
            rows.append(
                {
                    "round": o.round,
                    "agent_id": r["agent_id"],
                    "role": r["role"],
                    "policy": "llm",
                    **{k: r[k] for k in _LLM_FIELDS},
                    "decision_json": json.dumps(batch.as_dict(first)),  # what was done, after validation
                    "validation": str(batch.notes[first]),
                }
            )
        for role, ids in self.picks.items():
            batch, start = o.decisions[role], lay.first(role)
            for i in ids:
                if int(i) in llm_ids.get(role, ()):
                    continue
                rows.append(
                    {
                        "round": o.round,
                        "agent_id": lay.name_of(start + int(i)),
                        "role": role,
                        "policy": "heuristic",
                        **_RULE_DEFAULTS,
                        "decision_json": json.dumps(batch.as_dict(int(i))),
                        "validation": str(batch.notes[i]),
                    }
                )
        return pd.DataFrame(rows)

    def close(self, status: str, **extra: Any) -> None:
        """Finish the run directory with ``status``. An interrupted or failed run first checkpoints its
        last snapshot, if no part goes past it, so resume loses no round the tables hold."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            last = self._last
            ahead = last is not None and (self._checkpointed is None or last[0].round > self._checkpointed)
            if status != "finished" and last is not None and ahead and self.writer.can_checkpoint(last[0].round):
                try:
                    self._checkpoint()
                except OSError as exc:  # a full disk: the last checkpoint stands, and the manifest must still be told
                    before = str(extra.get("error", status))
                    extra["error"] = before if str(exc) in before else f"{before}; then, checkpointing, {exc}"
            self.writer.close(status, rounds_completed=self.rounds_written, **extra)


def manifest_of(
    s: Scenario,
    *,
    llm_manifest: dict[str, Any] | None = None,
    metrics: Mapping[str, Metric] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What a new run directory's manifest says of its scenario, metrics and LLM side (a fork's too)."""
    manifest: dict[str, Any] = {
        "scenario": s.model_dump(mode="json"),
        "seed": s.seed,
        "rounds": s.rounds,
        "policies": {name: s.roles.section(name).policy for name, _ in s.roles},
        **(extra or {}),
    }
    if metrics:
        manifest["extra_metrics"] = sorted(metrics)
    if llm_manifest is not None:
        manifest["llm"] = llm_manifest  # model, endpoint, prompt paths and hashes; never the key
    return manifest


def _picks(s: Scenario) -> dict[str, NDArray[np.int64]]:
    return {spec.name: registry.record_ids(spec, s, int(spec.count(s))) for spec in registry.roles()}


_LLM_FIELDS = (
    "rationale",
    "fallback_reason",
    "latency_ms",
    "input_tokens",
    "output_tokens",
    "calls",
    "cache_hit",
    "archetype",
    "members",
    "answer_json",
    "raw_answer",  # a rejected or repaired answer as the model sent it (redacted, bounded)
    "repair",  # what made it valid: fields clipped or dropped, or a re-ask
)
_RULE_DEFAULTS = {
    "rationale": "",
    "fallback_reason": "",
    "latency_ms": 0.0,
    "input_tokens": 0,
    "output_tokens": 0,
    "calls": 0,
    "cache_hit": False,
    "archetype": -1,
    "members": 1,
    "answer_json": "",
    "raw_answer": "",
    "repair": "",
}
