"""Structured output: native schema modes on the wire, validation, bounded re-asks, ledger."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from ragline.llm import LLM, StructuredOutputError
from ragline.llm.structured import response_schema
from tests.fakes import support
from tests.fakes._http import Reply
from tests.fakes.anthropic_server import FakeAnthropicServer
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.support import RecordingSleep, llm_for

anthropic_server = support.anthropic_server
openai_server = support.openai_server

pytestmark = pytest.mark.integration


class Verdict(BaseModel):
    supported: bool
    confidence: float = Field(ge=0, le=1)
    reasons: list[str] = []


def test_schema_is_strict_ready_for_openai() -> None:
    schema = response_schema(Verdict)
    assert schema.name == "Verdict"
    assert schema.schema["additionalProperties"] is False
    assert set(schema.schema["required"]) == {"supported", "confidence", "reasons"}
    assert "default" not in str(schema.schema)


def test_openai_sends_json_schema_response_format(openai_server: FakeOpenAIServer) -> None:
    llm = llm_for("openai", openai_server, sleeper=RecordingSleep())
    result = llm.complete("Judge this.", response_model=Verdict)
    fmt = openai_server.requests[-1]["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["name"] == "Verdict"
    assert isinstance(result.parsed, Verdict)


def test_anthropic_forces_a_tool_with_the_schema(anthropic_server: FakeAnthropicServer) -> None:
    llm = llm_for("anthropic", anthropic_server, sleeper=RecordingSleep())
    result = llm.complete("Judge this.", response_model=Verdict)
    body = anthropic_server.requests[-1]
    assert body["tool_choice"] == {"type": "tool", "name": "Verdict"}
    assert body["tools"][0]["input_schema"]["properties"].keys() == {
        "supported",
        "confidence",
        "reasons",
    }
    assert isinstance(result.parsed, Verdict)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_invalid_reply_is_reasked_with_the_error_and_every_attempt_is_recorded(
    provider: str, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue(f"{provider}_server")
    llm = llm_for(provider, server, sleeper=RecordingSleep())
    server.push_reply(
        Reply(json_value={"supported": True, "confidence": 7}),
        Reply(json_value={"supported": True, "confidence": 0.9}),
    )
    result = llm.complete("Judge this.", response_model=Verdict, purpose="judge")
    assert result.parsed == Verdict(supported=True, confidence=0.9)
    assert result.attempts == 2
    last_user = str(server.requests[-1]["messages"][-1]["content"])
    assert "confidence" in last_user and "schema" in last_user
    assert llm.ledger is not None
    rows = llm.ledger.records()
    assert [(r.attempt, r.reask, r.outcome, r.purpose) for r in rows] == [
        (1, 0, "ok", "judge"),
        (2, 1, "ok", "judge"),
    ]
    assert len({r.call_id for r in rows}) == 1
    assert result.usage.input_tokens == sum(r.usage.input_tokens for r in rows)


def test_reasks_are_bounded(openai_server: FakeOpenAIServer) -> None:
    llm = llm_for("openai", openai_server, sleeper=RecordingSleep())
    openai_server.push_reply(*[Reply(json_value={"supported": "maybe"})] * 3)
    with pytest.raises(StructuredOutputError) as info:
        llm.complete("Judge this.", response_model=Verdict, max_reasks=2)
    assert info.value.attempts == 3
    assert len(openai_server.requests) == 3


def test_non_json_reply_is_reasked(openai_server: FakeOpenAIServer) -> None:
    llm: LLM = llm_for("openai", openai_server, sleeper=RecordingSleep())
    openai_server.push_reply(
        Reply(text="Sure! Here it is"), Reply(json_value={"supported": False, "confidence": 0.2})
    )
    assert llm.complete("Judge.", response_model=Verdict).parsed.supported is False
