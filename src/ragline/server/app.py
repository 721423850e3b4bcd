"""`create_app`: the FastAPI application of `ragline serve` (run under uvicorn).

    from ragline.server import ServerSettings, create_app
    app = create_app(ServerSettings(data_dir=Path("srv")))

Health probes (`/healthz`, `/readyz`) are open; everything else needs an API key. Errors are
JSON, `{"error": {"code", "message", "type"}}`; a request FastAPI cannot parse is a 422 whose
`detail` names each bad field (and whose `error.message` lists them).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from ragline.config import load_config
from ragline.embed.base import Embedder
from ragline.errors import RaglineError
from ragline.server import api, evaluation, feedback, openai_api, ui
from ragline.server.auth import Caller, caller, state_of
from ragline.server.errors import ApiError, error_body, from_ragline
from ragline.server.limits import LimitExceeded
from ragline.server.middleware import BodyLimitMiddleware, MetricsMiddleware
from ragline.server.settings import SETTINGS_ENV, ServerSettings
from ragline.server.state import ServerState

log = logging.getLogger("ragline.server")
Authorized = Annotated[Caller, Depends(caller)]


def create_app(settings: ServerSettings | None = None, *, llm: Any = None,
               embedder: Embedder | None = None) -> FastAPI:
    """The service over `settings.data_dir`. `llm` (an `LLM`) answers instead of the model the
    configuration names; `embedder` replaces every collection's configured embedder (tests)."""
    from importlib.metadata import version

    settings = settings or ServerSettings()
    config = load_config(settings.config) if settings.config is not None else None
    state = ServerState.build(settings, config, llm=llm, embedder=embedder)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.ready = True
        try:
            yield
        finally:
            state.close()

    app = FastAPI(title="ragline", version=version("ragline"), lifespan=lifespan,
                  openapi_url=None, docs_url=None, redoc_url=None,
                  summary="Retrieval-augmented answers with verified citations.")
    app.state.ragline = state
    app.add_middleware(BodyLimitMiddleware, body_limit=settings.max_body_bytes,
                       upload_limit=settings.max_upload_bytes)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    _add_error_handlers(app)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request) -> JSONResponse:
        """Ready to serve: started, not shutting down, data directory writable."""
        current = state_of(request)
        ready = current.ready and os.access(current.settings.data_dir, os.W_OK)
        return JSONResponse({"status": "ready" if ready else "not_ready"},
                            status_code=200 if ready else 503)

    @app.get("/metrics", tags=["health"])
    async def metrics(request: Request, who: Authorized) -> Response:
        """Prometheus text: requests and latency by route, claims by verdict, tokens, cost."""
        current = state_of(request)
        current.metrics.inference.set(current.pool.admitted)
        return Response(generate_latest(current.metrics.registry),
                        media_type=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(who: Authorized) -> dict[str, Any]:
        return app.openapi()

    app.include_router(api.router)
    app.include_router(openai_api.router)
    app.include_router(feedback.router)
    app.include_router(evaluation.router)
    app.include_router(ui.router)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    def reply(status: int, body: dict[str, Any], headers: dict[str, str] | None = None
              ) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers=headers)

    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return reply(exc.status, exc.body(), exc.headers)

    async def on_limit(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, LimitExceeded)
        code = "busy" if exc.status == 503 else "rate_limited"
        return reply(exc.status, error_body(exc.status, code, exc.message),
                     {"Retry-After": str(exc.retry_after)})

    async def on_ragline(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RaglineError)
        error = from_ragline(exc)
        return reply(error.status, error.body())

    async def on_invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = jsonable_encoder(exc.errors())
        where = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}"
                          for e in errors)
        body = error_body(422, "invalid_request", f"invalid request: {where}")
        return reply(422, {**body, "detail": errors})

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return reply(exc.status_code, error_body(exc.status_code, code, str(exc.detail)),
                     dict(exc.headers or {}))

    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        key = getattr(request.state, "key_id", None)
        log.error("internal error on %s %s (key id %s)", request.method, request.url.path, key,
                  exc_info=exc)
        return reply(500, error_body(500, "internal", "internal error; the server log has the "
                                     "details"))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(LimitExceeded, on_limit)
    app.add_exception_handler(RaglineError, on_ragline)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)


def app_from_environment() -> FastAPI:
    """The app of a uvicorn worker process (`--workers N`): settings from RAGLINE_SERVER_SETTINGS."""
    raw = os.environ.get(SETTINGS_ENV)
    return create_app(ServerSettings.model_validate_json(raw) if raw else None)
