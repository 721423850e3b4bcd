"""ASGI middleware: request metrics (Prometheus) and request size limits.

Both are plain ASGI, so they see streaming responses whole (a stream's latency is until its
last byte) and can refuse a body before any of it is parsed.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ragline.server.errors import error_body

Scope = dict[str, Any]
Message = dict[str, Any]
_UPLOAD = re.compile(r"^/collections/[^/]+/documents/?$")
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("ragline_http_requests", "HTTP requests by route and status.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("ragline_http_request_duration_seconds",
                                 "Time from request to the last byte of the response, by route.",
                                 ["method", "route"], buckets=_BUCKETS, registry=self.registry)
        self.claims = Counter("ragline_answer_claims", "Verified claims of answers, by verdict.",
                              ["verdict"], registry=self.registry)
        self.tokens = Counter("ragline_llm_tokens", "Tokens of answer generation, by model "
                              "and kind.", ["model", "kind"], registry=self.registry)
        self.cost = Counter("ragline_llm_cost_usd", "Cost of answer generation in USD, by model "
                            "(priced models only).", ["model"], registry=self.registry)
        self.inference = Gauge("ragline_inference_admitted", "Requests running or waiting for "
                               "a model thread.", registry=self.registry)

    def record_answer(self, answer: Any) -> None:
        for check in answer.checks:
            self.claims.labels(check.verdict.value).inc()
        usage = answer.usage
        model = str(usage.get("served_model") or usage.get("model") or "")
        if model and isinstance(usage.get("tokens"), dict):
            for kind, count in usage["tokens"].items():
                if count:
                    self.tokens.labels(model, kind.removesuffix("_tokens")).inc(count)
        if model and isinstance(usage.get("cost_usd"), int | float):
            self.cost.labels(model).inc(usage["cost_usd"])


class MetricsMiddleware:
    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, route, str(status[0])).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)


class BodyLimitMiddleware:
    """413 for a body over the limit: uploads `upload_limit`, anything else `body_limit`.
    A declared Content-Length is refused before reading; a chunked body is counted as it
    arrives, and the app's own reply is replaced by the 413."""

    def __init__(self, app: Any, *, body_limit: int, upload_limit: int) -> None:
        self.app, self.body_limit, self.upload_limit = app, body_limit, upload_limit

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope.get("method") == "POST" and bool(_UPLOAD.match(scope.get("path", "")))
        limit = self.upload_limit if upload else self.body_limit
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(send, limit, upload)
            return
        seen, over, started = [0], [False], [False]

        async def receiving() -> Message:
            if over[0]:
                return {"type": "http.disconnect"}
            message: Message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > limit:
                    over[0] = True
                    return {"type": "http.disconnect"}
            return message

        async def sending(message: Message) -> None:
            if over[0] and not started[0]:
                return  # the app's answer to a cut body: the 413 below replaces it
            started[0] = True
            await send(message)

        try:
            await self.app(scope, receiving, sending)
        except Exception:
            if not over[0]:
                raise
        if over[0] and not started[0]:
            await _too_large(send, limit, upload)


async def _too_large(send: Any, limit: int, upload: bool) -> None:
    hint = ("`ragline serve --max-upload-bytes` raises it" if upload
            else "send less, or upload documents instead")
    body = json.dumps(error_body(413, "too_large", f"the request body is over the limit of "
                                 f"{limit:,} bytes ({hint})")).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
