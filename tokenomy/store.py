"""The run directory: manifest, Parquet tables written as complete parts, world snapshots, the lock.

Layout::

    manifest.json        scenario as resolved, seed, versions, status (running|finished|interrupted|failed),
                         checkpoint (the last round resume can start from: its snapshot and SHA-256),
                         snapshots (every snapshot's SHA-256 and runner state: what a fork starts from)
    run.lock             flock-ed by the process writing the run; the kernel releases it when that process dies
    metrics.parquet      one row per round
    trades.parquet       token auction results, one row per token and round
    payments.parquet     the round's payments aggregated per payer->payee edge, kind and rail
    decisions.parquet    decisions of firms, banks, operators, the regulator and a household sample
    events.parquet       loan defaults, bank resolutions: one row per event
    accounts.parquet     the balance-sheet and transactions-flow matrices per round (long format)
    parts/<table>/rounds-AAAAAA-BBBBBB.parquet   the tables of a run that has not finished
    snapshots/round-NNNNNN.snap   compressed world state at the end of a round

A killed process must leave tables that are whole. Rows are buffered a whole round at a time and
written every few rounds as one complete Parquet file per table (a temporary name in the same
directory, fsync, ``os.replace``: a part is there whole or not at all). The manifest's checkpoint
is written after the parts and the snapshot it names, so it is the commit record resume trusts. A
finished run consolidates each table's parts into the single ``<table>.parquet``; readers take
either.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, ValidationError

from tokenomy import registry
from tokenomy.market.graph import MarketGraph
from tokenomy.market.ledger import Posting
from tokenomy.market.rails import RAIL_NAMES
from tokenomy.world import Layout, World

__all__ = [
    "Checkpoint",
    "Run",
    "RunDirError",
    "RunLock",
    "RunWriter",
    "SnapshotRecord",
    "UnfinishedRunWarning",
    "lock_holder",
    "open_run",
    "read_manifest",
    "read_snapshot",
    "reading",
    "write_atomic",
]

TABLES = ("metrics", "trades", "payments", "decisions", "events", "accounts")
LOCK_FILE = "run.lock"
PARTS = "parts"
PART_COMPRESSION = "lz4"  # the fastest to write and read back (parts are rewritten, zstd, when a run finishes)
_PART = re.compile(r"rounds-(\d+)-(\d+)\.parquet")
_SNAP = re.compile(r"round-(\d+)\.snap(\.tmp)?")
_PACKAGES = ("tokenomy", "numpy", "pandas", "pyarrow", "pydantic", "networkx", "langgraph", "langchain-openai")


class RunDirError(RuntimeError):
    """The output directory cannot be used."""


class UnfinishedRunWarning(UserWarning):
    """``open_run`` on a run that is still running, or that stopped before its last round."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@contextmanager
def _temporary(path: Path) -> Iterator[Path]:
    """The temporary name ``path`` is written under. A failed write (a full disk) removes it, so it
    takes no space the manifest still needs, and raises an ``OSError`` naming ``path``: a bare
    ``write`` error names no file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same directory, then rename over the target."""
    with _temporary(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


def _write_table_atomic(
    path: Path, tables: Iterable[pa.Table], schema: pa.Schema, *, compression: str = "zstd"
) -> None:
    """``tables`` as one Parquet file at ``path``, complete or absent (temporary name, fsync, rename)."""
    with _temporary(path) as tmp:
        with open(tmp, "wb") as fh:
            with pq.ParquetWriter(fh, schema, compression=compression) as w:
                for t in tables:
                    w.write_table(t)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


def _part_range(path: Path) -> tuple[int, int] | None:
    m = _PART.fullmatch(path.name)
    return (int(m[1]), int(m[2])) if m else None


def _parts(directory: Path, table: str) -> list[Path]:
    """A table's complete parts, in round order (temporary files are not parts)."""
    d = directory / PARTS / table
    found = [(r, p) for p in d.glob("rounds-*.parquet") if (r := _part_range(p)) is not None] if d.is_dir() else []
    return [p for _, p in sorted(found)]


def _unified_schema(parts: list[Path]) -> pa.Schema:
    """One schema for all parts: a column all null in one part and typed in another, or int in one and
    float in another, takes the wider type; so the result does not depend on where parts begin."""
    return pa.unify_schemas([pq.read_schema(p) for p in parts], promote_options="permissive")


def _empty() -> pd.DataFrame:
    """A table nothing was written to, as a finished run's empty file reads back."""
    frame: pd.DataFrame = pa.table({}).to_pandas()
    return frame


def _read_parts(parts: list[Path], filters: list[tuple[str, str, Any]] | None = None) -> pd.DataFrame:
    if not parts:
        return _empty()
    return pd.read_parquet([str(p) for p in parts], schema=_unified_schema(parts), filters=filters)


def read_manifest(path: Path) -> dict[str, Any]:
    """A run directory's manifest; :class:`RunDirError` naming the file if it is missing or damaged."""
    f = Path(path) / "manifest.json"
    if not f.is_file():
        raise RunDirError(f"{path}: not a run directory (no manifest.json)")
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{f}: damaged, not the JSON manifest of a run ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("scenario"), dict):
        raise RunDirError(f"{f}: damaged, not the JSON manifest of a run (no scenario in it)")
    try:
        _Manifest.model_validate(data)
    except ValidationError as exc:
        e = exc.errors()[0]
        where = ".".join(str(x) for x in e["loc"])
        raise RunDirError(f"{f}: damaged, not the JSON manifest of a run ({where}: {e['msg']})") from None
    return data


