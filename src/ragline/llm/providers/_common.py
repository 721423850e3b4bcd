"""Helpers shared by the SDK-backed providers: status → typed error, Retry-After, JSON args."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from typing import Any

from ragline.llm.errors import (
    AuthenticationFailed,
    BadRequest,
    ConnectionLost,
    ContentPolicy,
    MalformedResponse,
    Overloaded,
    PermissionDenied,
    ProviderError,
    RateLimited,
    ServerError,
    Timeout,
)

_POLICY_MARKERS = ("content_policy", "content_filter", "safety", "moderation")


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return float(millis) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time())


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str,
    model: str,
    headers: Mapping[str, str],
    code: str = "",
) -> ProviderError:
    """Map an HTTP error status (and the body's error type/code) to a typed error."""
    if status == 429:
        return RateLimited(
            message, retry_after=parse_retry_after(headers), provider=provider, model=model
        )
    kind = _status_class(status, code)
    return kind(message, status=status, provider=provider, model=model)


def _status_class(status: int, code: str) -> type[ProviderError]:
    if status == 529 or code == "overloaded_error":
        return Overloaded
    fixed: dict[int, type[ProviderError]] = {
        408: Timeout,
        401: AuthenticationFailed,
        403: PermissionDenied,
    }
    if status in fixed:
        return fixed[status]
    if any(marker in code.lower() for marker in _POLICY_MARKERS):
        return ContentPolicy
    return ServerError if status >= 500 else BadRequest


def body_error_code(body: object) -> str:
    """The `code` or `type` of an error body in OpenAI's or Anthropic's format."""
    if not isinstance(body, dict):
        return ""
    inner = body.get("error", body)
    if not isinstance(inner, dict):
        return ""
    return str(inner.get("code") or inner.get("type") or "")


def transport_error(
    exc: Exception, *, provider: str, model: str, host: object = None
) -> ProviderError:
    """A connection-level failure (reset, refused, incomplete body), naming the server."""
    at = f" talking to {host}" if host else ""
    return ConnectionLost(f"{type(exc).__name__}{at}: {exc}", provider=provider, model=model)


def malformed(exc: Exception | str, *, provider: str, model: str) -> MalformedResponse:
    detail = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return MalformedResponse(str(detail), provider=provider, model=model)


def parse_arguments(raw: str | None, *, provider: str, model: str) -> dict[str, Any]:
    """Tool-call arguments as a dict; invalid JSON is a malformed response."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise malformed(
            f"tool-call arguments are not JSON: {raw[:200]!r}", provider=provider, model=model
        ) from exc
    if not isinstance(value, dict):
        raise malformed(
            f"tool-call arguments are not an object: {raw[:200]!r}", provider=provider, model=model
        )
    return value
