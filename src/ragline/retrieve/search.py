"""Search: a retriever's ranking (filters resolved by the store), the filing metadata signal
(`retrieve/metadata.py`), then the optional reranker, turned into hits once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from ragline.config import SearchSettings
from ragline.embed.base import Embedder
from ragline.errors import ConfigError, EmptyQuery
from ragline.retrieve import retrievers
from ragline.retrieve.base import Ranking, Reranker, Retriever
from ragline.retrieve.fusion import Ranked, as_pairs, as_ranked
from ragline.retrieve.metadata import DocumentFacts, metadata_signal
from ragline.retrieve.rerank import NoReranker
from ragline.retrieve.retrievers import (
    BM25Retriever,
    DenseRetriever,
    HybridRetriever,
    NativeSearch,
    StoreDenseRetriever,
    StoreKeywordRetriever,
)
from ragline.store.base import Store, StoredChunk
from ragline.store.derived import DerivedIndex
from ragline.store.keyword import BM25Config
from ragline.types import FusionMethod, Hit, RetrievalMode, Stage

_DEFAULTS = SearchSettings()  # the defaults live in one place: config.SearchSettings
_KNOBS = ("mode", "k", "fusion", "rrf_k", "alpha", "depth", "metadata_boost")


@dataclass(frozen=True, slots=True)
class SearchParams:
    """One search's knobs: the `[search]` settings (defaults from `SearchSettings`) plus the
    call's filters."""

    mode: RetrievalMode = _DEFAULTS.mode
    k: int = _DEFAULTS.k
    fusion: FusionMethod = _DEFAULTS.fusion
    rrf_k: int = _DEFAULTS.rrf_k
    alpha: float = _DEFAULTS.alpha
    depth: int = _DEFAULTS.depth
    metadata_boost: float = _DEFAULTS.metadata_boost
    where: dict[str, str | Sequence[str]] = field(default_factory=dict)
    path_prefix: str | None = None

    @classmethod
    def from_settings(cls, settings: SearchSettings, **overrides: Any) -> SearchParams:
        """`settings`, with every override that is not None in its place."""
        values: dict[str, Any] = {name: getattr(settings, name) for name in _KNOBS}
        values.update({name: value for name, value in overrides.items() if value is not None})
        values["mode"] = RetrievalMode(values["mode"])
        values["fusion"] = FusionMethod(values["fusion"])
        return cls(**values)

    def __post_init__(self) -> None:
        problems = [f"{name} must be {rule} (got {value!r})" for name, value, ok, rule in (
            ("k", self.k, _is_int(self.k) and self.k >= 1, "a whole number >= 1"),
            ("depth", self.depth, _is_int(self.depth) and self.depth >= 1, "a whole number >= 1"),
            ("rrf_k", self.rrf_k, _is_int(self.rrf_k) and self.rrf_k >= 1, "a whole number >= 1"),
            ("alpha", self.alpha, isinstance(self.alpha, int | float) and 0 <= self.alpha <= 1,
             "between 0 and 1"),
            ("metadata_boost", self.metadata_boost,
             isinstance(self.metadata_boost, int | float) and self.metadata_boost >= 0, ">= 0"),
        ) if not ok]
        if problems:
            raise ConfigError("search: " + "; ".join(problems))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def search(
    query: str,
    params: SearchParams,
    retriever: Retriever,
    store: Store,
    reranker: Reranker | None = None,
    facts: DocumentFacts | None = None,
) -> list[Hit]:
    """The top `params.k` hits of `retriever` for `query` (re-scored by the filing metadata
    signal, then `reranker`, when they apply); each hit records the rank and score every stage
    gave it. `facts` caches the documents' filing metadata between searches."""
    _require_query(query)
    if isinstance(reranker, NoReranker):
        reranker = None
    wanted = params.k if reranker is None else max(params.k, reranker.depth)
    signal = metadata_signal(query, params.metadata_boost, store, facts)
    allowed = allowed_rowids(store, params)
    if signal is None:
        ranking = retriever.rank(query, wanted, allowed)
    else:  # the signal re-scores the fused top `depth`, so a filing further down can climb
        ranking = signal.apply(retriever.rank(query, max(wanted, params.depth), allowed),
                               store, wanted)
    hits = hits_for(ranking, store)
    if reranker is not None:
        hits = rerank(query, hits, reranker)
    return hits[: params.k]


def _require_query(query: str) -> None:
    if not query or not query.strip():
        raise EmptyQuery("the query is empty: give some words to search for")


