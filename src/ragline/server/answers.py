"""Answering for `/collections/{name}/ask` and `/v1/chat/completions`: `Index.ask` on a model
thread, its answer as JSON with every claim's verdict, and the streamed variant.

A stream's pieces are the pipeline's own `stream` callback; when the client goes away the next
piece raises `Cancelled` inside the pipeline, which closes the model's stream (the local
llama.cpp server stops generating) and frees the thread.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ragline.answer.support import ScorerKind, build_scorer
from ragline.answer.types import Answer
from ragline.errors import RaglineError
from ragline.server.errors import ApiError, from_ragline
from ragline.server.limits import Cancelled, Lease, LimitExceeded
from ragline.server.state import ServerState
from ragline.types import RetrievalMode, page_label

log = logging.getLogger("ragline.server")
Emit = Callable[[str], None]


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


def run_ask(state: ServerState, collection: str, options: AskOptions, emit: Emit | None) -> Answer:
    """`Index.ask` with the server's model (on a model thread)."""
    index = state.catalog.index(collection)
    llm = None if options.extractive else state.generator.get()
    scorer = None if options.verifier is ScorerKind.MODEL else build_scorer(
        options.verifier, embedder=index.embedder)
    answer = index.ask(options.question, llm=llm, mode=options.mode, k=options.k,
                       strict=options.strict, extractive=options.extractive or llm is None,
                       stream=emit, history=options.history or None,
                       min_relevance=options.min_relevance, max_tokens=options.max_tokens,
                       verifier=scorer)
    if llm is None and not options.extractive:
        note = state.generator.note or "the server answers extractively (--extractive)"
        answer.usage.setdefault("notes", []).append(note)
    state.metrics.record_answer(answer)
    return answer


def public_hit(hit: dict[str, Any]) -> dict[str, Any]:
    """A hit or source as clients see it: without the file's path on the server."""
    return {k: v for k, v in hit.items() if k != "path"}


def answer_payload(answer: Answer) -> dict[str, Any]:
    """The answer as JSON: citations with their pages, and `verdicts`, one per claim."""
    data = answer.model_dump(mode="json")
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
                        slot: Lease, held: Lease) -> AsyncIterator[tuple[str, Any]]:
    """("text", piece)... then ("answer", Answer) or ("error", ApiError). `slot` is the model
    thread's reservation, `held` the key's concurrency slot, released when the stream ends."""
    try:
        streamed = False
        events = state.pool.stream(lambda emit: run_ask(state, collection, options, emit), slot)
        async for kind, value in events:
            if kind == "text":
                streamed = True
                yield kind, value
            elif kind == "done":
                if not streamed and value.text:  # extractive or abstained: one piece
                    yield "text", value.text
                yield "answer", value
            elif not isinstance(value, Cancelled):
                yield "error", api_error(value)
    finally:
        held.release()
