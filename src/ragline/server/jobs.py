"""Background jobs (ingesting a collection's uploads) with progress a client polls.

Jobs are rows of `<data_dir>/jobs.sqlite`, so any worker process answers `GET /jobs/{id}`, and
a job whose process died is reported `interrupted`, never `running` for ever (an ingest
resumes where it stopped when run again). Jobs run one at a time on their own thread, apart
from the request threads; on shutdown the running one is stopped at its next progress step
(whole documents are kept, as after a killed ingest) and marked `interrupted`.
"""

from __future__ import annotations

import concurrent.futures
import enum
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragline import _sqlite
from ragline.errors import RaglineError
from ragline.ingest import IngestSummary, pid_alive

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    collection TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    pid INTEGER NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    progress TEXT NOT NULL,
    summary TEXT,
    error TEXT
)
"""
_FLUSH_S = 0.5


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    collection: str
    kind: str
    status: JobStatus
    pid: int
    created: float
    started: float | None = None
    finished: float | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("pid")
        data["status"] = self.status.value
        return data


class JobStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _db(self) -> AbstractContextManager[sqlite3.Connection]:
        return _sqlite.transaction(self.path, _SCHEMA)

    def create(self, collection: str, kind: str = "ingest") -> Job:
        job = Job(id=secrets.token_hex(8), collection=collection, kind=kind,
                  status=JobStatus.QUEUED, pid=os.getpid(), created=time.time())
        with self._db() as conn:
            conn.execute("INSERT INTO jobs (id, collection, kind, status, pid, created, progress)"
                         " VALUES (?, ?, ?, ?, ?, ?, '{}')",
                         (job.id, collection, kind, job.status.value, job.pid, job.created))
        return job

    def update(self, job_id: str, **values: Any) -> None:
        values = {k: json.dumps(v) if k in ("progress", "summary") else
                  v.value if isinstance(v, JobStatus) else v for k, v in values.items()}
        columns = ", ".join(f"{k} = ?" for k in values)
        with self._db() as conn:
            conn.execute(f"UPDATE jobs SET {columns} WHERE id = ?", (*values.values(), job_id))

    def get(self, job_id: str) -> Job | None:
        with self._db() as conn:
            row = conn.execute("SELECT id, collection, kind, status, pid, created, started, "
                               "finished, progress, summary, error FROM jobs WHERE id = ?",
                               (job_id,)).fetchone()
        return None if row is None else _job(row)

    def active(self, collection: str) -> list[Job]:
        with self._db() as conn:
            rows = conn.execute("SELECT id, collection, kind, status, pid, created, started, "
                                "finished, progress, summary, error FROM jobs WHERE collection "
                                "= ? AND status IN ('queued', 'running')", (collection,)).fetchall()
        return [j for j in map(_job, rows) if j.status in (JobStatus.QUEUED, JobStatus.RUNNING)]


def _job(row: Any) -> Job:
    (job_id, collection, kind, status, pid, created, started, finished, progress, summary,
     error) = row
    state = JobStatus(status)
    if state in (JobStatus.QUEUED, JobStatus.RUNNING) and not pid_alive(int(pid)):
        state, error = JobStatus.INTERRUPTED, error or "the server process running it stopped"
    return Job(id=job_id, collection=collection, kind=kind, status=state, pid=int(pid),
               created=created, started=started, finished=finished,
               progress=json.loads(progress), summary=json.loads(summary) if summary else None,
               error=error)


class Stopping(RaglineError):
    """The server is shutting down: the job stops at its next progress step."""


class JobProgress:
    """An `IngestProgress` that writes the counts to the job's row every half second."""

    def __init__(self, store: JobStore, job_id: str, stop: threading.Event) -> None:
        self.store, self.job_id, self.stop = store, job_id, stop
        self.counts = {"files_total": 0, "files_done": 0, "documents_done": 0,
                       "chunks_queued": 0, "chunks_embedded": 0, "failures": 0}
        self._flushed = 0.0

    def _step(self, *, force: bool = False) -> None:
        if self.stop.is_set():
            raise Stopping("the server is shutting down; the ingest resumes when run again")
        now = time.monotonic()
        if force or now - self._flushed >= _FLUSH_S:
            self._flushed = now
            self.store.update(self.job_id, progress=self.counts)

    def start(self, total_files: int) -> None:
        self.counts["files_total"] = total_files
        self._step(force=True)

    def chunked(self, chunks: int) -> None:
        self.counts["chunks_queued"] += chunks
        self._step()

    def advance(self, files: int, documents: int, chunks: int) -> None:
        self.counts["files_done"] += files
        self.counts["documents_done"] += documents
        self.counts["chunks_embedded"] += chunks
        self._step()

    def failure(self, path: str, reason: str, message: str) -> None:
        self.counts["failures"] += 1


class JobRunner:
    """Runs jobs one at a time on a thread of their own."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.stop = threading.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="ragline-jobs")
        self._pending: set[str] = set()
        self._lock = threading.Lock()

    def submit(self, job: Job, work: Callable[[JobProgress], IngestSummary],
               on_error: Callable[[Exception], str]) -> None:
        """Run `work(progress)` for `job`; `on_error` turns an exception into the job's error."""
        def run() -> None:
            with self._lock:
                self._pending.discard(job.id)
            progress = JobProgress(self.store, job.id, self.stop)
            self.store.update(job.id, status=JobStatus.RUNNING, started=time.time())
            try:
                summary = work(progress)
            except Stopping as exc:
                self._finish(job.id, progress, JobStatus.INTERRUPTED, error=str(exc))
            except Exception as exc:
                self._finish(job.id, progress, JobStatus.FAILED, error=on_error(exc))
            else:
                self._finish(job.id, progress, JobStatus.DONE, summary=summary.to_dict())

        with self._lock:
            self._pending.add(job.id)
        self._executor.submit(run)

    def _finish(self, job_id: str, progress: JobProgress, status: JobStatus, *,
                error: str | None = None, summary: dict[str, Any] | None = None) -> None:
        self.store.update(job_id, status=status, finished=time.time(), progress=progress.counts,
                          summary=summary, error=error)

    def shutdown(self) -> None:
        self.stop.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            never_started, self._pending = self._pending, set()
        for job_id in never_started:
            self.store.update(job_id, status=JobStatus.INTERRUPTED, finished=time.time(),
                              error="the server shut down before the job started")
