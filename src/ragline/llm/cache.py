"""Persistent response cache: SQLite (WAL) in `ragline_home()/cache/llm.sqlite`.

The key is the sha256 of the canonical JSON of everything that shapes a reply: provider,
model, messages, tools, response schema and options (the `purpose` tag aside). Only
successful replies are stored. Whether a call may use the cache is `cache_allowed`.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ragline import _sqlite
from ragline.llm.types import (
    CallOptions,
    FinishReason,
    RawResult,
    Request,
    ToolCall,
    Usage,
)
from ragline.paths import ragline_home

SAMPLE_PURPOSE = "sample"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    created REAL NOT NULL,
    payload TEXT NOT NULL
)
"""


def cache_allowed(options: CallOptions, *, default: bool = True) -> bool:
    """May this call read or write the cache?

    Never for a repeated evaluation sample (`repeat=True` or purpose "sample"); otherwise
    `options.cache` if set, else the client default and only at temperature 0.
    """
    if options.repeat or options.purpose == SAMPLE_PURPOSE:
        return False
    if options.cache is not None:
        return options.cache
    return default and options.temperature == 0


def cache_key(provider: str, request: Request) -> str:
    """sha256 of the canonical JSON of provider, model and the full request."""
    body = asdict(request)
    body["options"].pop("purpose", None)
    body["options"].pop("cache", None)
    body["options"].pop("timeout", None)
    canonical = json.dumps(
        {"provider": provider, "request": body}, sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _dump(result: RawResult) -> str:
    return json.dumps(asdict(result), default=str)


def _load(payload: str) -> RawResult:
    data: dict[str, Any] = json.loads(payload)
    return RawResult(
        text=data["text"],
        model=data["model"],
        usage=Usage(**data["usage"]),
        finish_reason=FinishReason(data["finish_reason"]),
        tool_calls=tuple(ToolCall(**c) for c in data["tool_calls"]),
    )


class ResponseCache:
    """get/put of successful replies by key. Thread-safe."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or ragline_home() / "cache" / "llm.sqlite"
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = _sqlite.connect(self.path)
            conn.execute(_SCHEMA)
            self._conn = conn
        return self._conn

    def get(self, key: str) -> RawResult | None:
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT payload FROM responses WHERE key = ?", (key,))
                .fetchone()
            )
        return None if row is None else _load(row[0])

    def put(self, key: str, result: RawResult) -> None:
        with self._lock:
            conn = self._connection()
            conn.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?)",
                (key, time.time(), _dump(result)),
            )
            conn.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._connection().execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def clear(self) -> None:
        with self._lock:
            conn = self._connection()
            conn.execute("DELETE FROM responses")
            conn.commit()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
