"""Per-key limits and the bounded pool that runs model inference off the event loop.

* `KeyLimits`: the seam `caller` admits a request through (`admit`: a concurrency slot and a
  token, or 429). `LocalLimits` counts in this process (one worker); `SharedLimits`
  (`shared_limits.py`) counts in `<data_dir>/limits.sqlite` for every worker at once.
* `RateLimiter`: one token bucket per key (`rate` tokens a second up to `burst`); a request
  that finds the bucket empty is told how long until a token is back (429 with Retry-After).
* `ConcurrencyLimiter`: at most `limit` requests of one key at a time (429).
* `InferencePool`: embedding, search, generation and verification run on `workers` threads,
  with at most `queue` more requests waiting; past that a request is refused at once (503 with
  Retry-After) instead of piling up. A slot is held by a `Lease` until the work has really
  stopped (a cancelled wait does not stop a thread), so the count never lies.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
RATE_MESSAGE = "this key is over its rate limit; retry after the Retry-After seconds"


def concurrency_message(limit: int) -> str:
    return (f"this key already has {limit} requests in flight (its concurrency limit); "
            "retry when one has finished")


def refill(tokens: float, stamp: float, now: float, rate: float, burst: int) -> float:
    """A token bucket's level at `now`: `tokens` at `stamp`, plus `rate` a second, at most
    `burst`. A clock that stepped back refills nothing (never a negative refill)."""
    return min(float(burst), tokens + max(0.0, now - stamp) * rate)


class LimitExceeded(Exception):
    """A limit refused the request: `status` 429 (this key) or 503 (the whole server)."""

    def __init__(self, status: int, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = max(1, math.ceil(retry_after))


class Lease:
    """A held slot, released once: explicitly, or when the lease is garbage-collected (a
    streaming response whose body never started still gives its slot back)."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            release, self._release = self._release, None
        if release is not None:
            release()

    def __del__(self) -> None:
        self.release()


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class RateLimiter:
    """Token buckets by key id."""

    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, key_id: str, rate: float, burst: int) -> float:
        """Take one token: 0.0 when granted, else the seconds until one is available."""
        with self._lock:
            now = self.clock()  # under the lock: a bucket's stamp never goes back
            bucket = self._buckets.setdefault(key_id, _Bucket(float(burst), now))
            bucket.tokens = refill(bucket.tokens, bucket.stamp, now, rate, burst)
            bucket.stamp = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate


@dataclass
class ConcurrencyLimiter:
    """In-flight requests by key id."""

    _active: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def acquire(self, key_id: str, limit: int) -> Lease:
        with self._lock:
            if self._active.get(key_id, 0) >= limit:
                raise LimitExceeded(429, concurrency_message(limit), 1)
            self._active[key_id] = self._active.get(key_id, 0) + 1
        return Lease(lambda: self._done(key_id))

    def _done(self, key_id: str) -> None:
        with self._lock:
            left = self._active.get(key_id, 1) - 1
            if left > 0:
                self._active[key_id] = left
            else:
                self._active.pop(key_id, None)

    def active(self, key_id: str | None = None) -> int:
        """Requests in flight: of one key, or of all keys."""
        return self._active.get(key_id, 0) if key_id else sum(self._active.values())


class KeyLimits(Protocol):
    """Where a key's requests are counted."""

    def admit(self, key_id: str, *, rate: float, burst: int, concurrency: int) -> Lease:
        """A concurrency slot and one token of the key's bucket, or LimitExceeded(429); a
        request refused for either takes neither."""
        ...

    def active(self, key_id: str | None = None) -> int:
        """Requests in flight: of one key, or of all keys."""
        ...

    def close(self) -> None: ...


@dataclass
class LocalLimits:
    """The limits of one process: the fast path when a single worker serves the data
    directory (a dictionary and a lock, no I/O)."""

    rate: RateLimiter = field(default_factory=RateLimiter)
    concurrency: ConcurrencyLimiter = field(default_factory=ConcurrencyLimiter)

    def admit(self, key_id: str, *, rate: float, burst: int, concurrency: int) -> Lease:
        lease = self.concurrency.acquire(key_id, concurrency)
        wait = self.rate.take(key_id, rate, burst)
        if wait > 0:
            lease.release()
            raise LimitExceeded(429, RATE_MESSAGE, wait)
        return lease

    def active(self, key_id: str | None = None) -> int:
        return self.concurrency.active(key_id)

    def close(self) -> None:
        pass


class Cancelled(Exception):
    """Raised inside a streaming job when its client has gone: the work stops there."""


class InferencePool:
    """A fixed set of threads for model work, and a bounded number of requests waiting for them."""

    def __init__(self, workers: int, queue: int, *, retry_after: float = 1.0) -> None:
        self.workers, self.capacity = workers, workers + queue
        self.retry_after = retry_after
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="ragline-inference")
        self._admitted = 0
        self._lock = threading.Lock()

    @property
    def admitted(self) -> int:
        """Requests running or waiting for a thread."""
        return self._admitted

    def reserve(self) -> Lease:
        """A slot, or LimitExceeded(503) at once when every thread is busy and the queue full."""
        with self._lock:
            if self._admitted >= self.capacity:
                raise LimitExceeded(
                    503, f"the server is busy ({self.workers} model threads working, "
                    f"{self.capacity - self.workers} requests waiting); retry shortly",
                    self.retry_after)
            self._admitted += 1
        return Lease(self._free)

    def _free(self) -> None:
        with self._lock:
            self._admitted -= 1

    async def run(self, fn: Callable[[], T], lease: Lease | None = None) -> T:
        """`fn()` on a model thread; the slot is freed when it returns (or never starts)."""
        return await asyncio.wrap_future(self._submit(fn, lease or self.reserve()))

    def _submit(self, fn: Callable[[], T], lease: Lease) -> concurrent.futures.Future[T]:
        try:
            future = self._executor.submit(fn)
        except RuntimeError:  # shut down
            lease.release()
            raise LimitExceeded(503, "the server is shutting down", self.retry_after) from None
        future.add_done_callback(lambda _: lease.release())
        return future

    async def stream(
        self, fn: Callable[[Callable[[str], None]], T], lease: Lease
    ) -> AsyncIterator[tuple[str, Any]]:
        """Run `fn(emit)` on a model thread and yield ("text", piece) for each `emit(piece)`,
        then ("done", result) or ("error", exception). When the consumer stops (its client
        disconnected), the next `emit` raises `Cancelled` inside `fn`, which ends the work."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        gone = threading.Event()

        def put(item: tuple[str, Any]) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                gone.set()

        def emit(piece: str) -> None:
            if gone.is_set():
                raise Cancelled("the client disconnected")
            put(("text", piece))

        def work() -> None:
            try:
                result = fn(emit)
            except Cancelled:
                return  # nobody is listening; dropping the exception frees the work's frames
            except Exception as exc:
                put(("error", exc))
            else:
                put(("done", result))

        future = self._submit(work, lease)
        future.add_done_callback(
            lambda f: put(("error", Cancelled("the server is shutting down")))
            if f.cancelled() else None)
        try:
            while True:
                kind, value = await queue.get()
                yield kind, value
                if kind != "text":
                    return
        finally:
            gone.set()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
