"""Split documents into chunks sized in the embedding model's tokens, with exact offsets.

Every chunk satisfies `chunk.text == document.text[chunk.start:chunk.end]`, starts and ends on
non-whitespace, and is numbered 0..n-1 in document order.
"""

from __future__ import annotations

import bisect
import enum
import hashlib
import itertools
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

from ragline.documents._pieces import MAX_CHARS_PER_TOKEN, Piece, merge_pieces, split_ranges
from ragline.errors import ConfigError, RaglineError
from ragline.types import Chunk, DocType, Document, Heading

TokenCounter = Callable[[Sequence[str]], list[int]]
"""Counts tokens of many texts in one call (like `Embedder.count_tokens`); no special tokens."""

# Bump when the splitting algorithm changes, so indexes built with the old one are rebuilt.
# 2: tables (the loaders' `tables` spans) are chunked apart from prose, a whole row at a time.
CHUNKER_VERSION = 2

_NON_SPACE = re.compile(r"\S")
_LINE_END = re.compile(r"\n")
_HEADED_TYPES = frozenset({DocType.MARKDOWN, DocType.HTML, DocType.DOCX})


class ChunkStrategy(enum.StrEnum):
    RECURSIVE = "recursive"
    HEADINGS = "headings"
    RECORD = "record"
    AUTO = "auto"


class ChunkingError(RaglineError):
    """The token counter broke its contract."""


@dataclass(frozen=True, slots=True)
class ChunkingConfig:
    """How to chunk. Sizes are in the embedding model's tokens; validated on creation."""

    strategy: ChunkStrategy = ChunkStrategy.AUTO
    chunk_tokens: int = 200
    overlap_tokens: int = 30
    record_max_tokens: int = 256

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "strategy", ChunkStrategy(self.strategy))
        except ValueError as exc:
            valid = ", ".join(s.value for s in ChunkStrategy)
            raise ConfigError(
                f"chunk strategy must be one of {valid}, not {self.strategy!r}"
            ) from exc
        _require_int("chunk_tokens", self.chunk_tokens, minimum=1)
        _require_int("overlap_tokens", self.overlap_tokens, minimum=0)
        _require_int("record_max_tokens", self.record_max_tokens, minimum=1)
        if self.overlap_tokens >= self.chunk_tokens:
            raise ConfigError(
                f"overlap_tokens ({self.overlap_tokens}) must be smaller than chunk_tokens "
                f"({self.chunk_tokens}); use 0 <= overlap_tokens < chunk_tokens"
            )

    def fingerprint(self) -> str:
        """A short stable hash of the settings (and algorithm version) that shape the chunks."""
        fields = asdict(self) | {"strategy": self.strategy.value, "version": CHUNKER_VERSION}
        encoded = json.dumps(fields, sort_keys=True).encode()
        return hashlib.sha256(encoded).hexdigest()[:16]


def _require_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, not {value!r}")


@dataclass(frozen=True, slots=True)
class _Span:
    start: int
    end: int
    heading_path: tuple[str, ...] = ()


def chunk_document(
    doc: Document, config: ChunkingConfig, count_tokens: TokenCounter
) -> list[Chunk]:
    """Split `doc` into chunks according to `config`; an empty document gives no chunks."""
    return chunk_documents([doc], config, count_tokens)[0]


def chunk_documents(
    docs: Iterable[Document], config: ChunkingConfig, count_tokens: TokenCounter
) -> list[list[Chunk]]:
    """Chunk many documents; whole records (JSONL corpora) are token-counted in one batch."""
    docs = list(docs)
    counter = _Counter(count_tokens)
    strategies = [resolve_strategy(doc, config.strategy) for doc in docs]
    chunks = _whole_records(docs, strategies, config, counter)
    for index, (doc, strategy) in enumerate(zip(docs, strategies, strict=True)):
        if index in chunks:
            continue
        tables = table_spans(doc)
        if strategy is ChunkStrategy.HEADINGS:
            sections = _sections(doc.text, doc.headings)
        else:
            sections = [(0, len(doc.text), ())]
        spans = _recursive_spans(doc.text, sections, config, counter, tables)
        chunks[index] = _to_chunks(doc, spans, counter)
    return [chunks[index] for index in range(len(docs))]


def resolve_strategy(doc: Document, strategy: ChunkStrategy) -> ChunkStrategy:
    """AUTO becomes RECORD for JSONL, HEADINGS for headed md/html/docx, RECURSIVE otherwise."""
    if strategy is not ChunkStrategy.AUTO:
        return strategy
    if doc.doc_type is DocType.JSONL:
        return ChunkStrategy.RECORD
    if doc.doc_type in _HEADED_TYPES and doc.headings:
        return ChunkStrategy.HEADINGS
    return ChunkStrategy.RECURSIVE


