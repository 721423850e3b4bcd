"""Any server that speaks the OpenAI Chat Completions API (vLLM, Ollama, llama.cpp server).

Tools run in one of two modes:
- `ToolMode.NATIVE`: OpenAI `tools=[...]`, for servers whose chat template supports tools.
- `ToolMode.SCHEMA`: the tools become one JSON schema (`{"name": ..., "arguments": ...}`, one
  branch per tool) sent as `response_format`; llama.cpp turns it into a grammar, so even a
  small model emits a well-formed call. In this mode a request with tools always yields
  exactly one tool call; send the follow-up request (with the tool results) without tools
  to get the final text answer. Earlier tool calls and results are written into the
  conversation as plain text, since such templates know no tool roles.
"""

from __future__ import annotations

import enum
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

from ragline.llm.providers._common import malformed, parse_arguments
from ragline.llm.providers.openai import OpenAIProvider
from ragline.llm.types import (
    FinishReason,
    Message,
    RawResult,
    Request,
    ResponseSchema,
    Role,
    StreamEvent,
    StreamEventKind,
    ToolCall,
    ToolSpec,
)

TOOL_SCHEMA_NAME = "tool_call"


class ToolMode(enum.StrEnum):
    NATIVE = "native"
    SCHEMA = "schema"


def tools_schema(tools: tuple[ToolSpec, ...], forced: str | None) -> dict[str, Any]:
    """One JSON schema accepting a call of any (or the forced) tool."""
    branches = [
        {
            "type": "object",
            "properties": {"name": {"type": "string", "enum": [t.name]}, "arguments": t.parameters},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
        if forced is None or t.name == forced
    ]
    return branches[0] if len(branches) == 1 else {"anyOf": branches}


def _as_plain_text(message: Message) -> Message:
    if message.role is Role.TOOL:
        return Message.user(f"Tool result: {message.content}")
    if message.tool_calls:
        calls = "; ".join(f"{c.name} with {json.dumps(c.arguments)}" for c in message.tool_calls)
        return Message.assistant(f"{message.content}\nI called {calls}.".strip())
    return message


class OpenAICompatibleProvider(OpenAIProvider):
    """The `openai-compatible` provider: an OpenAI-style server at `base_url`."""

    name = "openai-compatible"
    api_key_env = "OPENAI_COMPATIBLE_API_KEY"
    max_tokens_field = "max_tokens"  # what vLLM, Ollama and llama.cpp all accept

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        tool_mode: ToolMode = ToolMode.NATIVE,
    ) -> None:
        super().__init__(api_key=api_key, base_url=base_url, timeout=timeout)
        self.tool_mode = tool_mode

    def _default_key(self) -> str | None:
        return "not-needed"  # most local servers accept any key; the SDK insists on one

    def _schema_mode(self, request: Request) -> bool:
        return self.tool_mode is ToolMode.SCHEMA and bool(request.tools)

    def _rewrite(self, request: Request) -> Request:
        messages = tuple(_as_plain_text(m) for m in request.messages)
        if not self._schema_mode(request):
            return (
                replace(request, messages=messages)
                if self.tool_mode is ToolMode.SCHEMA
                else request
            )
        schema = ResponseSchema(TOOL_SCHEMA_NAME, tools_schema(request.tools, request.tool_choice))
        return replace(
            request, messages=messages, tools=(), tool_choice=None, response_schema=schema
        )

    def complete(self, request: Request) -> RawResult:
        result = super().complete(self._rewrite(request))
        return self._to_tool_call(result, request) if self._schema_mode(request) else result

    async def acomplete(self, request: Request) -> RawResult:
        result = await super().acomplete(self._rewrite(request))
        return self._to_tool_call(result, request) if self._schema_mode(request) else result

    def stream(self, request: Request) -> Iterator[StreamEvent]:
        events = super().stream(self._rewrite(request))
        if not self._schema_mode(request):
            yield from events
            return
        yield from self._stream_tool_call(list(events), request)

    async def astream(self, request: Request) -> AsyncIterator[StreamEvent]:
        collected = [event async for event in super().astream(self._rewrite(request))]
        if not self._schema_mode(request):
            for event in collected:
                yield event
            return
        for event in self._stream_tool_call(collected, request):
            yield event

    def _to_tool_call(self, result: RawResult, request: Request) -> RawResult:
        call = self._parse_call(result.text, request.model)
        return replace(result, text="", tool_calls=(call,), finish_reason=FinishReason.TOOL_CALLS)

    def _parse_call(self, text: str, model: str) -> ToolCall:
        value = parse_arguments(text, provider=self.name, model=model)
        name, arguments = value.get("name"), value.get("arguments")
        if not isinstance(name, str) or not isinstance(arguments, dict):
            raise malformed(
                f"not a tool call object: {text[:200]!r}", provider=self.name, model=model
            )
        return ToolCall("call_0", name, arguments)

    def _stream_tool_call(
        self, events: list[StreamEvent], request: Request
    ) -> Iterator[StreamEvent]:
        """Schema mode: the call is only known once the JSON is complete, so emit it at the end."""
        text = "".join(e.text for e in events if e.kind is StreamEventKind.TEXT)
        call = self._parse_call(text, request.model)
        yield StreamEvent(
            StreamEventKind.TOOL_CALL_DELTA,
            tool_index=0,
            tool_call_id=call.id,
            tool_name=call.name,
            arguments_delta=json.dumps(call.arguments),
        )
        yield from (e for e in events if e.kind is StreamEventKind.USAGE)
        yield StreamEvent(StreamEventKind.DONE, finish_reason=FinishReason.TOOL_CALLS)
