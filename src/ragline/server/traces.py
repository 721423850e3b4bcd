"""The service's request traces and their feedback, in `<data_dir>/traces.sqlite`.

    spans     every finished span: trace and span ids, parent, name, start and end
              (ns since the epoch), status and attributes (JSON)
    traces    one row per request (its root span): what `traces list`, the access checks and
              `experiments report` read (key id, collection, arm, duration, cost, claims)
    feedback  a thumbs up or down (and a comment) on a trace, the latest one per trace

Spans are written by `SQLiteSpanExporter` (`ragline.server.tracing`), a batch per
transaction; several worker processes share the file (WAL, busy timeout). The key itself never
reaches this file: spans carry the key's public id only. Plain stdlib, so `ragline traces ...`
works without the `server` extra.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragline import _sqlite

TRACES_FILE = "traces.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_id TEXT,
    name TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    status TEXT NOT NULL,
    attributes TEXT NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE TABLE IF NOT EXISTS traces (
    trace_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    status TEXT NOT NULL,
    key_id TEXT,
    collection TEXT,
    experiment TEXT,
    arm TEXT,
    cost_usd REAL,
    claims INTEGER,
    flagged INTEGER,
    abstained INTEGER
);
CREATE INDEX IF NOT EXISTS traces_by_start ON traces (start_ns);
CREATE INDEX IF NOT EXISTS traces_by_experiment ON traces (experiment, arm);
CREATE TABLE IF NOT EXISTS feedback (
    trace_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    comment TEXT,
    created REAL NOT NULL
);
"""
# root-span attributes copied into `traces` (the columns list and report filter on)
ROOT_COLUMNS = {"ragline.key_id": "key_id", "ragline.collection": "collection",
                "ragline.experiment": "experiment", "ragline.arm": "arm",
                "ragline.cost_usd": "cost_usd", "ragline.claims": "claims",
                "ragline.claims_flagged": "flagged", "ragline.abstained": "abstained"}


@dataclass(frozen=True, slots=True)
class SpanRow:
    """One finished span as stored."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start_ns: int
    end_ns: int
    status: str
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9

    def to_dict(self) -> dict[str, Any]:
        return {"trace_id": self.trace_id, "span_id": self.span_id, "parent_id": self.parent_id,
                "name": self.name, "start": self.start_ns / 1e9, "end": self.end_ns / 1e9,
                "duration_s": round(self.duration_s, 6), "status": self.status,
                "attributes": self.attributes}


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """One request: its root span's name, time, status and the columns of `traces`."""

    trace_id: str
    name: str
    start_ns: int
    end_ns: int
    status: str
    key_id: str | None
    collection: str | None
    experiment: str | None = None
    arm: str | None = None
    cost_usd: float | None = None
    claims: int | None = None
    flagged: int | None = None
    abstained: bool | None = None
    rating: str | None = None

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9

    def to_dict(self) -> dict[str, Any]:
        return {"trace_id": self.trace_id, "name": self.name, "start": self.start_ns / 1e9,
                "duration_s": round(self.duration_s, 6), "status": self.status,
                "key_id": self.key_id, "collection": self.collection,
                "experiment": self.experiment, "arm": self.arm, "cost_usd": self.cost_usd,
                "claims": self.claims, "flagged": self.flagged, "abstained": self.abstained,
                "rating": self.rating}


@dataclass(frozen=True, slots=True)
class Feedback:
    trace_id: str
    key_id: str
    rating: str
    comment: str | None
    created: float

    def to_dict(self) -> dict[str, Any]:
        return {"trace_id": self.trace_id, "rating": self.rating, "comment": self.comment,
                "created": self.created}


_SUMMARY = ("SELECT t.trace_id, t.name, t.start_ns, t.end_ns, t.status, t.key_id, t.collection, "
            "t.experiment, t.arm, t.cost_usd, t.claims, t.flagged, t.abstained, f.rating "
            "FROM traces t LEFT JOIN feedback f ON f.trace_id = t.trace_id")


