"""The `Reranker` contract (`ragline.retrieve.base`) and its one wiring into search, ask, tune.

Every reranker ragline ships is in `RERANKERS`; the reversing one is a test double that makes
the stage's effect visible (a trained cross-encoder, issue #11, joins the list).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ragline.errors import ConfigError
from ragline.retrieve.base import Reranker
from ragline.retrieve.rerank import NoReranker, make_reranker, register_reranker
from ragline.types import Hit


class Reverse:
    """Puts the retrieved order upside down, scoring by position."""

    name = "reverse"

    def __init__(self, depth: int = 5) -> None:
        self.depth = depth
        self.seen: list[int] = []

    def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        self.seen.append(len(hits))
        return [replace(h, score=float(len(hits) - i)) for i, h in enumerate(reversed(hits))]


def _cross_encoder() -> Any:
    from ragline.answer.support_model import SHIPPED_DIR
    from ragline.retrieve.rerank import CrossEncoderReranker

    # The shipped claim verifier is a cross-encoder in the reranker's model format: a stand-in
    # for the trained reranker of issue #11 that exercises the same code.
    return CrossEncoderReranker(SHIPPED_DIR, depth=6, threads=1)


RERANKERS = [NoReranker(), Reverse(), _cross_encoder()]


@pytest.fixture
def index(tmp_path: Path, embedder: Any) -> Any:
    from ragline import Index

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, topic in enumerate(["planets and moons", "bread and yeast", "rice and stock",
                               "rivers and lakes", "trains and rails", "planet orbits"]):
        (corpus / f"n{i}.md").write_text(f"# Note {i}\n\nThis note is about {topic}.\n")
    built = Index(tmp_path / "index", embedder=embedder)
    built.ingest(corpus)
    yield built
    built.close()


@pytest.mark.parametrize("reranker", RERANKERS, ids=lambda r: r.name)
def test_a_reranker_returns_only_hits_it_was_given(reranker: Reranker, index: Any) -> None:
    assert isinstance(reranker, Reranker)
    hits = index.search("planet", k=6)
    reordered = reranker.rerank("planet", hits)
    assert {h.chunk.id for h in reordered} <= {h.chunk.id for h in hits}
    assert len({h.chunk.id for h in reordered}) == len(reordered)


def test_no_reranker_is_the_default_and_changes_nothing(index: Any) -> None:
    assert isinstance(index.reranker, NoReranker)
    hits = index.search("planet", k=3)
    assert all("none" not in h.stages for h in hits)


def test_search_hands_the_reranker_its_depth_and_records_its_stage(
        tmp_path: Path, embedder: Any, index: Any) -> None:
    from ragline import Index

    plain = index.search("planet", k=6)
    reverse = Reverse(depth=6)
    with Index(index.path, embedder=embedder, reranker=reverse) as reranked_index:
        reranked = reranked_index.search("planet", k=2)
    assert reverse.seen == [6]  # it saw rerank_depth hits, the search returned k
    assert [h.chunk.id for h in reranked] == [h.chunk.id for h in plain[::-1][:2]]
    assert [h.rank for h in reranked] == [1, 2]
    assert [h.stages["reverse"].rank for h in reranked] == [1, 2]
    assert reranked[0].stages["hybrid"].rank == 6  # and what retrieval said of it, kept


def test_only_the_top_depth_is_reranked_the_rest_keeps_its_order(
        embedder: Any, index: Any) -> None:
    from ragline import Index

    plain = index.search("planet", k=6)
    reverse = Reverse(depth=3)
    with Index(index.path, embedder=embedder, reranker=reverse) as reranked_index:
        reranked = reranked_index.search("planet", k=6)  # k above the depth
    assert reverse.seen == [3]
    assert [h.chunk.id for h in reranked] == [h.chunk.id for h in plain[:3][::-1] + plain[3:]]
    assert [h.rank for h in reranked] == [1, 2, 3, 4, 5, 6]
    assert all("reverse" not in h.stages for h in reranked[3:])


def test_a_reranker_that_invents_a_hit_is_refused(index: Any, embedder: Any) -> None:
    from ragline import Index

    class Inventing(Reverse):
        name = "inventing"

        def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
            return [replace(hits[0], chunk=replace(hits[0].chunk, id="made-up"))]

    with (Index(index.path, embedder=embedder, reranker=Inventing()) as bad,
          pytest.raises(ConfigError, match="not given")):
        bad.search("planet")


def test_a_reranker_is_chosen_by_name_in_the_config(index: Any, embedder: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from ragline import Index
    from ragline.config import RaglineConfig
    from ragline.retrieve import rerank

    monkeypatch.setattr(rerank, "_REGISTRY", dict(rerank._REGISTRY))  # this test's names only
    from ragline.config import SearchSettings

    register_reranker("reverse", lambda settings: Reverse(settings.rerank_depth))
    made = make_reranker(SearchSettings(reranker="reverse", rerank_depth=7))
    assert isinstance(made, Reverse) and made.depth == 7
    with pytest.raises(ConfigError, match=r"'nope' is not a known reranker \(known: .*none"):
        make_reranker(SearchSettings(reranker="nope"))
    with pytest.raises(ConfigError, match="needs rerank_model"):
        make_reranker(SearchSettings(reranker="cross-encoder"))
    config = RaglineConfig.model_validate({"search": {"reranker": "reverse", "rerank_depth": 6}})
    with Index(index.path, config, embedder=embedder) as reranked_index:
        assert reranked_index.reranker.depth == 6
        hits = reranked_index.search("planet", k=6)
        assert all("reverse" in h.stages for h in hits)
        # tune and eval score a grid point as search would: the same stage, by row id
        rows = [rowid for rowid, _ in reranked_index.candidates("planet", mode="bm25", depth=6)["bm25"]]
        assert reranked_index.rerank_rows("planet", rows) == rows[:6][::-1] + rows[6:]


def test_ask_answers_from_the_reranked_hits(index: Any, embedder: Any) -> None:
    from ragline import Index

    reverse = Reverse(depth=6)
    with Index(index.path, embedder=embedder, reranker=reverse) as reranked_index:
        reranked_index.ask("What is a planet?", extractive=True, k=3)
    assert reverse.seen == [6]


def test_the_cross_encoder_reorders_by_its_scores_and_is_chosen_by_config(
        index: Any, embedder: Any) -> None:
    from ragline import Index
    from ragline.answer.support_model import SHIPPED_DIR
    from ragline.config import RaglineConfig

    config = RaglineConfig.model_validate({"search": {
        "reranker": "cross-encoder", "rerank_model": str(SHIPPED_DIR), "rerank_depth": 6}})
    with Index(index.path, config, embedder=embedder) as reranked_index:
        hits = reranked_index.search("This note is about bread and yeast.", k=6)
    scores = [h.stages["cross-encoder"].score for h in hits]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert hits[0].chunk.doc_id.endswith("n1.md")  # the bread note, now scored first



def test_blend_mixes_the_reranker_with_the_normalised_retrieval_score() -> None:
    from ragline.retrieve.rerank import blend_scores

    probabilities, retrieval = [0.9, 0.1, 0.5], [0.2, 0.8, 0.5]  # the reranker disagrees
    assert blend_scores(probabilities, retrieval, 1.0) == probabilities  # its order alone
    assert blend_scores(probabilities, retrieval, 0.0) == pytest.approx([0.0, 1.0, 0.5])  # retrieval's order
    assert blend_scores(probabilities, retrieval, 0.5) == pytest.approx([0.45, 0.55, 0.5])
    assert blend_scores([0.3, 0.7], [1.0, 1.0], 0.5) == pytest.approx([0.65, 0.85])  # equal r


def test_the_blend_comes_from_the_config_else_the_models_manifest(tmp_path: Path) -> None:
    import json
    import shutil

    from ragline.answer.support_model import SHIPPED_DIR
    from ragline.config import SearchSettings
    from ragline.retrieve.rerank import CrossEncoderReranker

    assert CrossEncoderReranker(SHIPPED_DIR).blend == 1.0  # no blend in its manifest
    model = tmp_path / "model"
    shutil.copytree(SHIPPED_DIR, model)
    manifest = json.loads((model / "manifest.json").read_text())
    (model / "manifest.json").write_text(json.dumps({**manifest, "rerank_blend": 0.3}))
    assert CrossEncoderReranker(model).blend == 0.3  # chosen on the training's held-out queries
    settings = SearchSettings(reranker="cross-encoder", rerank_model=str(model), rerank_blend=0.8)
    configured = make_reranker(settings)
    assert isinstance(configured, CrossEncoderReranker) and configured.blend == 0.8  # it wins
    with pytest.raises(ConfigError, match="between 0 and 1"):
        CrossEncoderReranker(model, blend=1.5)


def test_tune_reranks_with_the_fused_scores_a_blend_mixes_in(index: Any, embedder: Any) -> None:
    from ragline import Index

    class Recording(Reverse):
        scores: tuple[float, ...] = ()

        def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
            self.scores = tuple(h.score for h in hits)
            return list(hits)

    recording = Recording(depth=6)
    with Index(index.path, embedder=embedder, reranker=recording) as reranked_index:
        rows = [r for r, _ in reranked_index.candidates("planet", mode="bm25", depth=6)["bm25"]]
        fused = [float(len(rows) - i) for i in range(len(rows))]
        assert reranked_index.rerank_rows("planet", rows, fused) == rows
    assert list(recording.scores) == fused  # what a blended reranker mixes in, as in search


def test_blend_zero_keeps_the_retrieved_hits_without_running_the_model(index: Any) -> None:
    from ragline.answer.support_model import SHIPPED_DIR
    from ragline.retrieve.rerank import CrossEncoderReranker

    off = CrossEncoderReranker(SHIPPED_DIR, depth=6, threads=1, blend=0.0)
    hits = index.search("planet", k=6)
    assert off.rerank("planet", hits) == hits
    assert off.model._session is None  # the model was never loaded
