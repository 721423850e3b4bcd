"""`ragline adapt train-reranker` and `adapt run`: a reranker trained with the verifier's trainer
on synthetic queries (or a labelled split), checked on held-out queries, and scored before and
after on labelled queries. The model writing the questions is the fake OpenAI-compatible server
of test_adapt.py; the training, export and reranking are real (tiny: 64 word pieces, 1 epoch)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ragline.adapt.generate import AdaptError, GenerationSettings, generate
from ragline.adapt.reranker import (
    RERANKER_TRAINING,
    TrainingQuery,
    split_queries,
    synthetic_queries,
    train_reranker,
)
from ragline.adapt.run import AdaptSettings, adapt, reranker_queries
from ragline.answer.support_model import read_manifest
from ragline.cli import app
from ragline.index import Index
from ragline.retrieve.rerank import CrossEncoderReranker
from ragline.train.cross_encoder import Pair, TrainingError
from tests.fakes.openai_server import FakeOpenAIServer
from tests.test_adapt import TOPICS, Scripted, _good, _note

pytest.importorskip("torch")
pytest.importorskip("transformers")

TINY = replace(RERANKER_TRAINING, epochs=1.0, max_length=64, threads=1)
runner = CliRunner()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    (root / "notes").mkdir()
    for topic in TOPICS:
        (root / "notes" / f"{topic}.md").write_text(_note(topic))
    return root


@pytest.fixture(scope="module")
def index(corpus: Path, embedder: Any) -> Iterator[Index]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAGLINE_HOME", str(corpus / "home"))
        built = Index(corpus / "index", embedder=embedder)
        built.ingest(corpus / "notes")
        yield built
        built.close()


@pytest.fixture(scope="module")
def dataset(index: Index, corpus: Path) -> Path:
    with FakeOpenAIServer() as server:
        generate(index, Scripted(server, _good), corpus / "queries",  # type: ignore[arg-type]
                 GenerationSettings(passages=25, k=3, negatives=2))
    return corpus / "queries"


def test_a_reranker_trains_on_synthetic_queries_and_runs_as_a_search_stage(
        index: Index, dataset: Path, tmp_path: Path) -> None:
    queries = synthetic_queries(dataset)
    assert len(queries) >= 23 and all(q.negatives for q in queries)
    out = tmp_path / "reranker"
    manifest = train_reranker(index, queries, out, source={"kind": "synthetic"}, config=TINY)
    info = read_manifest(out)  # every file's sha256 checked
    assert info.max_length == 64 and manifest["kind"] == "reranker"
    assert manifest["training"]["pairs"] > manifest["training"]["queries"] > 15
    held = manifest["held_out"]
    assert held["queries"] >= 1 and 0 <= held["after"]["MRR@10"] <= 1
    assert held["rerank_ms_p95"] >= held["rerank_ms_p50"] > 0
    hits = index.search("What has been found about the glacier?", k=5)
    reranked = CrossEncoderReranker(out, depth=5, threads=1).rerank("the glacier", hits)
    assert sorted(h.chunk.id for h in reranked) == sorted(h.chunk.id for h in hits)
    assert not list(tmp_path.glob(".reranker.*"))  # no staging or checkpoint left behind


def test_the_blend_is_the_best_on_held_out_queries_and_off_without_evidence() -> None:
    from ragline.adapt.reranker import choose_blend

    assert choose_blend({0.0: 0.81, 0.5: 0.83, 1.0: 0.49}) == 0.5
    assert choose_blend({0.0: 0.94, 0.5: 0.94, 0.9: 0.94, 1.0: 0.23}) == 0.0  # no gain: off


def test_single_class_training_data_is_refused() -> None:
    from ragline.train.cross_encoder import train

    with pytest.raises(TrainingError, match="both classes"):
        train([Pair("a passage", "a query", 1.0)] * 4, base=Path("unused"),
              tokenizer_file=Path("unused"), work=Path("unused"), config=TINY, data_hash="x")


def test_too_few_queries_are_refused_with_the_minimum() -> None:
    few = [TrainingQuery(f"q{i}", "a question", (f"d{i}#0",)) for i in range(5)]
    with pytest.raises(AdaptError, match="at least 20"):
        split_queries(few)


def test_labelled_training_never_takes_a_test_split(index: Index, tmp_path: Path) -> None:
    with pytest.raises(AdaptError, match="never trained on a test split"):
        reranker_queries(index, data=None, labels=tmp_path, split="test")
    with pytest.raises(AdaptError, match="either --data"):
        reranker_queries(index, data=tmp_path, labels=tmp_path, split="train")


def _beir(root: Path, corpus: Path) -> Path:
    """A labelled set over the same notes: one question per topic, its note relevant."""
    root.mkdir()
    (root / "qrels").mkdir()
    with (root / "corpus.jsonl").open("w") as docs, (root / "queries.jsonl").open("w") as qs:
        for n, topic in enumerate(TOPICS):
            docs.write(json.dumps({"_id": topic, "title": topic,
                                   "text": (corpus / "notes" / f"{topic}.md").read_text()}) + "\n")
            qs.write(json.dumps({"_id": f"q{n}", "text": f"facts about the {topic}"}) + "\n")
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{n}\t{t}\t1\n" for n, t in enumerate(TOPICS)))
    return root


@pytest.mark.integration
def test_adapt_run_reports_before_and_after_with_paired_statistics_and_resumes(
        index: Index, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGLINE_HOME", str(tmp_path / "home"))
    labelled = _beir(tmp_path / "labelled", corpus)
    settings = AdaptSettings(generation=GenerationSettings(passages=25, k=3, negatives=2),
                             training=TINY, rerank_depth=5, eval_dataset=labelled)
    with FakeOpenAIServer() as server:
        llm = Scripted(server, _good)
        report = adapt(index, llm, tmp_path / "work", settings)  # type: ignore[arg-type]
        data = report.to_dict()
        assert data["generation"]["kept"] >= 23 and llm.calls == 25
        evaluation = data["evaluation"]
        assert evaluation["queries"] == len(TOPICS)
        assert set(evaluation["configs"]) == {"before", "reranker"}
        assert all(v is not None for c in evaluation["configs"].values() for v in c["latency_ms"].values())
        assert evaluation["comparisons"][0]["a"] == "before"
        assert json.loads((tmp_path / "work" / "report.json").read_text())["evaluation"]
        # A rerun asks the model nothing and keeps the reranker trained on the same queries.
        again = Scripted(server, _good)
        said: list[str] = []
        adapt(index, again, tmp_path / "work", settings,  # type: ignore[arg-type]
              say=said.append)
    assert again.calls == 0 and any("kept" in line for line in said)


def test_cli_train_reranker_on_synthetic_queries(index: Index, dataset: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGLINE_HOME", str(index.path.parent / "home"))
    out = tmp_path / "model"
    result = runner.invoke(app, ["adapt", "train-reranker", "--index", str(index.path),
                                 "--data", str(dataset), "--out", str(out), "--epochs", "1",
                                 "--max-length", "64", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "held-out queries" in result.stdout and 'rerank_model = "' in result.stdout
    bad = runner.invoke(app, ["adapt", "train-reranker", "--index", str(index.path),
                              "--labels", str(tmp_path), "--split", "test", "--out", str(out)])
    assert bad.exit_code == 2 and "never trained on a test split" in bad.output


def test_a_fine_tuned_embedder_re_embeds_into_a_new_index_and_never_mixes(
        index: Index, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ragline.adapt.embedder import EMBEDDER_TRAINING, reembed, train_embedder
    from ragline.config import RaglineConfig
    from ragline.errors import ConfigError

    monkeypatch.setenv("RAGLINE_HOME", str(tmp_path / "home"))
    out = tmp_path / "embedder"
    config = replace(EMBEDDER_TRAINING, epochs=1.0, batch_size=8, max_length=64, threads=1)
    manifest = train_embedder(index, synthetic_queries(dataset), out, source={"kind": "synthetic"},
                              config=config)
    assert manifest["kind"] == "embedder" and manifest["dim"] == 384
    assert {"before", "after"} <= set(manifest["held_out"])
    read_manifest(out)  # the files match their sha256
    assert not list(tmp_path.glob(".embedder.*"))
    summary = reembed(index, out / "model.onnx", tmp_path / "new-index")
    assert summary.added == index.store.count_documents()
    tuned = RaglineConfig().model_copy(update={"embedder": RaglineConfig().embedder.model_copy(
        update={"model": str((out / "model.onnx").resolve())})})
    with Index(tmp_path / "new-index", tuned) as new:
        assert new.count_chunks() == index.count_chunks()
        assert new.search("What has been found about the penguin?", k=3)
    with Index(index.path, tuned) as mixed, pytest.raises(ConfigError, match="embedded with"):
        mixed.search("penguin")  # old vectors, new query embedder: refused
    with pytest.raises(ConfigError, match="must differ"):
        reembed(index, out / "model.onnx", index.path)
    result = runner.invoke(app, ["adapt", "reembed", "--index", str(index.path), "--model",
                                 str(out / "model.onnx"), "--out", str(tmp_path / "cli-index"),
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["chunks_embedded"] == index.count_chunks()
    missing = runner.invoke(app, ["adapt", "reembed", "--index", str(index.path), "--model",
                                  str(tmp_path / "nope.onnx"), "--out", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "no ONNX model" in missing.output
