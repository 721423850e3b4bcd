"""The retrieval-relevance gate of `ask` and its calibration (ragline.answer.abstention)."""

from __future__ import annotations

import pytest

from ragline.answer.abstention import (
    Calibration,
    best_relevance,
    default_calibration,
    name_coverage,
    parse_calibration,
    relevance_gate,
    term_coverage,
)
from ragline.embed.base import Embedder
from ragline.errors import ConfigError
from ragline.types import Chunk, Hit, Stage


def hit(text: str, dense: float | None = None, number: int = 1) -> Hit:
    chunk = Chunk(f"c{number}", f"d{number}", 0, text, 0, len(text))
    return Hit(chunk, 1.0, number, stages={} if dense is None else {"dense": Stage(1, dense)})


def test_best_relevance_uses_dense_scores_when_the_dense_retriever_found_the_chunk(
    embedder: Embedder,
) -> None:
    hits = [hit("anything", 0.42, 1), hit("else", 0.61, 2)]
    assert best_relevance("q", hits, embedder) == pytest.approx(0.61)


def test_best_relevance_embeds_chunks_the_dense_retriever_did_not_score(
    embedder: Embedder,
) -> None:
    on_topic = best_relevance("How tall is the Eiffel Tower?",
                              [hit("The Eiffel Tower is 330 metres tall.")], embedder)
    off_topic = best_relevance("How tall is the Eiffel Tower?",
                               [hit("Mitochondria produce ATP in cells.")], embedder)
    assert on_topic > 0.5 > off_topic


def test_best_relevance_without_hits_is_zero(embedder: Embedder) -> None:
    assert best_relevance("q", [], embedder) == 0.0


class Evidence:
    """An index stand-in for the gate: the real embedder, word terms with given weights."""

    def __init__(self, embedder: Embedder, weights: dict[str, float] | None = None) -> None:
        self.embedder = embedder
        self.weights = weights or {}

    def term_weights(self, text: str) -> list[tuple[str, float]]:
        terms = dict.fromkeys(w.strip("?.,").lower() for w in text.split())
        return [(t, self.weights.get(t, 1.0)) for t in terms if t]

    def keyword_terms(self, text: str) -> set[str]:
        return {w.strip("?.,").lower() for w in text.split()}


def calibration(embedder_id: str, threshold: float = 0.5) -> Calibration:
    # P(answerable) = sigmoid(10 * (term_coverage - 0.5)): answer when half the terms are found
    return Calibration(("term_coverage",), (10.0,), -5.0, threshold, embedder_id)


def test_explicit_min_relevance_overrides_the_calibration(embedder: Embedder) -> None:
    gate = relevance_gate("q", [hit("x", 0.3)], Evidence(embedder), min_relevance=0.5)
    assert (gate.source, gate.passes) == ("override", False)
    assert "0.300" in gate.reason() and "0.500" in gate.reason()


def test_calibration_applies_only_to_its_embedder(embedder: Embedder) -> None:
    hits = [hit("bananas are yellow", 0.3)]
    mine, other = calibration(embedder.model_id), calibration("some/other-model")
    gate = relevance_gate("why is the sky blue", hits, Evidence(embedder), calibration=mine)
    assert gate.source == "calibrated" and gate.passes is False
    assert gate.answerable is not None and gate.answerable < 0.5
    assert "P(answerable)" in gate.reason()
    gate = relevance_gate("why is the sky blue", hits, Evidence(embedder), calibration=other)
    assert gate.source == "uncalibrated" and gate.passes


def test_term_coverage_weighs_rare_question_words_most(embedder: Embedder) -> None:
    evidence = Evidence(embedder, {"vostok": 9.0, "lake": 1.0, "deep": 1.0, "how": 0.1,
                                   "is": 0.1})
    on_topic = [hit("The lake is deep and cold.")]
    named = [hit("Vostok lies under the ice.")]
    question = "How deep is Lake Vostok?"
    assert term_coverage(question, on_topic, evidence) < 0.3
    assert term_coverage(question, named, evidence) > 0.7


def test_name_coverage_counts_names_and_numbers_found() -> None:
    hits = [hit("Arthur's Magazine was founded in 1844 in Philadelphia.")]
    assert name_coverage("Was Arthur's Magazine founded in 1844?", hits) == 1.0
    assert name_coverage("Was First for Women founded in 1989?", hits) < 0.5
    assert name_coverage("what is a magazine", hits) == 1.0


def test_min_relevance_must_be_a_cosine(embedder: Embedder) -> None:
    with pytest.raises(ConfigError, match="cosine"):
        relevance_gate("q", [hit("x", 0.3)], Evidence(embedder), min_relevance=3.0)


def test_malformed_calibration_names_what_to_rerun() -> None:
    with pytest.raises(ConfigError, match="calibrate_abstention"):
        parse_calibration({"embedder": "x"})
    with pytest.raises(ConfigError, match="unknown or unweighted"):
        parse_calibration({"features": ["vibes"], "weights": [1.0], "bias": 0.0,
                           "threshold": 0.5, "embedder": "x"})


def test_shipped_calibration_was_fitted_on_hard_unanswerables(embedder: Embedder) -> None:
    calibration = default_calibration()
    assert 0.0 < calibration.threshold < 1.0
    assert calibration.applies_to(embedder.model_id)
    provenance = calibration.provenance
    assert {"date", "datasets", "held_out", "calibration", "command"} <= provenance.keys()
    held = provenance["held_out"]
    assert held["answerable"]["n"] > 100 and held["hard"]["n"] > 100
    assert "hard_unanswerable" in provenance["datasets"]
