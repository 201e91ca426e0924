"""Recording a round: the metrics row, trades, payments, decisions and world snapshots.

The recorder takes what it reads (the world, the round's view and outcome), never the simulation.
Whose decisions are recorded comes from the role registry: every agent of most roles, a fixed
sample of households.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
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
from tokenomy.store import RunWriter, payments_frame
from tokenomy.world import World

__all__ = ["Recorder", "Snapshot"]


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

    @property
    def path(self) -> Path:
        return self.writer.path

    @classmethod
    def open(
        cls,
        scenario: Scenario,
        path: Path,
        *,
        llm_manifest: dict[str, Any] | None = None,
        metrics: Mapping[str, Metric] | None = None,
        overwrite: bool = False,
    ) -> Recorder:
        s = scenario
        manifest: dict[str, Any] = {
            "scenario": s.model_dump(mode="json"),
            "seed": s.seed,
            "rounds": s.rounds,
            "policies": {name: s.roles.section(name).policy for name, _ in s.roles},
        }
        if metrics:
            manifest["extra_metrics"] = sorted(metrics)
        if llm_manifest is not None:
            manifest["llm"] = llm_manifest  # model, endpoint, prompt paths and hashes; never the key
        writer = RunWriter.create(path, manifest, overwrite=overwrite)
        picks = {spec.name: registry.record_ids(spec, s, int(spec.count(s))) for spec in registry.roles()}
        return cls(writer, s, picks, dict(metrics or {}))

    def record(self, world: World, view: MarketView, outcome: RoundOutcome) -> dict[str, Any]:
        """Append the round's metrics row and tables; returns the row."""
        w, o = world, outcome
        d = RoundData(w, view, o, self.scenario)
        row = metrics_row(d, self.metrics)
        self.writer.append("metrics", pd.DataFrame([row]))
        if o.trades:
            t = pd.DataFrame(o.trades)
            t.insert(0, "round", o.round)
            t["issuer"] = [w.layout.name_of(int(w.t_issuer[int(j)])) for j in t["token"]]
            t["price"] = t["price"] / 100
            t["value"] = t["value"] / 100
            self.writer.append("trades", t)
        level = self.scenario.record.payments
        self.writer.append("payments", payments_frame(o.round, o.postings, w.layout, level))
        self.writer.append("decisions", self._decisions(w, o))
        if o.events:
            self.writer.append("events", pd.DataFrame(o.events))
        self.writer.append("accounts", self._accounts(d))
        self.rounds_written += 1
        return row

    def snapshot(self, world: World, *, final: bool) -> Snapshot | None:
        """Snapshot the world as it enters the next round, every ``record.snapshot_every`` rounds and at the end."""
        r = world.round - 1  # the round that just ended
        if final or (r + 1) % self.scenario.record.snapshot_every == 0:
            data = world.to_bytes()
            name = self.writer.snapshot(r, data)
            return Snapshot(r, self.path / "snapshots" / name, hashlib.sha256(data).hexdigest())
        return None

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
        self.writer.close(status, rounds_completed=self.rounds_written, **extra)


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
}
