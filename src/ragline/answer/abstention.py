"""Abstain before answering when the retrieved passages cannot answer the question.

A question is judged answerable from several signals of its top hits together, because no one
of them separates the hard case — an unanswerable question about the same topic as the corpus,
whose retrieved passages are on topic but lack the fact asked for:

* `relevance`: the best cosine between the question and a hit (topical similarity);
* `term_coverage`: the share of the question's keyword terms, weighted by their inverse document
  frequency in the index, that occur in the hits (the rare words of a question — the entity,
  the specific property — are what an on-topic but wrong passage lacks);
* `name_coverage`: the share of the question's names (capitalised words, numbers) in the hits;
* `support`: the trained verifier's score of the question read as a claim against each hit
  (max over hits), used only when the calibration lists it.

A logistic model over these signals gives P(answerable); `ask` abstains below the threshold. The
weights and the threshold are fitted by `benchmarks/calibrate_abstention.py` on a calibration
half of answerable questions, *hard* unanswerables (the same questions with their gold passages
removed from the corpus: HotpotQA's distractors were chosen by its authors to be on topic) and
wrong-corpus questions, and stored with held-out figures in `abstention.json`. The calibration
holds for the embedder (and verifier) it was fitted with; with another, no gate applies and a
note says so. `min_relevance` (`--min-relevance`) is an explicit cosine threshold instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ragline.embed.base import Embedder
from ragline.errors import ConfigError
from ragline.types import Hit

if TYPE_CHECKING:
    from ragline.answer.support import SupportScorer

CALIBRATION_FILE = "abstention.json"
FEATURES = ("relevance", "term_coverage", "name_coverage", "support")


class EvidenceSource(Protocol):
    """What the gate needs from an index."""

    @property
    def embedder(self) -> Embedder: ...

    def term_weights(self, text: str) -> list[tuple[str, float]]: ...

    def keyword_terms(self, text: str) -> set[str]: ...


@dataclass(frozen=True, slots=True)
class Signals:
    relevance: float
    term_coverage: float
    name_coverage: float
    support: float | None = None

    def vector(self, names: Sequence[str]) -> np.ndarray:
        values = []
        for name in names:
            value = getattr(self, name)
            if value is None:
                raise ConfigError(f"signal {name!r} was not computed")
            values.append(float(value))
        return np.asarray(values, dtype=np.float64)

    def to_dict(self) -> dict[str, float | None]:
        return {n: None if getattr(self, n) is None else round(float(getattr(self, n)), 4)
                for n in FEATURES}


@dataclass(frozen=True, slots=True)
class Calibration:
    """A fitted answerability model, the embedder (and verifier) it holds for, its provenance."""

    features: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float  # on P(answerable)
    embedder: str
    verifier: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def applies_to(self, embedder_id: str) -> bool:
        return embedder_id == self.embedder

    def probability(self, signals: Signals) -> float:
        z = self.bias + float(np.dot(self.weights, signals.vector(self.features)))
        return 1.0 / (1.0 + math.exp(-z))


@dataclass(frozen=True, slots=True)
class RelevanceGate:
    """The gate's decision: the signals, P(answerable), the threshold used, and why."""

    relevance: float
    threshold: float | None
    source: str  # "override", "calibrated", or "uncalibrated" (no threshold applies)
    signals: Signals | None = None
    answerable: float | None = None  # P(answerable) when calibrated

    @property
    def passes(self) -> bool:
        if self.threshold is None:
            return True
        if self.source == "override":
            return self.relevance >= self.threshold
        return self.answerable is not None and self.answerable >= self.threshold

    def reason(self) -> str:
        if self.source == "override":
            return (f"no retrieved passage is relevant enough: best relevance "
                    f"{self.relevance:.3f} is below the override threshold {self.threshold:.3f}")
        s = self.signals
        detail = (f" (relevance {s.relevance:.2f}, question terms found {s.term_coverage:.0%}, "
                  f"names found {s.name_coverage:.0%})") if s is not None else ""
        return (f"the retrieved passages do not look like they answer the question: "
                f"P(answerable) {self.answerable or 0.0:.2f} is below the calibrated threshold "
                f"{self.threshold or 0.0:.2f}{detail}")

    def to_dict(self) -> dict[str, Any]:
        return {"relevance": round(self.relevance, 4), "threshold": self.threshold,
                "threshold_source": self.source,
                "answerable": None if self.answerable is None else round(self.answerable, 4),
                "signals": None if self.signals is None else self.signals.to_dict()}


def parse_calibration(data: dict[str, Any]) -> Calibration:
    """A Calibration from the JSON written by the calibration script; names a missing field."""
    try:
        features = tuple(str(f) for f in data["features"])
        weights = tuple(float(w) for w in data["weights"])
        bias = float(data["bias"])
        threshold = float(data["threshold"])
        embedder = str(data["embedder"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"abstention calibration is malformed ({exc!r}); rerun "
            "`python benchmarks/calibrate_abstention.py --write`"
        ) from exc
    unknown = set(features) - set(FEATURES)
    if unknown or len(features) != len(weights):
        raise ConfigError(f"abstention calibration has unknown or unweighted features "
                          f"{sorted(unknown) or features}; valid: {', '.join(FEATURES)}")
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"abstention threshold {threshold} is not a probability in [0, 1]")
    kept = ("features", "weights", "bias", "threshold", "embedder", "verifier")
    provenance = {k: v for k, v in data.items() if k not in kept}
    verifier = data.get("verifier")
    return Calibration(features, weights, bias, threshold, embedder,
                       None if verifier is None else str(verifier), provenance)


