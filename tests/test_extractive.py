"""Extractive answers: best-supported sentences with exact citations (ragline.answer.extractive)."""

from __future__ import annotations

import pytest

from ragline.answer.extractive import extractive_answer, score_sentences
from ragline.answer.types import ClaimCheck
from ragline.embed.base import Embedder
from ragline.errors import ConfigError
from ragline.types import Chunk, Hit

DOC = (
    "Intro text that is not a sentence of the chunk. "
    "Ragline stores chunks in SQLite. The default embedder is MiniLM. "
    "Dr. Smith wrote the BM25 index in 2.5 days."
)
CHUNK_START = DOC.index("Ragline")


def hits() -> list[Hit]:
    first = Chunk("doc#1", "doc", 1, DOC[CHUNK_START:], CHUNK_START, len(DOC))
    second = Chunk("other#0", "other", 0, "Cats sleep a lot. Dogs bark.", 0, 28)
    return [Hit(first, 1.0, 1, doc_title="Doc"), Hit(second, 0.5, 2)]


def test_best_sentence_is_cited_at_its_exact_document_offsets(embedder: Embedder) -> None:
    answer = extractive_answer(
        "Where does ragline store chunks?", hits(), embedder, max_sentences=1, min_score=0.1
    )
    assert not answer.abstained
    citation = answer.citations[0]
    assert citation.number == 1 and citation.chunk_id == "doc#1"
    assert citation.quote_start is not None and citation.quote_end is not None
    assert DOC[citation.quote_start : citation.quote_end] == "Ragline stores chunks in SQLite."


def test_abbreviations_and_decimals_do_not_cut_sentences(embedder: Embedder) -> None:
    answer = extractive_answer(
        "Who wrote the BM25 index?", hits(), embedder, max_sentences=1, min_score=0.1
    )
    assert answer.sentences[0].text == "Dr. Smith wrote the BM25 index in 2.5 days."


def test_returns_at_most_max_sentences_best_first(embedder: Embedder) -> None:
    answer = extractive_answer(
        "ragline chunks embedder", hits(), embedder, max_sentences=2, min_score=0.0
    )
    assert len(answer.sentences) == 2
    scored = sorted(
        score_sentences("ragline chunks embedder", hits(), embedder), key=lambda s: -s.score
    )
    assert [s.text for s in answer.sentences] == [s.text for s in scored[:2]]


def test_second_source_is_cited_with_its_own_number(embedder: Embedder) -> None:
    answer = extractive_answer(
        "Do dogs bark?", hits(), embedder, max_sentences=1, min_score=0.1
    )
    assert answer.sentences[0].sources == [2]
    assert answer.text == "Dogs bark. [2]"


def test_abstains_when_best_score_is_below_threshold(embedder: Embedder) -> None:
    answer = extractive_answer(
        "quantum chromodynamics lattice", hits(), embedder, min_score=0.5
    )
    assert answer.abstained
    assert answer.abstain_reason is not None and "below the threshold" in answer.abstain_reason
    assert answer.sentences == [] and len(answer.sources) == 2


def test_abstains_with_no_hits(embedder: Embedder) -> None:
    answer = extractive_answer("anything", [], embedder)
    assert answer.abstained and answer.abstain_reason == "no retrieved passage"


def test_checks_mark_extracts_as_verbatim_support(embedder: Embedder) -> None:
    answer = extractive_answer(
        "Where does ragline store chunks?", hits(), embedder, max_sentences=1, min_score=0.1
    )
    assert answer.checks[0].quote_match == 1.0
    assert not answer.checks[0].flagged


def test_duplicate_sentences_are_returned_once(embedder: Embedder) -> None:
    dup = hits()[:1] * 2
    answer = extractive_answer(
        "Where does ragline store chunks?", dup, embedder, max_sentences=3, min_score=0.0
    )
    assert len({s.text for s in answer.sentences}) == len(answer.sentences)


def test_rejects_zero_max_sentences(embedder: Embedder) -> None:
    with pytest.raises(ConfigError, match="max_sentences"):
        extractive_answer("q", hits(), embedder, max_sentences=0)


def test_sentences_below_the_threshold_are_not_quoted(embedder: Embedder) -> None:
    everything = extractive_answer("Where does ragline store chunks?", hits(), embedder,
                                   max_sentences=3, min_score=0.0)
    strict = extractive_answer("Where does ragline store chunks?", hits(), embedder,
                               max_sentences=3, min_score=0.3)
    def score(check: ClaimCheck) -> float:
        return float(check.reason.rsplit(" ", 1)[1])

    assert any(score(c) < 0.3 for c in everything.checks[1:])  # something for the rule to drop
    assert not strict.abstained
    assert [c.sentence for c in strict.checks] == [
        c.sentence for i, c in enumerate(everything.checks) if i == 0 or score(c) >= 0.3]