class CheckpointRecord(BaseModel):
    """What resume reads of a manifest's checkpoint (see :meth:`RunWriter.checkpoint`)."""

    model_config = ConfigDict(extra="allow")
    round: int
    path: str
    sha256: str
    rounds_completed: int
    state: dict[str, Any] | None = None


class _SnapshotEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    sha256: str
    state: dict[str, Any] | None = None


class _ChangeEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    round: int
    set: dict[str, Any]
    was: dict[str, Any] = {}


class _Manifest(BaseModel):
    """The parts of a manifest that readers and resume take on trust: checked, so a damaged one is an
    error naming the file and field rather than a KeyError deep in a resume."""

    model_config = ConfigDict(extra="allow")
    scenario: dict[str, Any]
    status: str | None = None
    checkpoint: CheckpointRecord | None = None
    round_range: tuple[int, int] | None = None
    extra_metrics: list[str] | None = None
    snapshots: dict[int, _SnapshotEntry] | None = None  # round -> hash (and state): what forks start from
    changes: list[_ChangeEntry] | None = None  # scenario fields changed mid-run, from which round


# -- the lock -------------------------------------------------------------------------------------
def _locked(directory: Path, fh: IO[str]) -> RunDirError:
    fh.seek(0)
    pid = fh.read().strip()
    who = f"pid {pid}" if pid.isdigit() else "another process"
    return RunDirError(
        f"{directory}: a run ({who}) is writing into this directory; wait for it to end, or choose another --out"
    )


class RunLock:
    """An exclusive ``flock`` on ``run.lock`` while a process writes a run directory.

    The kernel drops it when the process dies, however it dies (SIGKILL included), so a run whose
    manifest still says ``running`` but whose lock is free has stopped. The file holds the writer's
    pid, for the error message; it is never deleted (deleting a lock file races with its next user).
    """

    def __init__(self, directory: Path, fh: IO[str]) -> None:
        self.directory = directory
        self._fh = fh

    @classmethod
    def acquire(cls, directory: Path) -> RunLock:
        """Lock ``directory`` (which must exist), or raise :class:`RunDirError` if a live process holds it."""
        fh = open(directory / LOCK_FILE, "a+", encoding="utf-8")  # held until release()
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            exc = _locked(directory, fh)
            fh.close()
            raise exc from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        return cls(directory, fh)

    def release(self) -> None:
        if not self._fh.closed:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()


@contextmanager
def reading(directory: Path) -> Iterator[None]:
    """Read a run directory with no process writing it (a fork copies its parts and snapshots): a
    shared ``flock`` on its lock file, so readers do not exclude each other but a writer (a run, a
    resume, a finish that removes the parts) cannot start meanwhile. A directory where no lock file
    can be made (read-only) has no writer either."""
    try:
        fh = open(Path(directory) / LOCK_FILE, "a+", encoding="utf-8")  # closed below
    except OSError:
        yield
        return
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _locked(Path(directory), fh) from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def lock_holder(directory: Path) -> str | None:
    """Who holds ``directory``'s lock (``"pid N"``), or None when no live process does."""
    try:
        fh = open(Path(directory) / LOCK_FILE, encoding="utf-8")  # closed below
    except (FileNotFoundError, NotADirectoryError):
        return None
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = fh.read().strip()
            return f"pid {pid}" if pid.isdigit() else "another process"
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return None


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _git_revision(package: Path | None = None) -> str | None:
    """The commit tokenomy runs from, when the ``package`` directory (this one) sits at the top of a git
    work tree, as in a clone; otherwise None, not the commit of whatever repository happens to enclose
    an installed copy (a project whose ``.venv`` holds tokenomy)."""
    here = (package or Path(__file__).parent).resolve()
    try:
        rev = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = rev.stdout.splitlines()
    if rev.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != here.parent:
        return None
    return lines[1].strip() or None


