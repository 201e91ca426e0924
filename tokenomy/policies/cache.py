"""Persistent record and replay of LLM answers (SQLite, in the run directory).

The key hashes everything that determines an answer: model, endpoint, messages, sampling
parameters and the Decision schema. Successful answers *and* failures are recorded, so a replay
reproduces fallbacks with their reasons too; in a normal run only successes are reused (a failure
may have been transient). Because the world is deterministic given the seed and the answers, a
replay from this cache is bit-identical and needs no network and no key.

A small ``sqlite3`` table rather than a langchain ``BaseCache``: the engine needs cache hits
flagged per decision and kept out of token accounting, and failures recorded alongside answers.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["AnswerCache", "CachedAnswer", "request_key"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    ok INTEGER NOT NULL,
    decision_json TEXT,
    rationale TEXT NOT NULL DEFAULT '',
    fallback_reason TEXT NOT NULL DEFAULT '',
    method TEXT,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    latency_ms REAL NOT NULL DEFAULT 0,
    raw_answer TEXT NOT NULL DEFAULT '',
    repair TEXT NOT NULL DEFAULT ''
)
"""
_ADDED = ("raw_answer", "repair")  # columns newer than the first caches: read as '' from an older file


def request_key(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class CachedAnswer:
    ok: bool
    decision_json: str | None
    rationale: str
    fallback_reason: str
    method: str | None
    input_tokens: int
    output_tokens: int
    latency_ms: float
    raw_answer: str = ""  # a rejected or repaired answer as the model sent it (redacted)
    repair: str = ""  # what was changed to make it valid, or that it was re-asked


class AnswerCache:
    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        uri = f"file:{self.path}?mode=ro" if read_only else f"file:{self.path}"
        self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self._lock = threading.Lock()
        if not read_only:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(answers)")}
        for col in _ADDED:
            if col not in have and not read_only:
                self._db.execute(f"ALTER TABLE answers ADD COLUMN {col} TEXT NOT NULL DEFAULT ''")
        self._select = ", ".join(c if c in have or not read_only else "''" for c in _ADDED)
        if not read_only:
            self._db.commit()

    def get(self, key: str) -> CachedAnswer | None:
        with self._lock:
            row = self._db.execute(
                "SELECT ok, decision_json, rationale, fallback_reason, method, input_tokens, output_tokens, latency_ms,"
                f" {self._select} FROM answers WHERE key = ?",
                (key,),
            ).fetchone()
        return None if row is None else CachedAnswer(bool(row[0]), *row[1:])

    def put(self, key: str, answer: CachedAnswer) -> None:
        if self.read_only:
            return
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    int(answer.ok),
                    answer.decision_json,
                    answer.rationale,
                    answer.fallback_reason,
                    answer.method,
                    answer.input_tokens,
                    answer.output_tokens,
                    answer.latency_ms,
                    answer.raw_answer,
                    answer.repair,
                ),
            )

    def commit(self) -> None:
        if not self.read_only:
            with self._lock:
                self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        self.commit()
        self._db.close()
