"""Durable agent state: every run, step, message and tool call in SQLite (`$RAGLINE_HOME/agent.sqlite`)
or, with a `[store] backend = "postgres"` configuration, in PostgreSQL (schema `<schema>_agent`).

A step is written in transactions that each leave the database in a state a resume can read:
1. the model's reply (its assistant message, tokens, cost) with the step marked `planned`;
2. for a tool with side effects, a `started` row before it runs and `done` (with its result) after;
3. the step's tool results and the step marked `done`.
A kill -9 at any point loses at most the work in flight: `resume` redoes a `planned` step's
remaining calls, reuses every `done` result, and never re-runs a `started` side-effect call.

The SQL is written once, with `?` placeholders and statements both databases accept; an
`AgentDatabase` per backend only opens the connection, translates placeholders and runs
transactions.
"""

from __future__ import annotations

import enum
import json
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ragline._sqlite import connect, immediate
from ragline.errors import RaglineError, StoreUnavailable
from ragline.llm.types import Message, Role, ToolCall
from ragline.paths import ragline_home

if TYPE_CHECKING:
    from ragline.config import StoreSettings

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, task TEXT NOT NULL, status TEXT NOT NULL, stop_reason TEXT,
    answer TEXT, config TEXT NOT NULL, created DOUBLE PRECISION NOT NULL,
    updated DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, step INTEGER NOT NULL, role TEXT NOT NULL,
    content TEXT NOT NULL, tool_calls TEXT NOT NULL, tool_call_id TEXT,
    PRIMARY KEY (run_id, seq));
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, status TEXT NOT NULL, usage TEXT NOT NULL,
    cost_usd DOUBLE PRECISION, created DOUBLE PRECISION NOT NULL, PRIMARY KEY (run_id, step));
CREATE TABLE IF NOT EXISTS tool_calls (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, idx INTEGER NOT NULL, call_id TEXT NOT NULL,
    name TEXT NOT NULL, arguments TEXT NOT NULL, status TEXT NOT NULL, outcome TEXT,
    result TEXT, side_effects INTEGER NOT NULL, seconds DOUBLE PRECISION,
    PRIMARY KEY (run_id, step, idx));
CREATE TABLE IF NOT EXISTS verdicts (
    run_id TEXT PRIMARY KEY, citations TEXT NOT NULL, checks TEXT NOT NULL);
