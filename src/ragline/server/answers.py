"""Answering for `/collections/{name}/ask` and `/v1/chat/completions`: `Index.ask` on a model
thread, its answer as JSON with every claim's verdict, and the streamed variant.

A stream's pieces are the pipeline's own `stream` callback; when the client goes away the next
piece raises `Cancelled` inside the pipeline, which closes the model's stream (the local
llama.cpp server stops generating) and frees the thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ragline.answer.support import ScorerKind, build_scorer
from ragline.answer.types import Answer
from ragline.errors import RaglineError
from ragline.server.errors import ApiError, from_ragline
from ragline.server.limits import Cancelled, Lease, LimitExceeded
from ragline.server.state import Generator, ServerState
from ragline.server.tracing import RequestTrace, drain_reranks, record_answer
from ragline.types import RetrievalMode, page_label

log = logging.getLogger("ragline.server")
Emit = Callable[[str], None]
T = TypeVar("T")
USER_HEADER = "x-ragline-user"


def user_of(request: Any, given: str | None) -> str | None:
    """The end user a request is for: its `user` field, else the `X-Ragline-User` header."""
    header = request.headers.get(USER_HEADER)
    return given or (header.strip()[:256] if header and header.strip() else None)


def error_code(exc: BaseException) -> tuple[int, str]:
    """(HTTP status, error code) a request failing with `exc` is answered with."""
    if isinstance(exc, ApiError):
        return exc.status, exc.code
    if isinstance(exc, LimitExceeded):
        return exc.status, "busy" if exc.status == 503 else "rate_limited"
    if isinstance(exc, RaglineError):
        error = from_ragline(exc)
        return error.status, error.code
    return 500, "internal"


def reserve_traced(state: ServerState, trace: RequestTrace) -> Lease:
    """A model-thread slot for a stream; a refusal (503) ends the request's trace."""
    try:
        return state.pool.reserve()
    except LimitExceeded as exc:
        trace.fail(*error_code(exc))
        trace.end()
        raise


async def traced(trace: RequestTrace, work: Awaitable[T]) -> T:
    """Await `work`, then end the request's root span (marked failed or cancelled)."""
    try:
        return await work
    except asyncio.CancelledError:
        trace.set(cancelled=True)
        raise
    except Exception as exc:
        trace.fail(*error_code(exc))
        raise
    finally:
        trace.end()


class AskOptions(BaseModel):
    """What an ask request may set (the same knobs as `ragline ask`)."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=4000)
    k: int = Field(5, ge=1, le=50)
    mode: RetrievalMode | None = None
    strict: bool = False
    extractive: bool = False
    min_relevance: float | None = Field(None, ge=0, le=1)
    max_tokens: int = Field(400, ge=1, le=4096)
    verifier: ScorerKind = ScorerKind.MODEL
    history: list[tuple[str, str]] = Field(default_factory=list, max_length=20)
    stream: bool = False
    user: str | None = Field(None, min_length=1, max_length=256, description=(
        "who is asking, as the application names them: an experiment's arm is sticky to it "
        "(default: the API key); also the `X-Ragline-User` header"))


@dataclass(frozen=True, slots=True)
class Routed:
    """Where a request goes: the collection's running experiment and the arm chosen, if any."""

    experiment: str | None = None
    arm: str | None = None
    overrides: dict[str, Any] | None = None


def start_trace(state: ServerState, operation: str, key_id: str, collection: str,
                user: str | None) -> tuple[RequestTrace, Routed]:
    """The request's root span, and its experiment arm (sticky to the user, else the key)."""
    from ragline.server.experiments import unit_of

    trace = state.tracing.start(operation, key_id=key_id, collection=collection, user=user)
    experiment = state.experiments.active(collection)
    if experiment is None:
        return trace, Routed()
    arm = experiment.arm_for(unit_of(user, key_id))
    trace.set(experiment=experiment.name, arm=arm)
    return trace, Routed(experiment.name, arm, experiment.overrides(arm))


def config_hash_of(index: Any, generator: Generator | None) -> str:
    """sha256 of the configuration that answers (the index's settings, as `runs` hashes them,
    with the answer model, or "extractive")."""
    from ragline.config import RUN_KNOBS
    from ragline.evaluate.manifest import config_hash

    settings = index.config.model_dump(mode="json", exclude=RUN_KNOBS)
    settings["llm"] = generator.config.model_dump(mode="json") if generator else "extractive"
    return config_hash(settings)


