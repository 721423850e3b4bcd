"""The response cache: temperature-0 default, bypass, no errors cached, samples never served."""

from __future__ import annotations

import pytest

from ragline.llm import LLM, CallOptions, ResponseCache, ServerError, cache_allowed
from ragline.llm.cache import cache_key
from ragline.llm.types import Message, Request
from tests.fakes import support
from tests.fakes._http import Fault, FaultKind, Reply
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.support import RecordingSleep, llm_for

openai_server = support.openai_server

pytestmark = pytest.mark.integration


@pytest.fixture
def llm(openai_server: FakeOpenAIServer) -> LLM:
    return llm_for("openai", openai_server, sleeper=RecordingSleep())


def test_cache_allowed_only_at_temperature_zero_by_default() -> None:
    assert cache_allowed(CallOptions(temperature=0))
    assert not cache_allowed(CallOptions(temperature=0.7))
    assert not cache_allowed(CallOptions())


def test_cache_flag_overrides_the_default() -> None:
    assert cache_allowed(CallOptions(temperature=0.7, cache=True))
    assert not cache_allowed(CallOptions(temperature=0, cache=False))


def test_samples_are_never_cached_even_when_asked() -> None:
    assert not cache_allowed(CallOptions(temperature=0, cache=True, repeat=True))
    assert not cache_allowed(CallOptions(temperature=0, purpose="sample"))


def test_key_depends_on_messages_model_and_options_but_not_purpose() -> None:
    base = Request("gpt-4o", (Message.user("hi"),), CallOptions(temperature=0))
    assert cache_key("openai", base) == cache_key(
        "openai",
        Request("gpt-4o", (Message.user("hi"),), CallOptions(temperature=0, purpose="judge")),
    )
    assert cache_key("openai", base) != cache_key(
        "openai", Request("gpt-4o", (Message.user("hello"),), CallOptions(temperature=0))
    )
    assert cache_key("openai", base) != cache_key(
        "openai", Request("gpt-4.1", (Message.user("hi"),), CallOptions(temperature=0))
    )
    assert cache_key("openai", base) != cache_key("anthropic", base)
    assert cache_key("openai", base) != cache_key(
        "openai", Request("gpt-4o", (Message.user("hi"),), CallOptions(temperature=0, seed=1))
    )


def test_second_identical_call_is_served_from_cache(
    llm: LLM, openai_server: FakeOpenAIServer
) -> None:
    first = llm.complete("hi", temperature=0)
    second = llm.complete("hi", temperature=0)
    assert (first.cached, second.cached) == (False, True)
    assert second.text == first.text
    assert second.cost_usd == 0.0
    assert len(openai_server.requests) == 1


def test_cache_hit_is_in_the_ledger_with_zero_cost(llm: LLM) -> None:
    llm.complete("hi", temperature=0)
    llm.complete("hi", temperature=0)
    assert llm.ledger is not None
    rows = llm.ledger.records()
    assert [r.outcome for r in rows] == ["ok", "cache_hit"]
    assert rows[1].cost_usd == 0.0


def test_nonzero_temperature_is_not_cached(llm: LLM, openai_server: FakeOpenAIServer) -> None:
    llm.complete("hi", temperature=0.8)
    llm.complete("hi", temperature=0.8)
    assert len(openai_server.requests) == 2


def test_cache_false_bypasses(llm: LLM, openai_server: FakeOpenAIServer) -> None:
    llm.complete("hi", temperature=0)
    assert not llm.complete("hi", temperature=0, cache=False).cached
    assert len(openai_server.requests) == 2


def test_repeated_samples_always_reach_the_model(llm: LLM, openai_server: FakeOpenAIServer) -> None:
    llm.complete("hi", temperature=0)
    llm.complete("hi", temperature=0, repeat=True)
    llm.complete("hi", temperature=0, purpose="sample")
    assert len(openai_server.requests) == 3


def test_errors_are_never_cached(openai_server: FakeOpenAIServer) -> None:
    from ragline.llm import RetryPolicy

    llm = llm_for(
        "openai", openai_server, sleeper=RecordingSleep(), retry=RetryPolicy(max_attempts=1)
    )
    openai_server.push_fault(Fault(FaultKind.SERVER_ERROR))
    with pytest.raises(ServerError):
        llm.complete("hi", temperature=0)
    assert llm.cache is not None and len(llm.cache) == 0
    assert not llm.complete("hi", temperature=0).cached


def test_stream_is_cached_and_replayed(llm: LLM, openai_server: FakeOpenAIServer) -> None:
    first = list(llm.stream("hi", temperature=0))[-1].completion
    replay = list(llm.stream("hi", temperature=0))
    assert first is not None and replay[-1].completion is not None
    assert replay[-1].completion.cached
    assert replay[-1].completion.text == first.text
    assert len(openai_server.requests) == 1


def test_cache_persists_across_clients(openai_server: FakeOpenAIServer) -> None:
    llm_for("openai", openai_server, sleeper=RecordingSleep()).complete("hi", temperature=0)
    again = llm_for("openai", openai_server, sleeper=RecordingSleep())
    assert again.complete("hi", temperature=0).cached


def test_cache_lives_under_ragline_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    import os
    from pathlib import Path

    assert ResponseCache().path == Path(os.environ["RAGLINE_HOME"]) / "cache" / "llm.sqlite"


def test_scripted_tool_call_reply_roundtrips_through_cache(
    llm: LLM, openai_server: FakeOpenAIServer
) -> None:
    openai_server.push_reply(Reply(tool_calls=(("lookup", {"q": "x"}),)))
    llm.complete("hi", temperature=0)
    cached = llm.complete("hi", temperature=0)
    assert cached.cached and cached.tool_calls[0].arguments == {"q": "x"}
