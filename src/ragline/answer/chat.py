"""Multi-turn chat over an index: each follow-up is rewritten into a standalone question first.

    session = ChatSession(index, llm=llm)
    session.ask("Who wrote the ingest module?")
    session.ask("When did they change it?")  # retrieved as "When did <name> change the ingest module?"

The rewrite uses the versioned `condense_question` prompt with the conversation so far; without
an LLM (extractive chat) the follow-up is searched together with the previous question, a plain
concatenation that keeps the earlier subject in the query.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ragline.answer.pipeline import ask
from ragline.answer.types import Answer
from ragline.llm import LLM

if TYPE_CHECKING:
    from ragline.index import Index

EXIT_COMMANDS = frozenset({"/exit", "/quit"})
RESET_COMMAND = "/reset"
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
