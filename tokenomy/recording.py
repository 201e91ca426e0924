"""Recording a round: the metrics row, trades, payments, decisions and world snapshots."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tokenomy.metrics import round_metrics
from tokenomy.store import RunWriter, payments_frame
from tokenomy.world import ROLES

if TYPE_CHECKING:
    from tokenomy.simulation import Simulation

__all__ = ["Recorder"]


@dataclass
class Recorder:
    writer: RunWriter
    household_sample: np.ndarray
    snapshot_every: int
    payments_level: str
    rounds_written: int = 0

    @property
    def path(self) -> Path:
        return self.writer.path

    @classmethod
    def open(cls, sim: Simulation, path: Path, *, overwrite: bool = False) -> Recorder:
        s = sim.scenario
        manifest: dict[str, Any] = {
            "scenario": s.model_dump(mode="json"),
            "seed": s.seed,
            "rounds": s.rounds,
            "policies": {name: getattr(s.roles, name).policy for name in ROLES},
        }
        if sim.llm is not None:
            manifest["llm"] = sim.llm.manifest()  # model, endpoint, prompt paths and hashes; never the key
        writer = RunWriter.create(path, manifest, overwrite=overwrite)
        k = min(s.record.household_decisions, s.households)
        # evenly spaced ids: no random draw, so what is recorded never changes what happens
        sample = np.unique(np.linspace(0, s.households - 1, k).astype(np.int64)) if k else np.empty(0, np.int64)
        return cls(writer, sample, s.record.snapshot_every, s.record.payments)

    def record(self, sim: Simulation) -> dict[str, Any]:
        w, o = sim.world, sim.outcome
        row = round_metrics(w, o, sim.scenario, w.price_index)
        self.writer.append("metrics", pd.DataFrame([row]))
        if o.trades:
            t = pd.DataFrame(o.trades)
            t.insert(0, "round", o.round)
            t["issuer"] = [w.layout.name_of(w.layout.firm0 + int(j)) for j in t["token"]]
            t["price"] = t["price"] / 100
            t["value"] = t["value"] / 100
            self.writer.append("trades", t)
        self.writer.append("payments", payments_frame(o.round, o.postings, w.layout, self.payments_level))
        self.writer.append("decisions", self._decisions(sim))
        self.rounds_written += 1
        return row

    def snapshot(self, sim: Simulation, *, final: bool) -> str | None:
        r = sim.world.round - 1  # the round that just ended
        if final or (r + 1) % self.snapshot_every == 0:
            return self.writer.snapshot(r, sim.world.to_bytes())
        return None

    def _decisions(self, sim: Simulation) -> pd.DataFrame:
        """One row per LLM call (with rationale, fallback reason, usage), and rule-based rows for
        every firm, bank, operator and the regulator and a fixed sample of households."""
        w, o = sim.world, sim.outcome
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
        picks = {
            "household": (self.household_sample, lambda i: lay.name_of(int(i))),
            "firm": (range(lay.firms), lambda i: lay.name_of(lay.firm0 + i)),
            "bank": (range(lay.banks), lambda i: lay.name_of(lay.bank0 + i)),
            "network": (range(2), lambda i: ("card_network", "chain")[i]),
            "regulator": (range(1), lambda i: "state"),
        }
        for role, (ids, name) in picks.items():
            batch = o.decisions[role]
            for i in ids:
                if int(i) in llm_ids.get(role, ()):
                    continue
                rows.append(
                    {
                        "round": o.round,
                        "agent_id": name(i),
                        "role": role,
                        "policy": "heuristic",
                        **_RULE_DEFAULTS,
                        "decision_json": json.dumps(batch.as_dict(int(i))),
                        "validation": str(batch.notes[i]),
                    }
                )
        return pd.DataFrame(rows)

    def close(self, status: str, sim: Simulation | None = None, **extra: Any) -> None:
        if sim is not None and sim.llm is not None:
            d = sim.llm.decider
            u = d.usage
            extra["llm_usage"] = {
                "calls": u.calls,
                "input_tokens": u.input_tokens,
                "output_tokens": u.output_tokens,
                "cache_hits": u.cache_hits,
                "fallbacks": u.fallbacks,
                "estimated_cost_usd": round(u.cost_usd, 6),
                "structured_output_method": d.method,
                "methods_failed": d.methods_failed,
                "capped": u.capped,
                "capped_round": u.capped_round,
                "by_role": u.by_role,
                "workers": d.cfg.workers,
                "worker_failure": d.worker_failure,
            }
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
