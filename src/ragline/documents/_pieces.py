"""Tiling text into token-sized pieces at the best separators, and packing pieces into chunks.

Offsets only: nothing here copies the text except to hand slices to the token counter.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Counter = Callable[[Sequence[str]], list[int]]

# Split points in order of preference; each pattern matches the separator that ends a piece,
# so a piece keeps its trailing separator and pieces tile the text exactly.
SEPARATORS: tuple[re.Pattern[str], ...] = (
    re.compile(r"(?:\r?\n[ \t]*){2,}"),  # blank line: paragraphs
    re.compile(r"\r?\n"),  # line
    re.compile("[.?!]+[\"')\\]]*\\s+|[\u3002\uff01\uff1f]+"),  # sentence end (and CJK)
    re.compile(r";\s+"),
    re.compile(r",\s+"),
    re.compile(r"\s+"),  # word
)
_WORD_LEVEL = len(SEPARATORS) - 1

# Natural text averages 3-6 characters per token. A piece longer than this many characters per
# token of the limit is split without paying to tokenize it first, and no chunk grows past it:
# WordPiece turns any word over 100 characters into one [UNK], so token counts alone would let a
# megabyte of base64 become a single "one-token" chunk.
MAX_CHARS_PER_TOKEN = 16
_TYPICAL_CHARS_PER_TOKEN = 4
_NON_SPACE = re.compile(r"\S")
_UNCOUNTED = -1


@dataclass(frozen=True, slots=True)
class Piece:
    start: int
    end: int
    tokens: int

    def __len__(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class _Part:
    """A piece still being split: its range, the separator level to try next, its tokens."""

    group: int
    start: int
    end: int
    level: int = 0
    tokens: int = _UNCOUNTED

    def oversized(self, limit: int) -> bool:
        return self.end - self.start > 1 and (self.tokens == _UNCOUNTED or self.tokens > limit)


def split_ranges(
    text: str, ranges: Sequence[tuple[int, int]], limit: int, count: Counter, *, granule: int
) -> list[list[Piece]]:
    """Tile each text[start:end] with pieces of at most `limit` tokens, split at the coarsest
    separator that occurs. All ranges share one batched counter call per round of splitting.

    Word and character splits make pieces of about `granule` tokens rather than one per word or
    character: every word boundary is as good as another, and counting 100k words is slow.
    """
    parts = [_Part(group, start, end) for group, (start, end) in enumerate(ranges) if end > start]
    parts = _count(text, parts, limit, count)
    while any(part.oversized(limit) for part in parts):
        expanded: list[_Part] = []
        for part in parts:
            if part.oversized(limit):
                expanded.extend(_split_once(text, part, granule))
            else:
                expanded.append(part)
        parts = _count(text, expanded, limit, count)
    pieces: list[list[Piece]] = [[] for _ in ranges]
    for part in parts:
        pieces[part.group].append(Piece(part.start, part.end, part.tokens))
    return pieces


def _count(text: str, parts: list[_Part], limit: int, count: Counter) -> list[_Part]:
    """Fill in the token counts of uncounted parts, except certainly-oversized long ones."""
    todo = [
        index
        for index, part in enumerate(parts)
        if part.tokens == _UNCOUNTED and part.end - part.start <= limit * MAX_CHARS_PER_TOKEN
    ]
    counts = count([text[parts[i].start : parts[i].end] for i in todo])
    for index, tokens in zip(todo, counts, strict=True):
        part = parts[index]
        parts[index] = _Part(part.group, part.start, part.end, part.level, tokens)
    return parts


def _split_once(text: str, part: _Part, granule: int) -> list[_Part]:
    """Split at the first separator (from the part's level on) that occurs inside it."""
    start, end = part.start, part.end
    for index in range(part.level, len(SEPARATORS)):
        cuts = [m.end() for m in SEPARATORS[index].finditer(text, start, end) if m.end() < end]
        if cuts:
            next_level = index + 1
            if index == _WORD_LEVEL:
                cuts, next_level = _thin(cuts, start, _granule_chars(part, granule)), index
            bounds = [start, *cuts, end]
            return [_Part(part.group, a, b, next_level) for a, b in itertools.pairwise(bounds)]
    # No separator left: cut into windows sized from the part's token density.
    if part.tokens == _UNCOUNTED:
        estimate = (end - start) / _TYPICAL_CHARS_PER_TOKEN
    else:
        estimate = part.tokens
    width = max(1, math.ceil((end - start) / max(2, math.ceil(estimate / granule))))
    return [_Part(part.group, a, min(a + width, end), part.level) for a in range(start, end, width)]


def _granule_chars(part: _Part, granule: int) -> int:
    chars = part.end - part.start
    density = chars / part.tokens if part.tokens > 0 else _TYPICAL_CHARS_PER_TOKEN
    return max(1, int(granule * density))


def _thin(cuts: list[int], start: int, step: int) -> list[int]:
    """Keep cuts at least `step` characters apart (all of them if that would keep none)."""
    kept: list[int] = []
    last = start
    for cut in cuts:
        if cut - last >= step:
            kept.append(cut)
            last = cut
    return kept or cuts


def merge_pieces(
    text: str, pieces: Sequence[Piece], *, limit: int, overlap: int
) -> list[tuple[int, int]]:
    """Greedily pack adjacent pieces up to `limit` tokens; each chunk after the first starts
    with whole pieces from the end of the previous one, up to `overlap` tokens."""
    max_chars = limit * MAX_CHARS_PER_TOKEN
    spans: list[tuple[int, int]] = []
    window: list[Piece] = []
    total = 0
    has_new_text = False  # a chunk made only of carried-over overlap would repeat text
    for piece in pieces:
        if window and (total + piece.tokens > limit or piece.end - window[0].start > max_chars):
            if has_new_text:
                spans.append((window[0].start, window[-1].end))
            window = _overlap(
                window,
                tokens=min(overlap, limit - piece.tokens),
                chars=min(overlap * MAX_CHARS_PER_TOKEN, max_chars - len(piece)),
            )
            total = sum(p.tokens for p in window)
            has_new_text = False
        window.append(piece)
        total += piece.tokens
        has_new_text = has_new_text or _NON_SPACE.search(text, piece.start, piece.end) is not None
    if window and has_new_text:
        spans.append((window[0].start, window[-1].end))
    return spans


def _overlap(window: list[Piece], tokens: int, chars: int) -> list[Piece]:
    """The longest run of whole pieces at the end of `window` within both budgets."""
    kept: list[Piece] = []
    total = 0
    for piece in reversed(window):
        if total + piece.tokens > tokens or window[-1].end - piece.start > chars:
            break
        kept.append(piece)
        total += piece.tokens
    kept.reverse()
    return kept