"""
# Portable SQL: DOUBLE PRECISION is REAL affinity in SQLite and float8 (not float4) in
# PostgreSQL; an upsert in place of SQLite's INSERT OR REPLACE (SQLite >= 3.24 reads it).
_PUT_CALL = (
    "INSERT INTO tool_calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (run_id, step, idx) DO UPDATE SET call_id = excluded.call_id, "
    "name = excluded.name, arguments = excluded.arguments, status = excluded.status, "
    "outcome = excluded.outcome, result = excluded.result, "
    "side_effects = excluded.side_effects, seconds = excluded.seconds")
_TABLES = ("runs", "messages", "steps", "tool_calls")
AGENT_SCHEMA_SUFFIX = "_agent"  # beside the index schema: dropping an index keeps its runs


class RunNotFound(RaglineError):
    """No agent run has this id; `ragline agent list` shows the runs there are."""


class RunStatus(enum.StrEnum):
    RUNNING = "running"  # or killed while running: `resume` continues it
    FINISHED = "finished"


class CallStatus(enum.StrEnum):
    STARTED = "started"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class CallRow:
    """One recorded tool call of a step."""

    step: int
    idx: int
    call_id: str
    name: str
    arguments: dict[str, Any]
    status: CallStatus
    outcome: str | None
    result: str | None
    side_effects: bool
    seconds: float | None = None


@dataclass(frozen=True, slots=True)
class StepRow:
    step: int
    status: str
    usage: dict[str, int]
    cost_usd: float | None


@dataclass
class RunRecord:
    """Everything stored about one run."""

    run_id: str
    task: str
    status: RunStatus
    stop_reason: str | None
    answer: str | None
    config: dict[str, Any]
    created: float
    updated: float
    messages: list[tuple[int, Message]] = field(default_factory=list)  # (step, message)
    steps: list[StepRow] = field(default_factory=list)
    calls: list[CallRow] = field(default_factory=list)
    citations: list[dict[str, Any]] = field(default_factory=list)  # of the last answer
    checks: list[dict[str, Any]] = field(default_factory=list)  # its sentences' verdicts

    @property
    def conversation(self) -> list[Message]:
        return [m for _, m in self.messages]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "task": self.task, "status": self.status.value,
            "stop_reason": self.stop_reason, "answer": self.answer, "config": self.config,
            "created": self.created, "updated": self.updated,
            "messages": [dict(message_dict(m), step=s) for s, m in self.messages],
            "steps": [{"step": s.step, "status": s.status, "usage": s.usage,
                       "cost_usd": s.cost_usd} for s in self.steps],
            "tool_calls": [{"step": c.step, "idx": c.idx, "name": c.name,
                            "arguments": c.arguments, "status": c.status.value,
                            "outcome": c.outcome, "result": c.result,
                            "side_effects": c.side_effects, "seconds": c.seconds}
                           for c in self.calls],
            "citations": self.citations, "checks": self.checks,
        }


def message_dict(message: Message) -> dict[str, Any]:
    return {"role": message.role.value, "content": message.content,
            "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments}
                           for c in message.tool_calls],
            "tool_call_id": message.tool_call_id}


def _message(role: str, content: str, tool_calls: str, tool_call_id: str | None) -> Message:
    calls = tuple(ToolCall(c["id"], c["name"], c["arguments"]) for c in json.loads(tool_calls))
    return Message(Role(role), content, tool_calls=calls, tool_call_id=tool_call_id)


def default_path() -> Path:
    return ragline_home() / "agent.sqlite"


class Rows(Protocol):
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class AgentDatabase(Protocol):
    """The seam under `AgentStore`: one connection that runs its `?`-placeholder SQL."""

    where: str  # for messages: the file, or the schema and server (never a password)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows: ...

    def transaction(self) -> AbstractContextManager[AgentDatabase]:
        """One durable unit: committed on exit, rolled back on an exception."""
        ...

    def close(self) -> None: ...


class AgentStore:
    """The checkpoint store of agent runs (SQLite by default). One writer per run at a time."""

    def __init__(self, path: Path | None = None, *, database: AgentDatabase | None = None) -> None:
        """The SQLite file `path` (default `$RAGLINE_HOME/agent.sqlite`), or `database`."""
        if database is None:
            self.path: Path | None = path or default_path()
            database = SQLiteAgentDatabase(self.path)
        else:
            self.path = None
        self._db = database
        self.where = database.where

    @classmethod
    def from_settings(cls, settings: StoreSettings | None, path: Path | None = None) -> AgentStore:
        """The store a ragline configuration's `[store]` names: PostgreSQL (schema
        `<schema>_agent`) for backend "postgres", else the SQLite file `path` (default
        `$RAGLINE_HOME/agent.sqlite`)."""
        if settings is None or settings.backend == "sqlite":
            return cls(path)
        from ragline.store.postgres import check_schema_name

        schema = check_schema_name(settings.schema_name) + AGENT_SCHEMA_SUFFIX
        assert settings.dsn is not None  # StoreSettings requires it for postgres
        return cls(database=PostgresAgentDatabase(settings.dsn, schema,
                                                  password_env=settings.password_env))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> AgentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tx(self) -> AbstractContextManager[AgentDatabase]:
        return self._db.transaction()

    # --- writes ------------------------------------------------------------------------

    def create_run(self, task: str, config: dict[str, Any]) -> str:
        run_id = uuid.uuid4().hex[:12]
        now = time.time()
        with self._tx() as c:
            c.execute("INSERT INTO runs VALUES (?, ?, ?, NULL, NULL, ?, ?, ?)",
                      (run_id, task, RunStatus.RUNNING.value, json.dumps(config), now, now))
        return run_id

    def add_user_message(self, run_id: str, step: int, content: str) -> None:
        """A new user turn (multi-turn): the run is running again."""
        with self._tx() as c:
            self._append(c, run_id, step, [Message.user(content)])
            c.execute("UPDATE runs SET status = ?, stop_reason = NULL, answer = NULL, updated = ? "
                      "WHERE run_id = ?", (RunStatus.RUNNING.value, time.time(), run_id))

    def plan_step(self, run_id: str, step: int, reply: Message, usage: dict[str, int],
                  cost_usd: float | None) -> None:
        """Transaction 1 of a step: the model's reply and what it cost."""
        with self._tx() as c:
            self._append(c, run_id, step, [reply])
            c.execute("INSERT INTO steps VALUES (?, ?, 'planned', ?, ?, ?)",
                      (run_id, step, json.dumps(usage), cost_usd, time.time()))

    def call_started(self, run_id: str, step: int, idx: int, call: ToolCall,
                     side_effects: bool) -> None:
        with self._tx() as c:
            c.execute(_PUT_CALL, (run_id, step, idx, call.id, call.name,
                                  json.dumps(call.arguments), CallStatus.STARTED.value, None,
                                  None, int(side_effects), None))

    def call_done(self, run_id: str, step: int, idx: int, call: ToolCall, side_effects: bool,
                  outcome: str, result: str, seconds: float) -> None:
        with self._tx() as c:
            c.execute(_PUT_CALL, (run_id, step, idx, call.id, call.name,
                                  json.dumps(call.arguments), CallStatus.DONE.value, outcome,
                                  result, int(side_effects), seconds))

    def finish_step(self, run_id: str, step: int, results: list[Message]) -> None:
        """The last transaction of a step: its tool results go into the conversation."""
        with self._tx() as c:
            self._append(c, run_id, step, results)
            c.execute("UPDATE steps SET status = 'done' WHERE run_id = ? AND step = ?",
                      (run_id, step))
            c.execute("UPDATE runs SET updated = ? WHERE run_id = ?", (time.time(), run_id))

    def finish_run(self, run_id: str, stop_reason: str, answer: str | None, *,
                   citations: list[dict[str, Any]] | None = None,
                   checks: list[dict[str, Any]] | None = None) -> None:
        """The end of a turn: its answer and, in the same transaction, what the answer cites
        and the verifier's check of each sentence (replacing an earlier turn's)."""
        with self._tx() as c:
            c.execute("INSERT INTO verdicts VALUES (?, ?, ?) ON CONFLICT (run_id) DO UPDATE "
                      "SET citations = excluded.citations, checks = excluded.checks",
                      (run_id, json.dumps(citations or []), json.dumps(checks or [])))
            c.execute("UPDATE runs SET status = ?, stop_reason = ?, answer = ?, updated = ? "
                      "WHERE run_id = ?", (RunStatus.FINISHED.value, stop_reason, answer,
                                           time.time(), run_id))

    def _append(self, c: AgentDatabase, run_id: str, step: int,
                messages: list[Message]) -> None:
        (last,) = c.execute("SELECT COALESCE(MAX(seq), -1) FROM messages WHERE run_id = ?",
                            (run_id,)).fetchone()
        for offset, m in enumerate(messages, start=1):
            d = message_dict(m)
            c.execute("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (run_id, last + offset, step, d["role"], m.content,
                       json.dumps(d["tool_calls"]), m.tool_call_id))

    # --- reads -------------------------------------------------------------------------

    def load(self, run_id: str) -> RunRecord:
        db = self._db
        row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(f"no agent run {run_id!r} in {self.where}: `ragline agent list` "
                              "shows the runs there are")
        record = RunRecord(row[0], row[1], RunStatus(row[2]), row[3], row[4], json.loads(row[5]),
                           row[6], row[7])
        for step, role, content, calls, call_id in db.execute(
                "SELECT step, role, content, tool_calls, tool_call_id FROM messages "
                "WHERE run_id = ? ORDER BY seq", (run_id,)):
            record.messages.append((step, _message(role, content, calls, call_id)))
        for step, status, usage, cost in db.execute(
                "SELECT step, status, usage, cost_usd FROM steps WHERE run_id = ? ORDER BY step",
                (run_id,)):
            record.steps.append(StepRow(step, status, json.loads(usage), cost))
        for r in db.execute("SELECT step, idx, call_id, name, arguments, status, outcome, "
                            "result, side_effects, seconds FROM tool_calls "
                            "WHERE run_id = ? ORDER BY step, idx", (run_id,)):
            record.calls.append(CallRow(r[0], r[1], r[2], r[3], json.loads(r[4]),
                                        CallStatus(r[5]), r[6], r[7], bool(r[8]), r[9]))
        verdicts = db.execute("SELECT citations, checks FROM verdicts WHERE run_id = ?",
                              (run_id,)).fetchone()
        if verdicts is not None:
            record.citations, record.checks = json.loads(verdicts[0]), json.loads(verdicts[1])
        return record

    def list_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT r.run_id, r.task, r.status, r.stop_reason, r.updated, "
            "(SELECT COUNT(*) FROM steps s WHERE s.run_id = r.run_id) FROM runs r "
            "ORDER BY r.created DESC LIMIT ?", (limit,)).fetchall()
        return [{"run_id": r[0], "task": r[1], "status": r[2], "stop_reason": r[3],
                 "updated": r[4], "steps": r[5]} for r in rows]


