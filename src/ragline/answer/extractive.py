"""Extractive answers: the best-supported sentences of the top chunks, cited, with no generation.

Used with `--extractive` and when no LLM is available. Each returned sentence is a verbatim span of
its document, so its citation points at exact character offsets.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ragline.answer.claims import split_sentences
from ragline.answer.types import Answer, Citation, CitedSentence, ClaimCheck, ClaimVerdict
from ragline.answer.verify import content_stems
from ragline.documents._tables import is_table_row
from ragline.embed.base import Embedder
from ragline.errors import ConfigError
from ragline.types import Hit

DEFAULT_MIN_SCORE = 0.35  # placeholder until calibrated on data (see the report of issue #5)


@dataclass(frozen=True, slots=True)
class ScoredSentence:
    """A sentence of a hit's chunk: its text, document offsets, and score against the question."""

    text: str
    hit_index: int  # 0-based position in the hits given
    start: int  # offsets into the document (chunk.start + offset in chunk)
    end: int
    score: float


def is_prose(text: str) -> bool:
    """False for what reads as a heading, a table's header line, a code fence or a run of
    numbers and symbols: an extractive answer quotes sentences, not layout. A table row as the
    loaders render it, every value with its header ("Total current assets | 2019: 16,525"),
    reads as a sentence and may be quoted."""
    t = " ".join(text.split())
    if is_table_row(t):
        return True
    words = t.split()
    if len(words) < 2 or t.count("|") >= 2 or t.startswith(("#", "```", "|")):
        return False
    visible = [c for c in t if not c.isspace()]
    if sum(c.isalpha() for c in visible) < 0.6 * len(visible):
        return False
    return len(words) >= 6 or t[-1] in ".!?:;)\"'"


def candidate_sentences(hits: Sequence[Hit]) -> list[tuple[int, str, int, int]]:
    """(hit index, sentence text, doc start, doc end) for every prose sentence of every hit's
    chunk (all sentences when none reads as prose)."""
    out = []
    for index, hit in enumerate(hits):
        for sentence in split_sentences(hit.chunk.text):
            start = hit.chunk.start + sentence.start
            out.append(
                (
                    index,
                    hit.chunk.text[sentence.start : sentence.end],
                    start,
                    hit.chunk.start + sentence.end,
                )
            )
    prose = [c for c in out if is_prose(c[1])]
    return prose or out


def question_overlap(question: str, sentence: str) -> float:
    """The share of the question's content words (stemmed) that the sentence contains."""
    wanted = content_stems(question)
    if not wanted:
        return 0.0
    return len(wanted & content_stems(sentence)) / len(wanted)


def score_sentences(
    question: str, hits: Sequence[Hit], embedder: Embedder, *, semantic_weight: float = 0.7
) -> list[ScoredSentence]:
    """Every candidate sentence scored: w * cosine(question, sentence) + (1 - w) * overlap."""
    candidates = candidate_sentences(hits)
    if not candidates:
        return []
    query = embedder.embed([question], kind="query")[0]
    vectors = embedder.embed([text for _, text, _, _ in candidates], kind="document")
    cosines = np.clip(vectors @ query, 0.0, 1.0)
    return [
        ScoredSentence(
            text,
            index,
            start,
            end,
            float(semantic_weight * cos + (1 - semantic_weight) * question_overlap(question, text)),
        )
        for (index, text, start, end), cos in zip(candidates, cosines, strict=True)
    ]


def extractive_answer(
    question: str,
    hits: Sequence[Hit],
    embedder: Embedder,
    *,
    max_sentences: int = 3,
    min_score: float = DEFAULT_MIN_SCORE,
    semantic_weight: float = 0.7,
) -> Answer:
    """Answer with the `max_sentences` best-scoring sentences of the hits, each cited to its span;
    abstain when there are no hits or the best score is below `min_score`."""
    if max_sentences < 1:
        raise ConfigError(f"max_sentences must be at least 1, got {max_sentences}")
    started = time.perf_counter()
    scored = score_sentences(question, hits, embedder, semantic_weight=semantic_weight)
    ranked = _dedupe(sorted(scored, key=lambda s: -s.score))[:max_sentences]
    sources = [hit.to_dict() for hit in hits]
    timings = {"extract_s": round(time.perf_counter() - started, 4)}
    if not ranked or ranked[0].score < min_score:
        best = f"{ranked[0].score:.2f}" if ranked else "none"
        reason = (
            "no retrieved passage"
            if not ranked
            else f"best sentence score {best} is below the threshold {min_score:.2f}"
        )
        return Answer(
            question=question,
            text="I cannot answer this from the documents.",
            abstained=True,
            abstain_reason=reason,
            sources=sources,
            timings=timings,
        )
    # Every sentence quoted must itself reach the threshold: a verbatim copy that does not
    # match the question is "supported" by its source and still no answer.
    ranked = [ranked[0], *(s for s in ranked[1:] if s.score >= min_score)]
    return _assemble(question, hits, ranked, sources, timings)


def _dedupe(ranked: list[ScoredSentence]) -> list[ScoredSentence]:
    """Drop repeats of the same sentence (overlapping chunks, duplicated documents)."""
    seen: set[str] = set()
    out = []
    for sentence in ranked:
        key = " ".join(sentence.text.casefold().split())
        if key and key not in seen:
            seen.add(key)
            out.append(sentence)
    return out


def _assemble(
    question: str,
    hits: Sequence[Hit],
    ranked: list[ScoredSentence],
    sources: list[dict[str, object]],
    timings: dict[str, float],
) -> Answer:
    sentences, citations, checks = [], [], []
    for s in ranked:
        number = s.hit_index + 1
        chunk = hits[s.hit_index].chunk
        sentences.append(CitedSentence(text=s.text, sources=[number], quote=s.text))
        citations.append(
            Citation(
                number=number,
                chunk_id=chunk.id,
                doc_id=chunk.doc_id,
                start=chunk.start,
                end=chunk.end,
                quote_start=s.start,
                quote_end=s.end,
            )
        )
        checks.append(
            ClaimCheck(
                sentence=s.text,
                cited=[number],
                verdict=ClaimVerdict.SUPPORTED,
                quote_match=1.0,
                quote_source=number,
                quote_span=(s.start - chunk.start, s.end - chunk.start),
                support_score=1.0,
                best_source_sentence=s.text,
                reason=f"verbatim extract; matches the question {s.score:.2f}",
            )
        )
    text = " ".join(f"{s.text} [{s.hit_index + 1}]" for s in ranked)
    return Answer(
        question=question,
        text=text,
        sentences=sentences,
        citations=citations,
        checks=checks,
        sources=list(sources),
        timings=timings,
    )