@dataclass(frozen=True)
class Checkpoint:
    """Where a stopped run resumes: the last round whose tables, snapshot and state were all written.

    ``round`` is -1 (and ``world`` None) for a run stopped before its first checkpoint: it restarts
    from its first round. ``state`` is what the runner added (the LLM usage and caps).
    """

    round: int
    world: World | None
    state: dict[str, Any]
    rounds_completed: int


def _new_dir(path: Path) -> Path:
    """Create ``path``, or, if something took that name, ``path-<random>``: atomically (``mkdir``
    fails rather than share a directory), so two runs started in the same microsecond never collide."""
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate = path
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            candidate = path.with_name(f"{path.name}-{secrets.token_hex(3)}")


def _check_creatable(path: Path) -> None:
    """Raise :class:`RunDirError` unless a run directory can be made at ``path``: its nearest existing
    ancestor must be a directory in which a directory can be made (a probe, made and removed: under
    ``/proc`` or on a read-only mount, a permission check alone says yes)."""
    try:
        base = next(p for p in (path, *path.parents) if p.exists())
    except StopIteration:
        return
    except OSError as exc:  # a name too long, say
        raise RunDirError(f"{path}: cannot be a run directory ({exc.strerror})") from None
    if base == path and not base.is_dir():
        raise RunDirError(f"{path}: exists and is not a directory (choose another --out)")
    if not base.is_dir():
        raise RunDirError(f"{path}: {base} is a file, not a directory (choose another --out)")
    probe = base / f".tokenomy-probe-{secrets.token_hex(4)}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise RunDirError(f"{path}: cannot create a run directory in {base} ({exc.strerror})") from None


