"""ragline's LLM layer: one interface for OpenAI, Anthropic, OpenAI-compatible servers and a
local GGUF model, with one retry policy, a response cache, a cost ledger, token counting,
structured output and tool calling."""

from __future__ import annotations

from ragline.llm.cache import ResponseCache, cache_allowed, cache_key
from ragline.llm.client import LLM, ModelRef, as_messages, parse_model_ref
from ragline.llm.config import LLMConfig, build_llm
from ragline.llm.errors import (
    AuthenticationFailed,
    BadRequest,
    ConnectionLost,
    ContentPolicy,
    LLMConfigError,
    MalformedResponse,
    Overloaded,
    PermissionDenied,
    ProviderError,
    RateLimited,
    RetryBudgetExhausted,
    ServerError,
    StreamInterrupted,
    StructuredOutputError,
    Timeout,
)
from ragline.llm.ledger import CallRecord, Ledger, SummaryRow
from ragline.llm.pricing import Price, PriceTable, default_prices, load_prices
from ragline.llm.providers import Provider, build_provider
from ragline.llm.retry import Jitter, RetryExecutor, RetryPolicy
from ragline.llm.tokens import count_prompt_tokens
from ragline.llm.tools import ToolError, run_tool_calls, tool_from_function
from ragline.llm.types import (
    CallOptions,
    Completion,
    FinishReason,
    Message,
    ProviderName,
    Role,
    StreamEvent,
    StreamEventKind,
    ToolCall,
    ToolSpec,
    Usage,
)

__all__ = [
    "LLM",
    "AuthenticationFailed",
    "BadRequest",
    "CallOptions",
    "CallRecord",
    "Completion",
    "ConnectionLost",
    "ContentPolicy",
    "FinishReason",
    "Jitter",
    "LLMConfig",
    "LLMConfigError",
    "Ledger",
    "MalformedResponse",
    "Message",
    "ModelRef",
    "Overloaded",
    "PermissionDenied",
    "Price",
    "PriceTable",
    "Provider",
    "ProviderError",
    "ProviderName",
    "RateLimited",
    "ResponseCache",
    "RetryBudgetExhausted",
    "RetryExecutor",
    "RetryPolicy",
    "Role",
    "ServerError",
    "StreamEvent",
    "StreamEventKind",
    "StreamInterrupted",
    "StructuredOutputError",
    "SummaryRow",
    "Timeout",
    "ToolCall",
    "ToolError",
    "ToolSpec",
    "Usage",
    "as_messages",
    "build_llm",
    "build_provider",
    "cache_allowed",
    "cache_key",
    "count_prompt_tokens",
    "default_prices",
    "load_prices",
    "parse_model_ref",
    "run_tool_calls",
    "tool_from_function",
]
