"""The `Retriever` contract (`ragline.retrieve.base`), run against every retriever.

BM25, exact dense and hybrid (min-max and RRF) over the search files of a SQLite index and of a
PostgreSQL index, and PostgreSQL's own HNSW, full-text and hybrid-of-both (`[store] search =
"native"`). The ids name the backend; the PostgreSQL ones have "postgres" in them and never
skip (see tests/test_store_conformance.py).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from ragline.errors import EmptyQuery
from ragline.retrieve.base import Ranking, Retriever
from ragline.retrieve.search import SearchParams, search
from ragline.types import FusionMethod, RetrievalMode

NOTES = {
    "mars.md": "# Mars\n\nMars is the fourth planet from the Sun, a cold red desert world.\n",
    "risotto.md": "# Risotto\n\nA good risotto needs arborio rice, hot stock and patience.\n",
    "search.md": "# Search\n\nHybrid search fuses BM25 keyword scores with dense vector "
                 "similarity.\n",
    "venus.md": "# Venus\n\nVenus is the second planet from the Sun, hidden under thick "
                "clouds of sulphuric acid.\n",
    "bread.md": "# Bread\n\nSourdough bread rises slowly with a wild yeast starter.\n",
}
POSTGRES = os.environ.get("RAGLINE_NO_POSTGRES") != "1"
CASES = [
    ("sqlite-bm25", "sqlite", "files", RetrievalMode.BM25, FusionMethod.MINMAX),
    ("sqlite-dense", "sqlite", "files", RetrievalMode.DENSE, FusionMethod.MINMAX),
    ("sqlite-hybrid-minmax", "sqlite", "files", RetrievalMode.HYBRID, FusionMethod.MINMAX),
    ("sqlite-hybrid-rrf", "sqlite", "files", RetrievalMode.HYBRID, FusionMethod.RRF),
] + ([
    ("postgres-files-hybrid", "postgres", "files", RetrievalMode.HYBRID, FusionMethod.MINMAX),
    ("postgres-native-fulltext", "postgres", "native", RetrievalMode.BM25, FusionMethod.MINMAX),
    ("postgres-native-hnsw", "postgres", "native", RetrievalMode.DENSE, FusionMethod.MINMAX),
    ("postgres-native-hybrid", "postgres", "native", RetrievalMode.HYBRID, FusionMethod.RRF),
] if POSTGRES else [])
KEYWORD_ONLY = {RetrievalMode.BM25}


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory, embedder: Any,
            request: pytest.FixtureRequest) -> Iterator[dict[tuple[str, str], Any]]:
    """One ingested corpus per backend, opened once per search setting."""
    from ragline import Index
    from ragline.config import RaglineConfig

    root = tmp_path_factory.mktemp("retrievers")
    corpus = root / "notes"
    corpus.mkdir()
    for name, text in NOTES.items():
        (corpus / name).write_text(text)
    opened: dict[tuple[str, str], Any] = {}
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAGLINE_HOME", str(root / "home"))
        for backend in ["sqlite"] + (["postgres"] if POSTGRES else []):
            for search_with in ("files", "native") if backend == "postgres" else ("files",):
                store: dict[str, Any] = {"backend": backend}
                if backend == "postgres":
                    store.update(dsn=request.getfixturevalue("pg_dsn"), schema=schema,
                                 search=search_with)
                config = RaglineConfig.model_validate({"store": store})
                index = Index(root / f"index-{backend}", config, embedder=embedder)
                if search_with == "files":
                    index.ingest(corpus)
                opened[backend, search_with] = index
        yield opened
    for index in opened.values():
        index.close()
    if POSTGRES:
        import psycopg

        with psycopg.connect(request.getfixturevalue("pg_dsn"), autocommit=True,
                             password=os.environ.get("RAGLINE_PG_PASSWORD")) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(params=CASES, ids=[case[0] for case in CASES])
def case(request: pytest.FixtureRequest, indexes: dict[tuple[str, str], Any]) -> Any:
    _id, backend, search_with, mode, fusion = request.param
    index = indexes[backend, search_with]
    params = SearchParams(mode=mode, fusion=fusion, k=5, depth=5)
    return index, index.retriever(params), params


def _doc_of(index: Any, rowid: int) -> str:
    return index.chunk_doc_ids()[rowid].rsplit("/", 1)[-1]


def test_it_implements_the_protocol_and_names_its_final_stage(case: Any) -> None:
    _index, retriever, _ = case
    assert isinstance(retriever, Retriever)
    ranking = retriever.rank("planet", 5)
    assert isinstance(ranking, Ranking) and ranking.name == retriever.name
    assert ranking.final is ranking.stages[retriever.name]


def test_the_best_match_comes_first(case: Any) -> None:
    index, retriever, _ = case
    assert _doc_of(index, int(retriever.rank("arborio rice risotto", 3).rowids[0])) == "risotto.md"
    assert _doc_of(index, int(retriever.rank("sourdough yeast", 3).rowids[0])) == "bread.md"


def test_a_ranking_is_best_first_distinct_at_most_depth_and_repeatable(case: Any) -> None:
    _index, retriever, _ = case
    for depth in (1, 2, 5, 50):
        ranking = retriever.rank("the planet closest to the sun", depth)
        rows, scores = ranking.final
        assert len(rows) <= depth and len(set(rows.tolist())) == len(rows)
        assert np.all(np.diff(scores) <= 1e-9), "scores must not increase down the list"
        again = retriever.rank("the planet closest to the sun", depth)
        assert again.rowids.tolist() == rows.tolist()


def test_only_allowed_rows_are_returned(case: Any) -> None:
    index, retriever, _ = case
    rows = {name.rsplit("/", 1)[-1]: rowid for rowid, name in index.chunk_doc_ids().items()}
    allowed = np.asarray([rows["venus.md"], rows["bread.md"]], dtype=np.int64)
    ranking = retriever.rank("planet from the sun", 5, allowed)
    assert set(ranking.rowids.tolist()) <= set(allowed.tolist())
    assert ranking.rowids.size and int(ranking.rowids[0]) == rows["venus.md"]


def test_a_keyword_retriever_lists_no_chunk_without_a_query_term(case: Any) -> None:
    _index, retriever, params = case
    ranking = retriever.rank("xylophone quasar", 5)
    if params.mode in KEYWORD_ONLY:
        assert ranking.rowids.size == 0
    else:  # dense similarity is never "no evidence": every chunk has a score
        assert ranking.rowids.size == min(5, len(NOTES))


def test_search_turns_the_ranking_into_hits_with_every_stage(case: Any) -> None:
    index, retriever, params = case
    hits = search("fourth planet", SearchParams(mode=params.mode, fusion=params.fusion, k=3),
                  retriever, index._open(create=False))
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert hits[0].chunk.doc_id.endswith("mars.md")
    assert all(retriever.name in h.stages for h in hits)
    if params.mode is RetrievalMode.HYBRID:  # each retriever's rank, where it found the chunk
        assert hits[0].dense_rank is not None
        assert set(hits[0].to_dict()["stages"]) >= {"dense", retriever.name}
    with pytest.raises(EmptyQuery):
        search("  ", params, retriever, index._open(create=False))


def test_native_search_needs_a_store_that_searches_itself() -> None:
    from pydantic import ValidationError

    from ragline.config import RaglineConfig

    with pytest.raises(ValidationError, match='search = "native" needs backend = "postgres"'):
        RaglineConfig.model_validate({"store": {"search": "native"}})
