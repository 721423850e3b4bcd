"""The agent's tools: typed Python functions (schemas from `ragline.llm.tools`), run with a timeout.

`AgentTool` wraps a function with what the loop needs beyond its schema: `side_effects` (recorded
as started/done, never re-run on resume) and `timeout_s`. The built-ins: `search` and `read`
over an index (each span numbered, so the final answer can cite it as [n]), `calculator` (an AST
walker over numbers and arithmetic operators, no eval), `python` (the bubblewrap sandbox) and
`http_get` (only for hosts on an explicit allow-list).
"""

from __future__ import annotations

import ast
import enum
import json
import math
import operator
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ragline.errors import RaglineError
from ragline.llm.tools import ToolFunction, arguments_model, run_tool_calls, tool_from_function
from ragline.llm.types import Message, ToolCall, ToolSpec

if TYPE_CHECKING:
    from ragline.index import Index

DEFAULT_TIMEOUT_S = 30.0
READ_MAX_CHARS = 2000
HTTP_MAX_CHARS = 20_000
BUILTIN_TOOLS = ("search", "read", "calculator", "python", "http_get")


class AgentConfigError(RaglineError):
    """An agent was configured with something it cannot use (unknown tool, missing index)."""


class Outcome(enum.StrEnum):
    """How one tool call ended; everything but OK goes back to the model as an error result."""

    OK = "ok"
    UNKNOWN_TOOL = "unknown_tool"
    INVALID_ARGUMENTS = "invalid_arguments"
    RAISED = "raised"
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"  # a side-effect call cut off by a crash; not re-run
    REPEATED = "repeated"  # the same calls asked for too many times in a row; not run

    @property
    def is_error(self) -> bool:
        return self is not Outcome.OK


@dataclass(frozen=True)
class AgentTool:
    """A function the model may call, with its side-effect flag and timeout."""

    fn: ToolFunction
    side_effects: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_S
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.fn.__name__)

    @property
    def spec(self) -> ToolSpec:
        spec = tool_from_function(self.fn)
        return ToolSpec(self.name, spec.description, spec.parameters)


def agent_tool(*, side_effects: bool = False,
               timeout_s: float = DEFAULT_TIMEOUT_S) -> Callable[[ToolFunction], AgentTool]:
    """Decorator: `@agent_tool(side_effects=True)` over a typed function."""
    return lambda fn: AgentTool(fn, side_effects=side_effects, timeout_s=timeout_s)


def as_agent_tools(tools: Iterable[AgentTool | ToolFunction]) -> dict[str, AgentTool]:
    out: dict[str, AgentTool] = {}
    for t in tools:
        tool = t if isinstance(t, AgentTool) else AgentTool(t)
        if tool.name in out:
            raise AgentConfigError(f"two tools are named {tool.name!r}")
        out[tool.name] = tool
    return out


@dataclass(frozen=True, slots=True)
class ToolResult:
    outcome: Outcome
    content: str
    seconds: float = 0.0


def check_call(call: ToolCall, tools: dict[str, AgentTool]) -> ToolResult | None:
    """An error result for an unknown tool or arguments that fail validation, else None."""
    tool = tools.get(call.name)
    if tool is None:
        return ToolResult(Outcome.UNKNOWN_TOOL, f"error: unknown tool {call.name!r}; the tools "
                          f"are {sorted(tools)}")
    try:
        arguments_model(tool.fn).model_validate(call.arguments)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(arguments)'}: {e['msg']}"
                             for e in exc.errors())
        return ToolResult(Outcome.INVALID_ARGUMENTS,
                          f"error: invalid arguments for {call.name}: {problems}")
    return None


def execute(call: ToolCall, tool: AgentTool) -> ToolResult:
    """Run a validated call in a worker thread; a call past `timeout_s` is reported timed out.

    Python cannot kill a thread: a hung tool's thread is left behind (a daemon), which is why
    tools that may hang for real (code) run in a process of their own (the sandbox)."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["messages"] = run_tool_calls([call], {call.name: tool.fn})
        except Exception as exc:  # the tool's own failure goes back to the model
            box["error"] = exc

    started = time.monotonic()
    worker = threading.Thread(target=work, name=f"agent-tool-{call.name}", daemon=True)
    worker.start()
    worker.join(tool.timeout_s)
    seconds = time.monotonic() - started
    if worker.is_alive():
        return ToolResult(Outcome.TIMED_OUT,
                          f"error: tool {call.name} timed out after {tool.timeout_s:g} s", seconds)
    if "error" in box:
        exc = box["error"]
        return ToolResult(Outcome.RAISED, f"error: tool {call.name} raised "
                          f"{type(exc).__name__}: {exc}", seconds)
    messages: list[Message] = box["messages"]
    return ToolResult(Outcome.OK, messages[0].content, seconds)


# --- calculator -------------------------------------------------------------------------

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos, ast.USub: operator.neg,
}
_MAX_EXPONENT = 1000
_MAX_EXPRESSION = 500


def _evaluate(node: ast.AST) -> int | float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        value: int | float = node.value  # type: ignore[assignment]
        return value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
            raise ValueError(f"exponent {right} is too large (at most {_MAX_EXPONENT})")
        return _BINARY[type(node.op)](left, right)  # type: ignore[no-any-return]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))  # type: ignore[no-any-return]
    raise ValueError(f"not allowed in an arithmetic expression: {ast.dump(node)[:80]}")


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression: numbers, + - * / // % ** and parentheses.

    Args:
        expression: The expression, e.g. "(1889 - 1832) * 2".
    """
    if len(expression) > _MAX_EXPRESSION:
        raise ValueError(f"expression longer than {_MAX_EXPRESSION} characters")
    value = _evaluate(ast.parse(expression.strip(), mode="eval"))
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        raise ValueError(f"the result is {value}")
    return str(value)


