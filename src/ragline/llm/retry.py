"""The ONE retry policy of ragline and the executor that applies it.

No other module retries. Providers make exactly one attempt and raise typed errors; the
executor decides, from `RetryPolicy` alone, whether to retry, how long to wait, and when to
move on to a fallback model. The attempt and time budgets cover the whole fallback chain.

Streams: an attempt that fails before any content was yielded to the caller is retried
like any other. Once content has reached the caller, a retry would silently repeat or
change text the caller already used, so the executor raises `StreamInterrupted` with the
text yielded so far in `partial_text` instead.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from ragline.llm.errors import (
    ConnectionLost,
    MalformedResponse,
    Overloaded,
    ProviderError,
    RateLimited,
    ServerError,
    StreamInterrupted,
    Timeout,
)

T = TypeVar("T")
R = TypeVar("R")
E = TypeVar("E")

DEFAULT_RETRY_ON: frozenset[type[ProviderError]] = frozenset(
    {
        RateLimited,
        ServerError,
        Overloaded,
        Timeout,
        ConnectionLost,
        StreamInterrupted,
        MalformedResponse,
    }
)


class Jitter(enum.StrEnum):
    FULL = "full"  # uniform in [0, backoff]: spreads clients apart (AWS "full jitter")
    NONE = "none"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Which errors retry, how long to wait, and the budget across the fallback chain.

    `max_attempts` is per model of the chain (primary, then each of `fallbacks`);
    `max_total_attempts` and `max_elapsed` (seconds, waits included) bound the whole chain.
    A fallback is a model name on the same provider, or "provider:model".
    """

    retry_on: frozenset[type[ProviderError]] = DEFAULT_RETRY_ON
    max_attempts: int = 3
    max_total_attempts: int | None = None
    base_delay: float = 0.5
    max_delay: float = 20.0
    jitter: Jitter = Jitter.FULL
    max_elapsed: float = 120.0
    honor_retry_after: bool = True
    fallbacks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be >= 1 (1 = no retries)")
        if self.max_total_attempts is not None and self.max_total_attempts < 1:
            raise ValueError("RetryPolicy.max_total_attempts must be >= 1 or None")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_elapsed <= 0:
            raise ValueError("RetryPolicy delays must be >= 0 and max_elapsed > 0")

    def should_retry(self, error: ProviderError) -> bool:
        return isinstance(error, tuple(self.retry_on))

    def delay(self, error: ProviderError, failures: int, rng: random.Random) -> float:
        """Seconds to wait after the `failures`-th failure on one model (1-based)."""
        if self.honor_retry_after and isinstance(error, RateLimited) and error.retry_after:
            return error.retry_after
        ceiling = min(self.max_delay, self.base_delay * 2 ** (failures - 1))
        return rng.uniform(0, ceiling) if self.jitter is Jitter.FULL else ceiling


@dataclass(frozen=True, slots=True)
class AttemptInfo(Generic[T]):
    """One finished attempt, as the executor reports it.

    `number` counts attempts across the whole chain (1-based); `wait_s` is the backoff slept
    before it; `provider_s` the time spent in the provider; `error` is None on success.
    """

    target: T
    target_index: int
    number: int
    wait_s: float
    provider_s: float
    error: ProviderError | None
    started: float = 0.0
    cancelled: bool = False


class _Plan:
    """Budget bookkeeping shared by the sync, async and streaming executors."""

    def __init__(self, policy: RetryPolicy, n_targets: int, clock: Callable[[], float]) -> None:
        self.policy = policy
        self.n_targets = n_targets
        self.clock = clock
        self.started = clock()
        self.target_index = 0
        self.failures_on_target = 0
        self.number = 0

    def next_wait(self, error: ProviderError, rng: random.Random) -> float:
        """After a failure: the wait before the next attempt, or raise `error` to give up."""
        error.attempts = self.number
        if not self.policy.should_retry(error):
            raise error
        total_cap = self.policy.max_total_attempts
        if total_cap is not None and self.number >= total_cap:
            raise error
        self.failures_on_target += 1
        wait = 0.0
        if self.failures_on_target < self.policy.max_attempts:
            wait = self.policy.delay(error, self.failures_on_target, rng)
            if self._fits(wait):
                return wait
        return self._next_target(error)

    def _fits(self, wait: float) -> bool:
        return self.clock() - self.started + wait < self.policy.max_elapsed

    def _next_target(self, error: ProviderError) -> float:
        if self.target_index + 1 >= self.n_targets or not self._fits(0.0):
            raise error
        self.target_index += 1
        self.failures_on_target = 0
        return 0.0


