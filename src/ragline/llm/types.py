"""The data of the LLM layer: messages, options, usage, completions and stream events.

Frozen dataclasses with explicit fields. Token classes follow one convention for every
provider: `Usage.input_tokens` counts *all* prompt tokens, and `cached_input_tokens` /
`cache_write_tokens` are the parts of it read from / written to the provider's prompt cache;
`output_tokens` counts all generated tokens and `reasoning_tokens` is the hidden part of it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Role(enum.StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class ProviderName(enum.StrEnum):
    """The providers a user can name in configuration and on the command line."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    OPENAI_COMPATIBLE = "openai-compatible"
    LOCAL = "local"


class FinishReason(enum.StrEnum):
    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    CONTENT_FILTER = "content_filter"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call the model asked for: `arguments` is the parsed JSON object."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the model may call: `parameters` is a JSON schema of an object."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message.

    `cache=True` marks the message as the end of a stable prefix (e.g. retrieved context);
    providers with explicit prompt caching (Anthropic) put a cache breakpoint there.
    """

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    cache: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.role, Role):  # accept "user" as well as Role.USER
            object.__setattr__(self, "role", Role(self.role))

    @classmethod
    def system(cls, content: str, *, cache: bool = False) -> Message:
        return cls(Role.SYSTEM, content, cache=cache)

    @classmethod
    def user(cls, content: str, *, cache: bool = False) -> Message:
        return cls(Role.USER, content, cache=cache)

    @classmethod
    def assistant(cls, content: str, tool_calls: tuple[ToolCall, ...] = ()) -> Message:
        return cls(Role.ASSISTANT, content, tool_calls=tool_calls)

    @classmethod
    def tool(cls, tool_call_id: str, content: str) -> Message:
        return cls(Role.TOOL, content, tool_call_id=tool_call_id)


@dataclass(frozen=True, slots=True)
class CallOptions:
    """Per-call settings.

    `purpose` tags the call in the ledger (answer, judge, embedding, rewrite, sample, ...).
    `cache=None` means "cache only when temperature is 0"; `repeat=True` (or
    `purpose="sample"`) marks a repeated evaluation sample, never served from the cache.
    """

    temperature: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    timeout: float | None = None
    purpose: str = "answer"
    cache: bool | None = None
    repeat: bool = False


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens by class (see the module docstring for what each class includes)."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.output_tokens + other.output_tokens,
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "output_tokens": self.output_tokens,
        }


@dataclass(frozen=True, slots=True)
class ResponseSchema:
    """A JSON schema the reply must follow (structured output)."""

    name: str
    schema: dict[str, Any]
    strict: bool = True


@dataclass(frozen=True, slots=True)
class Request:
    """Everything a provider needs for ONE attempt."""

    model: str
    messages: tuple[Message, ...]
    options: CallOptions = CallOptions()
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str | None = None
    response_schema: ResponseSchema | None = None


@dataclass(frozen=True, slots=True)
class RawResult:
    """What one successful provider attempt returned."""

    text: str
    model: str
    usage: Usage
    finish_reason: FinishReason
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class Completion:
    """The result of one logical call (possibly several attempts, summed in `usage`).

    `cost_usd` is None when a model has no row in the price table ("unpriced").
    """

    text: str
    model: str
    provider: str
    usage: Usage
    finish_reason: FinishReason
    tool_calls: tuple[ToolCall, ...] = ()
    parsed: Any = None
    latency_s: float = 0.0
    time_to_first_token_s: float | None = None
    attempts: int = 1
    cost_usd: float | None = None
    cached: bool = False
    call_id: str = ""


class StreamEventKind(enum.StrEnum):
    TEXT = "text"
    TOOL_CALL_DELTA = "tool_call_delta"
    USAGE = "usage"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event of a stream.

    TEXT carries `text`; TOOL_CALL_DELTA carries `tool_index`, and on its first delta
    `tool_call_id`/`tool_name`, then `arguments_delta` pieces of JSON; USAGE carries `usage`;
    DONE is last and carries `finish_reason` (and, from `LLM.stream`, the whole `completion`).
    """

    kind: StreamEventKind
    text: str = ""
    tool_index: int = 0
    tool_call_id: str | None = None
    tool_name: str | None = None
    arguments_delta: str = ""
    usage: Usage | None = None
    finish_reason: FinishReason | None = None
    completion: Completion | None = field(default=None, compare=False)
