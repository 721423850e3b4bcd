"""The one way ragline opens a SQLite database of its own (index, caches, ledger, run registry).

WAL (readers never wait for the writer), synchronous=NORMAL (durable at each checkpoint, safe
against corruption: a crash may lose the last transactions, never the file), a busy timeout
instead of "database is locked" at once, and the parent folder created. Each caller keeps its
schema, its row factory and its own error messages.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def connect(
    path: Path,
    *,
    timeout: float = 30.0,
    autocommit: bool = False,
    foreign_keys: bool = False,
    shared: bool = True,
) -> sqlite3.Connection:
    """Open `path` (creating its folder). `autocommit`: no implicit transactions (the caller
    says BEGIN); `shared`: usable from other threads (the caller serialises access)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=timeout, check_same_thread=not shared,
                           isolation_level=None if autocommit else "DEFERRED")
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        _wal(conn, timeout)
        conn.execute("PRAGMA synchronous = NORMAL")
        if foreign_keys:
            conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch to WAL. Several processes opening a new file at once (uvicorn's workers) can get
    "database is locked" from this pragma without the busy handler being called: retry it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT on an autocommit connection (the write lock taken at once,
    so a writer never fails to upgrade mid-transaction); rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextmanager
def transaction(path: Path, schema: str, *, timeout: float = 10.0) -> Iterator[sqlite3.Connection]:
    """A short-lived connection to `path` with `schema` (a script of CREATE ... IF NOT EXISTS)
    applied, inside one transaction (committed on success, rolled back on an exception), then
    closed: the small stores of the server (keys, jobs, experiments, traces)."""
    conn = connect(path, timeout=timeout)
    try:
        conn.executescript(schema)
        with conn:
            yield conn
    finally:
        conn.close()
