"""OpenAI Chat Completions through the official SDK: one attempt, typed errors.

The SDK clients are built with `max_retries=0`: the SDK's own retries would be hidden
extra calls that neither the ledger nor the `RetryPolicy` knows about.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai
from pydantic import ValidationError

from ragline.llm.errors import LLMConfigError, ProviderError, StreamInterrupted
from ragline.llm.errors import Timeout as TimeoutError_
from ragline.llm.providers._common import (
    body_error_code,
    error_for_status,
    malformed,
    parse_arguments,
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

_FINISH = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
    "content_filter": FinishReason.CONTENT_FILTER,
}


def finish_reason(value: str | None) -> FinishReason:
    return _FINISH.get(value or "", FinishReason.OTHER)


def message_to_openai(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role.value, "content": message.content}
    if message.role is Role.TOOL:
        out["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        out["content"] = message.content or None
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
            }
            for c in message.tool_calls
        ]
    return out


def request_params(request: Request, *, max_tokens_field: str) -> dict[str, Any]:
    """The keyword arguments of `chat.completions.create` for one request."""
    opts = request.options
    params: dict[str, Any] = {
        "model": request.model,
        "messages": [message_to_openai(m) for m in request.messages],
    }
    optional: dict[str, Any] = {
        "temperature": opts.temperature,
        max_tokens_field: opts.max_tokens,
        "seed": opts.seed,
        "stop": list(opts.stop) or None,
    }
    params.update({k: v for k, v in optional.items() if v is not None})
    if request.tools:
        params["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in request.tools
        ]
    if request.tool_choice:
        params["tool_choice"] = {"type": "function", "function": {"name": request.tool_choice}}
    if request.response_schema:
        schema = request.response_schema
        params["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": schema.name, "schema": schema.schema, "strict": schema.strict},
        }
    return params


def usage_from_openai(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    prompt_details = getattr(usage, "prompt_tokens_details", None)
    completion_details = getattr(usage, "completion_tokens_details", None)
    return Usage(
        input_tokens=usage.prompt_tokens or 0,
        cached_input_tokens=getattr(prompt_details, "cached_tokens", None) or 0,
        cache_write_tokens=getattr(prompt_details, "cache_write_tokens", None) or 0,
        reasoning_tokens=getattr(completion_details, "reasoning_tokens", None) or 0,
        output_tokens=usage.completion_tokens or 0,
    )


@dataclass
class _StreamState:
    """What a stream has said so far: finish reason and usage arrive in separate chunks."""

    finish: str | None = None
    usage: Usage | None = None
    tool_ids: dict[int, str] = field(default_factory=dict)


class OpenAIProvider:
    """The `openai` provider (also the base of `openai-compatible`)."""

    name = "openai"
    api_key_env = "OPENAI_API_KEY"
    max_tokens_field = "max_completion_tokens"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        key = api_key or os.environ.get(self.api_key_env) or self._default_key()
        if not key:
            raise LLMConfigError(
                f"no API key for provider {self.name!r}: export {self.api_key_env} (or name another variable with [llm] api_key_env)"
            )
        common: dict[str, Any] = {
            "api_key": key,
            "base_url": base_url,
            "timeout": timeout,
            "max_retries": 0,
        }
        self.base_url = base_url
        self._client = openai.OpenAI(**common)
        self._aclient = openai.AsyncOpenAI(**common)

    def _default_key(self) -> str | None:
        return None

    def params(self, request: Request, *, stream: bool) -> dict[str, Any]:
        params = request_params(request, max_tokens_field=self.max_tokens_field)
        if request.options.timeout is not None:
            params["timeout"] = request.options.timeout
        if stream:
            params["stream"] = True
            params["stream_options"] = {"include_usage": True}
        return params

    def complete(self, request: Request) -> RawResult:
        try:
            response = self._client.chat.completions.create(**self.params(request, stream=False))
            return self._parse(response, request.model)
        except ProviderError:
            raise
        except Exception as exc:
            raise self._map_error(exc, request.model) from exc

    async def acomplete(self, request: Request) -> RawResult:
        try:
            response = await self._aclient.chat.completions.create(
                **self.params(request, stream=False)
            )
            return self._parse(response, request.model)
        except ProviderError:
            raise
        except Exception as exc:
            raise self._map_error(exc, request.model) from exc

    def stream(self, request: Request) -> Iterator[StreamEvent]:
        state = _StreamState()
        try:
            chunks = self._client.chat.completions.create(**self.params(request, stream=True))
            for chunk in chunks:
                yield from self._chunk_events(chunk, state, request.model)
        except ProviderError:
            raise
        except Exception as exc:
            raise self._map_error(exc, request.model) from exc
        yield from self._finish(state, request.model)

    async def astream(self, request: Request) -> AsyncIterator[StreamEvent]:
        state = _StreamState()
        try:
            chunks = await self._aclient.chat.completions.create(
                **self.params(request, stream=True)
            )
            async for chunk in chunks:
                for event in self._chunk_events(chunk, state, request.model):
                    yield event
        except ProviderError:
            raise
        except Exception as exc:
            raise self._map_error(exc, request.model) from exc
        for event in self._finish(state, request.model):
            yield event

    def _parse(self, response: Any, model: str) -> RawResult:
        try:
            return self._parse_unchecked(response, model)
        except (AttributeError, TypeError, KeyError, IndexError) as exc:
            raise malformed(exc, provider=self.name, model=model) from exc

    def _parse_unchecked(self, response: Any, model: str) -> RawResult:
        choices = getattr(response, "choices", None)
        if not choices:
            raise malformed(
                f"reply has no choices: {str(response)[:200]!r}", provider=self.name, model=model
            )
        message = choices[0].message
        calls = tuple(
            ToolCall(
                c.id,
                c.function.name,
                parse_arguments(c.function.arguments, provider=self.name, model=model),
            )
            for c in (message.tool_calls or [])
        )
        return RawResult(
            text=message.content or "",
            model=response.model or model,
            usage=usage_from_openai(response.usage),
            finish_reason=finish_reason(choices[0].finish_reason),
            tool_calls=calls,
        )

    def _chunk_events(self, chunk: Any, state: _StreamState, model: str) -> list[StreamEvent]:
        if getattr(chunk, "usage", None) is not None:
            state.usage = usage_from_openai(chunk.usage)
        events: list[StreamEvent] = []
        for choice in chunk.choices or []:
            delta = choice.delta
            if delta is not None and delta.content:
                events.append(StreamEvent(StreamEventKind.TEXT, text=delta.content))
            for call in (delta.tool_calls if delta is not None else None) or []:
                events.append(self._tool_delta(call, state))
            if choice.finish_reason:
                state.finish = choice.finish_reason
        return events

    @staticmethod
    def _tool_delta(call: Any, state: _StreamState) -> StreamEvent:
        first = call.index not in state.tool_ids
        if first:
            state.tool_ids[call.index] = call.id or f"call_{call.index}"
        function = call.function
        return StreamEvent(
            StreamEventKind.TOOL_CALL_DELTA,
            tool_index=call.index,
            tool_call_id=state.tool_ids[call.index] if first else None,
            tool_name=(function.name if function is not None else None) if first else None,
            arguments_delta=(function.arguments if function is not None else None) or "",
        )

    def _finish(self, state: _StreamState, model: str) -> Iterator[StreamEvent]:
        if state.finish is None:
            raise StreamInterrupted(
                "the stream ended without a finish_reason ([DONE] missing or cut short)",
                provider=self.name,
                model=model,
            )
        if state.usage is not None:
            yield StreamEvent(StreamEventKind.USAGE, usage=state.usage)
        yield StreamEvent(StreamEventKind.DONE, finish_reason=finish_reason(state.finish))

    def _map_error(self, exc: Exception, model: str) -> ProviderError:
        where: dict[str, Any] = {"provider": self.name, "model": model}
        if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
            return TimeoutError_(f"no reply in time: {exc}", **where)
        if isinstance(exc, openai.APIStatusError):
            return error_for_status(
                exc.status_code,
                exc.message,
                headers=dict(exc.response.headers),
                code=body_error_code(exc.body),
                **where,
            )
        if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
            return transport_error(exc, host=self._client.base_url, **where)
        if isinstance(exc, json.JSONDecodeError | ValidationError | openai.OpenAIError):
            return malformed(exc, **where)
        raise exc
