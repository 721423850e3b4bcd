"""The run registry: every evaluation run, its manifest, summary and per-query results, in SQLite.

A run is "running" until `finish_run` marks it "complete" in one transaction with its summary.
A run whose process died is marked "interrupted" the next time the registry is opened (the pid and
its start time are recorded), so a half-written run never looks complete. An interrupted run can be
resumed (`resume_run`, then skip `completed_queries`) or discarded.
"""

from __future__ import annotations

import enum
import json
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ragline import _sqlite
from ragline.errors import RaglineError
from ragline.evaluate.manifest import Manifest
from ragline.evaluate.metrics import DEFAULT_MEASURES
from ragline.evaluate.stats import DEFAULT_RESAMPLES, Comparison, ComparisonError, compare_paired
from ragline.paths import ragline_home

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    finished_at REAL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    pid_start TEXT,
    manifest TEXT NOT NULL,
    summary TEXT,
    reason TEXT
);
CREATE TABLE IF NOT EXISTS query_results (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    config TEXT NOT NULL,
    query_id TEXT NOT NULL,
    metrics TEXT NOT NULL,
    latency_s REAL,
    PRIMARY KEY (run_id, config, query_id)
);
CREATE INDEX IF NOT EXISTS runs_created ON runs(created_at);
"""


class RegistryError(RaglineError):
    """The run registry cannot do what was asked (unknown id, wrong state)."""


class RunNotFound(RegistryError):
    """No run matches the given id or prefix."""


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    COMPLETE = "complete"
    INTERRUPTED = "interrupted"
    DISCARDED = "discarded"


@dataclass(frozen=True, slots=True)
class QueryResult:
    """One query's metric values (and search latency in seconds) under one configuration."""

    query_id: str
    metrics: Mapping[str, float]
    latency_s: float | None = None


