"""The service's own endpoints: collections, documents, ingest jobs, search, ask and verify.

Each handler checks the key's access, then calls the Python API: on a model thread (`pool`)
for anything that embeds, searches, generates or verifies, on a plain worker thread for short
bookkeeping (listing, file writes).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ragline.answer.support import ScorerKind, build_scorer
from ragline.answer.types import VerifyCitation, VerifyInput
from ragline.errors import RaglineError
from ragline.ingest import IngestSummary
from ragline.server.answers import (
    AskOptions,
    answer_events,
    answer_payload,
    config_hash_of,
    public_hit,
    reserve_traced,
    run_ask,
    start_trace,
    traced,
    user_of,
)
from ragline.server.auth import Caller, caller, state_of
from ragline.server.errors import ApiError
from ragline.server.jobs import Job, JobProgress
from ragline.server.state import ServerState
from ragline.server.tracing import (
    TRACE_HEADER,
    drain_reranks,
    record_search,
    record_verify,
)
from ragline.server.uploads import (
    PendingFile,
    check_content,
    check_suffix,
    safe_name,
    temp_file,
    too_large,
)
from ragline.types import FusionMethod, RetrievalMode, page_label

log = logging.getLogger("ragline.server")
router = APIRouter()
Authorized = Annotated[Caller, Depends(caller)]
_CHUNK = 1 << 20
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class CollectionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
                      description="lower-case letters, digits, '-' and '_'")


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=4000)
    k: int | None = Field(None, ge=1, le=100)
    mode: RetrievalMode | None = None
    fusion: FusionMethod | None = None
    alpha: float | None = Field(None, ge=0, le=1)
    where: dict[str, str | list[str]] = Field(default_factory=dict)
    path_prefix: str | None = None
    user: str | None = Field(None, min_length=1, max_length=256,
                             description="the end user (an experiment's arm is sticky to it)")


class VerifyRequest(BaseModel):
    """`ragline verify`'s answer file, and which support scorer to use."""

    model_config = ConfigDict(extra="forbid")

    question: str
    answer: str
    citations: list[VerifyCitation]
    verifier: ScorerKind = ScorerKind.MODEL
    checks: bool = True


# ---------------------------------------------------------------- collections


@router.get("/collections")
async def list_collections(request: Request, who: Authorized) -> dict[str, Any]:
    catalog = state_of(request).catalog
    names = [n for n in catalog.names() if who.key.allows(n)]
    found = [await anyio.to_thread.run_sync(catalog.summary, n) for n in names]
    return {"collections": found}


@router.post("/collections", status_code=201)
async def create_collection(body: CollectionRequest, request: Request,
                            who: Authorized) -> dict[str, Any]:
    who.require(body.name)
    catalog = state_of(request).catalog
    await anyio.to_thread.run_sync(catalog.create, body.name)
    return await anyio.to_thread.run_sync(catalog.summary, body.name)


@router.delete("/collections/{name}")
async def delete_collection(name: str, request: Request, who: Authorized) -> dict[str, Any]:
    who.require(name)
    state = state_of(request)
    state.catalog.get(name)
    if await anyio.to_thread.run_sync(state.jobs.active, name):
        raise ApiError(409, "job_running", f"collection {name!r} has an ingest job queued or "
                       "running; delete it when the job is done (GET /jobs/{id})")
    await anyio.to_thread.run_sync(state.catalog.delete, name)
    return {"deleted": name}


# ---------------------------------------------------------------- documents and jobs


@router.post("/collections/{name}/documents", status_code=201)
async def upload_documents(
    name: str, request: Request, who: Authorized,
    files: Annotated[list[UploadFile], File(description="one or more files to add")],
    ingest: Annotated[bool, Query(description="start an ingest job when stored")] = False,
) -> dict[str, Any]:
    """Store files in the collection (multipart field `files`); ingest them with `?ingest=true`
    or `POST /collections/{name}/ingest`."""
    who.require(name)
    state = state_of(request)
    collection = state.catalog.get(name)
    limit, total, pending = state.settings.max_upload_bytes, 0, []
    try:
        for upload in files:
            stored = await _receive(upload, collection.uploads, limit - total)
            total += stored.size
            pending.append(stored)
    except BaseException:
        for stored in pending:
            stored.discard()
        raise
    for stored in pending:
        stored.commit(collection.uploads)
    documents = [{"name": p.name, "bytes": p.size,
                  **({"renamed_from": p.original} if p.original != p.name else {})}
                 for p in pending]
    job = await anyio.to_thread.run_sync(_start_ingest, state, name) if ingest else None
    return {"collection": name, "documents": documents,
            "job": job.to_dict() if job else None}


