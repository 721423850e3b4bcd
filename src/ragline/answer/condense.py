"""Rewriting a follow-up question into a standalone one, from the conversation so far.

Used by `answer.pipeline.ask` (its `history` argument) and so by `answer.chat`; it depends on
neither, so the two import it, not each other.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ragline.answer.prompts import load_prompt
from ragline.llm import LLM, Message, Role

MAX_HISTORY_TURNS = 6  # older turns rarely matter for a rewrite and only lengthen the prompt
_LABEL = re.compile(r"^\s*(?:standalone question|question|rewritten question)\s*:\s*", re.I)


def format_history(history: Sequence[tuple[str, str]]) -> str:
    """The conversation as `User: ...` / `Assistant: ...` lines, the latest turns only."""
    lines = []
    for user, assistant in list(history)[-MAX_HISTORY_TURNS:]:
        lines += [f"User: {user.strip()}", f"Assistant: {assistant.strip()}"]
    return "\n".join(lines)


def clean_rewrite(reply: str) -> str:
    """The rewritten question from a model's reply: first non-empty line, label and quotes off."""
    for line in reply.strip().splitlines():
        line = _LABEL.sub("", line).strip().strip("\"'\u201c\u201d").strip()
        if line:
            return line
    return ""


def condense_question(
    question: str, history: Sequence[tuple[str, str]], llm: LLM | None
) -> str:
    """Rewrite a follow-up into a standalone question using the conversation so far."""
    if not history:
        return question
    if llm is None:
        return f"{history[-1][0].strip()} {question.strip()}"
    prompt = load_prompt("condense_question")
    messages = [
        Message(Role(m["role"]), m["content"])
        for m in prompt.messages(history=format_history(history), question=question)
    ]
    reply = llm.complete(messages, temperature=0.0, max_tokens=64, purpose="rewrite")
    return clean_rewrite(reply.text) or question
