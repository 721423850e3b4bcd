"""The retry executor alone: budgets, backoff, Retry-After, fallbacks, streams (no network)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import pytest

from ragline.llm.errors import (
    BadRequest,
    ProviderError,
    RateLimited,
    ServerError,
    StreamInterrupted,
)
from ragline.llm.retry import AttemptInfo, Jitter, RetryExecutor, RetryPolicy
from tests.fakes.support import FakeClock


def scripted(outcomes: list[ProviderError | str]) -> tuple[list[str], object]:
    calls: list[str] = []
    queue = list(outcomes)

    def attempt(target: str) -> str:
        calls.append(target)
        item = queue.pop(0)
        if isinstance(item, ProviderError):
            raise item
        return item

    return calls, attempt


def run(
    policy: RetryPolicy, outcomes: list[ProviderError | str], targets: tuple[str, ...] = ("a",)
) -> tuple[str, list[AttemptInfo[str]], list[str], FakeClock]:
    clock = FakeClock()
    executor = RetryExecutor(policy, clock=clock, sleep=clock.sleep, rng=random.Random(0))
    infos: list[AttemptInfo[str]] = []
    calls, attempt = scripted(outcomes)
    result, _ = executor.run(targets, attempt, lambda info, _r: infos.append(info))  # type: ignore[arg-type]
    return result, infos, calls, clock


def test_success_on_first_attempt_records_one_attempt() -> None:
    result, infos, _, clock = run(RetryPolicy(), ["ok"])
    assert result == "ok"
    assert [i.number for i in infos] == [1]
    assert clock.sleeps == []


def test_retryable_error_is_retried_until_success() -> None:
    result, infos, _, clock = run(RetryPolicy(), [ServerError("boom"), ServerError("boom"), "ok"])
    assert result == "ok"
    assert [i.error is None for i in infos] == [False, False, True]
    assert len(clock.sleeps) == 2


def test_full_jitter_backoff_stays_under_the_exponential_ceiling() -> None:
    policy = RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=3.0)
    _, _, _, clock = run(policy, [ServerError("x")] * 4 + ["ok"])
    for n, slept in enumerate(clock.sleeps, start=1):
        assert 0 <= slept <= min(3.0, 2 ** (n - 1))


def test_no_jitter_backoff_is_exponential_and_capped() -> None:
    policy = RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=3.0, jitter=Jitter.NONE)
    _, _, _, clock = run(policy, [ServerError("x")] * 4 + ["ok"])
    assert clock.sleeps == [1.0, 2.0, 3.0, 3.0]


def test_retry_after_is_honoured_exactly() -> None:
    _, infos, _, clock = run(RetryPolicy(), [RateLimited("slow", retry_after=7.0), "ok"])
    assert clock.sleeps == [7.0]
    assert infos[1].wait_s == 7.0


def test_retry_after_ignored_when_policy_says_so() -> None:
    policy = RetryPolicy(honor_retry_after=False, base_delay=0.1, max_delay=0.1)
    _, _, _, clock = run(policy, [RateLimited("slow", retry_after=7.0), "ok"])
    assert clock.sleeps[0] <= 0.1


def test_non_retryable_error_surfaces_after_one_attempt() -> None:
    with pytest.raises(BadRequest) as info:
        run(RetryPolicy(fallbacks=("b",)), [BadRequest("no"), "ok"], ("a", "b"))
    assert info.value.attempts == 1


def test_error_outside_retry_on_is_not_retried() -> None:
    policy = RetryPolicy(retry_on=frozenset({RateLimited}))
    with pytest.raises(ServerError):
        run(policy, [ServerError("x"), "ok"])


def test_exhausted_attempts_raise_the_last_error_with_the_count() -> None:
    with pytest.raises(ServerError) as info:
        run(RetryPolicy(max_attempts=3), [ServerError("x")] * 3)
    assert info.value.attempts == 3


def test_fallback_target_runs_after_primary_exhausts_its_attempts() -> None:
    result, infos, calls, _ = run(
        RetryPolicy(max_attempts=2), [ServerError("x"), ServerError("x"), "ok"], ("a", "b")
    )
    assert result == "ok"
    assert calls == ["a", "a", "b"]
    assert [i.target_index for i in infos] == [0, 0, 1]
    assert infos[2].wait_s == 0.0  # moving to a fallback does not wait


def test_total_attempt_budget_covers_the_whole_chain() -> None:
    with pytest.raises(ServerError) as info:
        run(RetryPolicy(max_attempts=3, max_total_attempts=4), [ServerError("x")] * 6, ("a", "b"))
    assert info.value.attempts == 4


def test_time_budget_moves_to_fallback_instead_of_waiting_past_it() -> None:
    policy = RetryPolicy(max_elapsed=10.0)
    _, _, calls, clock = run(policy, [RateLimited("x", retry_after=60.0), "ok"], ("a", "b"))
    assert calls == ["a", "b"]
    assert clock.sleeps == []


def test_time_budget_exhausted_without_fallback_raises() -> None:
    with pytest.raises(RateLimited):
        run(RetryPolicy(max_elapsed=10.0), [RateLimited("x", retry_after=60.0), "ok"])


def test_policy_rejects_zero_attempts() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def _stream(script: list[list[str] | ProviderError]) -> object:
    queue = list(script)

    def open_stream(_target: str) -> Iterator[str]:
        item = queue.pop(0)
        if isinstance(item, ProviderError):
            raise item
        for piece in item:
            if piece == "!cut":
                raise ServerError("cut")
            yield piece

    return open_stream


def test_stream_failing_before_content_is_retried() -> None:
    clock = FakeClock()
    executor = RetryExecutor(RetryPolicy(), clock=clock, sleep=clock.sleep)
    infos: list[AttemptInfo[str]] = []
    out = [
        e
        for _, e in executor.run_stream(
            ("a",), _stream([ServerError("x"), ["he", "llo"]]), lambda e: e, infos.append
        )
    ]  # type: ignore[arg-type]
    assert out == ["he", "llo"]
    assert [i.error is None for i in infos] == [False, True]


def test_stream_failing_after_content_raises_interrupted_with_partial_text() -> None:
    clock = FakeClock()
    executor = RetryExecutor(RetryPolicy(), clock=clock, sleep=clock.sleep)
    infos: list[AttemptInfo[str]] = []
    seen: list[str] = []
    with pytest.raises(StreamInterrupted) as info:
        for _, event in executor.run_stream(
            ("a",),
            _stream([["he", "!cut"], ["never"]]),
            lambda e: e,
            infos.append,  # type: ignore[arg-type]
        ):
            seen.append(event)
    assert seen == ["he"]
    assert info.value.partial_text == "he"
    assert len(infos) == 1


def test_async_run_retries_with_async_sleep() -> None:
    clock = FakeClock()
    executor = RetryExecutor(
        RetryPolicy(), clock=clock, sleep=clock.sleep, async_sleep=clock.async_sleep
    )
    queue: list[ProviderError | str] = [RateLimited("x", retry_after=2.0), "ok"]

    async def attempt(_t: str) -> str:
        item = queue.pop(0)
        if isinstance(item, ProviderError):
            raise item
        return item

    result, info = asyncio.run(executor.arun(("a",), attempt, lambda i, r: None))
    assert result == "ok"
    assert info.number == 2
    assert clock.sleeps == [2.0]