async def _receive(upload: UploadFile, folder: Path, budget: int) -> PendingFile:
    """Write one upload to a hidden temporary file, checking its type and size as it comes."""
    name = safe_name(upload.filename)
    check_suffix(name)
    fd, temp = await anyio.to_thread.run_sync(temp_file, folder)
    stored = PendingFile(name=name, original=upload.filename, temp=temp, size=0)
    try:
        with open(fd, "wb") as out:
            while chunk := await upload.read(_CHUNK):
                if stored.size == 0:
                    check_content(name, chunk)
                stored.size += len(chunk)
                if stored.size > budget:
                    raise too_large(budget)
                await anyio.to_thread.run_sync(out.write, chunk)
        if stored.size == 0:
            raise ApiError(422, "empty_file", f"{name}: the file is empty")
    except BaseException:
        stored.discard()
        raise
    return stored


@router.get("/collections/{name}/documents")
async def list_documents(name: str, request: Request, who: Authorized) -> dict[str, Any]:
    who.require(name)
    state = state_of(request)
    return {"collection": name,
            "documents": await anyio.to_thread.run_sync(_documents, state, name)}


def _documents(state: ServerState, name: str) -> list[dict[str, Any]]:
    collection = state.catalog.get(name)
    files = sorted(p for p in collection.uploads.glob("*")
                   if p.is_file() and not p.name.startswith(".")) \
        if collection.uploads.exists() else []
    rows = [{"name": p.name, "bytes": p.stat().st_size, "status": "pending"} for p in files]
    if not rows or not state.catalog.has_index(collection):
        return rows
    with state.catalog.opened(name) as index:
        store = index.store
        failed = {path: (reason, message) for path, reason, message in store.failures()}
        for path, row in zip(files, rows, strict=True):
            key = str(path.resolve())
            recorded = store.file_state(key)
            if key in failed:
                row.update(status="failed", reason=failed[key][0], message=failed[key][1])
            elif recorded is not None and (recorded.size, recorded.mtime_ns) == (
                    path.stat().st_size, path.stat().st_mtime_ns):
                row.update(status="indexed", doc_ids=list(recorded.doc_ids))
    return rows


@router.delete("/collections/{name}/documents/{document}")
async def delete_document(name: str, document: str, request: Request,
                          who: Authorized) -> dict[str, Any]:
    """Remove an uploaded file; the ingest job started here removes it from the index."""
    who.require(name)
    state = state_of(request)
    collection = state.catalog.get(name)
    path = collection.uploads / safe_name(document)
    if safe_name(document) != document or not path.is_file():
        raise ApiError(404, "document_not_found", f"collection {name!r} has no uploaded "
                       f"document {document!r} (GET /collections/{name}/documents lists them)")
    path.unlink()
    job = await anyio.to_thread.run_sync(_start_ingest, state, name)
    return {"deleted": document, "job": job.to_dict()}


@router.post("/collections/{name}/ingest", status_code=202)
async def ingest_collection(name: str, request: Request, who: Authorized) -> JSONResponse:
    """Ingest the collection's uploads (new and changed files; removed ones are pruned) as a
    background job; poll `GET /jobs/{id}`."""
    who.require(name)
    state = state_of(request)
    state.catalog.get(name)
    job = await anyio.to_thread.run_sync(_start_ingest, state, name)
    return JSONResponse(job.to_dict(), status_code=202, headers={"Location": f"/jobs/{job.id}"})


def _start_ingest(state: ServerState, name: str) -> Job:
    job = state.jobs.create(name)

    def work(progress: JobProgress) -> IngestSummary:
        collection = state.catalog.get(name)
        collection.uploads.mkdir(parents=True, exist_ok=True)
        index = state.catalog.new_index(collection)
        try:
            return index.ingest([collection.uploads], prune=True, progress=progress,
                                lock_timeout=60.0)
        finally:
            index.close()

    state.runner.submit(job, work, _job_error)
    return job


def _job_error(exc: Exception) -> str:
    if isinstance(exc, RaglineError | ApiError):
        return str(exc)
    log.error("ingest job failed", exc_info=exc)
    return "the ingest failed on the server (see its log)"


@router.get("/jobs/{job_id}")
async def get_job(job_id: str, request: Request, who: Authorized) -> dict[str, Any]:
    job = await anyio.to_thread.run_sync(state_of(request).jobs.get, job_id)
    if job is None:
        raise ApiError(404, "job_not_found", f"no job {job_id!r}")
    who.require(job.collection)
    return job.to_dict()


