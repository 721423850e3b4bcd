"""Anthropic Messages API through the official SDK: one attempt, typed errors.

Notes on the mapping:
- System messages go to `system`; tool results become `tool_result` blocks of a user turn.
- Prompt caching: a `cache_control: ephemeral` breakpoint goes on a system prompt long
  enough to be cached (>= ~1024 tokens, estimated as 4 characters a token) and on every
  message marked `Message(..., cache=True)`; at most 4 breakpoints (the API's limit).
- `seed` has no Anthropic equivalent and is not sent; `temperature` travels in the body.
- Structured output is a forced tool whose input schema is the response schema; its input
  is returned as the completion's JSON text.
- `Usage.input_tokens` = input + cache read + cache creation tokens (Anthropic reports the
  uncached part alone in `input_tokens`).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2
from pydantic import ValidationError

from ragline.llm.errors import LLMConfigError, ProviderError, StreamInterrupted, Timeout
from ragline.llm.providers._common import (
    body_error_code,
    error_for_status,
    malformed,
    transport_error,
)
from ragline.llm.types import (
    FinishReason,
    Message,
    RawResult,
    Request,
    Role,
    StreamEvent,
    StreamEventKind,
    ToolCall,
    Usage,
)

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_TOKENS = 1024  # the Messages API requires max_tokens
CACHE_MIN_CHARS = 4096
MAX_BREAKPOINTS = 4
EPHEMERAL = {"type": "ephemeral"}

_FINISH = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.CONTENT_FILTER,
}


def finish_reason(value: str | None, *, structured: bool) -> FinishReason:
    if structured and value == "tool_use":
        return FinishReason.STOP
    return _FINISH.get(value or "", FinishReason.OTHER)


def _blocks(message: Message) -> list[dict[str, Any]]:
    if message.role is Role.TOOL:
        return [
            {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.content}
        ]
    blocks: list[dict[str, Any]] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    blocks += [
        {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
        for c in message.tool_calls
    ]
    return blocks


def split_messages(
    messages: tuple[Message, ...],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, turns), with cache breakpoints placed; consecutive turns of one role merge."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    marked: list[dict[str, Any]] = []
    for message in messages:
        if message.role is Role.SYSTEM:
            block: dict[str, Any] = {"type": "text", "text": message.content}
            system.append(block)
            if message.cache or len(message.content) >= CACHE_MIN_CHARS:
                marked.append(block)
            continue
        role = "assistant" if message.role is Role.ASSISTANT else "user"
        blocks = _blocks(message)
        if message.cache and blocks:
            marked.append(blocks[-1])
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for block in marked[-MAX_BREAKPOINTS:]:
        block["cache_control"] = dict(EPHEMERAL)
    return system, turns


def request_params(request: Request) -> dict[str, Any]:
    """The keyword arguments of `messages.create` for one request."""
    opts = request.options
    system, turns = split_messages(request.messages)
    params: dict[str, Any] = {
        "model": request.model,
        "messages": turns,
        "max_tokens": opts.max_tokens or DEFAULT_MAX_TOKENS,
    }
    if system:
        params["system"] = system
    if opts.stop:
        params["stop_sequences"] = list(opts.stop)
    if opts.temperature is not None:
        params["extra_body"] = {"temperature": opts.temperature}
    if opts.timeout is not None:
        params["timeout"] = opts.timeout
    tools = [
        {"name": t.name, "description": t.description, "input_schema": t.parameters}
        for t in request.tools
    ]
    if request.response_schema:
        schema = request.response_schema
        tools.append(
            {
                "name": schema.name,
                "description": "Reply with this JSON object.",
                "input_schema": schema.schema,
            }
        )
        params["tool_choice"] = {"type": "tool", "name": schema.name}
    elif request.tool_choice:
        params["tool_choice"] = {"type": "tool", "name": request.tool_choice}
    if tools:
        params["tools"] = tools
    return params


def usage_from_anthropic(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    cached = getattr(usage, "cache_read_input_tokens", None) or 0
    written = getattr(usage, "cache_creation_input_tokens", None) or 0
    return Usage(
        input_tokens=(getattr(usage, "input_tokens", None) or 0) + cached + written,
        cached_input_tokens=cached,
        cache_write_tokens=written,
        output_tokens=getattr(usage, "output_tokens", None) or 0,
    )


@dataclass
class _StreamState:
    structured: bool
    input_usage: Usage = field(default_factory=Usage)
    output_tokens: int = 0
    stop_reason: str | None = None
    stopped: bool = False
    tool_of_block: dict[int, int] = field(default_factory=dict)


class AnthropicProvider:
    """The `anthropic` provider."""

    name = "anthropic"
    api_key_env = "ANTHROPIC_API_KEY"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        key = api_key or os.environ.get(self.api_key_env)
        if not key:
            raise LLMConfigError(
                f"no API key for provider 'anthropic': export {self.api_key_env} (or name another variable with [llm] api_key_env)"
            )
        common: dict[str, Any] = {
            "api_key": key,
            "base_url": base_url,
            "timeout": timeout,
            "max_retries": 0,
        }
        self.base_url = base_url
        self._client = anthropic.Anthropic(**common)
        self._aclient = anthropic.AsyncAnthropic(**common)

    def complete(self, request: Request) -> RawResult:
        try:
            response = self._client.messages.create(**request_params(request))
            return self._parse(response, request)
        except ProviderError:
            raise
        except Exception as exc:
            raise self._map_error(exc, request.model) from exc

    async def acomplete(self, request: Request) -> RawResult:
        try:
            response = await self._aclient.messages.create(**request_params(request))
            return self._parse(response, request)
        except ProviderError:
            raise
        except Exception as exc:
            raise self._map_error(exc, request.model) from exc

    def stream(self, request: Request) -> Iterator[StreamEvent]:
        state = _StreamState(structured=request.response_schema is not None)
        try:
            events = self._client.messages.create(**request_params(request), stream=True)
            for event in events:
                yield from self._events(event, state)
        except ProviderError:
            raise
        except Exception as exc:
            raise self._map_error(exc, request.model) from exc
        yield from self._finish(state, request.model)

    async def astream(self, request: Request) -> AsyncIterator[StreamEvent]:
        state = _StreamState(structured=request.response_schema is not None)
        try:
            events = await self._aclient.messages.create(**request_params(request), stream=True)
            async for event in events:
                for out in self._events(event, state):
                    yield out
        except ProviderError:
            raise
        except Exception as exc:
            raise self._map_error(exc, request.model) from exc
        for out in self._finish(state, request.model):
            yield out

    def _parse(self, response: Any, request: Request) -> RawResult:
        try:
            return self._parse_unchecked(response, request)
        except (AttributeError, TypeError, KeyError) as exc:
            raise malformed(exc, provider=self.name, model=request.model) from exc

    def _parse_unchecked(self, response: Any, request: Request) -> RawResult:
        structured = request.response_schema is not None
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in response.content:
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use" and structured:
                texts.append(json.dumps(block.input))
            elif block.type == "tool_use":
                calls.append(ToolCall(block.id, block.name, dict(block.input)))
        return RawResult(
            text="".join(texts),
            model=response.model or request.model,
            usage=usage_from_anthropic(response.usage),
            finish_reason=finish_reason(response.stop_reason, structured=structured),
            tool_calls=tuple(calls),
        )

    def _events(self, event: Any, state: _StreamState) -> list[StreamEvent]:
        kind = event.type
        if kind == "message_start":
            state.input_usage = usage_from_anthropic(event.message.usage)
        elif kind == "content_block_start" and event.content_block.type == "tool_use":
            return self._tool_start(event, state)
        elif kind == "content_block_delta":
            return self._delta(event, state)
        elif kind == "message_delta":
            state.stop_reason = event.delta.stop_reason or state.stop_reason
            state.output_tokens = event.usage.output_tokens or state.output_tokens
        elif kind == "message_stop":
            state.stopped = True
        return []

    @staticmethod
    def _tool_start(event: Any, state: _StreamState) -> list[StreamEvent]:
        if state.structured:
            return []
        ordinal = len(state.tool_of_block)
        state.tool_of_block[event.index] = ordinal
        block = event.content_block
        return [
            StreamEvent(
                StreamEventKind.TOOL_CALL_DELTA,
                tool_index=ordinal,
                tool_call_id=block.id,
                tool_name=block.name,
            )
        ]

    @staticmethod
    def _delta(event: Any, state: _StreamState) -> list[StreamEvent]:
        delta = event.delta
        if delta.type == "text_delta" and delta.text:
            return [StreamEvent(StreamEventKind.TEXT, text=delta.text)]
        if delta.type == "input_json_delta" and delta.partial_json:
            if state.structured:
                return [StreamEvent(StreamEventKind.TEXT, text=delta.partial_json)]
            return [
                StreamEvent(
                    StreamEventKind.TOOL_CALL_DELTA,
                    tool_index=state.tool_of_block.get(event.index, 0),
                    arguments_delta=delta.partial_json,
                )
            ]
        return []

    def _finish(self, state: _StreamState, model: str) -> Iterator[StreamEvent]:
        if not state.stopped:
            raise StreamInterrupted(
                "the stream ended without message_stop (cut short or malformed)",
                provider=self.name,
                model=model,
            )
        usage = state.input_usage + Usage(output_tokens=state.output_tokens)
        yield StreamEvent(StreamEventKind.USAGE, usage=usage)
        yield StreamEvent(
            StreamEventKind.DONE,
            finish_reason=finish_reason(state.stop_reason, structured=state.structured),
        )

    def _map_error(self, exc: Exception, model: str) -> ProviderError:
        where: dict[str, Any] = {"provider": self.name, "model": model}
        if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
            return Timeout(f"no reply in time: {exc}", **where)
        if isinstance(exc, anthropic.APIStatusError):
            return error_for_status(
                exc.status_code,
                _message(exc),
                headers=dict(exc.response.headers),
                code=body_error_code(exc.body),
                **where,
            )
        if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
            return transport_error(exc, host=self._client.base_url, **where)
        if isinstance(exc, json.JSONDecodeError | ValidationError | anthropic.AnthropicError):
            return malformed(exc, **where)
        raise exc


def _message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", exc.message))
    return exc.message