@lru_cache(maxsize=1)
def default_calibration() -> Calibration:
    """The calibration shipped with ragline (`ragline/answer/abstention.json`)."""
    text = resources.files("ragline.answer").joinpath(CALIBRATION_FILE).read_text("utf-8")
    return parse_calibration(json.loads(text))


def best_relevance(question: str, hits: Sequence[Hit], embedder: Embedder) -> float:
    """The highest cosine between the question and any hit's chunk (0.0 without hits)."""
    if not hits:
        return 0.0
    known = [h.dense_score for h in hits if h.dense_score is not None]
    missing = [h.chunk.text for h in hits if h.dense_score is None]
    if missing:
        query = embedder.embed([question], kind="query")[0]
        vectors = embedder.embed(missing, kind="document")
        known.extend(float(v) for v in vectors @ query)
    return float(max(known))


def term_coverage(question: str, hits: Sequence[Hit], index: EvidenceSource) -> float:
    """IDF-weighted share of the question's keyword terms that occur in the hits."""
    weighted = index.term_weights(question)
    total = sum(w for _, w in weighted)
    if total <= 0:
        return 1.0  # nothing to look for (a question of stopwords only)
    found: set[str] = set()
    for hit in hits:
        found |= index.keyword_terms(hit.chunk.text)
    return sum(w for t, w in weighted if t in found) / total


def name_coverage(question: str, hits: Sequence[Hit]) -> float:
    """The share of the question's names and numbers that the hits contain (1.0 if none)."""
    from ragline.answer.claims import extract_names, extract_numbers, initialisms, name_in, words

    names = [n.value for n in extract_names(question)]
    numbers = [n.value for n in extract_numbers(question)]
    if not names and not numbers:
        return 1.0
    joined = "\n".join(h.chunk.text for h in hits)
    text_words = words(joined)
    vocabulary, acronyms = frozenset(text_words), initialisms(text_words)
    present = {n.value for n in extract_numbers(joined)}
    found = sum(name_in(n, vocabulary, acronyms) for n in names)
    found += sum(n in present for n in numbers)
    return found / (len(names) + len(numbers))


def question_support(question: str, hits: Sequence[Hit], scorer: SupportScorer) -> float:
    """The verifier's best score of the question, read as a claim, against one hit."""
    if not hits:
        return 0.0
    pairs = [(h.chunk.text, question) for h in hits]
    scorer.prefetch(pairs)
    return max(scorer.support(question, [h.chunk.text]).score for h in hits)


def answerability_signals(question: str, hits: Sequence[Hit], index: EvidenceSource, *,
                          scorer: SupportScorer | None = None,
                          with_support: bool = False) -> Signals:
    support = None
    if with_support:
        from ragline.answer.support import default_scorer

        support = question_support(question, hits, scorer or default_scorer())
    return Signals(
        relevance=best_relevance(question, hits, index.embedder),
        term_coverage=term_coverage(question, hits, index) if hits else 0.0,
        name_coverage=name_coverage(question, hits) if hits else 0.0,
        support=support,
    )


def relevance_gate(
    question: str,
    hits: Sequence[Hit],
    index: EvidenceSource,
    *,
    min_relevance: float | None = None,
    calibration: Calibration | None = None,
    scorer: SupportScorer | None = None,
) -> RelevanceGate:
    """Decide whether to answer: an explicit `min_relevance` (a cosine) wins, then the
    calibrated answerability model when it was fitted with this embedder; otherwise no gate."""
    if min_relevance is not None:
        if not -1.0 <= min_relevance <= 1.0:
            raise ConfigError(f"min_relevance must be a cosine in [-1, 1], got {min_relevance}")
        relevance = best_relevance(question, hits, index.embedder)
        return RelevanceGate(relevance, min_relevance, "override")
    fitted = calibration or default_calibration()
    if not fitted.applies_to(index.embedder.model_id):
        return RelevanceGate(best_relevance(question, hits, index.embedder), None,
                             "uncalibrated")
    signals = answerability_signals(question, hits, index, scorer=scorer,
                                    with_support="support" in fitted.features)
    return RelevanceGate(signals.relevance, fitted.threshold, "calibrated", signals,
                         fitted.probability(signals))


def uncalibrated_note(embedder_id: str, calibration: Calibration | None = None) -> str:
    fitted = calibration or default_calibration()
    return (
        f"the abstention threshold was calibrated for {fitted.embedder}, not {embedder_id}; "
        "retrieval relevance was not gated. Pass --min-relevance or rerun "
        "benchmarks/calibrate_abstention.py with this embedder"
    )