@dataclass
class RunWriter:
    """Writes one run's outputs into ``path``, holding its lock until :meth:`close`."""

    path: Path
    flush_rows: int = 200_000  # buffered rows that force a part before the next checkpoint (memory)
    _rounds: list[tuple[int, dict[str, pd.DataFrame]]] = field(default_factory=list)  # whole rounds only
    _rows: int = 0
    _parts_through: int = -1  # the last round written into a part
    _manifest: dict[str, Any] = field(default_factory=dict)
    _lock: RunLock | None = None

    @property
    def manifest(self) -> dict[str, Any]:
        return self._manifest

    @staticmethod
    def check(path: Path, *, overwrite: bool = False) -> None:
        """Raise :class:`RunDirError` unless ``path`` can take a new run (nothing is changed)."""
        _check_creatable(path)  # first: a name too long is an error here, not an OSError from exists()
        if path.exists() and not path.is_dir():
            raise RunDirError(f"{path}: exists and is not a directory (choose another --out)")
        if (who := lock_holder(path)) is not None:
            raise RunDirError(
                f"{path}: a run ({who}) is writing into this directory; wait for it to end, or choose another --out"
            )
        RunWriter._check_empty(path, overwrite=overwrite)

    @staticmethod
    def _check_empty(path: Path, *, overwrite: bool) -> None:
        if path.exists() and any(p.name != LOCK_FILE for p in path.iterdir()) and not overwrite:
            raise RunDirError(f"{path}: directory exists and is not empty (choose another --out, or --overwrite)")

    @classmethod
    def create(
        cls, path: Path, manifest: dict[str, Any], *, overwrite: bool = False, unique: bool = False
    ) -> RunWriter:
        """Lock and prepare ``path`` for a new run; ``unique``: make a new directory, renamed if taken."""
        path = Path(path)
        try:
            if unique:
                path = _new_dir(path)
            else:
                cls.check(path, overwrite=overwrite)
                path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file in the way, a read-only or pseudo file system
            raise RunDirError(f"{path}: cannot create the run directory ({exc.strerror})") from None
        lock = RunLock.acquire(path)
        try:
            cls._check_empty(path, overwrite=overwrite)  # again, now that no other run can start here
            _clear(path)
            (path / "snapshots").mkdir(exist_ok=True)
            w = cls(path, _lock=lock)
            w._manifest = {
                **manifest,
                "status": "running",
                "started": _now(),
                "versions": _versions(),
                "git_revision": _git_revision(),
                "command": sys.argv,
                "checkpoint": None,
            }
            w._write_manifest()
        except BaseException:
            lock.release()
            raise
        return w

    @classmethod
    def reopen(cls, path: Path) -> tuple[RunWriter, Checkpoint]:
        """Lock a stopped run's directory and read its checkpoint, the snapshot checked against its
        SHA-256. Nothing is changed yet (:meth:`truncate` does that): a failure here leaves the run as it was."""
        path = Path(path)
        read_manifest(path)  # a clear error for a missing or damaged manifest before anything else
        lock = RunLock.acquire(path)
        try:
            m = read_manifest(path)  # again: now nobody else writes it
            if m.get("status") == "finished":
                raise RunDirError(f"{path}: the run finished; there is nothing to resume")
            if "checkpoint" not in m:
                raise RunDirError(f"{path}: written by a tokenomy that could not resume runs (no checkpoint recorded)")
            point = _checkpoint(path, m["checkpoint"])
        except BaseException:
            lock.release()
            raise
        return cls(path, _manifest=m, _lock=lock, _parts_through=point.round), point

    def truncate(self, after: int, *, resumed: bool = True) -> None:
        """Remove what lies past round ``after``: table parts and snapshots, the leftovers of a write
        cut short, and the single tables of a finish cut short; then mark the run ``running`` again
        (``resumed``: and log it; a fork's first continuation is no resume)."""
        for part in (self.path / PARTS).glob("*/*"):
            r = _part_range(part)
            if r is None or r[0] > after:  # a temporary file a killed write left, or a part past the checkpoint
                part.unlink()
            elif r[1] > after:  # straddles the checkpoint (parts never do, by construction): keep its head
                t = ds.dataset(str(part), format="parquet").to_table(filter=ds.field("round") <= after)
                _write_table_atomic(part.with_name(f"rounds-{r[0]:06d}-{after:06d}.parquet"), [t], t.schema)
                part.unlink()
        snaps = self.path / "snapshots"
        snaps.mkdir(exist_ok=True)
        for snap in snaps.glob("round-*"):
            if (hit := _SNAP.fullmatch(snap.name)) is not None and (hit[2] is not None or int(hit[1]) > after):
                snap.unlink()  # a snapshot past the checkpoint, or one a killed write left half-done
        for table in TABLES:
            (self.path / f"{table}.parquet").unlink(missing_ok=True)
            (self.path / f"{table}.parquet.tmp").unlink(missing_ok=True)
        m = self._manifest
        for key in ("error", "finished"):
            m.pop(key, None)
        m["status"] = "running"
        if isinstance(m.get("snapshots"), dict):
            m["snapshots"] = {k: v for k, v in m["snapshots"].items() if int(k) <= after}
        if resumed:
            m.setdefault("resumed", []).append({"at": _now(), "after_round": after, "command": sys.argv})
        self._write_manifest()

    def release(self) -> None:
        """Let another process write here (the kernel does it too if this process dies)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _write_manifest(self) -> None:
        write_atomic(self.path / "manifest.json", json.dumps(self._manifest, indent=2, default=str).encode())

    def add_round(self, round_no: int, frames: Mapping[str, pd.DataFrame]) -> None:
        """Buffer one round's rows, every table at once, so an interrupt never leaves part of a round
        buffered; a part is written before the next checkpoint only when the buffer passes ``flush_rows``."""
        kept = {name: f for name, f in frames.items() if not f.empty}
        self._rounds.append((round_no, kept))
        self._rows += sum(len(f) for f in kept.values())
        if self._rows >= self.flush_rows:
            self.flush()

    def flush(self, through: int | None = None) -> None:
        """Write the buffered rounds (up to ``through``) as one complete part per table.

        A part is named by its round range, so writing it again after an interrupt replaces it with
        the same content.
        """
        rounds = [(r, f) for r, f in self._rounds if through is None or r <= through]
        if not rounds:
            return
        name = f"rounds-{rounds[0][0]:06d}-{rounds[-1][0]:06d}.parquet"
        for table in sorted({t for _, frames in rounds for t in frames}):
            frame = pd.concat([frames[table] for _, frames in rounds if table in frames], ignore_index=True)
            t = pa.Table.from_pandas(frame, preserve_index=False)
            (self.path / PARTS / table).mkdir(parents=True, exist_ok=True)
            _write_table_atomic(self.path / PARTS / table / name, [t], t.schema, compression=PART_COMPRESSION)
        self._parts_through = rounds[-1][0]
        self._rounds = self._rounds[len(rounds) :]
        self._rows = sum(len(f) for _, frames in self._rounds for f in frames.values())

    def can_checkpoint(self, round_no: int) -> bool:
        """Whether ``round_no`` can become the checkpoint: no part written so far goes past it."""
        return self._parts_through <= round_no

    def checkpoint(
        self, round_no: int, snapshot: str, sha256: str, *, rounds_completed: int, state: dict[str, Any]
    ) -> None:
        """Make ``round_no`` the round resume starts after: its parts, then the manifest naming its snapshot.

        The snapshot is on disk already and the manifest is written last and atomically, so a
        checkpoint in it always has its tables and its snapshot.
        """
        self.flush(through=round_no)
        rel = f"snapshots/{snapshot}"
        self._manifest["checkpoint"] = {
            "round": round_no,
            "path": rel,
            "sha256": sha256,
            "rounds_completed": rounds_completed,
            "state": state,
        }
        self._manifest["last_snapshot"] = {"path": rel, "sha256": sha256}
        self._manifest["rounds_completed"] = rounds_completed
        self._write_manifest()

    def snapshot(self, round_no: int, data: bytes, *, sha256: str, state: Mapping[str, Any]) -> str:
        """Write a snapshot and note its SHA-256 and the runner's state then (LLM usage, answers cached)
        in the manifest's ``snapshots``, which the next checkpoint writes: a fork may start from any
        snapshot, and trusts one only by the hash a manifest recorded."""
        name = f"round-{round_no:06d}.snap"
        write_atomic(self.path / "snapshots" / name, data)
        record: dict[str, Any] = {"sha256": sha256, **({"state": dict(state)} if state else {})}
        self._manifest.setdefault("snapshots", {})[str(round_no)] = record
        return name

    def inherit(self, parent: Path, through: int, *, finished: bool, snapshots: Mapping[int, SnapshotRecord]) -> None:
        """Take a parent run's table rows of rounds ``<= through`` as this run's first parts, and its
        ``snapshots`` (a fork's history): a part wholly inside is hard-linked (parts and snapshots are
        never changed in place, only replaced or removed, so a link stays the parent's bytes), else
        copied, and a part or finished table reaching past ``through`` is copied up to it."""
        for table in TABLES:
            sources = [parent / f"{table}.parquet"] if finished else _parts(parent, table)
            for src in sources:
                r = _part_range(src) if not finished else None
                if (r is not None and r[0] > through) or not src.is_file():
                    continue
                (self.path / PARTS / table).mkdir(parents=True, exist_ok=True)
                if r is not None and r[1] <= through:
                    _link_or_copy(src, self.path / PARTS / table / src.name)
                    continue
                data = ds.dataset(str(src), format="parquet")
                if "round" not in data.schema.names:  # a table no round added to
                    continue
                t = data.to_table(filter=ds.field("round") <= through)
                if t.num_rows:
                    name = f"rounds-{pc.min(t['round']).as_py():06d}-{through:06d}.parquet"
                    _write_table_atomic(self.path / PARTS / table / name, [t], t.schema, compression=PART_COMPRESSION)
        for round_no, rec in sorted(snapshots.items()):
            _link_or_copy(parent / rec.path, self.path / rec.path)
            self._manifest.setdefault("snapshots", {})[str(round_no)] = rec.record()
        self._parts_through = through

    def close(self, status: str, **extra: Any) -> None:
        """Write what is buffered, record the outcome in the manifest, and let go of the lock.

        A finished run's parts become the single ``<table>.parquet`` files first (each written whole),
        then the manifest says ``finished``, then the parts go: at every moment the tables are whole.
        """
        try:
            failed: OSError | None = None
            try:
                self.flush()
                if status == "finished":
                    for name in TABLES:
                        self._consolidate(name)
            except OSError as exc:  # a full disk: the manifest still says how the run ended (the parts stay)
                failed, before = exc, str(extra.get("error", status))
                error = f"{type(exc).__name__}: {exc}"
                extra["error"] = error if status == "finished" or str(exc) in before else f"{before}; then {error}"
            finished = status == "finished" and failed is None
            self._manifest.update(status=status if failed is None else "failed", finished=_now(), **extra)
            self._write_manifest()
            if failed is not None and status == "finished":
                raise failed  # a run that should have finished and did not: the caller must know
            if finished:
                shutil.rmtree(self.path / PARTS, ignore_errors=True)
        finally:
            self.release()

    def _consolidate(self, name: str) -> None:
        """One table's parts as one file, read a part at a time (a table no round added to, no trade or
        event, is there, empty)."""
        parts = _parts(self.path, name)
        schema = _unified_schema(parts) if parts else pa.schema([])
        tables = (ds.dataset(str(p), schema=schema, format="parquet").to_table() for p in parts)
        _write_table_atomic(self.path / f"{name}.parquet", tables, schema)


def read_snapshot(snap: Path, sha256: str, *, purpose: str = "the run cannot resume from it") -> World:
    """The world in ``snap``, whose SHA-256 must be the ``sha256`` a manifest recorded."""
    try:
        data = snap.read_bytes()
    except OSError as exc:
        raise RunDirError(f"{snap}: the snapshot cannot be read ({exc.strerror})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise RunDirError(
            f"{snap}: SHA-256 {digest} is not the {sha256} the manifest recorded: the snapshot is damaged, so {purpose}"
        )
    try:
        return World.from_bytes(data)
    except (ValueError, KeyError, OSError) as exc:
        raise RunDirError(f"{snap}: not a readable world snapshot ({exc})") from None


def _checkpoint(path: Path, ck: dict[str, Any] | None) -> Checkpoint:
    """The manifest's checkpoint with its world, read from a snapshot whose SHA-256 matches."""
    if ck is None:
        return Checkpoint(-1, None, {}, 0)
    world = read_snapshot(path / ck["path"], ck["sha256"])
    return Checkpoint(int(ck["round"]), world, dict(ck.get("state") or {}), int(ck["rounds_completed"]))