class TraceStore:
    """The traces file. Each call opens and closes its own connection, so one store serves
    any thread and several worker processes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def in_dir(cls, data_dir: Path) -> TraceStore:
        return cls(data_dir / TRACES_FILE)

    def _db(self) -> AbstractContextManager[sqlite3.Connection]:
        return _sqlite.transaction(self.path, _SCHEMA, timeout=30.0)

    # -- writing ----------------------------------------------------------------------------

    def write(self, spans: Sequence[SpanRow]) -> None:
        """Store finished spans (one transaction); a root span also fills its `traces` row."""
        if not spans:
            return
        with self._db() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO spans (trace_id, span_id, parent_id, name, start_ns, "
                "end_ns, status, attributes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(s.trace_id, s.span_id, s.parent_id, s.name, s.start_ns, s.end_ns, s.status,
                  json.dumps(s.attributes, ensure_ascii=False, default=str)) for s in spans])
            roots = [s for s in spans if s.parent_id is None]
            conn.executemany(
                "INSERT OR REPLACE INTO traces (trace_id, name, start_ns, end_ns, status, "
                f"{', '.join(ROOT_COLUMNS.values())}) VALUES "
                f"(?, ?, ?, ?, ?{', ?' * len(ROOT_COLUMNS)})",
                [(s.trace_id, s.name, s.start_ns, s.end_ns, s.status,
                  *(s.attributes.get(a) for a in ROOT_COLUMNS)) for s in roots])

    def add_feedback(self, trace_id: str, key_id: str, rating: str,
                     comment: str | None) -> Feedback:
        """Record a rating of a trace (a second rating of the same trace replaces the first)."""
        record = Feedback(trace_id, key_id, rating, comment, time.time())
        with self._db() as conn:
            conn.execute(
                "INSERT INTO feedback (trace_id, key_id, rating, comment, created) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (trace_id) DO UPDATE SET "
                "key_id = excluded.key_id, rating = excluded.rating, "
                "comment = excluded.comment, created = excluded.created",
                (trace_id, key_id, rating, comment, record.created))
        return record

    # -- reading ----------------------------------------------------------------------------

    def summary(self, trace_id: str) -> TraceSummary | None:
        with self._db() as conn:
            row = conn.execute(f"{_SUMMARY} WHERE t.trace_id = ?", (trace_id,)).fetchone()
        return None if row is None else _summary(row)

    def recent(self, *, limit: int = 20, key_id: str | None = None,
               collection: str | None = None) -> list[TraceSummary]:
        """The latest requests first (of one key, or of one collection, when given)."""
        where, args = [], []
        for column, value in (("t.key_id", key_id), ("t.collection", collection)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._db() as conn:
            rows = conn.execute(f"{_SUMMARY}{clause} ORDER BY t.start_ns DESC LIMIT ?",
                                (*args, limit)).fetchall()
        return [_summary(r) for r in rows]

    def spans(self, trace_id: str) -> list[SpanRow]:
        with self._db() as conn:
            rows = conn.execute(
                "SELECT trace_id, span_id, parent_id, name, start_ns, end_ns, status, "
                "attributes FROM spans WHERE trace_id = ? ORDER BY start_ns, end_ns DESC",
                (trace_id,)).fetchall()
        return [SpanRow(trace_id=r[0], span_id=r[1], parent_id=r[2], name=r[3], start_ns=r[4],
                        end_ns=r[5], status=r[6], attributes=json.loads(r[7])) for r in rows]

    def of_experiment(self, experiment: str) -> list[TraceSummary]:
        """Every request an experiment routed, with its feedback (if any)."""
        with self._db() as conn:
            rows = conn.execute(f"{_SUMMARY} WHERE t.experiment = ? ORDER BY t.start_ns",
                                (experiment,)).fetchall()
        return [_summary(r) for r in rows]

    def find_prefix(self, prefix: str) -> list[str]:
        """Trace ids starting with `prefix` (what `traces show` accepts, like a git sha)."""
        with self._db() as conn:
            rows = conn.execute("SELECT trace_id FROM traces WHERE trace_id LIKE ? LIMIT 5",
                                (prefix.lower().replace("%", "") + "%",)).fetchall()
        return [r[0] for r in rows]


def _summary(row: Sequence[Any]) -> TraceSummary:
    (trace_id, name, start_ns, end_ns, status, key_id, collection, experiment, arm, cost_usd,
     claims, flagged, abstained, rating) = row
    return TraceSummary(trace_id, name, start_ns, end_ns, status, key_id, collection,
                        experiment, arm, cost_usd, claims, flagged,
                        None if abstained is None else bool(abstained), rating)


# ---------------------------------------------------------------- a trace as a tree


@dataclass
class SpanNode:
    span: SpanRow
    children: list[SpanNode] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**self.span.to_dict(), "children": [c.to_dict() for c in self.children]}


def span_tree(spans: Sequence[SpanRow]) -> list[SpanNode]:
    """The spans of one trace as trees (roots first, children in start order); a span whose
    parent is missing (not stored yet) is shown as a root."""
    nodes = {s.span_id: SpanNode(s) for s in spans}
    roots: list[SpanNode] = []
    for span in spans:
        parent = nodes.get(span.parent_id) if span.parent_id else None
        (parent.children if parent is not None else roots).append(nodes[span.span_id])
    return roots


def render_tree(roots: Sequence[SpanNode], *, attributes: bool = True) -> list[str]:
    """Text lines of a span tree: name, duration and offset from the trace's start, then
    each attribute indented under it."""
    if not roots:
        return []
    origin = min(r.span.start_ns for r in roots)
    lines: list[str] = []

    def walk(node: SpanNode, prefix: str, last: bool, top: bool) -> None:
        span = node.span
        branch = "" if top else ("└─ " if last else "├─ ")
        status = "" if span.status in ("ok", "unset") else f"  [{span.status}]"
        lines.append(f"{prefix}{branch}{span.name}  {span.duration_s * 1000:.1f} ms  "
                     f"(+{(span.start_ns - origin) / 1e6:.1f} ms){status}")
        inner = prefix + ("" if top else ("   " if last else "│  "))
        if attributes:
            pad = inner + ("│  " if node.children else "   ")
            lines.extend(f"{pad}{k} = {_show(v)}" for k, v in sorted(span.attributes.items()))
        for i, child in enumerate(node.children):
            walk(child, inner, i == len(node.children) - 1, False)

    for root in roots:
        walk(root, "", True, True)
    return lines


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= 200 else text[:197] + "..."


def plain_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Span attributes as JSON values (OpenTelemetry gives sequences as tuples)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in attributes.items()}
