"""OpenAI-compatible endpoints, so existing OpenAI clients use ragline unchanged.

* `GET /v1/models`: `ragline:COLLECTION` (answers with the server's model) and
  `ragline:COLLECTION:extractive` (quotes the sources, no generation) for every collection the
  key may use.
* `POST /v1/chat/completions`: the last user message is the question, earlier user/assistant
  turns the history (a follow-up is rewritten into a standalone question). The reply is a
  `chat.completion` (or, with `stream: true`, `chat.completion.chunk` events ending with
  `data: [DONE]`), and its extra field `ragline` carries the citations, each claim's verdict,
  the sources and the notes; in a stream it rides on the last chunk.
* `POST /v1/embeddings`: the collection's configured embedder, floats or base64 (what the
  official SDK asks for by default).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import anyio.to_thread
import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ragline.answer.types import Answer
from ragline.server.answers import (
    AskOptions,
    answer_events,
    answer_payload,
    reserve_traced,
    run_ask,
    start_trace,
    traced,
    user_of,
)
from ragline.server.auth import Caller, caller, state_of
from ragline.server.errors import ApiError
from ragline.server.tracing import TRACE_HEADER

router = APIRouter(prefix="/v1")
Authorized = Annotated[Caller, Depends(caller)]
PREFIX = "ragline:"
EXTRACTIVE = ":extractive"


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    """The fields ragline reads; the rest of OpenAI's request (tools, n, ...) is ignored."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


def collection_of(model: str, who: Caller) -> tuple[str, bool]:
    """(collection, extractive) of a model name; 404 for a name that is not ragline's."""
    if not model.startswith(PREFIX) or len(model) <= len(PREFIX):
        raise ApiError(404, "model_not_found", f"unknown model {model!r}: models are named "
                       "ragline:COLLECTION or ragline:COLLECTION:extractive (GET /v1/models)")
    name = model[len(PREFIX):]
    extractive = name.endswith(EXTRACTIVE)
    name = name.removesuffix(EXTRACTIVE)
    who.require(name)
    return name, extractive


@router.get("/models")
async def list_models(request: Request, who: Authorized) -> dict[str, Any]:
    state = state_of(request)
    data = []
    for name in state.catalog.names():
        if who.key.allows(name):
            root = state.catalog.get(name).root
            created = int(root.stat().st_mtime) if root.exists() else 0
            data += [{"id": f"{PREFIX}{name}{suffix}", "object": "model", "created": created,
                      "owned_by": "ragline"} for suffix in ("", EXTRACTIVE)]
    return {"object": "list", "data": data}


def _options(body: ChatRequest, extractive: bool) -> AskOptions:
    turns = [m for m in body.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user" or not turns[-1].text().strip():
        raise ApiError(400, "invalid_request", "messages must end with a user message: "
                       "its text is the question")
    history, question = [], None
    for message in turns[:-1]:
        if message.role == "user":
            question = message.text()
        elif question is not None:
            history.append((question, message.text()))
            question = None
    try:
        return AskOptions(question=turns[-1].text(), extractive=extractive,
                          max_tokens=body.max_completion_tokens or body.max_tokens or 400,
                          history=history[-20:])
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ApiError(422, "invalid_request", f"invalid request: {problems}") from None


def _extra(answer: Answer, trace_id: str) -> dict[str, Any]:
    data = answer_payload(answer, trace_id)
    return {key: data[key] for key in ("abstained", "abstain_reason", "citations", "verdicts",
                                       "checks", "sources", "timings", "trace_id")} | {
        "notes": list(answer.usage.get("notes", []))}


def _usage(answer: Answer) -> dict[str, int]:
    tokens = answer.usage.get("tokens") or {}
    prompt, completion = int(tokens.get("input_tokens", 0)), int(tokens.get("output_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


@router.post("/chat/completions", response_model=None)
async def chat_completions(body: ChatRequest, request: Request, response: Response,
                           who: Authorized) -> dict[str, Any] | StreamingResponse:
    """OpenAI's chat completion; OpenAI's `user` field (or `X-Ragline-User`) names the end
    user an experiment's arm is sticky to."""
    name, extractive = collection_of(body.model, who)
    state = state_of(request)
    await anyio.to_thread.run_sync(state.catalog.built, name)  # may ask PostgreSQL
    options = _options(body, extractive)
    completion_id, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())
    given = (body.model_extra or {}).get("user")
    user = user_of(request, given[:256] if isinstance(given, str) and given else None)
    trace, routed = start_trace(state, "chat.completions", who.key.id, name, user)
    trace.set(model_name=body.model)
    if body.stream:
        slot = reserve_traced(state, trace)
        events = answer_events(state, name, options, slot, who.hold(), trace, routed)
        return StreamingResponse(_chunks(events, completion_id, created, body.model,
                                         trace.trace_id),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          TRACE_HEADER: trace.trace_id})
    answer = await traced(trace, state.pool.run(
        lambda: run_ask(state, name, options, None, trace, routed)))
    response.headers[TRACE_HEADER] = trace.trace_id
    return {"id": completion_id, "object": "chat.completion", "created": created,
            "model": body.model, "system_fingerprint": None,
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": answer.text,
                                     "refusal": None}}],
            "usage": _usage(answer), "ragline": _extra(answer, trace.trace_id)}


def _chunk(completion_id: str, created: int, model: str, delta: dict[str, Any],
           finish: str | None = None, **extra: Any) -> str:
    payload = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
               "model": model, "system_fingerprint": None,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                            "logprobs": None}], **extra}
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def _chunks(events: AsyncIterator[tuple[str, Any]], completion_id: str, created: int,
                  model: str, trace_id: str) -> AsyncIterator[str]:
    yield _chunk(completion_id, created, model, {"role": "assistant", "content": ""})
    async for kind, value in events:
        if kind == "text":
            yield _chunk(completion_id, created, model, {"content": value})
        elif kind == "answer":
            yield _chunk(completion_id, created, model, {}, "stop", usage=_usage(value),
                         ragline=_extra(value, trace_id))
        else:
            yield f"data: {json.dumps(value.body())}\n\n"
    yield "data: [DONE]\n\n"


@router.post("/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request, who: Authorized) -> dict[str, Any]:
    name, _ = collection_of(body.model, who)
    state = state_of(request)
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    if len(texts) > 256 or any(not t for t in texts):
        raise ApiError(400, "invalid_request", "input must be 1 to 256 non-empty strings")

    def run() -> tuple[Any, int, int]:
        embedder = state.catalog.embedder(name)
        if body.dimensions is not None and body.dimensions != embedder.dim:
            raise ApiError(400, "invalid_request", f"this collection's embedder makes "
                           f"{embedder.dim}-dimensional vectors; drop `dimensions` or set it "
                           f"to {embedder.dim}")
        tokens = sum(embedder.count_tokens(texts))
        return embedder.embed(texts, kind="document"), tokens, embedder.dim

    vectors, tokens, _ = await state.pool.run(run)
    data = [{"object": "embedding", "index": i,
             "embedding": base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode()
             if body.encoding_format == "base64" else [float(x) for x in v]}
            for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": body.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
