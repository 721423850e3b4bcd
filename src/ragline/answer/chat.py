"""Multi-turn chat over an index: each follow-up is rewritten into a standalone question first.

    session = ChatSession(index, llm=llm)
    session.ask("Who wrote the ingest module?")
    session.ask("When did they change it?")  # retrieved as "When did <name> change the ingest module?"

The rewrite uses the versioned `condense_question` prompt with the conversation so far; without
an LLM (extractive chat) the follow-up is searched together with the previous question, a plain
concatenation that keeps the earlier subject in the query.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ragline.answer.pipeline import ask
from ragline.answer.prompts import load_prompt
from ragline.answer.types import Answer
from ragline.llm import LLM, Message, Role

if TYPE_CHECKING:
    from ragline.index import Index

EXIT_COMMANDS = frozenset({"/exit", "/quit"})
RESET_COMMAND = "/reset"
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


@dataclass
class ChatSession:
    """A conversation with an index; `ask` options (k, mode, strict, ...) go in `options`."""

    index: Index
    llm: LLM | None = None
    options: dict[str, Any] = field(default_factory=dict)
    history: list[tuple[str, str]] = field(default_factory=list)

    def ask(self, question: str, stream: Callable[[str], None] | None = None) -> Answer:
        answer = ask(self.index, question, llm=self.llm, history=self.history, stream=stream,
                     **self.options)
        self.history.append((question, answer.text))
        return answer

    def reset(self) -> None:
        self.history.clear()


def run_chat(
    session: ChatSession,
    lines: Iterable[str],
    *,
    on_answer: Callable[[Answer], None],
    stream: Callable[[str], None] | None = None,
    prompt: Callable[[], None] = lambda: None,
) -> int:
    """Answer each input line until `/exit` (or the input ends); `/reset` forgets the
    conversation. Returns the number of questions answered."""
    answered = 0
    prompt()
    for raw in lines:
        line = raw.strip()
        if line in EXIT_COMMANDS:
            break
        if line == RESET_COMMAND:
            session.reset()
        elif line:
            on_answer(session.ask(line, stream=stream))
            answered += 1
        prompt()
    return answered
