"""The data that flows through ragline: documents, chunks, search hits.

Frozen dataclasses with explicit fields. Character offsets are always into
`Document.text`, so a citation can point at an exact span.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


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


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result: the chunk, its final score, and each retriever's 1-based rank (None = not found)."""

    chunk: Chunk
    score: float
    rank: int
    bm25_rank: int | None = None
    dense_rank: int | None = None
    bm25_score: float | None = None
    dense_score: float | None = None
    doc_title: str = ""
    doc_type: str = ""
    source_path: str | None = None

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
            "bm25_rank": self.bm25_rank,
            "dense_rank": self.dense_rank,
            "bm25_score": self.bm25_score,
            "dense_score": self.dense_score,
            "text": self.chunk.text,
        }