class RetryExecutor:
    """Runs attempts under a `RetryPolicy`. `clock`, `sleep` and `rng` are injectable."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.sleep = sleep
        self.async_sleep = async_sleep
        self.rng = rng or random.Random()

    def run(
        self,
        targets: Sequence[T],
        attempt: Callable[[T], R],
        on_attempt: Callable[[AttemptInfo[T], R | None], None],
    ) -> tuple[R, AttemptInfo[T]]:
        """Call `attempt(target)` until one succeeds or the policy gives up (raises)."""
        plan = _Plan(self.policy, len(targets), self.clock)
        wait = 0.0
        while True:
            plan.number += 1
            target = targets[plan.target_index]
            start = self.clock()
            try:
                result = attempt(target)
            except ProviderError as error:
                info = self._info(plan, target, wait, start, error)
                on_attempt(info, None)
                wait = plan.next_wait(error, self.rng)
                self._sleep(wait)
                continue
            info = self._info(plan, target, wait, start, None)
            on_attempt(info, result)
            return result, info

    async def arun(
        self,
        targets: Sequence[T],
        attempt: Callable[[T], Awaitable[R]],
        on_attempt: Callable[[AttemptInfo[T], R | None], None],
    ) -> tuple[R, AttemptInfo[T]]:
        """Async twin of `run`."""
        plan = _Plan(self.policy, len(targets), self.clock)
        wait = 0.0
        while True:
            plan.number += 1
            target = targets[plan.target_index]
            start = self.clock()
            try:
                result = await attempt(target)
            except ProviderError as error:
                on_attempt(self._info(plan, target, wait, start, error), None)
                wait = plan.next_wait(error, self.rng)
                if wait > 0:
                    await self.async_sleep(wait)
                continue
            info = self._info(plan, target, wait, start, None)
            on_attempt(info, result)
            return result, info

    def run_stream(
        self,
        targets: Sequence[T],
        open_stream: Callable[[T], Iterator[E]],
        text_of: Callable[[E], str | None],
        on_attempt: Callable[[AttemptInfo[T]], None],
    ) -> Iterator[tuple[AttemptInfo[T], E]]:
        """Yield `(attempt, event)` pairs; `text_of(event)` is None for non-content events.

        Each pair's AttemptInfo carries only the target and number (timings come at the end).
        """
        plan = _Plan(self.policy, len(targets), self.clock)
        wait = 0.0
        while True:
            plan.number += 1
            target = targets[plan.target_index]
            start = self.clock()
            current = self._info(plan, target, wait, start, None)
            sent: list[str] = []
            try:
                for event in open_stream(target):
                    piece = text_of(event)
                    if piece is not None:
                        sent.append(piece)
                    yield current, event
            except ProviderError as error:
                on_attempt(self._info(plan, target, wait, start, error))
                if sent:
                    raise self._interrupted(error, sent, plan.number) from error
                wait = plan.next_wait(error, self.rng)
                self._sleep(wait)
                continue
            except GeneratorExit:
                on_attempt(self._cancelled(plan, target, wait, start))
                raise
            on_attempt(self._info(plan, target, wait, start, None))
            return

    async def arun_stream(
        self,
        targets: Sequence[T],
        open_stream: Callable[[T], AsyncIterator[E]],
        text_of: Callable[[E], str | None],
        on_attempt: Callable[[AttemptInfo[T]], None],
    ) -> AsyncIterator[tuple[AttemptInfo[T], E]]:
        """Async twin of `run_stream`."""
        plan = _Plan(self.policy, len(targets), self.clock)
        wait = 0.0
        while True:
            plan.number += 1
            target = targets[plan.target_index]
            start = self.clock()
            current = self._info(plan, target, wait, start, None)
            sent: list[str] = []
            try:
                async for event in open_stream(target):
                    piece = text_of(event)
                    if piece is not None:
                        sent.append(piece)
                    yield current, event
            except ProviderError as error:
                on_attempt(self._info(plan, target, wait, start, error))
                if sent:
                    raise self._interrupted(error, sent, plan.number) from error
                wait = plan.next_wait(error, self.rng)
                if wait > 0:
                    await self.async_sleep(wait)
                continue
            except GeneratorExit:
                on_attempt(self._cancelled(plan, target, wait, start))
                raise
            on_attempt(self._info(plan, target, wait, start, None))
            return

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.sleep(seconds)

    def _info(
        self, plan: _Plan, target: T, wait: float, start: float, error: ProviderError | None
    ) -> AttemptInfo[T]:
        return AttemptInfo(
            target, plan.target_index, plan.number, wait, self.clock() - start, error, start
        )

    def _cancelled(self, plan: _Plan, target: T, wait: float, start: float) -> AttemptInfo[T]:
        info = self._info(plan, target, wait, start, None)
        return AttemptInfo(
            info.target,
            info.target_index,
            info.number,
            info.wait_s,
            info.provider_s,
            None,
            start,
            cancelled=True,
        )

    @staticmethod
    def _interrupted(error: ProviderError, sent: list[str], number: int) -> StreamInterrupted:
        if isinstance(error, StreamInterrupted):
            error.partial_text = "".join(sent)
            error.attempts = number
            return error
        interrupted = StreamInterrupted(
            f"stream failed after content was yielded: {error.detail}",
            provider=error.provider,
            model=error.model,
            partial_text="".join(sent),
        )
        interrupted.attempts = number
        return interrupted
