"""The LLM provider conformance suite: every provider passes the same tests.

To run it against another backend (e.g. the real llama.cpp server), import the tests and
override the `conformance_target` fixture in your module:

    from tests.test_llm_conformance import *  # noqa: F403

    @pytest.fixture
    def conformance_target() -> Iterator[ConformanceTarget]:
        with LocalModelServer() as server:
            provider = OpenAICompatibleProvider(
                base_url=server.base_url, api_key=server.api_key, tool_mode=ToolMode.SCHEMA)
            yield ConformanceTarget(llm=LLM(provider, server.model_name))

(SmolLM2 cannot make native tool calls; `ToolMode.SCHEMA` constrains them with a grammar.
`LLM("local")` does the same with a server it starts itself.)
`wire` (the request bodies a fake server received) is None for a real server: the
pass-through tests then check behaviour only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import BaseModel

from ragline.llm import (
    LLM,
    FinishReason,
    Message,
    StreamEventKind,
    run_tool_calls,
)
from tests.fakes import support
from tests.fakes.support import RecordingSleep, llm_for

anthropic_server = support.anthropic_server
openai_server = support.openai_server

pytestmark = pytest.mark.integration


@dataclass
class ConformanceTarget:
    """An LLM under test, and what a fake server saw (None for a real server).

    `wire_keys` maps an option to the request-body key the provider uses (None: not sent).
    """

    llm: LLM
    wire: list[dict[str, Any]] | None = None
    wire_keys: dict[str, str | None] = field(default_factory=dict)


WIRE_KEYS = {
    "openai": {"max_tokens": "max_completion_tokens", "stop": "stop", "seed": "seed"},
    "anthropic": {"max_tokens": "max_tokens", "stop": "stop_sequences", "seed": None},
    "openai-compatible": {"max_tokens": "max_tokens", "stop": "stop", "seed": "seed"},
}
SERVER_OF = {
    "openai": "openai_server",
    "anthropic": "anthropic_server",
    "openai-compatible": "openai_server",
}


@pytest.fixture(params=["openai", "anthropic", "openai-compatible"])
def conformance_target(request: pytest.FixtureRequest) -> Iterator[ConformanceTarget]:
    name = request.param
    server = request.getfixturevalue(SERVER_OF[name])
    llm = llm_for(name, server, sleeper=RecordingSleep())
    yield ConformanceTarget(llm=llm, wire=server.requests, wire_keys=WIRE_KEYS[name])
    llm.close()


class City(BaseModel):
    name: str
    population: int
    is_capital: bool


def get_weather(city: str, unit: str = "celsius") -> str:
    """Look up the current weather of a city.

    Args:
        city: The city's name, e.g. "Paris".
        unit: "celsius" or "fahrenheit".
    """
    return f"18 degrees {unit} and sunny in {city}"


def test_complete_returns_text_usage_and_a_finish_reason(
    conformance_target: ConformanceTarget,
) -> None:
    completion = conformance_target.llm.complete("Say hello.", max_tokens=20)
    assert completion.text.strip()
    assert completion.usage.input_tokens > 0
    assert completion.usage.output_tokens > 0
    assert completion.finish_reason in (FinishReason.STOP, FinishReason.LENGTH)
    assert completion.attempts == 1
    assert completion.latency_s > 0


def test_stream_text_equals_concatenation_and_records_ttft(
    conformance_target: ConformanceTarget,
) -> None:
    events = list(conformance_target.llm.stream("Say hello.", max_tokens=20))
    assert events[-1].kind is StreamEventKind.DONE
    completion = events[-1].completion
    assert completion is not None
    pieces = [e.text for e in events if e.kind is StreamEventKind.TEXT]
    assert len(pieces) >= 1
    assert completion.text == "".join(pieces)
    assert completion.time_to_first_token_s is not None
    assert 0 < completion.time_to_first_token_s <= completion.latency_s
    assert completion.usage.output_tokens > 0


def test_max_tokens_limits_the_output(conformance_target: ConformanceTarget) -> None:
    completion = conformance_target.llm.complete("Count from one to fifty.", max_tokens=3)
    assert completion.usage.output_tokens <= 3
    assert completion.finish_reason is FinishReason.LENGTH
    if conformance_target.wire is not None:
        assert conformance_target.wire[-1][conformance_target.wire_keys["max_tokens"]] == 3


def test_stop_and_seed_are_passed_through(conformance_target: ConformanceTarget) -> None:
    completion = conformance_target.llm.complete(
        "Say hello.", stop=["fake"], seed=7, temperature=0.0, max_tokens=20
    )
    assert "fake" not in completion.text
    if conformance_target.wire is None:
        return
    body, keys = conformance_target.wire[-1], conformance_target.wire_keys
    assert body[keys["stop"]] == ["fake"]
    assert body["temperature"] == 0.0
    if keys["seed"] is not None:
        assert body[keys["seed"]] == 7


def test_structured_output_returns_a_validated_model(conformance_target: ConformanceTarget) -> None:
    completion = conformance_target.llm.complete(
        "Describe Paris as JSON.", response_model=City, max_tokens=100
    )
    assert isinstance(completion.parsed, City)
    assert completion.parsed.name


def test_tool_call_is_parsed_and_round_trips(conformance_target: ConformanceTarget) -> None:
    llm = conformance_target.llm
    question = [Message.user("What is the weather in Paris?")]
    first = llm.complete(question, tools=[get_weather], tool_choice="get_weather", max_tokens=100)
    assert first.finish_reason is FinishReason.TOOL_CALLS
    call = first.tool_calls[0]
    assert call.name == "get_weather"
    assert isinstance(call.arguments["city"], str)
    results = run_tool_calls(first.tool_calls, [get_weather])
    follow_up = [*question, Message.assistant(first.text, first.tool_calls), *results]
    final = llm.complete(follow_up, max_tokens=50)
    assert final.text.strip()


def test_streamed_tool_call_is_assembled(conformance_target: ConformanceTarget) -> None:
    events = list(
        conformance_target.llm.stream(
            "What is the weather in Paris?",
            tools=[get_weather],
            tool_choice="get_weather",
            max_tokens=100,
        )
    )
    completion = events[-1].completion
    assert completion is not None
    assert completion.tool_calls[0].name == "get_weather"


def test_ledger_row_written_per_call(conformance_target: ConformanceTarget) -> None:
    llm = conformance_target.llm
    completion = llm.complete("Say hello.", purpose="judge", max_tokens=20)
    assert llm.ledger is not None
    rows = llm.ledger.records(call_id=completion.call_id)
    assert len(rows) == 1
    row = rows[0]
    assert (row.provider, row.model, row.purpose, row.outcome) == (
        llm.provider_name,
        llm.model,
        "judge",
        "ok",
    )
    assert row.usage == completion.usage
    assert row.provider_s > 0


def test_async_complete_and_stream(conformance_target: ConformanceTarget) -> None:
    llm = conformance_target.llm

    async def both() -> tuple[str, str]:
        completion = await llm.acomplete("Say hello.", max_tokens=20)
        pieces = [
            e.text
            async for e in llm.astream("Say hello.", max_tokens=20)
            if e.kind is StreamEventKind.TEXT
        ]
        return completion.text, "".join(pieces)

    completed, streamed = asyncio.run(both())
    assert completed.strip()
    assert streamed.strip()