# ---------------------------------------------------------------- search, ask, verify


@router.post("/collections/{name}/search")
async def search(name: str, body: SearchRequest, request: Request, response: Response,
                 who: Authorized) -> dict[str, Any]:
    """Hits with their document, character span, page (of a paged source) and every
    retriever's rank and score."""
    who.require(name)
    state = state_of(request)
    trace, routed = start_trace(state, "search", who.key.id, name, user_of(request, body.user))

    def run() -> list[dict[str, Any]]:
        index = state.catalog.index(name, routed.overrides)
        trace.set(question=body.query, config_hash=config_hash_of(index, None),
                  mode=body.mode.value if body.mode else index.config.search.mode.value)
        drain_reranks()
        started = time.time_ns()
        hits = index.search(body.query, mode=body.mode, k=body.k, fusion=body.fusion,
                            alpha=body.alpha, where=dict(body.where), path_prefix=body.path_prefix)
        record_search(trace, hits, started, time.time_ns(), k=body.k or index.config.search.k)
        return [{**public_hit(h.to_dict()), "citation": {
            "doc_id": h.chunk.doc_id, "start": h.chunk.start, "end": h.chunk.end,
            "page": h.chunk.page, "pages": list(h.chunk.pages),
            "label": f"{h.chunk.doc_id} {page_label(h.chunk.pages)}".rstrip()}} for h in hits]

    hits = await traced(trace, state.pool.run(run))
    response.headers[TRACE_HEADER] = trace.trace_id
    return {"collection": name, "query": body.query, "hits": hits, "trace_id": trace.trace_id}


@router.post("/collections/{name}/ask", response_model=None)
async def ask(name: str, body: AskOptions, request: Request, response: Response,
              who: Authorized) -> dict[str, Any] | StreamingResponse:
    """An answer with verified citations; `"stream": true` (or `Accept: text/event-stream`)
    sends Server-Sent Events: `delta` pieces of text, then one `answer` event with the whole
    answer and each claim's verdict (or one `error` event). The request's trace id is in the
    `X-Ragline-Trace` header and the answer's `trace_id`."""
    who.require(name)
    state = state_of(request)
    await anyio.to_thread.run_sync(state.catalog.built, name)  # may ask PostgreSQL
    trace, routed = start_trace(state, "ask", who.key.id, name, user_of(request, body.user))
    if body.stream or "text/event-stream" in request.headers.get("accept", ""):
        slot = reserve_traced(state, trace)  # 503 now, before the stream starts, when full
        events = answer_events(state, name, body, slot, who.hold(), trace, routed)
        return StreamingResponse(_ask_sse(events, trace.trace_id),
                                 media_type="text/event-stream",
                                 headers={**_SSE_HEADERS, TRACE_HEADER: trace.trace_id})
    answer = await traced(trace, state.pool.run(
        lambda: run_ask(state, name, body, None, trace, routed)))
    response.headers[TRACE_HEADER] = trace.trace_id
    return answer_payload(answer, trace.trace_id)


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _ask_sse(events: AsyncIterator[tuple[str, Any]], trace_id: str
                   ) -> AsyncIterator[str]:
    async for kind, value in events:
        if kind == "text":
            yield sse("delta", {"text": value})
        elif kind == "answer":
            yield sse("answer", answer_payload(value, trace_id))
        else:
            yield sse("error", {**value.body(), "status": value.status})


@router.post("/collections/{name}/verify")
async def verify(name: str, body: VerifyRequest, request: Request, response: Response,
                 who: Authorized) -> dict[str, Any]:
    """Check each cited claim of any system's answer against the collection."""
    from ragline.answer.verify import Thresholds
    from ragline.cli.verify import report, verify_input

    who.require(name)
    state = state_of(request)
    answer = VerifyInput(question=body.question, answer=body.answer, citations=body.citations)
    trace = state.tracing.start("verify", key_id=who.key.id, collection=name,
                                question=body.question, answer=body.answer)

    def run() -> dict[str, Any]:
        index = state.catalog.index(name)
        trace.set(config_hash=config_hash_of(index, None))
        started = time.time_ns()
        scorer = build_scorer(body.verifier, embedder=index.embedder)
        checks, labels = verify_input(answer, index, scorer, Thresholds(checks=body.checks))
        found = report(answer, checks, labels, scorer.name)
        record_verify(trace, found, started, time.time_ns(), scorer.name)
        return found

    found = await traced(trace, state.pool.run(run))
    response.headers[TRACE_HEADER] = trace.trace_id
    return {**found, "trace_id": trace.trace_id}
