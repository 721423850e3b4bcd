"""How strongly a source supports a claim: the one seam every verifier configuration plugs into.

A `SupportScorer` scores a claim against evidence texts and says where it stands against its own
threshold. Three ship:

* `model` (the default): the trained cross-encoder (`support_model.SupportModel`), probability
  that the evidence entails the claim, max over sentence-aligned chunks;
* `cosine`: the original heuristic, MiniLM cosine to the best source sentence blended with
  content-word coverage (kept for comparison: it cannot tell entailment from topical similarity);
* `overlap`: content-word coverage alone, the plain baseline any verifier must beat.

Deterministic checks (quotes, numbers, dates, names) are not a scorer: `verify.py` applies them
to every configuration as extra evidence, and `ragline eval verifier` can measure with and without.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from ragline.errors import ConfigError

if TYPE_CHECKING:
    from ragline.answer.support_model import SupportModel
    from ragline.embed.base import Embedder

COSINE_THRESHOLD = 0.732  # fitted on the planted set's calibration half (benchmarks/verify_planted.py)
COSINE_WEIGHT = 0.3
OVERLAP_THRESHOLD = 0.75  # unfitted: three quarters of the claim's content words in the source


class ScorerKind(enum.StrEnum):
    MODEL = "model"
    COSINE = "cosine"
    OVERLAP = "overlap"


@dataclass(frozen=True, slots=True)
class Support:
    score: float
    sentence: str | None  # the sentence (cosine, overlap) or chunk (model) that scored best


@runtime_checkable
class SupportScorer(Protocol):
    """Scores claims against evidence; `score >= threshold` means supported."""

    @property
    def name(self) -> str: ...

    @property
    def threshold(self) -> float: ...

    def support(self, claim: str, sources: Sequence[str]) -> Support:
        """The support of `claim` by the evidence `sources` (read together)."""
        ...

    def prefetch(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Score many (evidence, claim) pairs in one batch ahead of `support` calls."""
        ...


def _sentences(sources: Sequence[str]) -> list[str]:
    from ragline.answer.verify import source_sentences

    return [s for text in sources for s in source_sentences(text)]


class ModelScorer:
    """The trained verifier. Scores are memoised per (evidence, claim)."""

    def __init__(self, model: SupportModel | None = None, threshold: float | None = None) -> None:
        if model is None:
            from ragline.answer.support_model import shipped_model

            model = shipped_model()
        self.model = model
        self._threshold = model.threshold if threshold is None else threshold
        self._memo: dict[tuple[str, str], tuple[float, str]] = {}

    @property
    def name(self) -> str:
        return f"model:{self.model.model_id}"

    @property
    def threshold(self) -> float:
        return self._threshold

    def prefetch(self, pairs: Sequence[tuple[str, str]]) -> None:
        todo = list(dict.fromkeys(p for p in pairs if p not in self._memo))
        if not todo:
            return
        chunked = [(i, chunk) for i, (evidence, claim) in enumerate(todo)
                   for chunk in self.model.chunks_for(evidence, claim)]
        probs = self.model.score_chunks([(chunk, todo[i][1]) for i, chunk in chunked])
        best: dict[int, tuple[float, str]] = {}
        for (i, chunk), p in zip(chunked, probs, strict=True):
            if i not in best or p > best[i][0]:
                best[i] = (float(p), chunk)
        if len(self._memo) > 50_000:  # a long-lived process (chat, server) must not grow
            self._memo.clear()
        for i, pair in enumerate(todo):
            self._memo[pair] = best.get(i, (0.0, ""))

    def support(self, claim: str, sources: Sequence[str]) -> Support:
        evidence = "\n\n".join(sources)
        if not evidence.strip() or not claim.strip():
            return Support(0.0, None)
        self.prefetch([(evidence, claim)])
        score, chunk = self._memo[(evidence, claim)]
        return Support(score, chunk)


class CosineScorer:
    """Best blend of embedding cosine and content-word coverage against one source sentence."""

    def __init__(self, embedder: Embedder, *, threshold: float = COSINE_THRESHOLD,
                 weight: float = COSINE_WEIGHT) -> None:
        from ragline.answer.verify import MemoEmbedder

        if not 0.0 <= weight <= 1.0:
            raise ConfigError(f"cosine weight must be between 0 and 1, got {weight}")
        self.embedder = embedder if isinstance(embedder, MemoEmbedder) else MemoEmbedder(embedder)
        self._threshold = threshold
        self.weight = weight

    @property
    def name(self) -> str:
        return "cosine"

    @property
    def threshold(self) -> float:
        return self._threshold

    def prefetch(self, pairs: Sequence[tuple[str, str]]) -> None:
        texts = [c for _, c in pairs] + _sentences([e for e, _ in pairs])
        self.embedder.embed(list(dict.fromkeys(texts)))

    def support(self, claim: str, sources: Sequence[str]) -> Support:
        from ragline.answer.verify import coverage

        candidates = _sentences(sources)
        if not candidates:
            return Support(0.0, None)
        vectors = self.embedder.embed([claim, *candidates])
        cosines = np.clip(vectors[1:] @ vectors[0], 0.0, 1.0)
        lexical = np.array([coverage(claim, s) for s in candidates])
        combined = self.weight * cosines + (1.0 - self.weight) * lexical
        best = int(np.argmax(combined))
        return Support(float(combined[best]), candidates[best])


class OverlapScorer:
    """Share of the claim's content words found in the evidence: the plain baseline."""

    def __init__(self, threshold: float = OVERLAP_THRESHOLD) -> None:
        self._threshold = threshold

    @property
    def name(self) -> str:
        return "overlap"

    @property
    def threshold(self) -> float:
        return self._threshold

    def prefetch(self, pairs: Sequence[tuple[str, str]]) -> None:
        return None

    def support(self, claim: str, sources: Sequence[str]) -> Support:
        from ragline.answer.verify import coverage

        return Support(coverage(claim, "\n\n".join(sources)), None)


def build_scorer(kind: ScorerKind | str = ScorerKind.MODEL, *, embedder: Embedder | None = None,
                 threshold: float | None = None) -> SupportScorer:
    """A scorer by name (`model`, `cosine`, `overlap`); `threshold` overrides its default."""
    try:
        kind = ScorerKind(kind)
    except ValueError:
        raise ConfigError(f"unknown verifier {kind!r}; choose one of "
                          f"{', '.join(k.value for k in ScorerKind)}") from None
    if kind is ScorerKind.MODEL:
        return ModelScorer(threshold=threshold)
    if kind is ScorerKind.OVERLAP:
        return OverlapScorer() if threshold is None else OverlapScorer(threshold)
    if embedder is None:
        embedder = _default_embedder()
    return CosineScorer(embedder) if threshold is None else CosineScorer(embedder,
                                                                         threshold=threshold)


@lru_cache(maxsize=1)
def _default_embedder() -> Embedder:
    from ragline.embed.onnx import OnnxEmbedder

    return OnnxEmbedder()


def default_scorer() -> SupportScorer:
    """The trained verifier, one per process."""
    return _shipped_scorer()


@lru_cache(maxsize=1)
def _shipped_scorer() -> ModelScorer:
    return ModelScorer()
