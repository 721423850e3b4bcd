"""Tools from typed functions; native tool calls on the wire; running calls."""

from __future__ import annotations

from typing import Literal

import pytest

from ragline.llm import Message, ToolCall, ToolError, run_tool_calls, tool_from_function
from ragline.llm.providers.openai_compatible import ToolMode, tools_schema
from ragline.llm.tools import parse_docstring
from tests.fakes import support
from tests.fakes._http import Reply
from tests.fakes.anthropic_server import FakeAnthropicServer
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.support import RecordingSleep, llm_for

anthropic_server = support.anthropic_server
openai_server = support.openai_server


def search(query: str, top_k: int = 5, mode: Literal["bm25", "dense"] = "bm25") -> list[str]:
    """Search the index for passages.

    Args:
        query: What to look for.
        top_k: How many passages to return,
            at most 50.
        mode: Which retriever to use.

    Returns:
        The passages.
    """
    return [f"{mode}:{query}"] * top_k


def numpy_style(city: str) -> str:
    """Weather lookup.

    Parameters
    ----------
    city : str
        The city name.
    """
    return city


def test_schema_comes_from_type_hints_and_defaults() -> None:
    spec = tool_from_function(search)
    props = spec.parameters["properties"]
    assert spec.name == "search"
    assert spec.description == "Search the index for passages."
    assert props["query"]["type"] == "string"
    assert props["top_k"]["type"] == "integer" and props["top_k"]["default"] == 5
    assert props["mode"]["enum"] == ["bm25", "dense"]
    assert spec.parameters["required"] == ["query"]
    assert spec.parameters["additionalProperties"] is False


def test_descriptions_come_from_google_docstring_with_continuations() -> None:
    props = tool_from_function(search).parameters["properties"]
    assert props["query"]["description"] == "What to look for."
    assert props["top_k"]["description"] == "How many passages to return, at most 50."


def test_descriptions_come_from_numpy_docstring() -> None:
    assert parse_docstring(numpy_style.__doc__) == ("Weather lookup.", {"city": "The city name."})


def test_varargs_cannot_be_tools() -> None:
    def bad(*args: int) -> None:
        """Nope."""

    with pytest.raises(ToolError, match="args"):
        tool_from_function(bad)


def test_run_tool_calls_validates_and_returns_tool_messages() -> None:
    out = run_tool_calls([ToolCall("c1", "search", {"query": "rag", "top_k": "2"})], [search])
    assert out == [Message.tool("c1", '["bm25:rag", "bm25:rag"]')]


def test_run_tool_calls_rejects_unknown_tools_and_bad_arguments() -> None:
    with pytest.raises(ToolError, match="unknown tool"):
        run_tool_calls([ToolCall("c1", "nope", {})], [search])
    with pytest.raises(ToolError, match="invalid arguments"):
        run_tool_calls([ToolCall("c1", "search", {"top_k": 3})], [search])


@pytest.mark.integration
def test_openai_sends_native_function_tools(openai_server: FakeOpenAIServer) -> None:
    llm = llm_for("openai", openai_server, sleeper=RecordingSleep())
    openai_server.push_reply(Reply(tool_calls=(("search", {"query": "x"}),)))
    result = llm.complete("find x", tools=[search])
    tool = openai_server.requests[-1]["tools"][0]
    assert tool["type"] == "function" and tool["function"]["name"] == "search"
    assert result.tool_calls == (ToolCall("call_0", "search", {"query": "x"}),)


@pytest.mark.integration
def test_anthropic_sends_input_schema_tools(anthropic_server: FakeAnthropicServer) -> None:
    llm = llm_for("anthropic", anthropic_server, sleeper=RecordingSleep())
    anthropic_server.push_reply(Reply(tool_calls=(("search", {"query": "x"}),)))
    result = llm.complete("find x", tools=[search])
    tool = anthropic_server.requests[-1]["tools"][0]
    assert tool["name"] == "search" and "input_schema" in tool
    assert result.tool_calls[0].arguments == {"query": "x"}


@pytest.mark.integration
def test_anthropic_tool_results_go_back_as_tool_result_blocks(
    anthropic_server: FakeAnthropicServer,
) -> None:
    llm = llm_for("anthropic", anthropic_server, sleeper=RecordingSleep())
    call = ToolCall("toolu_1", "search", {"query": "x"})
    llm.complete(
        [Message.user("find x"), Message.assistant("", (call,)), Message.tool("toolu_1", "found")]
    )
    turns = anthropic_server.requests[-1]["messages"]
    assert turns[1]["content"][0] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "search",
        "input": {"query": "x"},
    }
    assert turns[2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "found"}],
    }


@pytest.mark.integration
def test_schema_mode_constrains_a_tool_call_through_response_format(
    openai_server: FakeOpenAIServer,
) -> None:
    from ragline.llm import LLM
    from ragline.llm.providers.openai_compatible import OpenAICompatibleProvider

    provider = OpenAICompatibleProvider(base_url=openai_server.base_url, tool_mode=ToolMode.SCHEMA)
    llm = LLM(provider, "smollm2")
    openai_server.push_reply(Reply(json_value={"name": "search", "arguments": {"query": "x"}}))
    result = llm.complete("find x", tools=[search])
    body = openai_server.requests[-1]
    assert "tools" not in body
    assert body["response_format"]["json_schema"]["schema"] == tools_schema(
        (tool_from_function(search),), None
    )
    assert result.tool_calls[0].name == "search"
    assert result.tool_calls[0].arguments == {"query": "x"}
