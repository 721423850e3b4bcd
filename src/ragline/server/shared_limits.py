"""Per-key limits shared by every process that serves one data directory (`--workers N`).

`<data_dir>/limits.sqlite` (WAL) holds

* `buckets`: one row per key, `tokens` at `stamp` (wall-clock seconds, the one clock all the
  processes of a machine share). Each request refills and takes inside one `BEGIN IMMEDIATE`
  transaction, so N workers grant `rate * t + burst` in all, not N times that;
* `leases`: one row per request in flight, naming the process (`owner`) that holds it; a
  key's concurrency is the count of its rows;
* `owners`: one row per live process (host, pid, `beat`), refreshed every `beat_s` by a
  thread.

A key at its concurrency limit first reclaims the leases of owners that are gone: at once when
the owner ran on this host and its pid no longer runs (a killed worker), else once its beat is
older than `stale_s` (a pid reused, a process on another host, a machine that stopped). A
process never reclaims its own leases: they are requests it is still serving.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ragline import _sqlite
from ragline.ingest import pid_alive
from ragline.server.limits import (
    RATE_MESSAGE,
    Lease,
    LimitExceeded,
    concurrency_message,
    refill,
)

log = logging.getLogger("ragline.server")
LIMITS_DB = "limits.sqlite"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS buckets (key_id TEXT PRIMARY KEY, tokens REAL NOT NULL,"
    " stamp REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS owners (owner TEXT PRIMARY KEY, host TEXT NOT NULL,"
    " pid INTEGER NOT NULL, beat REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS leases (id INTEGER PRIMARY KEY, key_id TEXT NOT NULL,"
    " owner TEXT NOT NULL, taken REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS leases_by_key ON leases (key_id)",
)


def process_gone(host: str, pid: int, *, this_host: str) -> bool:
    """Whether the process `pid` of `host` is known to have ended (only this host's can be
    checked; a zombie, killed but not yet reaped, has ended)."""
    if host != this_host:
        return False
    if not pid_alive(pid):
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


class SharedLimits:
    """Token buckets and concurrency leases by key id, in one SQLite file for all processes."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time,
                 beat_s: float = 5.0, stale_s: float = 30.0, heartbeat: bool = True) -> None:
        self.path, self.clock, self.stale_s = path, clock, stale_s
        self.owner, self.host, self.pid = secrets.token_hex(8), socket.gethostname(), os.getpid()
        self._lock = threading.Lock()
        self._holder: int | None = None  # the thread inside a transaction
        self._pending: list[int] = []  # releases deferred while that thread held the lock
        self._closed = False
        self._conn = _sqlite.connect(path, timeout=10.0, autocommit=True)
        with self._transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)
            self._register(conn)
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        if heartbeat:
            self._beat = threading.Thread(target=self._beat_loop, args=(beat_s,), daemon=True,
                                          name="ragline-limits-beat")
            self._beat.start()

    @classmethod
    def in_dir(cls, data_dir: Path) -> SharedLimits:
        return cls(data_dir / LIMITS_DB)

    def __enter__(self) -> SharedLimits:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the KeyLimits seam -----------------------------------------------------------------

    def admit(self, key_id: str, *, rate: float, burst: int, concurrency: int) -> Lease:
        with self._transaction() as conn:  # refused: rolled back, nothing taken
            now = self.clock()  # read in the transaction, so stamps only grow
            lease_id = self._lease(conn, key_id, concurrency, now)
            wait = self._take(conn, key_id, rate, burst, now)
            if wait > 0:
                raise LimitExceeded(429, RATE_MESSAGE, wait)
        return Lease(lambda: self._release(lease_id))

    def take(self, key_id: str, rate: float, burst: int) -> float:
        """One token: 0.0 when granted, else the seconds until one is available."""
        with self._transaction() as conn:
            return self._take(conn, key_id, rate, burst, self.clock())

    def acquire(self, key_id: str, limit: int) -> Lease:
        """A concurrency slot of `key_id` among every process's, or LimitExceeded(429)."""
        with self._transaction() as conn:
            lease_id = self._lease(conn, key_id, limit, self.clock())
        return Lease(lambda: self._release(lease_id))

    def active(self, key_id: str | None = None) -> int:
        with self._transaction() as conn:
            if key_id:
                return self._held(conn, key_id)
            return int(conn.execute("SELECT count(*) FROM leases").fetchone()[0])

    def close(self) -> None:
        """Stop the heartbeat and give back this process's leases and owner row."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.execute("DELETE FROM leases WHERE owner = ?", (self.owner,))
                self._conn.execute("DELETE FROM owners WHERE owner = ?", (self.owner,))
            except sqlite3.Error as exc:
                log.warning("could not clear this process's rows of %s: %s", self.path, exc)
            finally:
                self._conn.close()

    # -- inside one transaction -------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise LimitExceeded(503, "the server is shutting down", 1)
            self._holder = threading.get_ident()
            try:
                self._conn.execute("BEGIN IMMEDIATE")  # one process at a time, from the read on
                try:
                    self._flush(self._conn)
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:  # locked past the busy timeout, disk full
                if self._conn.in_transaction:
                    self._conn.rollback()
                log.warning("the shared limits in %s failed: %s", self.path, exc)
                raise LimitExceeded(503, "the server cannot count this key's requests just "
                                    "now; retry shortly", 1) from None
            finally:
                self._holder = None

    def _take(self, conn: sqlite3.Connection, key_id: str, rate: float, burst: int,
              now: float) -> float:
        row = conn.execute("SELECT tokens, stamp FROM buckets WHERE key_id = ?",
                           (key_id,)).fetchone()
        tokens = float(burst) if row is None else refill(row[0], row[1], now, rate, burst)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / rate
        conn.execute("INSERT INTO buckets (key_id, tokens, stamp) VALUES (?, ?, ?) ON CONFLICT"
                     " (key_id) DO UPDATE SET tokens = excluded.tokens, stamp = excluded.stamp",
                     (key_id, tokens, now))
        return wait

    def _lease(self, conn: sqlite3.Connection, key_id: str, limit: int, now: float) -> int:
        if self._held(conn, key_id) >= limit and (
                not self._reclaim(conn, key_id, now) or self._held(conn, key_id) >= limit):
            raise LimitExceeded(429, concurrency_message(limit), 1)
        cursor = conn.execute("INSERT INTO leases (key_id, owner, taken) VALUES (?, ?, ?)",
                              (key_id, self.owner, now))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    @staticmethod
    def _held(conn: sqlite3.Connection, key_id: str) -> int:
        return int(conn.execute("SELECT count(*) FROM leases WHERE key_id = ?",
                                (key_id,)).fetchone()[0])

    def _reclaim(self, conn: sqlite3.Connection, key_id: str, now: float) -> bool:
        """Drop every row of the gone owners among `key_id`'s lease holders; True if any."""
        rows = conn.execute(
            "SELECT DISTINCT l.owner, o.host, o.pid, o.beat FROM leases l LEFT JOIN owners o"
            " ON o.owner = l.owner WHERE l.key_id = ? AND l.owner != ?",
            (key_id, self.owner)).fetchall()
        gone = [owner for owner, host, pid, beat in rows
                if host is None or beat < now - self.stale_s
                or process_gone(host, pid, this_host=self.host)]
        for owner in gone:
            conn.execute("DELETE FROM leases WHERE owner = ?", (owner,))
            conn.execute("DELETE FROM owners WHERE owner = ?", (owner,))
        if gone:
            log.info("reclaimed the concurrency slots of %d ended worker process(es)", len(gone))
        return bool(gone)

    def _register(self, conn: sqlite3.Connection) -> None:
        conn.execute("INSERT OR REPLACE INTO owners (owner, host, pid, beat) VALUES (?, ?, ?, ?)",
                     (self.owner, self.host, self.pid, self.clock()))

    def _flush(self, conn: sqlite3.Connection) -> None:
        while self._pending:
            conn.execute("DELETE FROM leases WHERE id = ?", (self._pending.pop(),))

    # -- outside ----------------------------------------------------------------------------

    def _release(self, lease_id: int) -> None:
        if self._holder == threading.get_ident():
            # A lease collected by the garbage collector inside this thread's own transaction:
            # the lock is held here, so the row goes at the start of the next transaction.
            self._pending.append(lease_id)
            return
        with self._lock:
            if self._closed:
                return
            try:
                self._pending.append(lease_id)
                self._flush(self._conn)
            except sqlite3.Error as exc:  # the slot stays taken until this process ends
                log.warning("could not release a concurrency slot in %s: %s", self.path, exc)

    def _beat_loop(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                with self._transaction() as conn:
                    updated = conn.execute("UPDATE owners SET beat = ? WHERE owner = ?",
                                           (self.clock(), self.owner)).rowcount
                    if not updated:  # taken for gone (this process stood still past stale_s)
                        self._register(conn)
            except LimitExceeded:  # closed, or the file failed (logged): try again later
                if self._closed:
                    return
            except sqlite3.Error as exc:
                log.warning("could not refresh this worker's row in %s: %s", self.path, exc)
