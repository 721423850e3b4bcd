"""ragline's LLM layer: one interface for OpenAI, Anthropic, OpenAI-compatible servers and a
local GGUF model, with one retry policy, a response cache, a cost ledger, token counting,
structured output and tool calling."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragline._lazy import lazy_exports

# Imported on first use (PEP 562): a command that never calls a model does not pay for the SDKs.
_EXPORTS: dict[str, str] = {
    "LLM": "ragline.llm.client",
    "AuthenticationFailed": "ragline.llm.errors",
    "BadRequest": "ragline.llm.errors",
    "CallOptions": "ragline.llm.types",
    "CallRecord": "ragline.llm.ledger",
    "Completion": "ragline.llm.types",
    "ConnectionLost": "ragline.llm.errors",
    "ContentPolicy": "ragline.llm.errors",
    "FinishReason": "ragline.llm.types",
    "Jitter": "ragline.llm.retry",
    "LLMConfig": "ragline.llm.config",
    "LLMConfigError": "ragline.llm.errors",
    "Ledger": "ragline.llm.ledger",
    "MalformedResponse": "ragline.llm.errors",
    "Message": "ragline.llm.types",
    "ModelRef": "ragline.llm.client",
    "Overloaded": "ragline.llm.errors",
    "PermissionDenied": "ragline.llm.errors",
    "Price": "ragline.llm.pricing",
    "PriceTable": "ragline.llm.pricing",
    "Provider": "ragline.llm.providers",
    "ProviderError": "ragline.llm.errors",
    "ProviderName": "ragline.llm.types",
    "RateLimited": "ragline.llm.errors",
    "ResponseCache": "ragline.llm.cache",
    "RetryBudgetExhausted": "ragline.llm.errors",
    "RetryExecutor": "ragline.llm.retry",
    "RetryPolicy": "ragline.llm.retry",
    "Role": "ragline.llm.types",
    "ServerError": "ragline.llm.errors",
    "StreamEvent": "ragline.llm.types",
    "StreamEventKind": "ragline.llm.types",
    "StreamInterrupted": "ragline.llm.errors",
    "StructuredOutputError": "ragline.llm.errors",
    "SummaryRow": "ragline.llm.ledger",
    "Timeout": "ragline.llm.errors",
    "ToolCall": "ragline.llm.types",
    "ToolError": "ragline.llm.tools",
    "ToolSpec": "ragline.llm.types",
    "Usage": "ragline.llm.types",
    "as_messages": "ragline.llm.client",
    "build_llm": "ragline.llm.config",
    "build_provider": "ragline.llm.providers",
    "cache_allowed": "ragline.llm.cache",
    "cache_key": "ragline.llm.cache",
    "count_prompt_tokens": "ragline.llm.tokens",
    "default_prices": "ragline.llm.pricing",
    "load_prices": "ragline.llm.pricing",
    "parse_model_ref": "ragline.llm.client",
    "run_tool_calls": "ragline.llm.tools",
    "tool_from_function": "ragline.llm.tools",
}

if TYPE_CHECKING:
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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
