"""The retrievers: BM25 and exact dense search over the derived search files, the store's own
dense (pgvector HNSW) and full-text search, and `HybridRetriever`, which fuses a keyword and a
dense retriever (any two: fusion composes them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ragline.embed.base import Embedder
from ragline.retrieve.base import Ranking, Retriever
from ragline.retrieve.fusion import (
    Ranked,
    Rows,
    as_ranked,
    minmax_fusion,
    reciprocal_rank_fusion,
    top,
)
from ragline.store.derived import DerivedIndex
from ragline.store.keyword import BM25Config, Scores
from ragline.types import FusionMethod


class BM25Retriever:
    """bm25s (Lucene BM25) over the derived search files; chunks sharing no term are left out."""

    name = "bm25"

    def __init__(self, derived: DerivedIndex) -> None:
        self._derived = derived

    def rank(self, query: str, depth: int, allowed: Rows | None = None) -> Ranking:
        derived = self._derived
        if derived.bm25 is None or derived.size == 0:
            return Ranking.empty(self.name)
        scores = derived.bm25.scores(query)
        return Ranking.single(self.name, _top_rows(derived, scores, allowed, depth,
                                                   positive_only=True))


class DenseRetriever:
    """Exact cosine similarity over every embedding in the derived search files (numpy)."""

    name = "dense"

    def __init__(self, derived: DerivedIndex, embedder: Embedder) -> None:
        self._derived, self._embedder = derived, embedder

    def rank(self, query: str, depth: int, allowed: Rows | None = None) -> Ranking:
        derived = self._derived
        if derived.size == 0:
            return Ranking.empty(self.name)
        vector = self._embedder.embed([query], kind="query")[0]
        return Ranking.single(self.name, _top_rows(derived, derived.vectors.scores(vector),
                                                   allowed, depth))


class NativeSearch(Protocol):
    """A store that searches itself (PostgresStore): (row id, score) lists, best first."""

    def dense_candidates(self, query: npt.NDArray[np.float32], depth: int, *,
                         allowed: Rows | None = None) -> list[tuple[int, float]]: ...

    def keyword_candidates(self, query: str, depth: int, *, allowed: Rows | None = None,
                           k1: float, b: float) -> list[tuple[int, float]]: ...


class StoreDenseRetriever:
    """The store's approximate nearest-neighbour index (pgvector HNSW, cosine)."""

    name = "dense"

    def __init__(self, store: NativeSearch, embedder: Embedder) -> None:
        self._store, self._embedder = store, embedder

    def rank(self, query: str, depth: int, allowed: Rows | None = None) -> Ranking:
        vector = self._embedder.embed([query], kind="query")[0]
        return Ranking.single(self.name, _ordered(
            self._store.dense_candidates(vector, depth, allowed=allowed)))


class StoreKeywordRetriever:
    """The store's keyword search: BM25 over its full-text index (PostgreSQL `tsvector`), with
    the index's `[bm25]` k1 and b."""

    name = "bm25"

    def __init__(self, store: NativeSearch, bm25: BM25Config) -> None:
        self._store, self._bm25 = store, bm25

    def rank(self, query: str, depth: int, allowed: Rows | None = None) -> Ranking:
        return Ranking.single(self.name, _ordered(self._store.keyword_candidates(
            query, depth, allowed=allowed, k1=self._bm25.k1, b=self._bm25.b)))


@dataclass(frozen=True, slots=True)
class HybridRetriever:
    """A keyword and a dense retriever, each asked for `depth` candidates, fused: min-max
    normalised scores weighted `alpha` (dense) and 1 - `alpha`, or reciprocal rank fusion."""

    keyword: Retriever
    dense: Retriever
    fusion: FusionMethod = FusionMethod.MINMAX
    alpha: float = 0.4
    rrf_k: int = 60
    depth: int = 200
    name: str = "hybrid"

    def rank(self, query: str, depth: int, allowed: Rows | None = None) -> Ranking:
        each = max(self.depth, depth)
        stages = {**self.keyword.rank(query, each, allowed).stages,
                  **self.dense.rank(query, each, allowed).stages}
        lists = {self.keyword.name: stages[self.keyword.name], self.dense.name: stages[self.dense.name]}
        stages[self.name] = fuse(lists, self.fusion, k=depth, rrf_k=self.rrf_k,
                                 weights={self.dense.name: self.alpha,
                                          self.keyword.name: 1.0 - self.alpha})
        return Ranking(stages, self.name)


def fuse(lists: Mapping[str, Ranked], fusion: FusionMethod, *, k: int, rrf_k: int = 60,
         weights: Mapping[str, float]) -> Ranked:
    """The top k of the fused lists (one list: its top k as is)."""
    if not lists:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    if len(lists) == 1:
        rows, scores = next(iter(lists.values()))
        return rows[:k], scores[:k]
    if fusion is FusionMethod.RRF:
        fused = reciprocal_rank_fusion(lists, k=rrf_k)
    else:
        fused = minmax_fusion(lists, weights)
    return top(fused, k)


def _ordered(pairs: list[tuple[int, float]]) -> Ranked:
    """A store's (row id, score) list in the retriever order: score descending, then row id."""
    rows, scores = as_ranked(pairs)
    order = np.lexsort((rows, -scores))
    return rows[order], scores[order]


def _top_rows(derived: DerivedIndex, scores: Scores, allowed: Rows | None, depth: int, *,
              positive_only: bool = False) -> Ranked:
    """Row ids of the `depth` best scores (score descending, then row id: the derived files
    hold the chunks in row-id order, so position order is row-id order)."""
    if allowed is not None:
        scores = np.where(np.isin(derived.rowids, allowed), scores, -np.inf)
    valid = scores > 0 if positive_only else np.isfinite(scores)
    candidates = np.flatnonzero(valid)
    if candidates.size > depth:
        part = np.argpartition(-scores[candidates], depth - 1)[:depth]
        candidates = candidates[part]
    picked = scores[candidates].astype(np.float64)
    order = np.lexsort((candidates, -picked))
    return derived.rowids[candidates[order]].astype(np.int64), picked[order]