@dataclass(frozen=True, slots=True)
class RunSummary:
    """A row of `runs list`."""

    id: str
    kind: str
    name: str
    status: RunStatus
    created_at: float
    finished_at: float | None
    reason: str | None
    config: dict[str, Any] = field(default_factory=dict)  # the manifest's run settings

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "status": self.status.value,
            "created_at": _iso(self.created_at),
            "finished_at": _iso(self.finished_at) if self.finished_at else None,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run with its manifest, summary and per-query results by configuration."""

    info: RunSummary
    manifest: dict[str, Any]
    summary: dict[str, Any] | None
    results: dict[str, dict[str, QueryResult]]

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def configs(self) -> list[str]:
        return sorted(self.results)

    def per_query(self, config: str) -> dict[str, dict[str, float]]:
        """{query_id: {metric: value}} of one configuration."""
        return {q: dict(r.metrics) for q, r in self._config(config).items()}

    def latencies(self, config: str) -> list[float]:
        return [r.latency_s for r in self._config(config).values() if r.latency_s is not None]

    def _config(self, config: str) -> dict[str, QueryResult]:
        if config not in self.results:
            raise RegistryError(
                f"run {self.id} has no configuration {config!r}; it has: {', '.join(self.configs)}"
            )
        return self.results[config]

    def to_dict(self, *, per_query: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            **self.info.to_dict(),
            "configs": self.configs,
            "manifest": self.manifest,
            "summary": self.summary,
        }
        if per_query:
            out["per_query"] = {
                c: {
                    q: {"metrics": dict(r.metrics), "latency_s": r.latency_s}
                    for q, r in rows.items()
                }
                for c, rows in self.results.items()
            }
        return out


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def _process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (Linux), which tells a live process from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return start is None or _process_start(pid) in (None, start)


def new_run_id(now: float | None = None) -> str:
    """A short, sortable, typeable id: r<YYYYMMDD>-<HHMM>-<4 hex>, local time."""
    stamp = time.strftime("%Y%m%d-%H%M", time.localtime(now or time.time()))
    return f"r{stamp}-{secrets.token_hex(2)}"


class RunRegistry:
    """Evaluation runs in SQLite at `path` (default $RAGLINE_HOME/runs.sqlite)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else ragline_home() / "runs.sqlite"
        self._conn = _sqlite.connect(self.path, autocommit=True, foreign_keys=True, shared=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.executescript(_SCHEMA)
        self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self.mark_interrupted()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> RunRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def mark_interrupted(self) -> list[str]:
        """Mark this host's running runs whose process is gone as interrupted; return their ids."""
        host = socket.gethostname()
        rows = self._conn.execute(
            "SELECT id, pid, pid_start FROM runs WHERE status = ? AND host = ?",
            (RunStatus.RUNNING.value, host),
        ).fetchall()
        dead = [r["id"] for r in rows if not _pid_alive(r["pid"], r["pid_start"])]
        if not dead:
            return dead
        with self._write() as db:
            for run_id in dead:
                db.execute(
                    "UPDATE runs SET status = ?, reason = ? WHERE id = ? AND status = ?",
                    (
                        RunStatus.INTERRUPTED.value,
                        "process ended before the run finished",
                        run_id,
                        RunStatus.RUNNING.value,
                    ),
                )
        return dead

    def start_run(self, kind: str, name: str, manifest: Manifest | Mapping[str, Any]) -> str:
        """Record a new run as "running" under this process; return its id."""
        data = manifest.to_dict() if isinstance(manifest, Manifest) else dict(manifest)
        pid = os.getpid()
        for _ in range(20):
            run_id = new_run_id()
            try:
                with self._write() as db:
                    db.execute(
                        "INSERT INTO runs (id, kind, name, status, created_at, host, pid, "
                        "pid_start, manifest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            run_id,
                            kind,
                            name,
                            RunStatus.RUNNING.value,
                            time.time(),
                            socket.gethostname(),
                            pid,
                            _process_start(pid),
                            json.dumps(data),
                        ),
                    )
                return run_id
            except sqlite3.IntegrityError:
                continue
        raise RegistryError("could not allocate a unique run id; try again")

    def _require_running(self, run_id: str) -> None:
        row = self._conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(f"no run {run_id!r}; list runs with `ragline runs list`")
        if row["status"] != RunStatus.RUNNING.value:
            raise RegistryError(
                f"run {run_id} is {row['status']}, not running; "
                "resume it with resume_run() or start a new run"
            )

    def add_query_results(self, run_id: str, config_name: str, rows: Iterable[QueryResult]) -> int:
        """Store per-query results of one configuration (replacing earlier ones for the same
        queries, so a resumed run can redo a query). Returns the number stored."""
        self._require_running(run_id)
        values = [
            (run_id, config_name, r.query_id, json.dumps(dict(r.metrics)), r.latency_s)
            for r in rows
        ]
        with self._write() as db:
            db.executemany("INSERT OR REPLACE INTO query_results VALUES (?, ?, ?, ?, ?)", values)
        return len(values)

    def completed_queries(self, run_id: str, config_name: str) -> set[str]:
        """Query ids already stored for a configuration (to skip them when resuming)."""
        rows = self._conn.execute(
            "SELECT query_id FROM query_results WHERE run_id = ? AND config = ?",
            (run_id, config_name),
        )
        return {r["query_id"] for r in rows}

    def finish_run(self, run_id: str, summary: Mapping[str, Any]) -> None:
        """Store the summary and mark the run complete, in one transaction."""
        self._require_running(run_id)
        with self._write() as db:
            db.execute(
                "UPDATE runs SET status = ?, summary = ?, finished_at = ? WHERE id = ?",
                (RunStatus.COMPLETE.value, json.dumps(dict(summary)), time.time(), run_id),
            )

    def discard_run(self, run_id: str, reason: str) -> None:
        """Mark a run discarded (kept for the record, never compared or shown as complete)."""
        full = self.resolve(run_id)
        with self._write() as db:
            db.execute(
                "UPDATE runs SET status = ?, reason = ?, finished_at = ? WHERE id = ?",
                (RunStatus.DISCARDED.value, reason, time.time(), full),
            )

    def resume_run(self, run_id: str) -> str:
        """Take over an interrupted run in this process; returns its full id."""
        full = self.resolve(run_id)
        status = self.get_run(full).info.status
        if status is not RunStatus.INTERRUPTED:
            raise RegistryError(f"run {full} is {status.value}; only interrupted runs resume")
        pid = os.getpid()
        with self._write() as db:
            db.execute(
                "UPDATE runs SET status = ?, reason = NULL, host = ?, pid = ?, pid_start = ? "
                "WHERE id = ?",
                (RunStatus.RUNNING.value, socket.gethostname(), pid, _process_start(pid), full),
            )
        return full

    def resolve(self, run_id: str) -> str:
        """The full id of a run given its id, a prefix of it, or its 4-hex suffix."""
        exact = self._conn.execute("SELECT id FROM runs WHERE id = ?", (run_id,)).fetchone()
        if exact:
            return str(exact["id"])
        like = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._conn.execute(
            "SELECT id FROM runs WHERE id LIKE ? ESCAPE '\\' OR id LIKE ? ESCAPE '\\' "
            "ORDER BY created_at",
            (f"{like}%", f"%-{like}"),
        ).fetchall()
        if not rows:
            raise RunNotFound(f"no run matches {run_id!r}; list runs with `ragline runs list`")
        if len(rows) > 1:
            ids = ", ".join(r["id"] for r in rows[:10])
            raise RegistryError(f"{run_id!r} matches {len(rows)} runs ({ids}); type more of the id")
        return str(rows[0]["id"])

    def list_runs(self, limit: int = 20) -> list[RunSummary]:
        """Most recent runs first."""
        rows = self._conn.execute(
            "SELECT * FROM runs ORDER BY created_at DESC LIMIT ?", (limit,)
        ).fetchall()
        return [_summary(r) for r in rows]

    def get_run(self, run_id: str) -> RunRecord:
        """A run (by id, prefix or suffix) with manifest, summary and per-query results."""
        full = self.resolve(run_id)
        row = self._conn.execute("SELECT * FROM runs WHERE id = ?", (full,)).fetchone()
        results: dict[str, dict[str, QueryResult]] = {}
        for r in self._conn.execute(
            "SELECT * FROM query_results WHERE run_id = ? ORDER BY config, query_id", (full,)
        ):
            results.setdefault(r["config"], {})[r["query_id"]] = QueryResult(
                r["query_id"], json.loads(r["metrics"]), r["latency_s"]
            )
        return RunRecord(
            info=_summary(row),
            manifest=json.loads(row["manifest"]),
            summary=json.loads(row["summary"]) if row["summary"] else None,
            results=results,
        )

    def compare_runs(
        self,
        id1: str,
        id2: str,
        config_a: str | None = None,
        config_b: str | None = None,
        *,
        metrics: Sequence[str] | None = None,
        seed: int = 0,
        n_resamples: int = DEFAULT_RESAMPLES,
    ) -> Comparison:
        """Paired comparison of run 2 (B) against run 1 (A) over the same queries.

        A run with several configurations needs the configuration named. Refuses runs that are
        not complete or that cover different queries (ComparisonError says why).
        """
        run_a, run_b = self.get_run(id1), self.get_run(id2)
        cfg_a, cfg_b = _pick_config(run_a, config_a), _pick_config(run_b, config_b)
        qa, qb = run_a.per_query(cfg_a), run_b.per_query(cfg_b)
        names = list(metrics) if metrics else _shared_metrics(qa, qb)
        return compare_paired(
            qa,
            qb,
            names,
            seed=seed,
            n_resamples=n_resamples,
            label_a=_label(run_a, cfg_a),
            label_b=_label(run_b, cfg_b),
        )


