"""A fault-injecting HTTP server base: real sockets on 127.0.0.1, real wire formats.

A dialect (OpenAI, Anthropic) renders replies, SSE events and error bodies; this base
owns the socket, the request log, the scripted reply queue and the fault queue.
"""

from __future__ import annotations

import enum
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class FaultKind(enum.Enum):
    RATE_LIMIT = "rate_limit"  # 429 with Retry-After
    SERVER_ERROR = "server_error"  # 500
    OVERLOADED = "overloaded"  # 529 (Anthropic's overloaded_error; OpenAI gets a 503)
    DELAY = "delay"  # sleep `delay` seconds, then answer normally
    DROP = "drop"  # connection dropped mid-body after `after_chunks` content events
    MALFORMED_JSON = "malformed_json"  # 200 with a body (or SSE event) that is not JSON
    TRUNCATED = "truncated"  # a clean stream end without its terminal events
    BAD_REQUEST = "bad_request"  # 400
    UNAUTHORIZED = "unauthorized"  # 401
    FORBIDDEN = "forbidden"  # 403


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    retry_after: float | None = None
    delay: float = 0.0
    after_chunks: int = 0


@dataclass(frozen=True)
class Reply:
    """A scripted answer. `json_value` is rendered as JSON text, or as the forced tool's input."""

    text: str = "Hello from the fake server"
    tool_calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    json_value: Any = None
    input_tokens: int = 12
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass
class Rendered:
    """An SSE response split so that faults can cut it: preamble, content events, tail."""

    preamble: list[bytes] = field(default_factory=list)
    content: list[bytes] = field(default_factory=list)
    tail: list[bytes] = field(default_factory=list)


STATUS = {
    FaultKind.RATE_LIMIT: 429,
    FaultKind.SERVER_ERROR: 500,
    FaultKind.OVERLOADED: 529,
    FaultKind.BAD_REQUEST: 400,
    FaultKind.UNAUTHORIZED: 401,
    FaultKind.FORBIDDEN: 403,
}


class Dialect:
    """What differs between provider wire formats."""

    path = "/"

    def auto_reply(self, body: dict[str, Any]) -> Reply:
        """The unscripted answer: a schema-valid object or tool call when asked, else text."""
        return Reply()

    def render_json(self, reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def render_sse(self, reply: Reply, body: dict[str, Any]) -> Rendered:
        raise NotImplementedError

    def error(self, kind: FaultKind) -> tuple[int, dict[str, Any]]:
        raise NotImplementedError


def instance_of(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> Any:
    """A minimal value valid under a JSON schema (what a grammar-constrained model returns)."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return instance_of(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return instance_of(schema[key][0], defs)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "object")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "object":
        props = schema.get("properties", {})
        return {name: instance_of(sub, defs) for name, sub in props.items()}
    if kind in ("integer", "number") and "minimum" in schema:
        return schema["minimum"]
    samples = {
        "string": "Paris",
        "integer": 1,
        "number": 0.5,
        "boolean": True,
        "array": [],
        "null": None,
    }
    return samples[kind]


def sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {payload}\n\n".encode()


def words(text: str) -> list[str]:
    """Split text into stream pieces whose concatenation is the text."""
    parts = text.split(" ")
    return [p if i == 0 else " " + p for i, p in enumerate(parts)]


class FakeServer:
    """Run with `with FakeServer(dialect) as server:`; `server.base_url` is the root URL."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.faults: deque[Fault] = deque()
        self.replies: deque[Reply] = deque()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def push_fault(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    def push_reply(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _next(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[Fault | None, Reply]:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            fault = self.faults.popleft() if self.faults else None
            scripted = self.replies.popleft() if self.replies and fault is None else None
        return fault, scripted or self.dialect.auto_reply(body)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # headers and body go out in separate writes: without NODELAY, Nagle plus the
                # client's delayed ACK add ~40 ms to every reply
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                fault, reply = server._next(body, {k.lower(): v for k, v in self.headers.items()})
                try:
                    _serve(self, server.dialect, body, fault, reply)
                except OSError:
                    return  # the client gave up (timeout test): nothing to do

        return Handler


def _serve(
    h: BaseHTTPRequestHandler,
    dialect: Dialect,
    body: dict[str, Any],
    fault: Fault | None,
    reply: Reply,
) -> None:
    kind = fault.kind if fault else None
    if fault and kind in STATUS:
        status, payload = dialect.error(fault.kind)
        extra = {"retry-after": str(fault.retry_after)} if fault.retry_after is not None else {}
        _send_json(h, status, payload, extra)
        return
    if fault and kind is FaultKind.DELAY:
        time.sleep(fault.delay)
    streaming = bool(body.get("stream"))
    if kind is FaultKind.MALFORMED_JSON and not streaming:
        _send_raw(h, 200, b'{"id": "broken", "choices": [', "application/json")
        return
    if kind is FaultKind.DROP and not streaming:
        _drop_json(h)
        return
    if not streaming:
        _send_json(h, 200, dialect.render_json(reply, body), {})
        return
    _send_stream(h, dialect.render_sse(reply, body), fault)


def _send_json(
    h: BaseHTTPRequestHandler, status: int, payload: dict[str, Any], extra: dict[str, str]
) -> None:
    _send_raw(h, status, json.dumps(payload).encode(), "application/json", extra)


def _send_raw(
    h: BaseHTTPRequestHandler,
    status: int,
    data: bytes,
    ctype: str,
    extra: dict[str, str] | None = None,
) -> None:
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(data)))
    for key, value in (extra or {}).items():
        h.send_header(key, value)
    h.end_headers()
    h.wfile.write(data)
    h.wfile.flush()


def _drop_json(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", "4096")
    h.end_headers()
    h.wfile.write(b'{"id": "cut", "choi')
    h.wfile.flush()
    h.close_connection = True
    h.connection.close()


def _send_stream(h: BaseHTTPRequestHandler, rendered: Rendered, fault: Fault | None) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "text/event-stream")
    h.send_header("Transfer-Encoding", "chunked")
    h.send_header("Cache-Control", "no-cache")
    h.end_headers()
    events = rendered.preamble + rendered.content + rendered.tail
    kind = fault.kind if fault else None
    if kind is FaultKind.DROP:
        assert fault is not None
        for event in rendered.preamble + rendered.content[: fault.after_chunks]:
            _chunk(h, event)
        h.close_connection = True
        h.connection.close()  # no terminating zero-length chunk: a dropped connection
        return
    if kind is FaultKind.TRUNCATED:
        assert fault is not None
        events = rendered.preamble + rendered.content[: fault.after_chunks]
    if kind is FaultKind.MALFORMED_JSON:
        events = [*rendered.preamble, b"data: {not json at all\n\n"]
    for event in events:
        _chunk(h, event)
    h.wfile.write(b"0\r\n\r\n")
    h.wfile.flush()


def _chunk(h: BaseHTTPRequestHandler, data: bytes) -> None:
    h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    h.wfile.flush()