# --- search and read over an index ---------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Span:
    """A citable span: `text == document.text[start:end]`; `number` is its [n] in this run."""

    number: int
    doc_id: str
    start: int
    end: int
    text: str
    chunk_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.number, "doc_id": self.doc_id, "start": self.start,
                "end": self.end, "chunk_id": self.chunk_id, "text": self.text}


@dataclass
class SpanRegistry:
    """The spans a run has shown the model, numbered [1].. in order of first appearance."""

    spans: dict[int, Span] = field(default_factory=dict)

    def add(self, doc_id: str, start: int, end: int, text: str,
            chunk_id: str | None = None) -> Span:
        for span in self.spans.values():
            if (span.doc_id, span.start, span.end) == (doc_id, start, end):
                return span
        span = Span(len(self.spans) + 1, doc_id, start, end, text, chunk_id)
        self.spans[span.number] = span
        return span

    def absorb(self, result: str) -> None:
        """Re-learn spans from a recorded search/read result (on resume)."""
        try:
            data = json.loads(result)
        except json.JSONDecodeError:
            return
        for item in data.get("spans", []) if isinstance(data, dict) else []:
            span = Span(item["source"], item["doc_id"], item["start"], item["end"], item["text"],
                        item.get("chunk_id"))
            self.spans.setdefault(span.number, span)


class IndexTools:
    """`search` and `read` over one index; every span returned is registered for citation."""

    def __init__(self, index: Index, registry: SpanRegistry) -> None:
        self.index = index
        self.registry = registry

    def search(self, query: str, k: int = 5) -> str:
        """Search the documents; returns numbered spans to cite as [n].

        Args:
            query: What to look for.
            k: How many spans to return (1-20).
        """
        hits = self.index.search(query, k=max(1, min(k, 20)))
        spans = [self.registry.add(h.chunk.doc_id, h.chunk.start, h.chunk.end, h.chunk.text,
                                   h.chunk.id) for h in hits]
        return json.dumps({"spans": [s.to_dict() for s in spans]})

    def read(self, doc_id: str, start: int = 0, end: int | None = None) -> str:
        """Read part of a document by character offsets; returns one numbered span to cite.

        Args:
            doc_id: The document id (from a search result).
            start: First character offset.
            end: End offset (at most 2000 characters after start).
        """
        document = self.index.get_document(doc_id)
        if document is None:
            raise ValueError(f"no document {doc_id!r} in the index: read takes a doc_id that "
                             "a search result returned; call search first")
        start = max(0, min(start, len(document.text)))
        stop = min(len(document.text), start + READ_MAX_CHARS, end if end is not None else 10**12)
        span = self.registry.add(doc_id, start, stop, document.text[start:stop])
        return json.dumps({"spans": [span.to_dict()], "document_length": len(document.text)})


# --- python and http_get ----------------------------------------------------------------

def python(code: str) -> str:
    """Run Python code in a sandbox (no network, no files but /scratch); returns its output.

    Args:
        code: The program; print what you want to see.
    """
    from ragline.agent.sandbox import run_python

    result = run_python(code)
    return json.dumps({"stdout": result.stdout, "stderr": result.stderr[-2000:],
                       "exit_status": result.exit_status,
                       "stopped_by": result.stopped_by.value if result.stopped_by else None})


def http_get_tool(allowed_hosts: Sequence[str], timeout_s: float = 10.0) -> AgentTool:
    """`http_get`, able to fetch only from `allowed_hosts` (exact host names, with or without
    a port); every other host is refused before any connection is made."""
    allowed = frozenset(h.lower() for h in allowed_hosts)
    if not allowed:
        raise AgentConfigError("http_get needs at least one --allow-host")

    def http_get(url: str) -> str:
        """Fetch a URL with GET (only from allowed hosts); returns status and text.

        Args:
            url: An http or https URL.
        """
        parts = urllib.parse.urlsplit(url)
        host = (parts.hostname or "").lower()
        with_port = f"{host}:{parts.port}" if parts.port else host
        if parts.scheme not in ("http", "https") or not ({host, with_port} & allowed):
            raise PermissionError(f"host {with_port!r} is not allowed; allowed: {sorted(allowed)}")
        request = urllib.request.Request(url, headers={"User-Agent": "ragline-agent"})
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=timeout_s) as response:
                body = response.read(HTTP_MAX_CHARS * 4).decode("utf-8", "replace")
                status = response.status
        except urllib.error.HTTPError as exc:
            return json.dumps({"status": exc.code, "text": ""})
        return json.dumps({"status": status, "text": body[:HTTP_MAX_CHARS]})

    return AgentTool(http_get, timeout_s=timeout_s + 5)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect could lead off the allow-list: it is returned, not followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def builtin_tools(names: Sequence[str], *, index: Index | None, registry: SpanRegistry,
                  allowed_hosts: Sequence[str] = ()) -> list[AgentTool]:
    """The named built-in tools; `search`/`read` need an index, `http_get` an allow-list."""
    out: list[AgentTool] = []
    for name in names:
        if name not in BUILTIN_TOOLS:
            raise AgentConfigError(f"unknown tool {name!r}: use {', '.join(BUILTIN_TOOLS)}")
        if name in ("search", "read"):
            if index is None:
                raise AgentConfigError(f"tool {name} needs an index (--index DIR)")
            out.append(AgentTool(getattr(IndexTools(index, registry), name)))
        elif name == "calculator":
            out.append(AgentTool(calculator, timeout_s=5.0))
        elif name == "python":
            out.append(AgentTool(python, timeout_s=60.0))
        else:
            out.append(http_get_tool(allowed_hosts))
    return out
