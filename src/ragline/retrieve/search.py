"""Search over a derived index: BM25, dense, or a fusion of both."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ragline.config import SearchSettings
from ragline.embed.base import Embedder
from ragline.errors import ConfigError, EmptyQuery
from ragline.retrieve.fusion import (
    Ranked,
    as_pairs,
    as_ranked,
    minmax_fusion,
    reciprocal_rank_fusion,
    top,
)
from ragline.store.base import Store
from ragline.store.derived import DerivedIndex
from ragline.store.keyword import Scores
from ragline.types import FusionMethod, Hit, RetrievalMode

_DEFAULTS = SearchSettings()  # the defaults live in one place: config.SearchSettings
_KNOBS = ("mode", "k", "fusion", "rrf_k", "alpha", "depth")


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
        ) if not ok]
        if problems:
            raise ConfigError("search: " + "; ".join(problems))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def search(
    query: str,
    params: SearchParams,
    derived: DerivedIndex,
    store: Store,
    embedder: Embedder,
) -> list[Hit]:
    """Rank the index's chunks for `query`; each hit records every retriever's rank."""
    lists = _candidates(query, params, derived, store, embedder)
    return _to_hits(_fuse(lists, params), lists, derived, store)


def candidate_lists(
    query: str,
    params: SearchParams,
    derived: DerivedIndex,
    store: Store,
    embedder: Embedder,
) -> dict[str, list[tuple[int, float]]]:
    """Each retriever's ranked (row, score) candidates, before fusion."""
    return {name: as_pairs(ranked)
            for name, ranked in _candidates(query, params, derived, store, embedder).items()}


def fuse(lists: dict[str, list[tuple[int, float]]], params: SearchParams) -> list[tuple[int, float]]:
    """The final top-k (row, score) list: one retriever's list as is, or the fusion of two."""
    return as_pairs(_fuse({name: as_ranked(pairs) for name, pairs in lists.items()}, params))


def _candidates(
    query: str,
    params: SearchParams,
    derived: DerivedIndex,
    store: Store,
    embedder: Embedder,
) -> dict[str, Ranked]:
    if not query or not query.strip():
        raise EmptyQuery("the query is empty: give some words to search for")
    lists: dict[str, Ranked] = {}
    if derived.size == 0:
        return lists
    mask = _filter_mask(derived, store, params)
    depth = params.k if params.mode is not RetrievalMode.HYBRID else max(params.depth, params.k)
    if params.mode in (RetrievalMode.BM25, RetrievalMode.HYBRID) and derived.bm25 is not None:
        lists["bm25"] = _top_rows(derived.bm25.scores(query), mask, depth, positive_only=True)
    if params.mode in (RetrievalMode.DENSE, RetrievalMode.HYBRID):
        vector = embedder.embed([query], kind="query")[0]
        lists["dense"] = _top_rows(derived.vectors.scores(vector), mask, depth)
    return lists


def _fuse(lists: dict[str, Ranked], params: SearchParams) -> Ranked:
    if not lists:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    if len(lists) == 1:
        rows, scores = next(iter(lists.values()))
        return rows[: params.k], scores[: params.k]
    if params.fusion is FusionMethod.RRF:
        fused = reciprocal_rank_fusion(lists, k=params.rrf_k)
    else:
        fused = minmax_fusion(lists, {"dense": params.alpha, "bm25": 1.0 - params.alpha})
    return top(fused, params.k)


def _filter_mask(
    derived: DerivedIndex, store: Store, params: SearchParams
) -> npt.NDArray[np.bool_] | None:
    if not params.where and params.path_prefix is None:
        return None
    allowed = np.asarray(store.rowids_matching(params.where, params.path_prefix), dtype=np.int64)
    return np.isin(derived.rowids, allowed)


def _top_rows(
    scores: Scores, mask: npt.NDArray[np.bool_] | None, depth: int, *, positive_only: bool = False
) -> Ranked:
    """Row positions of the `depth` best scores (stable order: score desc, then position)."""
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    valid = scores > 0 if positive_only else np.isfinite(scores)
    candidates = np.flatnonzero(valid)
    if candidates.size > depth:
        part = np.argpartition(-scores[candidates], depth - 1)[:depth]
        candidates = candidates[part]
    picked = scores[candidates].astype(np.float64)
    order = np.lexsort((candidates, -picked))
    return candidates[order].astype(np.int64), picked[order]


def _to_hits(
    ranked: Ranked, lists: dict[str, Ranked], derived: DerivedIndex, store: Store
) -> list[Hit]:
    """Hits for the fused top-k only: k chunks fetched, each retriever's rank looked up."""
    rows, scores = ranked
    ranks = {name: _ranks_of(rows, candidates) for name, candidates in lists.items()}
    rowids = derived.rowids[rows].tolist()
    stored = store.chunks_by_rowid(rowids)
    hits = []
    for position, (row, score) in enumerate(zip(rows.tolist(), scores.tolist(), strict=True),
                                            start=1):
        item = stored.get(rowids[position - 1])
        if item is None:  # deleted since the derived index was built
            continue
        bm25 = ranks.get("bm25", {}).get(row)
        dense = ranks.get("dense", {}).get(row)
        hits.append(Hit(
            chunk=item.chunk, score=score, rank=position,
            bm25_rank=bm25[0] if bm25 else None, bm25_score=bm25[1] if bm25 else None,
            dense_rank=dense[0] if dense else None, dense_score=dense[1] if dense else None,
            doc_title=item.doc_title, doc_type=item.doc_type, source_path=item.source_path,
        ))
    return hits


def _ranks_of(rows: npt.NDArray[np.int64], candidates: Ranked) -> dict[int, tuple[int, float]]:
    """(1-based rank, score) in `candidates` of each of `rows` that it holds."""
    listed, scores = candidates
    at = {row: i for i, row in enumerate(listed.tolist())}
    return {row: (at[row] + 1, float(scores[at[row]])) for row in rows.tolist() if row in at}
