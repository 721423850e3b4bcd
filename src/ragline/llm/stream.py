"""Turning stream events into a result, and a cached result back into events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ragline.llm.errors import MalformedResponse
from ragline.llm.types import (
    Completion,
    FinishReason,
    RawResult,
    StreamEvent,
    StreamEventKind,
    ToolCall,
    Usage,
)


@dataclass
class _ToolParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class StreamAccumulator:
    """Everything one streamed attempt produced, in order."""

    target: Any = None
    info: Any = None
    text: list[str] = field(default_factory=list)
    tools: dict[int, _ToolParts] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    finish_reason: FinishReason = FinishReason.OTHER
    first_content_at: float | None = None

    def add(self, event: StreamEvent, now: float) -> None:
        content = event.kind in (StreamEventKind.TEXT, StreamEventKind.TOOL_CALL_DELTA)
        if content and self.first_content_at is None:
            self.first_content_at = now
        if event.kind is StreamEventKind.TEXT:
            self.text.append(event.text)
        elif event.kind is StreamEventKind.TOOL_CALL_DELTA:
            parts = self.tools.setdefault(event.tool_index, _ToolParts())
            parts.id = event.tool_call_id or parts.id
            parts.name = event.tool_name or parts.name
            parts.arguments.append(event.arguments_delta)
        elif event.kind is StreamEventKind.USAGE and event.usage is not None:
            self.usage = event.usage
        elif event.kind is StreamEventKind.DONE and event.finish_reason is not None:
            self.finish_reason = event.finish_reason

    def tool_calls(self, model: str) -> tuple[ToolCall, ...]:
        calls = []
        for index in sorted(self.tools):
            parts = self.tools[index]
            raw = "".join(parts.arguments)
            try:
                arguments = json.loads(raw) if raw else {}
            except json.JSONDecodeError as exc:
                raise MalformedResponse(
                    f"streamed tool-call arguments are not JSON: {raw[:200]!r}", model=model
                ) from exc
            calls.append(ToolCall(parts.id, parts.name, arguments))
        return tuple(calls)

    def result(self, model: str) -> RawResult:
        return RawResult(
            text="".join(self.text),
            model=model,
            usage=self.usage,
            finish_reason=self.finish_reason,
            tool_calls=self.tool_calls(model),
        )


def replay_events(result: RawResult, completion: Completion) -> Iterator[StreamEvent]:
    """A cached result as a stream: the text in one piece, each tool call whole, DONE."""
    if result.text:
        yield StreamEvent(StreamEventKind.TEXT, text=result.text)
    for index, call in enumerate(result.tool_calls):
        yield StreamEvent(
            StreamEventKind.TOOL_CALL_DELTA,
            tool_index=index,
            tool_call_id=call.id,
            tool_name=call.name,
            arguments_delta=json.dumps(call.arguments),
        )
    yield StreamEvent(
        StreamEventKind.DONE, finish_reason=result.finish_reason, completion=completion
    )
