"""Per-request cost of the per-key limits: in one process vs shared by worker processes.

    python benchmarks/limits_overhead.py [--n 5000] [--processes 2] [--seconds 3] [--json]

Times what `caller` does for every authenticated request, `limits.admit(...)` (a token and a
concurrency slot) and the lease's `release()`, with limits that never refuse:

* `local`: `LocalLimits`, the dictionaries of one process (`ragline serve`, one worker);
* `shared`: `SharedLimits` over `limits.sqlite` in a temporary folder (`--workers N`), one
  process alone;
* `shared, P contending`: P spawned processes doing the same on the same key at once, as P
  busy workers would; each call's time includes waiting for the others' transactions.

The figures are microseconds per request (admit + release), p50 and p99, and calls per second
(in all, for the contending processes).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ragline.server.limits import KeyLimits, LocalLimits
from ragline.server.shared_limits import SharedLimits

OPEN = {"rate": 1e9, "burst": 10**9, "concurrency": 10**6}  # never refuses


def _time_calls(limits: KeyLimits, n: int | None, seconds: float | None) -> list[float]:
    timings: list[float] = []
    stop = time.perf_counter() + (seconds or 0.0)
    while (len(timings) < n) if n is not None else (time.perf_counter() < stop):
        start = time.perf_counter()
        limits.admit("bench", **OPEN).release()
        timings.append(time.perf_counter() - start)
    return timings


def _summary(name: str, timings: list[float], wall: float) -> dict[str, Any]:
    ordered = sorted(timings)
    return {"limits": name, "calls": len(timings),
            "p50_us": round(statistics.median(ordered) * 1e6, 1),
            "p99_us": round(ordered[int(0.99 * (len(ordered) - 1))] * 1e6, 1),
            "calls_per_s": round(len(timings) / wall)}


def _contender(path: str, seconds: float, go: Any, results: Any) -> None:
    limits = SharedLimits(Path(path))
    go.wait()
    results.put(_time_calls(limits, None, seconds))
    limits.close()


def _contended(path: Path, processes: int, seconds: float) -> dict[str, Any]:
    spawn = multiprocessing.get_context("spawn")
    go, results = spawn.Event(), spawn.Queue()
    workers = [spawn.Process(target=_contender, args=(str(path), seconds, go, results))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    time.sleep(3.0)  # each worker imports ragline before the clock starts
    go.set()
    timings = [t for _ in workers for t in results.get(timeout=seconds + 120)]
    for worker in workers:
        worker.join()
    return _summary(f"shared, {processes} contending", timings, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="calls timed in one process")
    parser.add_argument("--processes", type=int, default=2, help="contending processes")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of the contended run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "limits.sqlite"
        for name, limits in (("local", LocalLimits()), ("shared", SharedLimits(path))):
            _time_calls(limits, 200, None)  # warm up
            start = time.perf_counter()
            timings = _time_calls(limits, args.n, None)
            rows.append(_summary(name, timings, time.perf_counter() - start))
            limits.close()
        if args.processes > 0:
            rows.append(_contended(path, args.processes, args.seconds))
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return
    print(f"{'limits':<22} {'calls':>7} {'p50 us':>8} {'p99 us':>8} {'calls/s':>9}")
    for row in rows:
        print(f"{row['limits']:<22} {row['calls']:>7} {row['p50_us']:>8} {row['p99_us']:>8} "
              f"{row['calls_per_s']:>9}")


if __name__ == "__main__":
    main()
