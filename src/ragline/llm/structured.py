"""Structured output: a pydantic model in, a validated object out.

The response schema goes to each provider's native mode (OpenAI `response_format`
json_schema with strict=true, Anthropic a forced tool, llama.cpp a grammar compiled from
the schema). A reply that does not validate is re-asked with the validation error, at most
`max_reasks` times; every attempt is in the ledger.
"""

from __future__ import annotations

import copy
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ragline.llm.types import Message, ResponseSchema

DEFAULT_MAX_REASKS = 2
M = TypeVar("M", bound=BaseModel)
_NAME = re.compile(r"[^a-zA-Z0-9_-]")


def _strict(node: Any) -> Any:
    """OpenAI strict mode: every object closed, every property required, no defaults."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items() if k != "default"}
    if out.get("type") == "object" and isinstance(out.get("properties"), dict):
        out["additionalProperties"] = False
        out["required"] = list(out["properties"])
    return out


def response_schema(model: type[BaseModel], *, strict: bool = True) -> ResponseSchema:
    """The ResponseSchema of a pydantic model (name from the class, schema strict-ready)."""
    schema = copy.deepcopy(model.model_json_schema())
    name = _NAME.sub("_", model.__name__)[:64]
    return ResponseSchema(name=name, schema=_strict(schema) if strict else schema, strict=strict)


def parse_reply(text: str, model: type[M]) -> M:
    """Validate the reply's JSON text; raises pydantic.ValidationError."""
    return model.model_validate_json(text.strip() or "{}")


def reask_messages(
    messages: tuple[Message, ...], bad_reply: str, error: ValidationError
) -> tuple[Message, ...]:
    """The conversation plus the invalid reply and a request to fix it."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in error.errors()
    )
    fix = (
        f"Your reply did not match the required JSON schema: {problems}. "
        "Reply again with only a JSON object that matches the schema."
    )
    return (*messages, Message.assistant(bad_reply), Message.user(fix))
