"""Prompt caching: Anthropic cache_control breakpoints; cached tokens read from both providers."""

from __future__ import annotations

import pytest

from ragline.llm import Message
from ragline.llm.providers.anthropic import CACHE_MIN_CHARS, split_messages
from tests.fakes import support
from tests.fakes._http import Reply
from tests.fakes.anthropic_server import FakeAnthropicServer
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.support import RecordingSleep, llm_for

anthropic_server = support.anthropic_server
openai_server = support.openai_server

LONG = "policy text " * (CACHE_MIN_CHARS // 10)


def test_long_system_prompt_gets_a_breakpoint() -> None:
    system, _ = split_messages((Message.system(LONG), Message.user("q")))
    assert system[0]["cache_control"] == {"type": "ephemeral"}


def test_short_system_prompt_gets_none() -> None:
    system, _ = split_messages((Message.system("Be brief."), Message.user("q")))
    assert "cache_control" not in system[0]


def test_message_marked_as_stable_prefix_gets_a_breakpoint() -> None:
    _, turns = split_messages(
        (Message.user("retrieved context", cache=True), Message.user("question"))
    )
    blocks = turns[0]["content"]
    assert blocks[0]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in blocks[1]


def test_at_most_four_breakpoints_keeping_the_last() -> None:
    messages = tuple(Message.user(f"part {i}", cache=True) for i in range(6))
    _, turns = split_messages(messages)
    marked = [b["text"] for b in turns[0]["content"] if "cache_control" in b]
    assert marked == ["part 2", "part 3", "part 4", "part 5"]


@pytest.mark.integration
def test_anthropic_cache_tokens_reach_usage_and_ledger(
    anthropic_server: FakeAnthropicServer,
) -> None:
    llm = llm_for("anthropic", anthropic_server, sleeper=RecordingSleep())
    anthropic_server.push_reply(Reply(input_tokens=10, cached_tokens=2000, cache_write_tokens=500))
    completion = llm.complete([Message.system(LONG), Message.user("q")])
    assert anthropic_server.requests[-1]["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert completion.usage.input_tokens == 2510
    assert completion.usage.cached_input_tokens == 2000
    assert completion.usage.cache_write_tokens == 500
    assert llm.ledger is not None
    row = llm.ledger.records()[0]
    assert row.usage == completion.usage
    expected = (10 * 3.00 + 2000 * 0.30 + 500 * 3.75 + completion.usage.output_tokens * 15) / 1e6
    assert row.cost_usd == pytest.approx(expected)


@pytest.mark.integration
def test_anthropic_streamed_cache_tokens_reach_usage(anthropic_server: FakeAnthropicServer) -> None:
    llm = llm_for("anthropic", anthropic_server, sleeper=RecordingSleep())
    anthropic_server.push_reply(Reply(input_tokens=10, cached_tokens=300))
    completion = list(llm.stream("q"))[-1].completion
    assert completion is not None
    assert completion.usage.cached_input_tokens == 300
    assert completion.usage.input_tokens == 310


@pytest.mark.integration
def test_openai_cached_and_reasoning_tokens_reach_usage(openai_server: FakeOpenAIServer) -> None:
    llm = llm_for("openai", openai_server, sleeper=RecordingSleep(), model="o3")
    openai_server.push_reply(Reply(input_tokens=5000, cached_tokens=4096, reasoning_tokens=40))
    completion = llm.complete("q")
    assert completion.usage.cached_input_tokens == 4096
    assert completion.usage.reasoning_tokens == 40
    assert llm.ledger is not None
    assert llm.ledger.records()[0].usage.cached_input_tokens == 4096