class _Counter:
    """The token counter, checked (one count per text), with an early-stopping variant for
    "does this record fit in `limit` tokens?" (its count is exact when it fits)."""

    def __init__(self, count_tokens: TokenCounter) -> None:
        self._count_tokens = count_tokens

    def __call__(self, texts: Sequence[str]) -> list[int]:
        return self._checked(texts, list(self._count_tokens(texts)) if texts else [])

    def capped(self, texts: Sequence[str], limit: int) -> list[int]:
        from ragline.embed.base import count_tokens_capped

        counts = count_tokens_capped(self._count_tokens, texts, limit) if texts else []
        return self._checked(texts, counts)

    @staticmethod
    def _checked(texts: Sequence[str], counts: list[int]) -> list[int]:
        if len(counts) != len(texts):
            raise ChunkingError(
                f"token counter returned {len(counts)} counts for {len(texts)} texts; "
                "it must return one count per text"
            )
        return counts


def _to_chunks(
    doc: Document, spans: list[_Span], count: TokenCounter, tokens: list[int] | None = None
) -> list[Chunk]:
    """Chunks from already-trimmed spans, counted in one batch unless `tokens` are known."""
    if tokens is None:
        tokens = count([doc.text[s.start : s.end] for s in spans])
    starts = page_starts(doc)
    return [
        Chunk(
            id=f"{doc.id}#{ordinal}",
            doc_id=doc.id,
            ordinal=ordinal,
            text=doc.text[span.start : span.end],
            start=span.start,
            end=span.end,
            heading_path=span.heading_path,
            token_count=n,
            pages=pages_of(starts, span.start, span.end),
        )
        for ordinal, (span, n) in enumerate(zip(spans, tokens, strict=True))
    ]


def page_starts(doc: Document) -> list[int]:
    """The offset in `doc.text` where each page begins (PDFs record them; [] for other types)."""
    starts = doc.metadata.get("page_starts") if isinstance(doc.metadata, dict) else None
    if not isinstance(starts, list) or not all(isinstance(v, int) for v in starts):
        return []
    return starts


def table_spans(doc: Document) -> list[tuple[int, int]]:
    """The (start, end) of each table in `doc.text`, in order, as the loader recorded them
    (`metadata["tables"]`); malformed or overlapping entries are ignored."""
    raw = doc.metadata.get("tables") if isinstance(doc.metadata, dict) else None
    if not isinstance(raw, list):
        return []
    spans: list[tuple[int, int]] = []
    for item in raw:
        if (isinstance(item, (list, tuple)) and len(item) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in item)):
            start, end = item
            if 0 <= start < end <= len(doc.text) and (not spans or start >= spans[-1][1]):
                spans.append((start, end))
    return spans


def pages_of(starts: Sequence[int], start: int, end: int) -> tuple[int, ...]:
    """The 1-based pages that the span [start, end) touches, given each page's start offset."""
    if not starts or end <= start:
        return ()
    first = bisect.bisect_right(starts, start)
    last = bisect.bisect_right(starts, end - 1)
    return tuple(range(max(first, 1), max(last, 1) + 1))


def _trim(text: str, start: int, end: int, path: tuple[str, ...] = ()) -> _Span | None:
    """The span without leading and trailing whitespace; None if nothing is left."""
    first = _NON_SPACE.search(text, start, end)
    if first is None:
        return None
    while text[end - 1].isspace():
        end -= 1
    return _Span(first.start(), end, path)


# --- strategies --------------------------------------------------------------------------------


def _whole_records(
    docs: list[Document],
    strategies: list[ChunkStrategy],
    config: ChunkingConfig,
    count: _Counter,
) -> dict[int, list[Chunk]]:
    """RECORD documents that fit `record_max_tokens`, as one chunk each (one counter call that
    stops tokenising a record once it is over the limit)."""
    candidates: list[tuple[int, _Span]] = []
    done: dict[int, list[Chunk]] = {}
    for index, (doc, strategy) in enumerate(zip(docs, strategies, strict=True)):
        if strategy is not ChunkStrategy.RECORD:
            continue
        span = _trim(doc.text, 0, len(doc.text))
        if span is None:
            done[index] = []
        elif span.end - span.start <= config.record_max_tokens * MAX_CHARS_PER_TOKEN:
            candidates.append((index, span))
    counts = count.capped([docs[i].text[s.start : s.end] for i, s in candidates],
                          config.record_max_tokens)
    for (index, span), tokens in zip(candidates, counts, strict=True):
        if tokens <= config.record_max_tokens:
            done[index] = _to_chunks(docs[index], [span], count, [tokens])
    return done


