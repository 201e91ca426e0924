"""The run directory: manifest, Parquet tables written atomically, and world snapshots.

Layout::

    manifest.json        scenario as resolved, seed, versions, status (running|finished|failed)
    metrics.parquet      one row per round
    trades.parquet       token auction results, one row per token and round
    payments.parquet     the round's payments aggregated per payer->payee edge, kind and rail
    decisions.parquet    decisions of firms, banks, operators, the regulator and a household sample
    events.parquet       loan defaults, bank resolutions: one row per event
    accounts.parquet     the balance-sheet and transactions-flow matrices per round (long format)
    snapshots/round-NNNNNN.snap   compressed world state at the end of a round

Tables stream into ``<name>.parquet.tmp`` through a ``ParquetWriter`` (constant memory however
long the run) and are renamed into place only when the run ends, so a half-written table never
looks like a finished one.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tokenomy import registry
from tokenomy.market.graph import MarketGraph
from tokenomy.market.ledger import Posting
from tokenomy.market.rails import RAIL_NAMES
from tokenomy.world import Layout, World

__all__ = ["Run", "RunDirError", "RunWriter", "open_run", "write_atomic"]

TABLES = ("metrics", "trades", "payments", "decisions", "events", "accounts")
_PACKAGES = ("tokenomy", "numpy", "pandas", "pyarrow", "pydantic", "networkx", "langgraph", "langchain-openai")


class RunDirError(RuntimeError):
    """The output directory cannot be used."""


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same directory, then rename over the target."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _git_revision() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        rev = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        return rev.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


@dataclass
class RunWriter:
    """Streams one run's outputs into ``path``."""

    path: Path
    flush_rows: int = 200_000
    _writers: dict[str, pq.ParquetWriter] = field(default_factory=dict)
    _buffers: dict[str, list[pd.DataFrame]] = field(default_factory=dict)
    _manifest: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def check(path: Path, *, overwrite: bool = False) -> None:
        """Raise :class:`RunDirError` unless ``path`` can take a new run."""
        if path.exists() and not path.is_dir():
            raise RunDirError(f"{path}: exists and is not a directory (choose another --out)")
        if path.exists() and any(path.iterdir()) and not overwrite:
            raise RunDirError(f"{path}: directory exists and is not empty (choose another --out, or --overwrite)")

    @classmethod
    def create(cls, path: Path, manifest: dict[str, Any], *, overwrite: bool = False) -> RunWriter:
        path = Path(path)
        cls.check(path, overwrite=overwrite)
        if path.exists() and any(path.iterdir()):
            for name in [*(f"{t}.parquet" for t in TABLES), "manifest.json", "llm-cache.sqlite"]:
                (path / name).unlink(missing_ok=True)
            for snap in (path / "snapshots").glob("*.snap") if (path / "snapshots").exists() else []:
                snap.unlink()
        (path / "snapshots").mkdir(parents=True, exist_ok=True)
        w = cls(path)
        w._manifest = {
            **manifest,
            "status": "running",
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": _versions(),
            "git_revision": _git_revision(),
            "command": sys.argv,
        }
        w._write_manifest()
        return w

    def _write_manifest(self) -> None:
        write_atomic(self.path / "manifest.json", json.dumps(self._manifest, indent=2, default=str).encode())

    def append(self, table: str, frame: pd.DataFrame) -> None:
        """Buffer rows; they reach the file in large row groups (a write per round is slow)."""
        if frame.empty:
            return
        buf = self._buffers.setdefault(table, [])
        buf.append(frame)
        if sum(len(f) for f in buf) >= self.flush_rows:
            self.flush(table)

    def flush(self, table: str) -> None:
        buf = self._buffers.pop(table, [])
        if not buf:
            return
        t = pa.Table.from_pandas(pd.concat(buf, ignore_index=True), preserve_index=False)
        w = self._writers.get(table)
        if w is None:
            w = pq.ParquetWriter(self.path / f"{table}.parquet.tmp", t.schema, compression="zstd")
            self._writers[table] = w
        w.write_table(t.cast(w.schema))

    def snapshot(self, round_no: int, data: bytes) -> str:
        name = f"round-{round_no:06d}.snap"
        write_atomic(self.path / "snapshots" / name, data)
        return name

    def close(self, status: str, **extra: Any) -> None:
        """Close the tables, move them into place, and record the outcome in the manifest."""
        for name in list(self._buffers):
            self.flush(name)
        for name, w in self._writers.items():
            w.close()
            os.replace(self.path / f"{name}.parquet.tmp", self.path / f"{name}.parquet")
        self._writers.clear()
        for name in TABLES:  # a table no round added to (no trade, no event) is there, empty
            if not (self.path / f"{name}.parquet").exists():
                pq.write_table(pa.table({}), self.path / f"{name}.parquet")
        self._manifest.update(status=status, finished=datetime.now(UTC).isoformat(timespec="seconds"), **extra)
        self._write_manifest()


