"""The data that flows through ragline: documents, chunks, search hits.

Frozen dataclasses with explicit fields. Character offsets are always into
`Document.text`, so a citation can point at an exact span.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class DocType(enum.StrEnum):
    TXT = "txt"
    MARKDOWN = "md"
    HTML = "html"
    PDF = "pdf"
    DOCX = "docx"
    JSONL = "jsonl"


@dataclass(frozen=True, slots=True)
class Heading:
    """A heading found in a document: where its line starts, its level (1 = top) and title."""

    start: int
    level: int
    title: str


@dataclass(frozen=True, slots=True)
class Document:
    """One loaded document.

    `id` is stable: the path relative to the ingested root (posix), or a record's `_id`.
    `content_hash` is the sha256 of `text`, so unchanged documents are skipped on re-ingest.
    """

    id: str
    text: str
    doc_type: DocType
    content_hash: str
    title: str = ""
    source_path: str | None = None
    modified: float | None = None
    headings: tuple[Heading, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A span of a document: `text == document.text[start:end]` always holds."""

    id: str
    doc_id: str
    ordinal: int
    text: str
    start: int
    end: int
    heading_path: tuple[str, ...] = ()
    token_count: int = 0
    pages: tuple[int, ...] = ()  # 1-based pages it spans, as a PDF viewer numbers them; () if unpaged

    @property
    def page(self) -> int | None:
        """The first page the chunk is on (None for a document without pages)."""
        return self.pages[0] if self.pages else None


def page_label(pages: Sequence[int]) -> str:
    """"p. 47", "pp. 47-48", or "" for a document without pages."""
    if not pages:
        return ""
    first, last = pages[0], pages[-1]
    return f"p. {first}" if first == last else f"pp. {first}-{last}"


class RetrievalMode(enum.StrEnum):
    BM25 = "bm25"
    DENSE = "dense"
    HYBRID = "hybrid"


class FusionMethod(enum.StrEnum):
    RRF = "rrf"
    MINMAX = "minmax"


class Stage(NamedTuple):
    """What one stage (a retriever, the fusion, a reranker) said of a hit: its 1-based rank in
    that stage's list and its score there."""

    rank: int
    score: float


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result: the chunk, its final score and rank, and the rank and score of every
    stage that listed it (`stages`, by stage name, in the order the stages ran; a retriever that
    did not find the chunk has no entry)."""

    chunk: Chunk
    score: float
    rank: int
    stages: Mapping[str, Stage] = field(default_factory=dict)
    doc_title: str = ""
    doc_type: str = ""
    source_path: str | None = None

    def stage(self, name: str) -> Stage | None:
        return self.stages.get(name)

    @property
    def bm25_rank(self) -> int | None:
        return _rank(self.stages.get("bm25"))

    @property
    def dense_rank(self) -> int | None:
        return _rank(self.stages.get("dense"))

    @property
    def bm25_score(self) -> float | None:
        return _score(self.stages.get("bm25"))

    @property
    def dense_score(self) -> float | None:
        """Cosine similarity of the query and the chunk, when a dense retriever listed it."""
        return _score(self.stages.get("dense"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "score": self.score,
            "doc_id": self.chunk.doc_id,
            "chunk_id": self.chunk.id,
            "start": self.chunk.start,
            "end": self.chunk.end,
            "heading_path": list(self.chunk.heading_path),
            "page": self.chunk.page,
            "pages": list(self.chunk.pages),
            "title": self.doc_title,
            "type": self.doc_type,
            "path": self.source_path,
            "stages": {name: {"rank": s.rank, "score": s.score} for name, s in self.stages.items()},
            # the two retrievers of the default search, flat (the JSON of earlier versions)
            "bm25_rank": self.bm25_rank,
            "dense_rank": self.dense_rank,
            "bm25_score": self.bm25_score,
            "dense_score": self.dense_score,
            "text": self.chunk.text,
        }


def _rank(stage: Stage | None) -> int | None:
    return None if stage is None else stage.rank


def _score(stage: Stage | None) -> float | None:
    return None if stage is None else stage.score
