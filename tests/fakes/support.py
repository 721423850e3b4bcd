"""Fixtures and helpers shared by the LLM tests: fake servers, a fake clock, LLM builders."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from ragline.llm import LLM, RetryPolicy
from tests.fakes._http import FakeServer
from tests.fakes.anthropic_server import FakeAnthropicServer
from tests.fakes.openai_server import FakeOpenAIServer

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=4.0, max_elapsed=60.0)


@dataclass
class FakeClock:
    """A monotonic clock that only `sleep` moves: backoff without waiting."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


class RecordingSleep:
    """Records sleeps, returns at once; real time keeps flowing (for the real clock)."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def anthropic_server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as server:
        yield server


def llm_for(
    provider: str,
    server: FakeServer,
    *,
    model: str | None = None,
    sleeper: RecordingSleep,
    retry: RetryPolicy = FAST_RETRY,
    **kw: Any,
) -> LLM:
    """An LLM pointed at a fake server, with recorded (not slept) backoff."""
    base_url = server.base_url  # type: ignore[attr-defined]
    default_model = {
        "openai": "gpt-4o-mini",
        "anthropic": "claude-sonnet-4-20250514",
        "openai-compatible": "smollm2",
    }[provider]
    return LLM(
        provider,
        model or default_model,
        base_url=base_url,
        api_key="test-key",
        retry=retry,
        sleep=sleeper,
        async_sleep=sleeper.asleep,
        **kw,
    )
