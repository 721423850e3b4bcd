"""Abstain before generating when retrieval found nothing relevant enough.

The signal is the best cosine similarity between the question and a retrieved chunk (the dense
score when the dense retriever found the chunk, else computed with the index's embedder), so it
works in every search mode. The threshold is not guessed: `benchmarks/calibrate_abstention.py`
fits it on answerable questions (SciFact train claims against SciFact, HotpotQA questions against
their pooled paragraphs) versus the same questions asked of the wrong corpus, and stores it with
its provenance and held-out figures in `abstention.json`. A threshold only means something for
the embedder it was fitted with, so it is used only when the index's embedder matches.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from ragline.embed.base import Embedder
from ragline.errors import ConfigError
from ragline.types import Hit

CALIBRATION_FILE = "abstention.json"


@dataclass(frozen=True, slots=True)
class Calibration:
    """A fitted relevance threshold, the embedder it holds for, and where it came from."""

    threshold: float
    embedder: str
    signal: str
    provenance: dict[str, Any]

    def applies_to(self, embedder_id: str) -> bool:
        return embedder_id == self.embedder


@dataclass(frozen=True, slots=True)
class RelevanceGate:
    """The decision of the retrieval gate: the question's relevance, the threshold used, and why."""

    relevance: float
    threshold: float | None
    source: str  # "override", "calibrated", or "uncalibrated" (no threshold applies)

    @property
    def passes(self) -> bool:
        return self.threshold is None or self.relevance >= self.threshold

    def reason(self) -> str:
        return (
            f"no retrieved passage is relevant enough: best relevance {self.relevance:.3f} is "
            f"below the {self.source} threshold {self.threshold:.3f}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"relevance": round(self.relevance, 4), "threshold": self.threshold,
                "threshold_source": self.source}


def parse_calibration(data: dict[str, Any]) -> Calibration:
    """A Calibration from the JSON written by the calibration script; names a missing field."""
    try:
        threshold = float(data["threshold"])
        embedder = str(data["embedder"])
        signal = str(data["signal"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"abstention calibration is malformed ({exc!r}); rerun "
            "`python benchmarks/calibrate_abstention.py --write`"
        ) from exc
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"abstention threshold {threshold} is not a cosine in [0, 1]")
    provenance = {k: v for k, v in data.items() if k not in ("threshold", "embedder", "signal")}
    return Calibration(threshold, embedder, signal, provenance)


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


def relevance_gate(
    question: str,
    hits: Sequence[Hit],
    embedder: Embedder,
    *,
    min_relevance: float | None = None,
    calibration: Calibration | None = None,
) -> RelevanceGate:
    """Score the retrieval and pick the threshold: an explicit `min_relevance` wins, then the
    calibration when it was fitted with this embedder; otherwise no threshold applies."""
    relevance = best_relevance(question, hits, embedder)
    if min_relevance is not None:
        if not -1.0 <= min_relevance <= 1.0:
            raise ConfigError(f"min_relevance must be a cosine in [-1, 1], got {min_relevance}")
        return RelevanceGate(relevance, min_relevance, "override")
    fitted = calibration or default_calibration()
    if fitted.applies_to(embedder.model_id):
        return RelevanceGate(relevance, fitted.threshold, "calibrated")
    return RelevanceGate(relevance, None, "uncalibrated")


def uncalibrated_note(embedder_id: str, calibration: Calibration | None = None) -> str:
    fitted = calibration or default_calibration()
    return (
        f"the abstention threshold was calibrated for {fitted.embedder}, not {embedder_id}; "
        "retrieval relevance was not gated. Pass min_relevance (--min-relevance) or rerun "
        "benchmarks/calibrate_abstention.py with this embedder"
    )


def fit_threshold(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """The threshold that maximises balanced accuracy (answer when score >= threshold).

    Candidate cuts lie midway between neighbouring observed scores; when several cuts tie for
    the best balanced accuracy, the median of the tied cuts is taken."""
    if not positives or not negatives:
        raise ConfigError("fit_threshold needs both answerable and unanswerable examples")
    pos = np.sort(np.asarray(positives, dtype=np.float64))
    neg = np.sort(np.asarray(negatives, dtype=np.float64))
    scores = np.unique(np.concatenate([pos, neg]))
    cuts = np.concatenate([[scores[0] - 1e-6], (scores[:-1] + scores[1:]) / 2, [scores[-1] + 1e-6]])
    tpr = 1.0 - np.searchsorted(pos, cuts, side="left") / len(pos)
    tnr = np.searchsorted(neg, cuts, side="left") / len(neg)
    balanced = (tpr + tnr) / 2
    best = np.flatnonzero(np.isclose(balanced, balanced.max()))
    return float(np.median(cuts[best]))


def rates(positives: Sequence[float], negatives: Sequence[float], threshold: float) -> dict[str, Any]:
    """Accuracy, false-abstain rate (answerable, abstained) and false-answer rate (unanswerable,
    answered) of a threshold on a labelled set."""
    pos = np.asarray(positives, dtype=np.float64)
    neg = np.asarray(negatives, dtype=np.float64)
    false_abstain = float(np.mean(pos < threshold)) if pos.size else 0.0
    false_answer = float(np.mean(neg >= threshold)) if neg.size else 0.0
    correct = int(np.sum(pos >= threshold) + np.sum(neg < threshold))
    return {
        "n_answerable": int(pos.size),
        "n_unanswerable": int(neg.size),
        "accuracy": round(correct / max(1, pos.size + neg.size), 4),
        "false_abstain_rate": round(false_abstain, 4),
        "false_answer_rate": round(false_answer, 4),
    }
