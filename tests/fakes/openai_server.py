"""A fake OpenAI server: `/v1/chat/completions` JSON and SSE, OpenAI error bodies, faults."""

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
    FaultKind.RATE_LIMIT: (429, "rate_limit_exceeded", "Rate limit reached for requests"),
    FaultKind.SERVER_ERROR: (500, "server_error", "The server had an error"),
    FaultKind.OVERLOADED: (503, "server_error", "The engine is currently overloaded"),
    FaultKind.BAD_REQUEST: (400, "invalid_request_error", "Invalid value for 'temperature'"),
    FaultKind.UNAUTHORIZED: (401, "invalid_request_error", "Incorrect API key provided"),
    FaultKind.FORBIDDEN: (403, "invalid_request_error", "You are not allowed to use this model"),
}


class OpenAIDialect(Dialect):
    path = "/v1/chat/completions"

    def auto_reply(self, body: dict[str, Any]) -> Reply:
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            return Reply(json_value=instance_of(fmt["json_schema"]["schema"]))
        last = (body.get("messages") or [{}])[-1]
        tools = body.get("tools") or []
        if tools and last.get("role") == "user":
            choice = body.get("tool_choice")
            wanted = choice["function"]["name"] if isinstance(choice, dict) else None
            fn = next(
                t["function"] for t in tools if wanted is None or t["function"]["name"] == wanted
            )
            return Reply(tool_calls=((fn["name"], instance_of(fn["parameters"])),))
        return Reply()

    def error(self, kind: FaultKind) -> tuple[int, dict[str, Any]]:
        status, etype, message = _ERRORS[kind]
        code = "invalid_api_key" if kind is FaultKind.UNAUTHORIZED else None
        return status, {"error": {"message": message, "type": etype, "param": None, "code": code}}

    def render_json(self, reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
        text = _text(reply, body)
        message: dict[str, Any] = {"role": "assistant", "content": text if text else None}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
                for i, (name, args) in enumerate(reply.tool_calls)
            ]
        finish = "tool_calls" if reply.tool_calls else _finish(text, body)
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1700000000,
            "model": body.get("model", "fake"),
            "choices": [
                {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            ],
            "usage": _usage(reply, text),
        }

    def render_sse(self, reply: Reply, body: dict[str, Any]) -> Rendered:
        text = _text(reply, body)
        model = body.get("model", "fake")
        out = Rendered(preamble=[sse(_chunk(model, {"role": "assistant", "content": ""}))])
        out.content = (
            [sse(_chunk(model, {"content": piece})) for piece in words(text)] if text else []
        )
        for i, (name, args) in enumerate(reply.tool_calls):
            raw = json.dumps(args)
            first = {
                "index": i,
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            out.content.append(sse(_chunk(model, {"tool_calls": [first]})))
            for half in (raw[: len(raw) // 2], raw[len(raw) // 2 :]):
                delta = {"tool_calls": [{"index": i, "function": {"arguments": half}}]}
                out.content.append(sse(_chunk(model, delta)))
        finish = "tool_calls" if reply.tool_calls else _finish(text, body)
        out.tail = [sse(_chunk(model, {}, finish))]
        if (body.get("stream_options") or {}).get("include_usage"):
            usage_chunk = _chunk(model, None)
            usage_chunk["choices"] = []
            usage_chunk["usage"] = _usage(reply, text)
            out.tail.append(sse(usage_chunk))
        out.tail.append(sse("[DONE]"))
        return out


def _text(reply: Reply, body: dict[str, Any]) -> str:
    if reply.json_value is not None:
        return json.dumps(reply.json_value)
    if reply.tool_calls:
        return ""
    text = reply.text
    for stop in body.get("stop") or []:
        text = text.split(stop)[0]
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    return " ".join(text.split(" ")[:limit]) if limit else text


def _finish(text: str, body: dict[str, Any]) -> str:
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    return "length" if limit and len(text.split(" ")) >= limit else "stop"


def _chunk(model: str, delta: dict[str, Any] | None, finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta or {}, "finish_reason": finish, "logprobs": None}
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "choices": [choice],
    }


def _usage(reply: Reply, text: str) -> dict[str, Any]:
    out = len(text.split()) + 5 * len(reply.tool_calls) + reply.reasoning_tokens
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": out,
        "total_tokens": reply.input_tokens + out,
        "prompt_tokens_details": {"cached_tokens": reply.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
    }


class FakeOpenAIServer(FakeServer):
    """`base_url` ends in /v1, as the openai SDK expects."""

    def __init__(self) -> None:
        super().__init__(OpenAIDialect())

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self.start()
        return self
