"""`ragline._sqlite.connect` from several processes at once on a new file (uvicorn's workers
opening the server's SQLite files): switching to WAL can fail with "database is locked" without
the busy handler being called, so `connect` retries it. Before the retry, 2 of 90 openings
failed in this setup."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

SPAWN = multiprocessing.get_context("spawn")


def _open(path: str, go: Any, results: Any) -> None:
    from ragline._sqlite import connect

    go.wait()
    try:
        conn = connect(Path(path), timeout=10, autocommit=True)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
        conn.execute("COMMIT")
        conn.close()
        results.put("ok")
    except Exception as exc:
        results.put(repr(exc))


def test_processes_opening_a_new_database_at_once_all_succeed(tmp_path: Path) -> None:
    outcomes = []
    for trial in range(6):
        go, results = SPAWN.Event(), SPAWN.Queue()
        path = str(tmp_path / f"new-{trial}.sqlite")
        workers = [SPAWN.Process(target=_open, args=(path, go, results)) for _ in range(6)]
        for worker in workers:
            worker.start()
        time.sleep(0.5)  # let them all import before they race
        go.set()
        outcomes += [results.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join(timeout=30)
    assert outcomes == ["ok"] * len(outcomes), [o for o in outcomes if o != "ok"]