def run_ask(state: ServerState, collection: str, options: AskOptions, emit: Emit | None,
            trace: RequestTrace | None = None, routed: Routed | None = None) -> Answer:
    """`Index.ask` with the server's model (or the experiment arm's), on a model thread; the
    stage spans go on `trace`."""
    overrides = routed.overrides if routed else None
    index = state.catalog.index(collection, overrides)
    generator = state.generator_for(overrides)
    llm = None if options.extractive else generator.get()
    if trace is not None:
        trace.set(question=options.question, config_hash=config_hash_of(
            index, None if llm is None else generator), k=options.k,
            mode=options.mode.value if options.mode else None, strict=options.strict)
        drain_reranks()  # only this request's rerank calls are recorded
    scorer = None if options.verifier is ScorerKind.MODEL else build_scorer(
        options.verifier, embedder=index.embedder)
    answer = index.ask(options.question, llm=llm, mode=options.mode, k=options.k,
                       strict=options.strict, extractive=options.extractive or llm is None,
                       stream=emit, history=options.history or None,
                       min_relevance=options.min_relevance, max_tokens=options.max_tokens,
                       verifier=scorer)
    if llm is None and not options.extractive:
        note = generator.note or "the server answers extractively (--extractive)"
        answer.usage.setdefault("notes", []).append(note)
    state.metrics.record_answer(answer)
    if trace is not None:
        record_answer(trace, answer, time.time_ns())
    return answer


def public_hit(hit: dict[str, Any]) -> dict[str, Any]:
    """A hit or source as clients see it: without the file's path on the server."""
    return {k: v for k, v in hit.items() if k != "path"}


def answer_payload(answer: Answer, trace_id: str | None = None) -> dict[str, Any]:
    """The answer as JSON: citations with their pages, `verdicts` (one per claim) and the
    request's `trace_id` (what `POST /feedback` and `GET /traces/{id}` take)."""
    data = answer.model_dump(mode="json")
    if trace_id is not None:
        data["trace_id"] = trace_id
    data["sources"] = [public_hit(s) for s in data["sources"]]
    sources = {int(s["number"]): s for s in answer.sources}
    for citation in data["citations"]:
        source = sources.get(citation["number"], {})
        pages = source.get("pages") or []
        citation["page"], citation["pages"] = source.get("page"), pages
        citation["label"] = f"{citation['doc_id']} {page_label(pages)}".rstrip()
    data["verdicts"] = [{"sentence": c.sentence, "verdict": c.verdict.value, "cited": c.cited,
                         "flagged": c.flagged, "reason": c.reason} for c in answer.checks]
    return data


def api_error(exc: BaseException) -> ApiError:
    """The client-facing form of an error raised while answering."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, LimitExceeded):
        return ApiError(exc.status, "busy" if exc.status == 503 else "rate_limited",
                        exc.message, {"Retry-After": str(exc.retry_after)})
    if isinstance(exc, RaglineError):
        return from_ragline(exc)
    log.error("answer failed", exc_info=exc)
    return ApiError(500, "internal", "the answer failed on the server (see its log)")


async def answer_events(state: ServerState, collection: str, options: AskOptions,
                        slot: Lease, held: Lease, trace: RequestTrace | None = None,
                        routed: Routed | None = None) -> AsyncIterator[tuple[str, Any]]:
    """("text", piece)... then ("answer", Answer) or ("error", ApiError). `slot` is the model
    thread's reservation, `held` the key's concurrency slot, released when the stream ends
    (and `trace` ended: marked cancelled when the client went away first)."""
    finished = False
    try:
        streamed = False
        events = state.pool.stream(
            lambda emit: run_ask(state, collection, options, emit, trace, routed), slot)
        async for kind, value in events:
            if kind == "text":
                streamed = True
                yield kind, value
            elif kind == "done":
                finished = True
                if not streamed and value.text:  # extractive or abstained: one piece
                    yield "text", value.text
                yield "answer", value
            elif not isinstance(value, Cancelled):
                finished = True
                error = api_error(value)
                if trace is not None:
                    trace.fail(error.status, error.code)
                yield "error", error
    finally:
        held.release()
        if trace is not None:
            trace.set(streamed=True, cancelled=None if finished else True)
            trace.end()