@dataclass(frozen=True)
class SnapshotRecord:
    """One snapshot as a manifest records it: where, its SHA-256, the runner's state then."""

    round: int
    sha256: str
    state: dict[str, Any]

    @property
    def path(self) -> str:
        return f"snapshots/round-{self.round:06d}.snap"

    def record(self) -> dict[str, Any]:
        return {"sha256": self.sha256, **({"state": self.state} if self.state else {})}

    @classmethod
    def all_of(cls, manifest: Mapping[str, Any]) -> dict[int, SnapshotRecord]:
        """Every snapshot the manifest has a hash for: its ``snapshots``, and the checkpoint's (a run
        written before ``snapshots`` was recorded has only that)."""
        found = {
            int(k): cls(int(k), str(v["sha256"]), dict(v.get("state") or {}))
            for k, v in (manifest.get("snapshots") or {}).items()
        }
        ck = manifest.get("checkpoint")
        if isinstance(ck, dict) and int(ck["round"]) not in found:
            found[int(ck["round"])] = cls(int(ck["round"]), str(ck["sha256"]), dict(ck.get("state") or {}))
        return found


def _link_or_copy(src: Path, dest: Path) -> None:
    """A hard link to ``src`` at ``dest``, or a copy where links cannot be made (another file system)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def _clear(path: Path) -> None:
    """Remove an earlier run's outputs from ``path`` (``--overwrite``); nothing else in it is touched."""
    names = [*(f"{t}.parquet" for t in TABLES), *(f"{t}.parquet.tmp" for t in TABLES), "manifest.json"]
    names += ["llm-cache.sqlite", "llm-cache.sqlite-wal", "llm-cache.sqlite-shm"]
    for name in names:
        (path / name).unlink(missing_ok=True)
    shutil.rmtree(path / PARTS, ignore_errors=True)
    snaps = path / "snapshots"
    for snap in [*snaps.glob("*.snap"), *snaps.glob("*.snap.tmp")] if snaps.is_dir() else []:
        snap.unlink()


