"""The cost ledger: one SQLite row per attempt (every retry, re-ask and fallback too).

Lives in `ragline_home()/ledger.sqlite`. Rows of one logical call share a `call_id`.
Latency is split into `wait_s` (backoff slept before the attempt) and `provider_s` (time
spent in the provider), so a slow call can be told apart from a throttled one.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragline import _sqlite
from ragline.llm.errors import LLMConfigError
from ragline.llm.types import Usage
from ragline.paths import ragline_home

OK = "ok"
CACHE_HIT = "cache_hit"
CANCELLED = "cancelled"
GROUP_FIELDS = ("provider", "model", "purpose", "outcome")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    timestamp REAL NOT NULL,
    call_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    purpose TEXT NOT NULL,
    outcome TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_usd REAL,
    wait_s REAL NOT NULL,
    provider_s REAL NOT NULL,
    ttft_s REAL,
    reask INTEGER NOT NULL,
    fallback INTEGER NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS attempts_time ON attempts (timestamp);
CREATE INDEX IF NOT EXISTS attempts_call ON attempts (call_id);
"""
_COLUMNS = (
    "timestamp",
    "call_id",
    "attempt",
    "provider",
    "model",
    "purpose",
    "outcome",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "output_tokens",
    "cost_usd",
    "wait_s",
    "provider_s",
    "ttft_s",
    "reask",
    "fallback",
    "error",
)


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One attempt. `cost_usd` is None for an unpriced model; `reask` counts structured-output
    re-asks before this attempt; `fallback` is True when a fallback model ran it."""

    call_id: str
    attempt: int
    provider: str
    model: str
    purpose: str
    outcome: str
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = 0.0
    wait_s: float = 0.0
    provider_s: float = 0.0
    ttft_s: float | None = None
    reask: int = 0
    fallback: bool = False
    error: str | None = None
    timestamp: float = field(default_factory=time.time)

    def _row(self) -> tuple[Any, ...]:
        u = self.usage
        return (
            self.timestamp,
            self.call_id,
            self.attempt,
            self.provider,
            self.model,
            self.purpose,
            self.outcome,
            u.input_tokens,
            u.cached_input_tokens,
            u.cache_write_tokens,
            u.reasoning_tokens,
            u.output_tokens,
            self.cost_usd,
            self.wait_s,
            self.provider_s,
            self.ttft_s,
            self.reask,
            int(self.fallback),
            self.error,
        )

    @classmethod
    def _from_row(cls, row: sqlite3.Row) -> CallRecord:
        usage = Usage(
            row["input_tokens"],
            row["cached_input_tokens"],
            row["cache_write_tokens"],
            row["reasoning_tokens"],
            row["output_tokens"],
        )
        return cls(
            call_id=row["call_id"],
            attempt=row["attempt"],
            provider=row["provider"],
            model=row["model"],
            purpose=row["purpose"],
            outcome=row["outcome"],
            usage=usage,
            cost_usd=row["cost_usd"],
            wait_s=row["wait_s"],
            provider_s=row["provider_s"],
            ttft_s=row["ttft_s"],
            reask=row["reask"],
            fallback=bool(row["fallback"]),
            error=row["error"],
            timestamp=row["timestamp"],
        )


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """Totals for one group. Latency is per logical call: its waits plus provider time.

    `unpriced` counts successful attempts whose model has no price: `cost_usd` leaves them out.
    """

    group: dict[str, str]
    calls: int
    attempts: int
    errors: int
    cache_hits: int
    unpriced: int
    cost_usd: float
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    latency_p50_s: float
    latency_p95_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize_records(
    records: Iterable[CallRecord], group_by: Sequence[str] = ("model", "purpose")
) -> list[SummaryRow]:
    """Group attempts and total them (pure; `Ledger.summarize` reads then calls this)."""
    bad = [g for g in group_by if g not in GROUP_FIELDS]
    if bad:
        raise LLMConfigError(f"cannot group the ledger by {bad}: use {', '.join(GROUP_FIELDS)}")
    groups: dict[tuple[str, ...], list[CallRecord]] = defaultdict(list)
    for record in records:
        groups[tuple(str(getattr(record, g)) for g in group_by)].append(record)
    return [
        _summarize_group(dict(zip(group_by, key, strict=True)), rows)
        for key, rows in sorted(groups.items())
    ]


def _summarize_group(group: dict[str, str], rows: list[CallRecord]) -> SummaryRow:
    per_call: dict[str, float] = defaultdict(float)
    for r in rows:
        per_call[r.call_id] += r.wait_s + r.provider_s
    latencies = list(per_call.values())
    return SummaryRow(
        group=group,
        calls=len(per_call),
        attempts=len(rows),
        errors=sum(r.outcome not in (OK, CACHE_HIT, CANCELLED) for r in rows),
        cache_hits=sum(r.outcome == CACHE_HIT for r in rows),
        unpriced=sum(r.outcome == OK and r.cost_usd is None for r in rows),
        cost_usd=sum(r.cost_usd or 0.0 for r in rows),
        input_tokens=sum(r.usage.input_tokens for r in rows if r.outcome != CACHE_HIT),
        cached_input_tokens=sum(
            r.usage.cached_input_tokens for r in rows if r.outcome != CACHE_HIT
        ),
        output_tokens=sum(r.usage.output_tokens for r in rows if r.outcome != CACHE_HIT),
        latency_p50_s=percentile(latencies, 50),
        latency_p95_s=percentile(latencies, 95),
    )


class Ledger:
    """Append and read attempt rows. Thread-safe; one connection per Ledger (WAL mode)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or ragline_home() / "ledger.sqlite"
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = _sqlite.connect(self.path)
            conn.row_factory = sqlite3.Row
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    def record(self, record: CallRecord) -> None:
        placeholders = ", ".join("?" for _ in _COLUMNS)
        sql = f"INSERT INTO attempts ({', '.join(_COLUMNS)}) VALUES ({placeholders})"
        with self._lock:
            conn = self._connection()
            conn.execute(sql, record._row())
            conn.commit()

    def records(self, since: float | None = None, call_id: str | None = None) -> list[CallRecord]:
        """Rows in insertion order, optionally since a unix time or for one call."""
        sql = "SELECT * FROM attempts WHERE timestamp >= ?"
        args: list[Any] = [since or 0.0]
        if call_id is not None:
            sql += " AND call_id = ?"
            args.append(call_id)
        with self._lock:
            rows = self._connection().execute(sql + " ORDER BY id", args).fetchall()
        return [CallRecord._from_row(r) for r in rows]

    def summarize(
        self, since: float | None = None, group_by: Sequence[str] = ("model", "purpose")
    ) -> list[SummaryRow]:
        """Calls, attempts, cost and latency p50/p95 per group."""
        return summarize_records(self.records(since), group_by)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
