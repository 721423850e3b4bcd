"""Parent-document context for a model answer: each hit's chunk widened to its page(s) or its
heading section, within a token budget per source.

A 200-token chunk of a 300-page filing often holds the number but not the table header, the
period or the sentence that says what it counts; the page or section around it does. The
widened source is still a span of the document (`text == doc.text[start:end]`), so the prompt's
numbered sources, claim verification and citations work on it unchanged.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from ragline.config import ContextMode
from ragline.documents.chunking import TokenCounter, page_starts, pages_of
from ragline.types import Chunk, Document, Hit

Span = tuple[int, int]


@dataclass
class _Group:
    """Hits whose widened spans overlap: one source, led by the best-ranked of them."""

    hit: Hit
    doc: Document | None
    outer: Span  # the widened span (page(s) or section), before the budget
    cores: list[Span]  # the hits' own chunks, best-ranked first
    widened: bool  # False: the document has no pages (headings); the chunk stays, unmerged


def expand_context(
    hits: Sequence[Hit],
    document: Callable[[str], Document | None],
    mode: ContextMode,
    budget: int,
    count_tokens: TokenCounter,
) -> list[Hit]:
    """`hits` with each chunk widened to its page(s) (`PAGE`) or heading section (`SECTION`),
    at most `budget` tokens (`count_tokens`), trimmed around the hit so the hit's chunk stays
    inside; hits whose widened spans overlap become one source, in the best-ranked one's place
    (its chunk id, heading path and scores), renumbered. A hit of a document without pages (or
    headings) keeps its chunk; `CHUNK` returns the hits as they are.

    Only model answers use this (`ask` with a model); extractive answers quote the chunks."""
    if mode is ContextMode.CHUNK:
        return list(hits)
    docs: dict[str, Document | None] = {}
    groups: list[_Group] = []
    for hit in hits:
        chunk = hit.chunk
        if chunk.doc_id not in docs:
            docs[chunk.doc_id] = document(chunk.doc_id)
        doc = docs[chunk.doc_id]
        span = (chunk.start, chunk.end)
        outer = (_page_span(doc, chunk) if mode is ContextMode.PAGE else _section_span(doc, chunk)
                 ) if doc is not None else None
        _add(groups, _Group(hit, doc, outer or span, [span], outer is not None))
    return [_source(g, rank, budget, count_tokens) for rank, g in enumerate(groups, 1)]


def _add(groups: list[_Group], new: _Group) -> None:
    """Merge `new` into the first group of its document whose span overlaps, and that group
    into any later one its wider span now overlaps, until no two groups overlap."""
    for group in groups:
        if _overlaps(group, new):
            group.outer = (min(group.outer[0], new.outer[0]), max(group.outer[1], new.outer[1]))
            group.cores += new.cores
            later = [g for g in groups if g is not group and _overlaps(group, g)]
            for other in later:
                groups.remove(other)
            for other in later:
                _add(groups, other)
            return
    groups.append(new)


def _overlaps(a: _Group, b: _Group) -> bool:
    return (a.widened and b.widened and a.hit.chunk.doc_id == b.hit.chunk.doc_id
            and a.outer[0] < b.outer[1] and b.outer[0] < a.outer[1])


def _source(group: _Group, rank: int, budget: int, count_tokens: TokenCounter) -> Hit:
    hit, doc = group.hit, group.doc
    if doc is None or not group.widened:
        return replace(hit, rank=rank)
    text = doc.text
    best = group.cores[0]
    union = (min(s for s, _ in group.cores), max(e for _, e in group.cores))
    # Every merged hit's chunk stays when they fit the budget together; else the best one's.
    core = union if count_tokens([text[union[0]:union[1]]])[0] <= budget else best
    start, end = _trim(text, _strip(text, group.outer, core), core, budget, count_tokens)
    widened = doc.text[start:end]
    chunk = replace(hit.chunk, text=widened, start=start, end=end,
                    token_count=count_tokens([widened])[0],
                    pages=pages_of(page_starts(doc), start, end))
    return replace(hit, chunk=chunk, rank=rank)


def _page_span(doc: Document, chunk: Chunk) -> Span | None:
    """The page(s) the chunk is on, with the chunk (None: the document has no pages)."""
    starts = page_starts(doc)
    pages = chunk.pages or pages_of(starts, chunk.start, chunk.end)
    if not starts or not pages:
        return None
    first, last = pages[0], pages[-1]
    end = starts[last] if last < len(starts) else len(doc.text)
    return min(starts[first - 1], chunk.start), max(end, chunk.end)


def _section_span(doc: Document, chunk: Chunk) -> Span | None:
    """The chunk's heading section, from its heading to the next heading of the same or a
    higher level (before the first heading: the text before it), with the chunk (None: the
    document has no headings)."""
    headings = sorted(doc.headings, key=lambda h: h.start)
    if not headings:
        return None
    at = bisect.bisect_right([h.start for h in headings], chunk.start) - 1
    if at < 0:
        start, end = 0, headings[0].start
    else:
        level = headings[at].level
        start = headings[at].start
        end = next((h.start for h in headings[at + 1:] if h.level <= level), len(doc.text))
    return min(start, chunk.start), max(end, chunk.end)


def _strip(text: str, outer: Span, core: Span) -> Span:
    """`outer` without surrounding whitespace (never cutting into `core`)."""
    start, end = outer
    while start < core[0] and text[start].isspace():
        start += 1
    while end > core[1] and text[end - 1].isspace():
        end -= 1
    return start, end


def _trim(text: str, outer: Span, core: Span, budget: int, count_tokens: TokenCounter) -> Span:
    """The widest span inside `outer` around `core` (kept whole, even over budget) of at most
    `budget` tokens, growing equally on both sides (a side with no room leaves it to the
    other), cut at word boundaries."""
    start, end = outer
    total = count_tokens([text[start:end]])[0]
    if total <= budget:
        return outer
    core_tokens = count_tokens([text[core[0]:core[1]]])[0]
    if core_tokens >= budget:
        return core
    # Characters of room for the budget left, at this span's characters per token; shrunk
    # until the count agrees (tokens per character vary along a span).
    room = (budget - core_tokens) * (end - start) / max(total, 1)
    for _ in range(12):
        before = min(core[0] - start, room / 2)
        after = min(end - core[1], room - before)
        before = min(core[0] - start, room - after)
        span = (_word_start(text, core[0] - int(before), core[0]),
                _word_end(text, core[1] + int(after), core[1]))
        tokens = count_tokens([text[span[0]:span[1]]])[0]
        if tokens <= budget:
            return span
        room *= max(0.5, min(0.95, (budget - core_tokens) / max(tokens - core_tokens, 1)))
    return core


def _word_start(text: str, at: int, limit: int) -> int:
    """`at`, moved forward to the start of a word (at most to `limit`)."""
    if at <= 0 or text[at - 1].isspace():
        return at
    while at < limit and not text[at].isspace():
        at += 1
    while at < limit and text[at].isspace():
        at += 1
    return at


def _word_end(text: str, at: int, limit: int) -> int:
    """`at`, moved back to the end of a word (at least to `limit`)."""
    if at >= len(text) or text[at].isspace():
        return at
    while at > limit and not text[at - 1].isspace():
        at -= 1
    while at > limit and text[at - 1].isspace():
        at -= 1
    return at