class SQLiteAgentDatabase:
    """The SQLite file (WAL, `ragline._sqlite`); a transaction is BEGIN IMMEDIATE ... COMMIT."""

    def __init__(self, path: Path) -> None:
        self.where = str(path)
        self._conn = connect(path, autocommit=True)
        self._conn.executescript(_SCHEMA)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        return self._conn.execute(sql, params)

    @contextmanager
    def transaction(self) -> Iterator[AgentDatabase]:
        with immediate(self._conn):
            yield self

    def close(self) -> None:
        self._conn.close()


class PostgresAgentDatabase:
    """The tables in one PostgreSQL schema (created if missing), through psycopg 3: `?`
    placeholders become `%s`, a transaction is psycopg's, a lost server a `StoreUnavailable`."""

    def __init__(self, dsn: str, schema: str, *, password_env: str) -> None:
        from ragline.store.postgres import check_schema_name, connect, describe_dsn

        self.schema = check_schema_name(schema)
        self.where = f"schema {schema} at {describe_dsn(dsn)}"
        self._conn = connect(dsn, password_env=password_env)  # says so if psycopg is missing
        import psycopg

        self._psycopg = psycopg
        try:
            self._create()
        except BaseException:
            self._conn.close()
            raise

    def _create(self) -> None:
        """The schema and tables, unless they exist: a role that may only read and write them
        never needs CREATE (which even CREATE ... IF NOT EXISTS asks for)."""
        try:
            self._conn.execute(f"SET search_path TO {self.schema}")
            if self._has_tables():
                return
            with self._conn.transaction():
                # One creator at a time: CREATE ... IF NOT EXISTS can still collide.
                self._conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.schema,))
                if not self._conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                                          (self.schema,)).fetchone():
                    self._conn.execute(f"CREATE SCHEMA {self.schema}")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
        except self._psycopg.Error as exc:
            raise StoreUnavailable(
                f"cannot create the agent tables in {self.where}: "
                f"{exc.diag.message_primary or exc}; the role needs CREATE on the database (or "
                f"ask its owner to create schema {self.schema} for it)") from None

    def _has_tables(self) -> bool:
        (count,) = self._conn.execute(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s"
            " AND table_name = ANY(%s)", (self.schema, list(_TABLES))).fetchone()
        return int(count) == len(_TABLES)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        with self._lost_server():
            return self._conn.execute(  # type: ignore[no-any-return]
                sql.replace("%", "%%").replace("?", "%s"), [_text(p) for p in params])

    @contextmanager
    def transaction(self) -> Iterator[AgentDatabase]:
        with self._lost_server(), self._conn.transaction():
            yield self

    @contextmanager
    def _lost_server(self) -> Iterator[None]:
        try:
            yield
        except self._psycopg.OperationalError as exc:
            raise StoreUnavailable(f"lost the agent store in {self.where}: {exc}; check that "
                                   "PostgreSQL is running, then `ragline agent resume` the "
                                   "run") from None

    def close(self) -> None:
        self._conn.close()


def _text(value: Any) -> Any:
    """PostgreSQL text cannot hold NUL characters (SQLite can): they become U+FFFD."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value