_Section = tuple[int, int, tuple[str, ...]]


def _sections(text: str, headings: Sequence[Heading]) -> list[_Section]:
    """(start, end, heading path) per section. A heading with no body of its own joins the
    section of its first subheading, so it never becomes a one-line chunk."""
    ordered = sorted((h for h in headings if 0 <= h.start < len(text)), key=lambda h: h.start)
    first_start = ordered[0].start if ordered else len(text)
    sections: list[_Section] = [(0, first_start, ())] if first_start > 0 else []
    stack: list[Heading] = []
    start: int | None = None  # where the current section began (earlier if a heading joined it)
    for heading, following in itertools.zip_longest(ordered, ordered[1:]):
        end = following.start if following is not None else len(text)
        while stack and stack[-1].level >= heading.level:
            stack.pop()
        stack.append(heading)
        start = heading.start if start is None else start
        joins_next = following is not None and following.level > heading.level
        if joins_next and _only_heading(text, heading.start, end):
            continue
        if end > start:
            sections.append((start, end, tuple(h.title for h in stack)))
        start = None
    return sections


def _only_heading(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] is a single line (the heading itself) plus whitespace."""
    line_end = text.find("\n", start, end)
    return line_end == -1 or text[line_end:end].isspace()


def _recursive_spans(
    text: str,
    sections: list[_Section],
    config: ChunkingConfig,
    count: TokenCounter,
    tables: Sequence[tuple[int, int]] = (),
) -> list[_Span]:
    """Each section tiled into pieces and packed into chunks; a table inside a section is
    chunked on its own, its pieces whole rows, so no chunk cuts a row and every chunk of a
    table starts at a row (a row longer than a whole chunk is the one exception: split)."""
    # Word and character splits aim for pieces small enough to pack chunks tightly and to serve
    # as overlap.
    granule = max(1, min(config.chunk_tokens // 10, config.overlap_tokens or config.chunk_tokens))
    parts = _split_at_tables(sections, tables)
    prose = [(start, end) for start, end, _, is_table in parts if not is_table]
    prose_pieces = iter(split_ranges(text, prose, config.chunk_tokens, count, granule=granule))
    rows = iter(_table_rows(text, [(a, b) for a, b, _, is_table in parts if is_table],
                            config.chunk_tokens, count, granule))
    spans: list[_Span] = []
    for _, _, path, is_table in parts:
        pieces = next(rows) if is_table else next(prose_pieces)
        merged = merge_pieces(text, pieces, limit=config.chunk_tokens,
                              overlap=config.overlap_tokens)
        spans.extend(s for s in (_trim(text, a, b, path) for a, b in merged) if s is not None)
    return spans


def _split_at_tables(
    sections: list[_Section], tables: Sequence[tuple[int, int]]
) -> list[tuple[int, int, tuple[str, ...], bool]]:
    """The sections cut at table boundaries: (start, end, heading path, is a table)."""
    parts: list[tuple[int, int, tuple[str, ...], bool]] = []
    for start, end, path in sections:
        at = start
        for t_start, t_end in tables:
            a, b = max(t_start, start), min(t_end, end)
            if a >= b:
                continue
            if a > at:
                parts.append((at, a, path, False))
            parts.append((a, b, path, True))
            at = b
        if end > at:
            parts.append((at, end, path, False))
    return parts


def _table_rows(
    text: str, tables: list[tuple[int, int]], limit: int, count: TokenCounter, granule: int
) -> list[list[Piece]]:
    """Each table tiled into its lines (rows), counted in one batch; a row over `limit` tokens
    is split like prose."""
    rows: list[list[tuple[int, int]]] = []
    for start, end in tables:
        bounds = [start, *(m.end() for m in _LINE_END.finditer(text, start, end)
                           if m.end() < end), end]
        rows.append(list(itertools.pairwise(bounds)))
    flat = [row for table in rows for row in table]
    tokens = iter(count([text[a:b] for a, b in flat]) if flat else [])
    pieces: list[list[Piece]] = []
    for table in rows:
        kept: list[Piece] = []
        for (a, b), n in zip(table, tokens, strict=False):
            if n <= limit:
                kept.append(Piece(a, b, n))
            else:
                kept.extend(split_ranges(text, [(a, b)], limit, count, granule=granule)[0])
        pieces.append(kept)
    return pieces
