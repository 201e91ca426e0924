"""A fork's run directory: a counterfactual branched from the end of round T of a recorded run.

The branch's rounds up to T are its parent's: their table rows become the branch's first parts
(hard-linked where a parent part lies wholly inside, else copied up to T), its snapshots up to the
one it starts from are linked too, and, for an LLM-driven parent, its answer cache is copied with
the answers given after T dropped (a later round's request that repeats an earlier one is a cache
hit in the branch as it was in the parent; everything after T is asked again, and cached in the
branch's own ``llm-cache.sqlite``). The branch then looks like a run stopped at a checkpoint after
round T, and the runner continues it as it continues any stopped run (``Runner.forked``): killed,
``tokenomy resume`` continues it too.

The world at T is the parent's snapshot of T, trusted only by the SHA-256 its manifest recorded;
when T has none (``record.snapshot_every`` > 1) the nearest earlier snapshot is restored and the
rounds up to T are run again with the parent's scenario, each round's metrics checked against the
parent's row (an engine that no longer reproduces the parent is an error, not a silent branch).
An LLM-driven parent is forked at its snapshots only: running its rounds again would ask the model
again, and its answers may differ.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from tokenomy.changes import Change, scenario_at
from tokenomy.metrics import Metric
from tokenomy.recording import manifest_of
from tokenomy.scenario import Scenario
from tokenomy.store import (
    Checkpoint,
    Run,
    RunDirError,
    RunWriter,
    SnapshotRecord,
    read_manifest,
    read_snapshot,
    reading,
)
from tokenomy.world import World

__all__ = ["Parent", "create_branch", "open_parent"]

TIMINGS = ("latency_ms",)  # and every llm_latency_* column: how long calls took, never what they did
CACHE = "llm-cache.sqlite"


@dataclass
class Parent:
    """The run a fork branches from, checked: the round it forks at, the snapshot it starts from
    (its world read back and verified), and the scenario in force in each round."""

    path: Path
    manifest: dict[str, Any]
    scenario: Scenario  # in force now (the parent's last round)
    first: int  # the parent's round range
    last: int
    at: int  # T: the branch's rounds up to T are the parent's
    end: int  # the branch runs rounds T+1 .. end-1
    snapshot: SnapshotRecord  # the nearest snapshot at or before T
    world: World  # the world at the end of snapshot.round, verified by its SHA-256
    changes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.manifest.get("status") == "finished"

    @property
    def replay(self) -> bool:
        return self.manifest.get("replay_from") is not None

    @property
    def rerun(self) -> range:
        """The rounds run again from the snapshot to reach T (none when T has a snapshot)."""
        return range(self.snapshot.round + 1, self.at + 1)

    def scenario_for(self, round_no: int) -> Scenario:
        """The parent's scenario in force in ``round_no``."""
        return scenario_at(self.scenario, self.changes, round_no)

    def changed_in(self, round_no: int) -> list[str]:
        """The fields the parent changed from ``round_no`` on."""
        return [k for c in self.changes if int(c["round"]) == round_no for k in c["set"]]

    def base(self) -> Scenario:
        """The branch's scenario before its own changes: the one in force in round T, run to ``end``."""
        return self.scenario_for(self.at).model_copy(update={"rounds": self.end - self.first})

    @cached_property
    def _metrics(self) -> pd.DataFrame:
        return Run(self.path).metrics.set_index("round")

    def check_rerun(self, round_no: int, row: Mapping[str, Any]) -> None:
        """A round run again must give the parent's metrics row (but for its timings)."""
        recorded = self._metrics.loc[round_no]
        for col, value in row.items():
            if col == "round" or col in TIMINGS or col.startswith("llm_latency_"):
                continue
            was = recorded.get(col)
            if not _same(value, was):
                raise RunDirError(
                    f"{self.path}: running round {round_no} again from the snapshot of round {self.snapshot.round}"
                    f" gives {col} = {value!r}, but the parent recorded {was!r}: this tokenomy does not reproduce"
                    " that run, so a fork between its snapshots would not be its branch; fork at a snapshot round"
                    f" ({_snapshot_rounds(self.manifest)})"
                )


def _same(a: Any, b: Any) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or bool(pd.isna(b))
    return bool(a == b)


def _snapshot_rounds(manifest: Mapping[str, Any]) -> str:
    rounds = sorted(SnapshotRecord.all_of(manifest))
    shown = ", ".join(str(r) for r in rounds[:12])
    return shown + (f", ... {rounds[-1]}" if len(rounds) > 12 else "") if rounds else "none recorded"


