"""The retrieval seams: a `Retriever` ranks a store's chunks for a query, a `Reranker` reorders
the hits a search is about to return.

Every implementation passes one conformance suite (`tests/test_retriever_conformance.py`,
`tests/test_reranker_conformance.py`); adding one means implementing the protocol and adding it
to that suite's parameters, nothing else.

A retriever answers in the store's chunk row ids, not in `Hit`s: a hybrid search asks two
retrievers for 200 candidates each and returns 10, and building a hit costs a database fetch
(issue #9 cut the per-query overhead by fetching only the hits returned). `search.search` turns
the final ranking into hits once, recording in each hit the rank and score that every stage of
the ranking gave it (`Hit.stages`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ragline.retrieve.fusion import Ranked, Rows, Values
from ragline.types import Hit


@dataclass(frozen=True, slots=True)
class Ranking:
    """A retriever's answer: chunk row ids best first with their scores (`final`), and the list
    of every stage that went into it by stage name, its own last (a plain retriever has one
    stage, a hybrid three: the keyword list, the dense list, and the fusion)."""

    stages: Mapping[str, Ranked]
    name: str

    @property
    def final(self) -> Ranked:
        return self.stages[self.name]

    @property
    def rowids(self) -> Rows:
        return self.final[0]

    @property
    def scores(self) -> Values:
        return self.final[1]

    @classmethod
    def single(cls, name: str, ranked: Ranked) -> Ranking:
        return cls({name: ranked}, name)

    @classmethod
    def empty(cls, name: str) -> Ranking:
        return cls.single(name, (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)))


@runtime_checkable
class Retriever(Protocol):
    """Ranks the chunks of one index for a query.

    `rank(query, depth, allowed)` returns at most `depth` chunks, best first (ties by row id),
    only chunks whose row id is in `allowed` when it is given (the metadata filters, resolved
    by the store), and never a chunk with no evidence for the query (a keyword retriever skips
    chunks that share no term with it). `name` is the stage name hits record it under; the
    dense retrievers are all "dense" because their score means the same (cosine similarity).
    """

    @property
    def name(self) -> str: ...

    def rank(self, query: str, depth: int, allowed: Rows | None = None) -> Ranking: ...


@runtime_checkable
class Reranker(Protocol):
    """Reorders the hits of a search (a cross-encoder, an LLM, a rule).

    `rerank(query, hits)` returns some or all of `hits`, best first, each with its new `score`
    (rank and stage records are set by the caller); it never invents a hit. `name` is the stage
    name hits record it under. `depth` is how many retrieved hits it wants to see.
    """

    @property
    def name(self) -> str: ...

    @property
    def depth(self) -> int: ...

    def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]: ...