def _summary(row: sqlite3.Row) -> RunSummary:
    return RunSummary(
        id=row["id"],
        kind=row["kind"],
        name=row["name"],
        status=RunStatus(row["status"]),
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        reason=row["reason"],
        config=_manifest_config(row["manifest"]),
    )


def _manifest_config(raw: str | None) -> dict[str, Any]:
    """The run's settings, and the commit it ran at (a code change is a difference too)."""
    try:
        manifest = json.loads(raw or "{}")
        config = manifest.get("config")
    except (ValueError, AttributeError):
        return {}
    out = dict(config) if isinstance(config, dict) else {}
    if manifest.get("git_sha"):
        dirty = "+dirty" if manifest.get("git_dirty") else ""
        out["git"] = f"{str(manifest['git_sha'])[:10]}{dirty}"
    return out


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): json.dumps(value, sort_keys=True) if isinstance(value, list)
            else value}


IGNORED_SETTINGS = frozenset({"ragline", "kind", "dataset"})


def differing_settings(runs: Sequence[RunSummary]) -> dict[str, dict[str, Any]]:
    """For each run, the settings whose values differ between runs of the same kind and
    dataset (what tells an extractive run from a model run, or k=5 from k=10)."""
    groups: dict[tuple[str, str], list[RunSummary]] = {}
    for run in runs:
        groups.setdefault((run.kind, run.name), []).append(run)
    out: dict[str, dict[str, Any]] = {run.id: {} for run in runs}
    for group in groups.values():
        flat = {r.id: _flatten(r.config) for r in group}
        keys = sorted({k for f in flat.values() for k in f} - IGNORED_SETTINGS)
        for key in keys:
            if len({json.dumps(f.get(key), sort_keys=True, default=str)
                    for f in flat.values()}) > 1:
                for run_id, f in flat.items():
                    out[run_id][key] = f.get(key)
    return out


def _label(run: RunRecord, config: str) -> str:
    return run.id if len(run.results) == 1 else f"{run.id}:{config}"


def _pick_config(run: RunRecord, config: str | None) -> str:
    if run.info.status is not RunStatus.COMPLETE:
        raise ComparisonError(
            f"run {run.id} is {run.info.status.value}; only complete runs can be compared"
        )
    if config is not None:
        run.per_query(config)  # raises, listing the configurations, when unknown
        return config
    if len(run.results) != 1:
        raise ComparisonError(
            f"run {run.id} has {len(run.results)} configurations ({', '.join(run.configs)}); "
            "name the one to compare"
        )
    return run.configs[0]


def _shared_metrics(
    qa: Mapping[str, Mapping[str, float]], qb: Mapping[str, Mapping[str, float]]
) -> list[str]:
    """Metrics present on both sides (each is compared over the queries that define it),
    the default measures first."""

    def present(rows: Mapping[str, Mapping[str, float]]) -> set[str]:
        return set().union(*(set(m) for m in rows.values())) if rows else set()

    shared = present(qa) & present(qb)
    order = [str(m) for m in DEFAULT_MEASURES]
    names = [m for m in order if m in shared] + sorted(shared - set(order))
    if not names:
        raise ComparisonError("the two runs share no metric; compare runs of the same evaluation")
    return names