@contextmanager
def open_parent(path: Path, at_round: int, *, rounds: int | None = None) -> Iterator[Parent]:
    """The run in ``path`` as the parent of a fork at ``at_round``, read with no process writing it
    (a live run or a resume refuses, and none can start while the fork copies from it).

    Raises:
        RunDirError: one line: not a run, being written, ``at_round`` out of the rounds it holds (or
            past the last checkpoint of an unfinished run), no snapshot to start from, a snapshot
            whose SHA-256 is not the recorded one.
    """
    path = Path(path)
    read_manifest(path)  # not a run directory, or a damaged manifest: one line naming the file
    with reading(path):
        m = read_manifest(path)  # again: nobody writes it now
        try:
            scenario = Scenario.model_validate(m["scenario"])
        except ValidationError as exc:
            e = exc.errors()[0]
            where = f"scenario.{'.'.join(str(x) for x in e['loc'])}: {e['msg']}"
            raise RunDirError(f"{path / 'manifest.json'}: its scenario does not validate ({where})") from None
        first, last = (int(x) for x in m.get("round_range", [0, scenario.rounds]))
        T = at_round
        ck = m.get("checkpoint")
        if m.get("status") == "finished":
            held = last - 1
        elif isinstance(ck, dict):
            held = int(ck["round"])
        else:
            raise RunDirError(f"{path}: the run stopped before its first checkpoint; it has no round to fork from")
        if not first <= T <= held:
            raise RunDirError(
                f"{path}: cannot fork at round {T}: the run's rounds are {first}-{last - 1}"
                if not first <= T < last
                else f"{path}: cannot fork at round {T}: not recorded yet (the run is {m.get('status')}, its tables"
                f" and snapshots complete up to round {held}); fork at {held} or before, or `tokenomy resume {path}`"
            )
        end = T + 1 + rounds if rounds is not None else last
        if end <= T + 1:
            raise RunDirError(f"{path}: round {T} is the run's last: give --rounds N to run N more after it")
        snaps = {r: s for r, s in SnapshotRecord.all_of(m).items() if r <= T}
        if not snaps:
            raise RunDirError(
                f"{path}: cannot fork at round {T}: no snapshot at or before it has a SHA-256 recorded (snapshots"
                f" at {_snapshot_rounds(m)}), so there is no world to start from"
            )
        snap = snaps[max(snaps)]
        if snap.round < T and scenario.llm_roles():
            raise RunDirError(
                f"{path}: cannot fork at round {T}: it has no snapshot (record.snapshot_every ="
                f" {scenario.record.snapshot_every}) and the run is LLM-driven: running rounds {snap.round + 1}-{T}"
                f" again would ask the model again; fork at a snapshot round ({_snapshot_rounds(m)})"
            )
        world = read_snapshot(path / snap.path, snap.sha256, purpose="the run cannot be forked from it")
        if world.round != snap.round + 1:
            raise RunDirError(f"{path / snap.path}: holds the world of round {world.round - 1}, not of {snap.round}")
        yield Parent(path, m, scenario, first, last, T, end, snap, world, list(m.get("changes") or []))


def create_branch(
    parent: Parent,
    out: Path,
    *,
    world: World,
    snapshot: bytes | None,
    state: dict[str, Any],
    change: Change | None,
    llm_manifest: dict[str, Any] | None,
    metrics: Mapping[str, Metric] | None,
    overwrite: bool = False,
) -> tuple[RunWriter, Checkpoint]:
    """Make ``out`` the fork's directory, checkpointed after round T: the parent's rows and snapshots
    up to T, its answers up to T, the manifest naming the parent, T, the snapshot it started from and
    the change from T+1. ``world`` is the world the runner goes on with; ``snapshot``, when T had
    none, the world of T (run again) as the branch's own. Returns the writer (holding the lock) and
    the checkpoint the runner continues from.
    """
    T, S = parent.at, parent.snapshot.round
    m = parent.manifest
    fork: dict[str, Any] = {
        "parent": str(parent.path.resolve()),
        **({"parent_run_id": m["run_id"]} if "run_id" in m else {}),
        "parent_started": m.get("started"),
        "at_round": T,
        "snapshot": {"round": S, "sha256": parent.snapshot.sha256},
        "rerun_rounds": [S + 1, T] if S < T else None,
        "set": change.effective if change is not None else {},
        # what the parent changed after T: the branch keeps the scenario of round T (and its own --set)
        "not_carried": [c for c in parent.changes if int(c["round"]) > T],
    }
    inherited = [c for c in parent.changes if int(c["round"]) <= T]
    extra: dict[str, Any] = {
        "round_range": [parent.first, parent.end],
        "fork": fork,
        "changes": [*inherited, *([change.record(T + 1)] if change is not None and change.effective else [])],
    }
    if parent.replay:
        extra["replay_from"] = m["replay_from"]
    scenario = change.scenario if change is not None else parent.base()
    manifest = manifest_of(scenario, llm_manifest=llm_manifest, metrics=metrics, extra=extra)
    writer = RunWriter.create(out, manifest, overwrite=overwrite)
    try:
        snaps = {r: s for r, s in SnapshotRecord.all_of(m).items() if r <= S}
        writer.inherit(parent.path, T, finished=parent.finished, snapshots=snaps)
        if snapshot is not None:  # the world of T, run again: the branch's own snapshot
            sha = SnapshotRecord(T, _sha256(snapshot), state)
            writer.snapshot(T, snapshot, sha256=sha.sha256, state=state)
        else:
            sha = parent.snapshot
        held = Run(writer.path).rounds_recorded
        if held != list(range(parent.first, T + 1)):
            raise RunDirError(
                f"{parent.path}: its tables do not hold every round {parent.first}-{T} (they hold {len(held)} of"
                " them), so the branch would miss part of its history"
            )
        if llm_manifest is not None:
            _copy_answers(parent, writer.path / CACHE, state)
        done = T + 1 - parent.first
        writer.checkpoint(T, Path(sha.path).name, sha.sha256, rounds_completed=done, state=state)
    except BaseException as exc:
        writer.close("failed", error=f"the fork stopped before its first round: {type(exc).__name__}: {exc}")
        raise
    return writer, Checkpoint(T, world, state, done)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _copy_answers(parent: Parent, dest: Path, state: Mapping[str, Any]) -> None:
    """The parent's answer cache as it stood after round T (SQLite's backup: a consistent copy, WAL
    included); a replayed parent's is the replayed run's, whole, and stays read-only."""
    src = parent.path / CACHE
    if not src.is_file():
        return
    with closing(sqlite3.connect(f"file:{src}?mode=ro", uri=True)) as a, closing(sqlite3.connect(dest)) as b:
        a.backup(b)
        if not parent.replay and "llm_cache_rowid" in state:
            b.execute("DELETE FROM answers WHERE rowid > ?", (int(state["llm_cache_rowid"]),))
            b.commit()