def make_retriever(
    params: SearchParams,
    derived: DerivedIndex | None,
    store: Store,
    embedder: Embedder,
    *,
    native: bool = False,
    bm25: BM25Config | None = None,
) -> Retriever:
    """The retriever `params.mode` asks for: over the derived search files, or (`native`) the
    store's own HNSW and full-text indexes (BM25 with `bm25`'s k1 and b)."""
    keyword: Retriever
    dense: Retriever
    if native:
        if not hasattr(store, "dense_candidates"):
            raise ConfigError('[store] search = "native" needs a store that searches itself '
                              '(backend = "postgres"); SQLite uses the search files')
        keyword = StoreKeywordRetriever(cast("NativeSearch", store), bm25 or BM25Config())
        dense = StoreDenseRetriever(cast("NativeSearch", store), embedder)
    else:
        assert derived is not None
        keyword, dense = BM25Retriever(derived), DenseRetriever(derived, embedder)
    if params.mode is RetrievalMode.BM25:
        return keyword
    if params.mode is RetrievalMode.DENSE:
        return dense
    return HybridRetriever(keyword, dense, fusion=params.fusion, alpha=params.alpha,
                           rrf_k=params.rrf_k, depth=params.depth)


def candidate_lists(query: str, depth: int, retriever: Retriever, store: Store,
                    params: SearchParams) -> dict[str, list[tuple[int, float]]]:
    """Each retriever's ranked (row id, score) candidates before fusion (for sweeps)."""
    _require_query(query)
    ranking = retriever.rank(query, depth, allowed_rowids(store, params))
    return {name: as_pairs(ranked) for name, ranked in ranking.stages.items()
            if name != ranking.name or len(ranking.stages) == 1}


def fuse(lists: dict[str, list[tuple[int, float]]], params: SearchParams) -> list[tuple[int, float]]:
    """The final top-k (row id, score) list: one retriever's list as is, or the fusion of two
    (the keyword list weighted 1 - alpha, "dense" alpha), as `HybridRetriever` fuses them."""
    ranked = {name: as_ranked(pairs) for name, pairs in lists.items()}
    weights = {name: (params.alpha if name == "dense" else 1.0 - params.alpha) for name in ranked}
    return as_pairs(retrievers.fuse(ranked, params.fusion, k=params.k, rrf_k=params.rrf_k,
                                    weights=weights))


def allowed_rowids(store: Store, params: SearchParams) -> npt.NDArray[np.int64] | None:
    """The row ids the filters allow (None: no filter)."""
    if not params.where and params.path_prefix is None:
        return None
    return np.asarray(store.rowids_matching(params.where, params.path_prefix), dtype=np.int64)


def hits_for(ranking: Ranking, store: Store,
             stored: Mapping[int, StoredChunk] | None = None) -> list[Hit]:
    """Hits for a ranking's final list only (those chunks fetched, unless `stored` already
    holds them), with every stage's rank and score of each; a chunk deleted since the ranking
    was made is left out."""
    rowids, scores = ranking.final
    wanted = rowids.tolist()
    if stored is None:
        stored = store.chunks_by_rowid(wanted)
    stages = {name: _ranks_of(wanted, ranked) for name, ranked in ranking.stages.items()}
    hits: list[Hit] = []
    for rowid, score in zip(wanted, scores.tolist(), strict=True):
        item = stored.get(rowid)
        if item is None:
            continue
        hits.append(Hit(
            chunk=item.chunk, score=score, rank=len(hits) + 1,
            stages={name: at[rowid] for name, at in stages.items() if rowid in at},
            doc_title=item.doc_title, doc_type=item.doc_type, source_path=item.source_path,
        ))
    return hits


def rerank(query: str, hits: list[Hit], reranker: Reranker) -> list[Hit]:
    """`reranker`'s order of the top `reranker.depth` of `hits`, then the rest in retrieval
    order (as `Index.rerank_rows` does for eval and tune), renumbered; each reranked hit
    records the reranker's stage."""
    head, tail = hits[: reranker.depth], hits[reranker.depth:]
    chosen = reranker.rerank(query, head)
    given = {hit.chunk.id for hit in head}
    if any(hit.chunk.id not in given for hit in chosen):
        raise ConfigError(f"reranker {reranker.name!r} returned a hit it was not given")
    reranked = [replace(hit, rank=i, stages={**hit.stages, reranker.name: Stage(i, hit.score)})
                for i, hit in enumerate(chosen, start=1)]
    return reranked + [replace(hit, rank=i) for i, hit in enumerate(tail, len(reranked) + 1)]


def _ranks_of(rowids: list[int], ranked: Ranked) -> dict[int, Stage]:
    """The Stage (1-based rank, score) in `ranked` of each of `rowids` that it holds."""
    listed, scores = ranked
    at = {row: i for i, row in enumerate(listed.tolist())}
    return {row: Stage(at[row] + 1, float(scores[at[row]])) for row in rowids if row in at}