class Run:
    """A finished (or failed) run read back: tables as DataFrames, graphs per round."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "manifest.json").is_file():
            raise RunDirError(f"{self.path}: not a run directory (no manifest.json)")

    def __repr__(self) -> str:
        m = self.manifest
        return f"Run({str(self.path)!r}, scenario={m.get('scenario', {}).get('name')!r}, status={m.get('status')!r})"

    @cached_property
    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.path / "manifest.json").read_text())
        return data

    def _table(self, name: str) -> pd.DataFrame:
        f = self.path / f"{name}.parquet"
        return pd.read_parquet(f) if f.exists() else pd.DataFrame()

    @cached_property
    def metrics(self) -> pd.DataFrame:
        return self._table("metrics")

    @cached_property
    def trades(self) -> pd.DataFrame:
        return self._table("trades")

    @cached_property
    def payments(self) -> pd.DataFrame:
        return self._table("payments")

    @cached_property
    def decisions(self) -> pd.DataFrame:
        return self._table("decisions")

    @cached_property
    def events(self) -> pd.DataFrame:
        return self._table("events")

    @cached_property
    def accounts(self) -> pd.DataFrame:
        """Both sector matrices, long: round, matrix (``balance`` | ``flow``), row, sector, cents."""
        return self._table("accounts")

    def matrix(self, round_no: int, kind: str = "balance") -> pd.DataFrame:
        """One round's balance-sheet (``balance``) or transactions-flow (``flow``) matrix, rows by
        sectors, cents, with the row and column sums (each zero when the books are sound)."""
        a = self.accounts
        a = a[(a["round"] == round_no) & (a["matrix"] == kind)]
        m = a.pivot_table(index="row", columns="sector", values="cents", aggfunc="sum", sort=False).fillna(0)
        m = m.astype("int64")
        m["sum"] = m.sum(axis=1)
        m.loc["sum"] = m.sum(axis=0)
        return m

    def snapshot_rounds(self) -> list[int]:
        return sorted(int(p.stem.split("-")[1]) for p in (self.path / "snapshots").glob("round-*.snap"))

    def world(self, round_no: int) -> World:
        """The world as it stood at the end of ``round_no`` (needs a snapshot of that round)."""
        f = self.path / "snapshots" / f"round-{round_no:06d}.snap"
        if not f.exists():
            have = self.snapshot_rounds()
            raise KeyError(f"no snapshot for round {round_no}; snapshots exist for rounds {_ranges(have)}")
        return World.from_bytes(f.read_bytes())

    def graph(self, round_no: int) -> MarketGraph:
        """The market graph of ``round_no`` (a networkx ``MultiDiGraph``): stocks from its snapshot,
        flows from its payments."""
        world = self.world(round_no)
        f = self.path / "payments.parquet"
        # read just this round's rows: the whole table can be millions of rows
        pay = pd.read_parquet(f, filters=[("round", "==", round_no)]) if f.exists() else pd.DataFrame()
        return MarketGraph.from_world(world, pay)


def _ranges(xs: list[int]) -> str:
    if not xs:
        return "(none)"
    parts, start, prev = [], xs[0], xs[0]
    for x in [*xs[1:], None]:
        if x is not None and x == prev + 1:
            prev = x
            continue
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
        if x is not None:
            start = prev = x
    return ", ".join(parts)


def open_run(path: str | Path) -> Run:
    """Open a run directory for analysis."""
    return Run(path)


def payments_frame(round_no: int, postings: list[Posting], layout: Layout, level: str) -> pd.DataFrame:
    """Aggregate a round's ledger postings per payer->payee edge, kind (codes: the registry's
    payment kinds, in registration order) and rail."""
    kinds = registry.payment_kinds()

    if not postings:
        return pd.DataFrame()
    payer = np.concatenate([p.payer for p in postings])
    payee = np.concatenate([p.payee for p in postings])
    amount = np.concatenate([p.amount for p in postings])
    rail = np.concatenate(
        [p.rail.astype(np.int64) if p.rail is not None else np.full(p.amount.size, -1) for p in postings]
    )
    fee = np.concatenate([p.fee if p.fee is not None else np.zeros(p.amount.size, np.int64) for p in postings])
    kind = np.concatenate([np.full(p.amount.size, kinds.index(p.kind)) for p in postings])
    if level == "role":
        payer, payee = layout.role_code(payer), layout.role_code(payee)
    # aggregate with one lexsort and reduceat: pandas' groupby costs ~4x more at 100k+ rows a round
    order = np.lexsort((rail, kind, payee, payer))
    keys = np.stack([payer[order], payee[order], kind[order], rail[order]])
    starts = np.flatnonzero(np.concatenate([[True], (keys[:, 1:] != keys[:, :-1]).any(axis=0)]))
    g_payer, g_payee, g_kind, g_rail = keys[:, starts]
    g_amount = np.add.reduceat(amount[order], starts)
    g_fee = np.add.reduceat(fee[order], starts)
    g_n = np.diff(np.concatenate([starts, [order.size]]))
    # string columns as categoricals: they repeat a handful of values over many rows
    roles_cat = list(layout.role_codes)
    out = pd.DataFrame({"round": np.full(g_n.size, round_no, dtype=np.int64)})
    if level == "role":
        out["payer_id"] = -1
        out["payee_id"] = -1
        out["payer_role"] = pd.Categorical.from_codes(g_payer, roles_cat)
        out["payee_role"] = pd.Categorical.from_codes(g_payee, roles_cat)
    else:
        out["payer_id"] = g_payer
        out["payee_id"] = g_payee
        out["payer_role"] = pd.Categorical.from_codes(layout.role_code(g_payer), roles_cat)
        out["payee_role"] = pd.Categorical.from_codes(layout.role_code(g_payee), roles_cat)
    out["kind"] = pd.Categorical.from_codes(g_kind, kinds)
    out["rail"] = pd.Categorical.from_codes(g_rail + 1, ["", *RAIL_NAMES])
    out["amount"] = g_amount / 100
    out["amount_cents"] = g_amount.astype(np.int64)
    out["fee_cents"] = g_fee.astype(np.int64)
    out["n"] = g_n.astype(np.int64)
    return out
