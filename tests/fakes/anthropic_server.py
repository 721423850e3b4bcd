"""A fake Anthropic server: `/v1/messages` JSON and SSE events, Anthropic error bodies, faults."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes._http import (
    Dialect,
    FakeServer,
    FaultKind,
    Rendered,
    Reply,
    instance_of,
    sse,
    words,
)

_ERRORS = {
    FaultKind.RATE_LIMIT: (
        429,
        "rate_limit_error",
        "Number of requests has exceeded your rate limit",
    ),
    FaultKind.SERVER_ERROR: (500, "api_error", "Internal server error"),
    FaultKind.OVERLOADED: (529, "overloaded_error", "Overloaded"),
    FaultKind.BAD_REQUEST: (400, "invalid_request_error", "max_tokens: field required"),
    FaultKind.UNAUTHORIZED: (401, "authentication_error", "invalid x-api-key"),
    FaultKind.FORBIDDEN: (403, "permission_error", "Your API key does not have permission"),
}


class AnthropicDialect(Dialect):
    path = "/v1/messages"

    def auto_reply(self, body: dict[str, Any]) -> Reply:
        tools = body.get("tools") or []
        choice = body.get("tool_choice") or {}
        last = (body.get("messages") or [{}])[-1]
        last_is_result = any(
            isinstance(b, dict) and b.get("type") == "tool_result"
            for b in last.get("content") or []
        )
        if not tools or last_is_result:
            return Reply()
        wanted = choice.get("name") if choice.get("type") == "tool" else None
        tool = next(t for t in tools if wanted is None or t["name"] == wanted)
        value = instance_of(tool["input_schema"])
        if wanted is not None and tool["description"] == "Reply with this JSON object.":
            return Reply(json_value=value)
        return Reply(tool_calls=((tool["name"], value),))

    def error(self, kind: FaultKind) -> tuple[int, dict[str, Any]]:
        status, etype, message = _ERRORS[kind]
        return status, {"type": "error", "error": {"type": etype, "message": message}}

    def render_json(self, reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
        text = _text(reply, body)
        content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
        content += [
            {"type": "tool_use", "id": tid, "name": name, "input": args}
            for tid, name, args in _tools(reply, body)
        ]
        usage = _start_usage(reply)
        usage["output_tokens"] = _out_tokens(reply, text)
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "fake"),
            "content": content,
            "stop_reason": _stop(reply, body, text),
            "stop_sequence": None,
            "usage": usage,
        }

    def render_sse(self, reply: Reply, body: dict[str, Any]) -> Rendered:
        text = _text(reply, body)
        message = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "fake"),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _start_usage(reply),
        }
        out = Rendered(preamble=[_ev("message_start", {"message": message}), _ev("ping", {})])
        index = 0
        if text:
            out.preamble.append(
                _ev(
                    "content_block_start",
                    {"index": 0, "content_block": {"type": "text", "text": ""}},
                )
            )
            out.content = [
                _ev(
                    "content_block_delta",
                    {"index": 0, "delta": {"type": "text_delta", "text": piece}},
                )
                for piece in words(text)
            ]
            out.content.append(_ev("content_block_stop", {"index": 0}))
            index = 1
        for tid, name, args in _tools(reply, body):
            block = {"type": "tool_use", "id": tid, "name": name, "input": {}}
            out.content.append(_ev("content_block_start", {"index": index, "content_block": block}))
            raw = json.dumps(args)
            for half in (raw[: len(raw) // 2], raw[len(raw) // 2 :]):
                delta = {"type": "input_json_delta", "partial_json": half}
                out.content.append(_ev("content_block_delta", {"index": index, "delta": delta}))
            out.content.append(_ev("content_block_stop", {"index": index}))
            index += 1
        delta = {"stop_reason": _stop(reply, body, text), "stop_sequence": None}
        out.tail = [
            _ev(
                "message_delta",
                {"delta": delta, "usage": {"output_tokens": _out_tokens(reply, text)}},
            ),
            _ev("message_stop", {}),
        ]
        return out


def _ev(name: str, data: dict[str, Any]) -> bytes:
    return sse({"type": name, **data}, event=name)


def _tools(reply: Reply, body: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    choice = body.get("tool_choice") or {}
    if reply.json_value is not None and choice.get("type") == "tool":
        return [("toolu_0", choice["name"], reply.json_value)]
    return [(f"toolu_{i}", name, args) for i, (name, args) in enumerate(reply.tool_calls)]


def _text(reply: Reply, body: dict[str, Any]) -> str:
    if reply.json_value is not None:
        forced = (body.get("tool_choice") or {}).get("type") == "tool"
        return "" if forced else json.dumps(reply.json_value)
    if reply.tool_calls:
        return ""
    text = reply.text
    for stop in body.get("stop_sequences") or []:
        text = text.split(stop)[0]
    limit = body.get("max_tokens")
    return " ".join(text.split(" ")[:limit]) if limit else text


def _stop(reply: Reply, body: dict[str, Any], text: str) -> str:
    if _tools(reply, body):
        return "tool_use"
    limit = body.get("max_tokens")
    return "max_tokens" if limit and len(text.split(" ")) >= limit else "end_turn"


def _start_usage(reply: Reply) -> dict[str, Any]:
    return {
        "input_tokens": reply.input_tokens,
        "output_tokens": 1,
        "cache_read_input_tokens": reply.cached_tokens,
        "cache_creation_input_tokens": reply.cache_write_tokens,
    }


def _out_tokens(reply: Reply, text: str) -> int:
    return len(text.split()) + 5 * len(reply.tool_calls)


class FakeAnthropicServer(FakeServer):
    """`base_url` is the root URL, as the anthropic SDK expects."""

    def __init__(self) -> None:
        super().__init__(AnthropicDialect())

    @property
    def base_url(self) -> str:
        return self.root_url

    def __enter__(self) -> FakeAnthropicServer:
        self.start()
        return self
