"""Tools from typed Python functions, and running the calls a model asks for.

`tool_from_function` builds the JSON schema of the arguments from the signature's type hints
(via pydantic) and the descriptions from the docstring's Google-style `Args:` or NumPy-style
`Parameters` section. `run_tool_calls` validates arguments against the same model, calls the
functions, and returns the tool-result messages for the next request.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from ragline.errors import RaglineError
from ragline.llm.types import Message, ToolCall, ToolSpec

ToolFunction = Callable[..., Any]
_GOOGLE_ARG = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


class ToolError(RaglineError):
    """A tool call could not be run (unknown tool or invalid arguments)."""


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(summary, {parameter: description}) from a Google- or NumPy-style docstring."""
    lines = inspect.cleandoc(doc or "").splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or line.strip() in ("Args:", "Arguments:", "Parameters"):
            break
        summary.append(line.strip())
    return " ".join(summary), _google_args(lines) or _numpy_args(lines)


def _google_args(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    inside, current = False, ""
    for line in lines:
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:"):
            inside = True
            continue
        if inside and stripped.endswith(":") and not line.startswith((" ", "\t")):
            break  # the next section (Returns:, Raises:)
        match = _GOOGLE_ARG.match(line) if inside else None
        if match and line.startswith((" ", "\t")) and len(line) - len(line.lstrip()) <= 4:
            current = match.group(1).lstrip("*")
            out[current] = match.group(2).strip()
        elif inside and current and stripped:
            out[current] = f"{out[current]} {stripped}".strip()
    return out


def _numpy_args(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        start = [ln.strip() for ln in lines].index("Parameters") + 2
    except ValueError:
        return out
    current = ""
    for line in lines[start:]:
        if line.strip() and set(line.strip()) == {"-"}:
            break
        if line and not line.startswith((" ", "\t")):
            current = line.split(":")[0].strip()
            out[current] = ""
        elif current and line.strip():
            out[current] = f"{out[current]} {line.strip()}".strip()
    return {k: v for k, v in out.items() if k}


def arguments_model(fn: ToolFunction) -> type[BaseModel]:
    """A pydantic model of `fn`'s parameters (type hints, defaults, docstring descriptions)."""
    hints = typing.get_type_hints(fn)
    _, described = parse_docstring(fn.__doc__)
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolError(f"tool {fn.__name__}: *args/**kwargs cannot be described to a model")
        default = ... if param.default is param.empty else param.default
        fields[name] = (
            hints.get(name, Any),
            Field(default, description=described.get(name) or None),
        )
    return create_model(f"{fn.__name__}_arguments", __config__=ConfigDict(extra="forbid"), **fields)


def tool_from_function(fn: ToolFunction) -> ToolSpec:
    """The ToolSpec of a typed function: its name, docstring summary and argument schema."""
    summary, _ = parse_docstring(fn.__doc__)
    schema = arguments_model(fn).model_json_schema()
    schema.pop("title", None)
    return ToolSpec(name=fn.__name__, description=summary or fn.__name__, parameters=schema)


def as_tool_specs(tools: Iterable[ToolSpec | ToolFunction]) -> tuple[ToolSpec, ...]:
    return tuple(t if isinstance(t, ToolSpec) else tool_from_function(t) for t in tools)


def _result_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return json.dumps(value, default=str)


def run_tool_calls(
    calls: Sequence[ToolCall],
    functions: Sequence[ToolFunction] | Mapping[str, ToolFunction],
) -> list[Message]:
    """Run each call with validated arguments; one tool-result message per call, in order."""
    table = (
        dict(functions) if isinstance(functions, Mapping) else {f.__name__: f for f in functions}
    )
    results: list[Message] = []
    for call in calls:
        fn = table.get(call.name)
        if fn is None:
            raise ToolError(f"the model called unknown tool {call.name!r}; known: {sorted(table)}")
        try:
            args = arguments_model(fn).model_validate(call.arguments)
        except ValidationError as exc:
            raise ToolError(f"tool {call.name}: invalid arguments {call.arguments}: {exc}") from exc
        value = fn(**{name: getattr(args, name) for name in type(args).model_fields})
        results.append(Message.tool(call.id, _result_text(value)))
    return results
