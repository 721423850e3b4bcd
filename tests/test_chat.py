"""`ragline chat` / `ragline ask` commands and the follow-up rewrite (ragline.answer.chat, .cli)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ragline.answer.chat import ChatSession, run_chat
from ragline.answer.condense import clean_rewrite, condense_question, format_history
from ragline.answer.types import Answer
from ragline.cli.answer import ask_command, chat_command
from ragline.embed.base import Embedder
from ragline.index import Index
from ragline.llm import LLM
from tests.fakes._http import Reply
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.support import RecordingSleep, llm_for

DOCS = {
    "eiffel.md": "# Eiffel Tower\n\nThe Eiffel Tower was completed in 1889 in Paris. It is 330 "
                 "metres tall and was designed by the company of Gustave Eiffel.\n",
    "python.md": "# Python\n\nPython is a programming language created by Guido van Rossum. "
                 "It was first released in 1991.\n",
}


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    root = tmp_path_factory.mktemp("chat_docs")
    for name, text in DOCS.items():
        (root / name).write_text(text, encoding="utf-8")
    folder = tmp_path_factory.mktemp("chat_index")
    with Index(folder, embedder=embedder) as index:
        index.ingest(root)
    return folder


@pytest.fixture
def index(index_dir: Path, embedder: Embedder) -> Iterator[Index]:
    with Index(index_dir, embedder=embedder) as opened:
        yield opened


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


def fake_llm(server: FakeOpenAIServer) -> LLM:
    return llm_for("openai-compatible", server, model="gpt-test", sleeper=RecordingSleep(),
                   cache=False)


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("ask")(ask_command)
    app.command("chat")(chat_command)
    return app


# ---------------------------------------------------------------- the rewrite


def test_history_is_formatted_as_alternating_turns() -> None:
    text = format_history([("Who built it?", "Gustave Eiffel's company [1].")])
    assert text == "User: Who built it?\nAssistant: Gustave Eiffel's company [1]."


def test_rewrite_reply_is_cleaned_to_one_question() -> None:
    assert clean_rewrite('Standalone question: "When was it built?"\nExtra') == "When was it built?"
    assert clean_rewrite("   \n") == ""


def test_condense_question_sends_the_conversation_and_the_follow_up(
    server: FakeOpenAIServer,
) -> None:
    server.push_reply(Reply(text="How tall is the Eiffel Tower?"))
    history = [("When was the Eiffel Tower completed?", "In 1889 [1].")]
    rewritten = condense_question("How tall is it?", history, fake_llm(server))
    assert rewritten == "How tall is the Eiffel Tower?"
    sent = json.dumps(server.requests[-1]["messages"])
    assert "When was the Eiffel Tower completed?" in sent and "How tall is it?" in sent
    assert "Standalone question" in sent


def test_without_history_the_question_is_not_rewritten(server: FakeOpenAIServer) -> None:
    assert condense_question("How tall is it?", [], fake_llm(server)) == "How tall is it?"
    assert server.requests == []


def test_without_a_model_the_previous_question_is_searched_with_the_follow_up() -> None:
    history = [("Tell me about the Eiffel Tower", "...")]
    assert condense_question("How tall?", history, None) == "Tell me about the Eiffel Tower How tall?"


def test_follow_up_is_retrieved_as_the_rewritten_question(
    index: Index, server: FakeOpenAIServer
) -> None:
    session = ChatSession(index, llm=fake_llm(server))
    session.history.append(("Tell me about Python.", "Python is a programming language [1]."))
    server.push_reply(
        Reply(text="Who created Python?"),
        Reply(json_value={"sentences": [{"text": "Python was created by Guido van Rossum.",
                                          "sources": [1], "quote": None}], "abstained": False}),
    )
    answer = session.ask("Who created it?")
    assert answer.question == "Who created it?"
    assert answer.usage["standalone_question"] == "Who created Python?"
    assert answer.sources[0]["doc_id"].endswith("python.md")
    assert "rewrite_s" in answer.timings
    assert session.history[-1] == ("Who created it?", answer.text)


def test_chat_loop_answers_each_line_until_exit(index: Index) -> None:
    session = ChatSession(index, options={"extractive": True})
    answers: list[Answer] = []
    lines = ["When was the Eiffel Tower completed?", "", "/reset", "Who created Python?",
             "/exit", "never asked"]
    assert run_chat(session, lines, on_answer=answers.append) == 2
    assert "1889" in answers[0].text and "Guido" in answers[1].text
    assert len(session.history) == 1, "/reset forgot the first turn"


# ---------------------------------------------------------------- the commands


def test_ask_command_prints_answer_sources_spans_and_verdicts(index_dir: Path) -> None:
    result = CliRunner().invoke(cli(), ["ask", "When was the Eiffel Tower completed?",
                                        "--index", str(index_dir), "--extractive"])
    assert result.exit_code == 0, result.output
    assert "1889" in result.output
    assert "eiffel.md" in result.output and "chars" in result.output
    assert "supported" in result.output


def test_ask_command_json_is_the_answer(index_dir: Path) -> None:
    result = CliRunner().invoke(cli(), ["ask", "Who created Python?", "--index", str(index_dir),
                                        "--extractive", "--json"])
    assert result.exit_code == 0, result.output
    answer = Answer.model_validate_json(result.output)
    assert answer.citations and "Guido" in answer.text


def test_ask_command_streams_a_generated_answer(
    index_dir: Path, server: FakeOpenAIServer
) -> None:
    server.push_reply(Reply(text="The Eiffel Tower was completed in 1889 [1]."))
    result = CliRunner().invoke(cli(), [
        "ask", "When was the Eiffel Tower completed?", "--index", str(index_dir), "--stream",
        "--provider", "openai-compatible", "--base-url", server.base_url, "--model", "gpt-test",
    ], env={"OPENAI_API_KEY": "test-key"})
    assert result.exit_code == 0, result.output
    assert result.output.startswith("The Eiffel Tower was completed in 1889 [1].")
    assert server.requests[-1]["stream"] is True


def test_ask_command_without_an_index_says_how_to_build_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli(), ["ask", "anything", "--index", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "ragline ingest" in result.output


def test_chat_command_reads_questions_from_stdin(index_dir: Path) -> None:
    result = CliRunner().invoke(cli(), ["chat", "--index", str(index_dir), "--extractive"],
                                input="When was the Eiffel Tower completed?\n/exit\n")
    assert result.exit_code == 0, result.output
    assert "1889" in result.output
