"""Fault injection against fake OpenAI and Anthropic servers speaking the real wire formats.

Each case asserts the outcome, the number of attempts (and of requests the server saw: the
SDKs must not retry behind our back), and what the ledger recorded.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ragline.llm import (
    LLM,
    AuthenticationFailed,
    BadRequest,
    PermissionDenied,
    RetryPolicy,
    ServerError,
    StreamEventKind,
    StreamInterrupted,
)
from tests.fakes import support
from tests.fakes._http import FakeServer, Fault, FaultKind
from tests.fakes.support import RecordingSleep, llm_for

anthropic_server = support.anthropic_server
openai_server = support.openai_server

pytestmark = pytest.mark.integration
PROVIDERS = ["openai", "anthropic"]
OVERLOAD_OUTCOME = {"openai": "ServerError", "anthropic": "Overloaded"}


@pytest.fixture(params=PROVIDERS)
def setup(request: pytest.FixtureRequest) -> tuple[str, FakeServer, RecordingSleep, LLM]:
    name = request.param
    server = request.getfixturevalue(f"{name}_server")
    sleeper = RecordingSleep()
    return name, server, sleeper, llm_for(name, server, sleeper=sleeper)


def outcomes(llm: LLM) -> list[str]:
    assert llm.ledger is not None
    return [r.outcome for r in llm.ledger.records()]


def stream_text(llm: LLM, **kw: Any) -> str:
    return "".join(e.text for e in llm.stream("hi", **kw) if e.kind is StreamEventKind.TEXT)


def test_rate_limit_honours_retry_after(setup: Any) -> None:
    _, server, sleeper, llm = setup
    server.push_fault(Fault(FaultKind.RATE_LIMIT, retry_after=2.5))
    completion = llm.complete("hi")
    assert completion.attempts == 2
    assert sleeper.sleeps == [2.5]
    assert outcomes(llm) == ["RateLimited", "ok"]
    assert llm.ledger.records()[1].wait_s == 2.5
    assert len(server.requests) == 2


def test_server_error_is_retried_with_jittered_backoff(setup: Any) -> None:
    _, server, sleeper, llm = setup
    server.push_fault(Fault(FaultKind.SERVER_ERROR))
    assert llm.complete("hi").attempts == 2
    assert 0 <= sleeper.sleeps[0] <= 0.5
    assert outcomes(llm) == ["ServerError", "ok"]


def test_overloaded_is_retried(setup: Any) -> None:
    name, server, _, llm = setup
    server.push_fault(Fault(FaultKind.OVERLOADED))
    assert llm.complete("hi").text
    assert outcomes(llm) == [OVERLOAD_OUTCOME[name], "ok"]


def test_timeout_is_retried(setup: Any) -> None:
    _, server, _, llm = setup
    server.push_fault(Fault(FaultKind.DELAY, delay=1.0))
    completion = llm.complete("hi", timeout=0.3)
    assert completion.attempts == 2
    assert outcomes(llm) == ["Timeout", "ok"]
    assert llm.ledger.records()[0].provider_s >= 0.3


def test_malformed_json_body_is_retried(setup: Any) -> None:
    _, server, _, llm = setup
    server.push_fault(Fault(FaultKind.MALFORMED_JSON))
    assert llm.complete("hi").text == "Hello from the fake server"
    assert outcomes(llm) == ["MalformedResponse", "ok"]


def test_connection_dropped_mid_body_is_retried(setup: Any) -> None:
    _, server, _, llm = setup
    server.push_fault(Fault(FaultKind.DROP))
    assert llm.complete("hi").attempts == 2
    assert outcomes(llm) == ["ConnectionLost", "ok"]


def test_stream_dropped_before_any_content_is_retried(setup: Any) -> None:
    _, server, _, llm = setup
    server.push_fault(Fault(FaultKind.DROP, after_chunks=0))
    assert stream_text(llm) == "Hello from the fake server"
    assert outcomes(llm) == ["ConnectionLost", "ok"]


def test_stream_dropped_after_content_raises_with_partial_text(setup: Any) -> None:
    _, server, _, llm = setup
    server.push_fault(Fault(FaultKind.DROP, after_chunks=2))
    seen: list[str] = []
    with pytest.raises(StreamInterrupted) as info:
        for event in llm.stream("hi"):
            seen.append(event.text)
    assert info.value.partial_text == "Hello from"
    assert "".join(seen) == "Hello from"
    assert outcomes(llm) == ["ConnectionLost"]
    assert len(server.requests) == 1


def test_truncated_stream_before_content_is_retried(setup: Any) -> None:
    _, server, _, llm = setup
    server.push_fault(Fault(FaultKind.TRUNCATED, after_chunks=0))
    assert stream_text(llm) == "Hello from the fake server"
    assert outcomes(llm) == ["StreamInterrupted", "ok"]


def test_truncated_stream_after_content_raises_stream_interrupted(setup: Any) -> None:
    _, server, _, llm = setup
    server.push_fault(Fault(FaultKind.TRUNCATED, after_chunks=3))
    with pytest.raises(StreamInterrupted) as info:
        stream_text(llm)
    assert info.value.partial_text == "Hello from the"
    assert outcomes(llm) == ["StreamInterrupted"]


def test_malformed_stream_event_is_retried(setup: Any) -> None:
    _, server, _, llm = setup
    server.push_fault(Fault(FaultKind.MALFORMED_JSON))
    assert stream_text(llm) == "Hello from the fake server"
    assert outcomes(llm)[-1] == "ok"
    assert len(outcomes(llm)) == 2


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        (FaultKind.BAD_REQUEST, BadRequest),
        (FaultKind.UNAUTHORIZED, AuthenticationFailed),
        (FaultKind.FORBIDDEN, PermissionDenied),
    ],
)
def test_non_retryable_errors_surface_at_once(setup: Any, kind: FaultKind, error: type) -> None:
    _, server, sleeper, llm = setup
    server.push_fault(Fault(kind))
    with pytest.raises(error) as info:
        llm.complete("hi")
    assert info.value.attempts == 1
    assert "not retried" in str(info.value)
    assert len(server.requests) == 1
    assert sleeper.sleeps == []
    assert outcomes(llm) == [error.__name__]


def test_exhausted_attempts_raise_and_record_every_attempt(setup: Any) -> None:
    _, server, sleeper, llm = setup
    server.push_fault(*[Fault(FaultKind.SERVER_ERROR)] * 3)
    with pytest.raises(ServerError) as info:
        llm.complete("hi")
    assert info.value.attempts == 3
    assert len(server.requests) == 3  # the SDK itself never retried
    assert len(sleeper.sleeps) == 2
    assert outcomes(llm) == ["ServerError"] * 3


def test_fallback_model_answers_after_primary_exhausts_attempts(setup: Any) -> None:
    name, server, sleeper, _ = setup
    policy = RetryPolicy(max_attempts=2, base_delay=0.1, fallbacks=("backup-model",))
    llm = llm_for(name, server, sleeper=sleeper, retry=policy)
    server.push_fault(Fault(FaultKind.SERVER_ERROR), Fault(FaultKind.SERVER_ERROR))
    completion = llm.complete("hi")
    assert completion.attempts == 3
    assert server.requests[-1]["model"] == "backup-model"
    rows = llm.ledger.records()
    assert [r.model for r in rows] == [llm.model, llm.model, "backup-model"]
    assert [r.fallback for r in rows] == [False, False, True]
    assert len({r.call_id for r in rows}) == 1


def test_async_complete_retries_rate_limit(setup: Any) -> None:
    _, server, sleeper, llm = setup
    server.push_fault(Fault(FaultKind.RATE_LIMIT, retry_after=1.0))
    completion = asyncio.run(llm.acomplete("hi"))
    assert completion.attempts == 2
    assert sleeper.sleeps == [1.0]
    assert outcomes(llm) == ["RateLimited", "ok"]


def test_async_stream_retries_truncated_stream(setup: Any) -> None:
    _, server, _, llm = setup
    server.push_fault(Fault(FaultKind.TRUNCATED, after_chunks=0))

    async def collect() -> str:
        return "".join([e.text async for e in llm.astream("hi")])

    assert asyncio.run(collect()) == "Hello from the fake server"
    assert outcomes(llm) == ["StreamInterrupted", "ok"]


def test_a_slow_or_retried_call_says_what_it_waits_for(
    setup: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from ragline.llm import client

    _, server, _, llm = setup
    monkeypatch.setattr(client, "WAIT_NOTICE_S", 0.1)
    server.push_fault(Fault(FaultKind.DELAY, delay=1.0))
    with caplog.at_level(logging.WARNING, logger="ragline"):
        assert llm.complete("hi", timeout=0.5).attempts == 2
    host = server.base_url.split("//", 1)[1].split("/", 1)[0]
    messages = [r.getMessage() for r in caplog.records]
    assert f"waiting for {host} (attempt 1/3)..." in messages  # the hanging first attempt
    assert f"waiting for {host} (attempt 2/3)..." in messages  # the retry, at once
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ragline"):
        stream_text(llm)
    assert not caplog.records, "a quick call is not announced"


def test_error_hints_name_flags_and_config_keys_that_exist() -> None:
    from ragline.config import RaglineConfig
    from ragline.llm import ConnectionLost, Timeout

    assert "--timeout" in Timeout.hint and "[llm] timeout" in Timeout.hint
    assert "--base-url" in ConnectionLost.hint
    assert {"timeout", "base_url", "api_key_env"} <= set(RaglineConfig().llm.model_dump())