class Run:
    """A run read back, finished or not: tables as DataFrames, graphs per round.

    A finished run's tables are its single ``<table>.parquet`` files; an unfinished run's are its
    complete parts, concatenated (``finished``, ``active``, ``rounds_recorded`` and
    ``checkpoint_round`` say what it holds).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.manifest: dict[str, Any] = read_manifest(self.path)

    def __repr__(self) -> str:
        m = self.manifest
        return f"Run({str(self.path)!r}, scenario={m['scenario'].get('name')!r}, status={self.status!r})"

    @property
    def status(self) -> str:
        """The manifest's: ``running``, ``finished``, ``interrupted`` (a signal) or ``failed`` (an error).
        A killed run still says ``running``: ``active`` tells whether a process is still writing it."""
        return str(self.manifest.get("status", "unknown"))

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def active(self) -> bool:
        """Whether a live process holds the run's lock (asked now, not when the run was opened)."""
        return lock_holder(self.path) is not None

    @property
    def rounds_recorded(self) -> list[int]:
        """The rounds the tables hold (the rounds of ``metrics``)."""
        m = self.metrics
        return sorted(int(r) for r in m["round"].unique()) if "round" in m else []

    @property
    def checkpoint_round(self) -> int | None:
        """The last round resume starts after (its tables, snapshot and state all on disk), or None."""
        ck = self.manifest.get("checkpoint")
        return int(ck["round"]) if isinstance(ck, dict) else None

    def describe(self) -> str:
        """One line: how the run stands, which rounds it holds, and how to continue it."""
        first, last = self.manifest.get("round_range", [0, self.manifest.get("rounds", "?")])
        planned = f"{first}-{last - 1}" if isinstance(last, int) and first else last
        holds = f"it holds rounds {_ranges(self.rounds_recorded)} of {planned}"
        if self.finished:
            return f"{self.path}: finished; {holds}"
        if (who := lock_holder(self.path)) is not None:
            return f"{self.path}: still running ({who}); so far {holds}"
        if self.status == "running":
            how = "stopped without finishing (its process was killed: it says running, but nothing holds its lock)"
        elif self.status == "paused":
            how = "paused (Runner.run(pause_at=...); Runner.resume() or the command below continues it)"
        else:
            how = f"{self.status} ({self.manifest.get('error', 'no error recorded')})"
        if "checkpoint" not in self.manifest:  # written before runs could resume
            return f"{self.path}: {how}; {holds}"
        ck = self.checkpoint_round
        after = f"after round {ck}" if ck is not None else "from its first round"
        return f"{self.path}: {how}; {holds}; `tokenomy resume {self.path}` continues it {after}"

    def _parts(self, name: str) -> list[Path]:
        return [] if self.finished else _parts(self.path, name)

    def _table(self, name: str) -> pd.DataFrame:
        if parts := self._parts(name):
            return _read_parts(parts)
        f = self.path / f"{name}.parquet"
        return pd.read_parquet(f) if f.exists() else _empty()

    def table_files(self, name: str) -> list[Path]:
        """The Parquet files that hold table ``name`` (a finished run's one file, or an unfinished run's
        parts in round order): for reading a few columns or rows of a table too large to load whole."""
        if parts := self._parts(name):
            return parts
        f = self.path / f"{name}.parquet"
        return [f] if f.exists() else []

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
        where = [("round", "==", round_no)]
        if parts := self._parts("payments"):
            mine = [p for p in parts if (r := _part_range(p)) is not None and r[0] <= round_no <= r[1]]
            pay = _read_parts(mine, filters=where)
        else:
            pay = pd.read_parquet(f, filters=where) if f.exists() else pd.DataFrame()
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
    """Open a run directory for analysis; an unfinished run opens too, with an
    :class:`UnfinishedRunWarning` saying how it stands and which rounds it holds."""
    run = Run(path)
    if not run.finished:
        warnings.warn(run.describe(), UnfinishedRunWarning, stacklevel=2)
    return run


def payments_frame(round_no: int, postings: list[Posting], layout: Layout, level: str) -> pd.DataFrame:
    """Aggregate a round's ledger postings per payer->payee edge, kind (codes: the registry's
    payment kinds, in registration order) and rail."""
    kinds = registry.payment_kinds()

    if not any(p.amount.size for p in postings):  # no posting moved anything (an economy with no one employed)
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
