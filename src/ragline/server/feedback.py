"""Request traces and feedback over HTTP: `GET /traces`, `GET /traces/{id}`, `POST /feedback`.

A key sees the traces of its own requests; an admin key (collections "*") sees every trace.
Feedback (thumbs up or down, an optional comment) is given by the key that made the request;
a second rating of the same trace replaces the first. A trace is written a moment after its
request ends (spans are batched): a lookup that misses writes this process's pending spans
and, for another worker's, waits up to one batch delay before answering 404.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from ragline.server.auth import Caller, caller, state_of
from ragline.server.errors import ApiError
from ragline.server.keys import ALL_COLLECTIONS
from ragline.server.state import ServerState
from ragline.server.traces import TraceSummary, span_tree

router = APIRouter(tags=["traces"])
Authorized = Annotated[Caller, Depends(caller)]
TRACE_ID = r"^[0-9a-f]{32}$"


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trace_id: str = Field(pattern=TRACE_ID, description="the answer's `trace_id` (32 hex digits)")
    rating: Literal["up", "down"]
    comment: str | None = Field(None, max_length=2000)


def is_admin(who: Caller) -> bool:
    return ALL_COLLECTIONS in who.key.collections


async def find_trace(state: ServerState, trace_id: str) -> TraceSummary | None:
    """The trace's summary; a miss flushes this process's spans, then waits one batch delay
    for another worker's."""
    store = state.tracing.store
    found = await anyio.to_thread.run_sync(store.summary, trace_id)
    if found is not None:
        return found
    await anyio.to_thread.run_sync(state.tracing.flush)
    deadline = time.monotonic() + (state.tracing.delay_ms + 250) / 1000
    while True:
        found = await anyio.to_thread.run_sync(store.summary, trace_id)
        if found is not None or time.monotonic() >= deadline:
            return found
        await anyio.sleep(0.05)


def _not_found(trace_id: str) -> ApiError:
    return ApiError(404, "trace_not_found", f"no trace {trace_id!r} (the `trace_id` of an "
                    "answer, or its X-Ragline-Trace header; GET /traces lists yours)")


@router.post("/feedback", status_code=201)
async def feedback(body: FeedbackRequest, request: Request, who: Authorized) -> dict[str, Any]:
    """Rate an answer up or down (with an optional comment), by its trace id."""
    state = state_of(request)
    found = await find_trace(state, body.trace_id)
    if found is None:
        raise _not_found(body.trace_id)
    if found.key_id != who.key.id:
        raise ApiError(403, "forbidden", "feedback on a trace is given with the key that made "
                       "the request")
    record = await anyio.to_thread.run_sync(
        lambda: state.tracing.store.add_feedback(body.trace_id, who.key.id, body.rating,
                                                 body.comment))
    return {**record.to_dict(), "experiment": found.experiment, "arm": found.arm}


@router.get("/traces")
async def list_traces(
    request: Request, who: Authorized,
    limit: Annotated[int, Query(ge=1, le=500, description="how many, newest first")] = 20,
    collection: Annotated[str | None, Query(description="only this collection's")] = None,
) -> dict[str, Any]:
    """The latest requests of this key (of every key, for an admin key)."""
    state = state_of(request)
    await anyio.to_thread.run_sync(state.tracing.flush)
    found = await anyio.to_thread.run_sync(lambda: state.tracing.store.recent(
        limit=limit, key_id=None if is_admin(who) else who.key.id, collection=collection))
    return {"traces": [t.to_dict() for t in found]}


@router.get("/traces/{trace_id}")
async def get_trace(trace_id: Annotated[str, Path(pattern=TRACE_ID)], request: Request,
                    who: Authorized) -> dict[str, Any]:
    """One request: its summary and its spans as a tree (durations and attributes)."""
    state = state_of(request)
    found = await find_trace(state, trace_id)
    if found is None:
        raise _not_found(trace_id)
    if found.key_id != who.key.id and not is_admin(who):
        raise ApiError(403, "forbidden", "this trace belongs to another key's request")
    spans = await anyio.to_thread.run_sync(state.tracing.store.spans, trace_id)
    return {"trace": found.to_dict(), "spans": [n.to_dict() for n in span_tree(spans)]}
