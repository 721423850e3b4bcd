"""`ragline adapt generate`: synthetic queries from an index's passages (ragline.adapt.generate).

The model is a fake OpenAI-compatible server (the real wire format, through the real SDK); a
thin wrapper scripts each reply from the passage in the prompt, as a model would answer it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ragline.adapt.generate import AdaptError, GenerationSettings, generate, parse_question
from ragline.index import Index
from tests.fakes._http import Reply
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.support import RecordingSleep, llm_for

TOPICS = ["volcano", "honeybee", "glacier", "octopus", "sourdough", "aqueduct", "monsoon",
          "comet", "coral", "falcon", "tundra", "cactus", "lighthouse", "glacier-lake",
          "meteorite", "sequoia", "penguin", "geyser", "mangrove", "aurora", "bamboo", "canyon",
          "dolphin", "tornado", "orchid"]


def _note(topic: str) -> str:
    return (f"# The {topic}\n\nThis note is entirely about the {topic}. The {topic} has been "
            f"studied for many years, and every finding about the {topic} is collected here, "
            f"from its history to its behaviour, so that a reader who wants to learn about the "
            f"{topic} finds all of it in one place.\n")


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[Index]:
    root = tmp_path_factory.mktemp("adapt")
    for topic in TOPICS:
        (root / "notes").mkdir(exist_ok=True)
        (root / "notes" / f"{topic}.md").write_text(_note(topic))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAGLINE_HOME", str(root / "home"))
        built = Index(root / "index", embedder=embedder)
        built.ingest(root / "notes")
        yield built
        built.close()


class Scripted:
    """Forwards every call to the fake server's LLM, first scripting the reply a model would
    give for the passage in the prompt; `plan(topic)` says what that reply is."""

    def __init__(self, server: FakeOpenAIServer, plan: Any, stop_after: int | None = None) -> None:
        self.llm = llm_for("openai-compatible", server, model="gpt-test",
                           sleeper=RecordingSleep(), cache=False)
        self.server, self.plan, self.stop_after, self.calls = server, plan, stop_after, 0
        self.model = self.llm.model

    def complete(self, messages: Any, **options: Any) -> Any:
        self.calls += 1
        if self.stop_after is not None and self.calls > self.stop_after:
            raise KeyboardInterrupt  # as a user's Ctrl-C mid-run
        topic = re.search(r"about the ([\w-]+)\.", messages[-1].content).group(1)
        self.server.push_reply(Reply(text=self.plan(topic)))
        return self.llm.complete(messages, **options)


def _good(topic: str) -> str:
    if topic == "comet":
        return "ok"  # malformed: too short to be a question
    if topic == "falcon":
        return "Question: What is known about the sourdough?"  # answered by another passage
    return f"Question: What has been found about the {topic}?"


def test_questions_are_generated_filtered_and_written(index: Index, tmp_path: Path) -> None:
    with FakeOpenAIServer() as server:
        llm = Scripted(server, _good)
        summary = generate(index, llm, tmp_path / "out",  # type: ignore[arg-type]
                           GenerationSettings(passages=25, k=1, negatives=2))
    assert (summary.passages, summary.malformed, summary.generated) == (25, 1, 24)
    assert summary.kept == 23  # the falcon question retrieves the sourdough note, not its own
    out = tmp_path / "out"
    queries = [json.loads(line) for line in (out / "queries.jsonl").read_text().splitlines()]
    assert len(queries) == 23 and all(q["text"].startswith("What has been") for q in queries)
    assert all(len(q["metadata"]["negatives"]) == 2 for q in queries)
    qrels = (out / "qrels" / "train.tsv").read_text().splitlines()
    assert qrels[0] == "query-id\tcorpus-id\tscore" and len(qrels) == 24
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["summary"]["kept"] == 23 and manifest["settings"]["prompt"].startswith(
        "synthetic_query.v")
    rows = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert {r["reason"] for r in rows if not r["kept"]} == {"malformed", "passage not in the top 1"}


def test_an_interrupted_run_resumes_and_asks_only_for_the_rest(index: Index,
                                                               tmp_path: Path) -> None:
    settings = GenerationSettings(passages=25, k=3)
    with FakeOpenAIServer() as server:
        first = Scripted(server, _good, stop_after=10)
        with pytest.raises(KeyboardInterrupt):
            generate(index, first, tmp_path / "out", settings)  # type: ignore[arg-type]
        second = Scripted(server, _good)
        summary = generate(index, second, tmp_path / "out", settings)  # type: ignore[arg-type]
    assert second.calls == 15 and summary.passages == 25 and summary.asked_this_run == 15
    rows = (tmp_path / "out" / "pairs.jsonl").read_text().splitlines()
    assert len({json.loads(r)["chunk_id"] for r in rows}) == len(rows) == 25
    with pytest.raises(AdaptError, match=r"other settings.*k"):
        generate(index, second, tmp_path / "out",  # type: ignore[arg-type]
                 GenerationSettings(passages=25, k=5))


def test_too_small_an_index_is_refused_with_the_minimum(tmp_path: Path, embedder: Any) -> None:
    (tmp_path / "notes").mkdir()
    for topic in TOPICS[:5]:
        (tmp_path / "notes" / f"{topic}.md").write_text(_note(topic))
    with Index(tmp_path / "index", embedder=embedder) as small:
        small.ingest(tmp_path / "notes")
        with pytest.raises(AdaptError, match="needs at least 20"):
            generate(small, object(), tmp_path / "out")  # type: ignore[arg-type]


@pytest.mark.parametrize(("reply", "question"), [
    ("Question: Which gas do volcanoes emit most?", "Which gas do volcanoes emit most?"),
    ('"How old is the oldest sequoia?"\nIt is about...', "How old is the oldest sequoia?"),
    ("", None), ("ok", None), (" ".join(["word"] * 60), None),
])
def test_replies_are_parsed_or_dropped(reply: str, question: str | None) -> None:
    assert parse_question(reply) == question
