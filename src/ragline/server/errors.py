"""The service's errors: one JSON shape, `{"error": {"code", "message", "type"}}` (what OpenAI
clients read too), and the HTTP status each ragline error maps to. No traceback reaches a
client: anything unexpected is logged here and answered 500 with a generic message."""

from __future__ import annotations

from typing import Any

from ragline.answer.pipeline import EmptyIndex
from ragline.answer.types import InvalidAnswerInput
from ragline.errors import (
    ConfigError,
    DocumentError,
    EmptyQuery,
    IndexDamaged,
    IndexLocked,
    IndexNotFound,
    IndexVersionError,
    RaglineError,
    StoreUnavailable,
)


class ApiError(Exception):
    """An answer other than 2xx, with a message that says what to do next."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.code, self.message)


def error_body(status: int, code: str, message: str) -> dict[str, Any]:
    kind = ("authentication_error" if status == 401 else "permission_error" if status == 403
            else "rate_limit_error" if status == 429 else "server_error" if status >= 500
            else "invalid_request_error")
    return {"error": {"code": code, "message": message, "type": kind}}


# the most specific class first
_STATUS: tuple[tuple[type[RaglineError], int, str], ...] = (
    (EmptyIndex, 409, "collection_empty"),
    (EmptyQuery, 400, "empty_query"),
    (InvalidAnswerInput, 422, "invalid_answer"),
    (IndexNotFound, 404, "not_found"),
    (IndexLocked, 409, "locked"),
    (IndexVersionError, 409, "index_version"),
    (IndexDamaged, 500, "index_damaged"),
    (StoreUnavailable, 503, "store_unavailable"),
    (DocumentError, 422, "document_error"),
    (ConfigError, 400, "invalid_request"),
)


def from_ragline(exc: RaglineError) -> ApiError:
    """The API error a ragline error becomes (its message is written for users already)."""
    for kind, status, code in _STATUS:
        if isinstance(exc, kind):
            return ApiError(status, code, str(exc))
    return ApiError(400, "invalid_request", str(exc))
