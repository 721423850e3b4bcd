"""Evaluate claim verifiers on labelled (document, claim, label) pairs.

A verifier configuration is a support scorer (`model`, `cosine`, `overlap`) with or without the
deterministic number/date/name checks (`model+checks`): a claim is accepted when its score
reaches the scorer's threshold and, with checks, no number, date or name of the claim is missing
from the document. Per claim we keep the score, the decision and whether it was right, so two
configurations are compared claim by claim with the same paired statistics as retrieval A/B.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ragline.answer.support import ScorerKind, SupportScorer, build_scorer
from ragline.errors import ConfigError
from ragline.evaluate.claim_data import ClaimPair
from ragline.evaluate.verifier_metrics import VerifierScores, verifier_scores

CHECKS_SUFFIX = "+checks"
BATCH = 64


@dataclass(frozen=True, slots=True)
class VerifierConfig:
    scorer: ScorerKind
    checks: bool
    threshold: float | None = None

    @property
    def name(self) -> str:
        return self.scorer.value + (CHECKS_SUFFIX if self.checks else "")

    @classmethod
    def parse(cls, text: str, threshold: float | None = None) -> VerifierConfig:
        base, checks = (text[: -len(CHECKS_SUFFIX)], True) if text.endswith(CHECKS_SUFFIX) \
            else (text, False)
        try:
            kind = ScorerKind(base)
        except ValueError:
            names = ", ".join(f"{k.value}, {k.value}{CHECKS_SUFFIX}" for k in ScorerKind)
            raise ConfigError(f"unknown verifier {text!r}; choose from {names}") from None
        return cls(kind, checks, threshold)


@dataclass
class VerifierRun:
    config: VerifierConfig
    scorer_name: str
    threshold: float
    pairs: list[ClaimPair]
    scores: np.ndarray
    accepted: np.ndarray
    seconds: float
    mismatches: list[list[str]] = field(default_factory=list)

    @property
    def metrics(self) -> VerifierScores:
        # Decisions already include the checks; score the decisions, AUROC the raw scores.
        decided = verifier_scores([p.label for p in self.pairs], self.accepted.astype(float), 0.5)
        ranked = verifier_scores([p.label for p in self.pairs], self.scores, self.threshold)
        return VerifierScores(**{**decided.as_dict(), "auroc": ranked.auroc,  # type: ignore[arg-type]
                                 "threshold": self.threshold})

    @property
    def claims_per_second(self) -> float:
        return len(self.pairs) / max(self.seconds, 1e-9)

    def per_claim(self) -> dict[str, dict[str, float]]:
        """Per-claim values for the registry and paired comparisons (absent = undefined)."""
        out = {}
        for pair, score, accepted in zip(self.pairs, self.scores, self.accepted, strict=True):
            right = float(bool(accepted) == bool(pair.label))
            values = {"correct": right, "score": float(score), "label": float(pair.label)}
            values["accept_supported" if pair.label else "flag_unsupported"] = right
            out[pair.id] = values
        return out

    def summary(self) -> dict[str, Any]:
        return {**self.metrics.as_dict(), "verifier": self.scorer_name,
                "checks": self.config.checks,
                "claims_per_second": round(self.claims_per_second, 2),
                "seconds": round(self.seconds, 2)}


def run_verifier(config: VerifierConfig, pairs: Sequence[ClaimPair], *,
                 scorer: SupportScorer | None = None,
                 progress: Callable[[int, int], None] | None = None) -> VerifierRun:
    """Score every pair with one configuration (batched), timing the scoring."""
    from ragline.answer.verify import consistency_mismatches

    scorer = scorer or build_scorer(config.scorer, threshold=config.threshold)
    threshold = scorer.threshold
    scores = np.zeros(len(pairs), dtype=np.float64)
    mismatches: list[list[str]] = []
    started = time.perf_counter()
    for start in range(0, len(pairs), BATCH):
        batch = pairs[start:start + BATCH]
        scorer.prefetch([(p.doc, p.claim) for p in batch])
        for i, pair in enumerate(batch, start):
            scores[i] = scorer.support(pair.claim, [pair.doc]).score
            mismatches.append(consistency_mismatches(pair.claim, pair.doc)
                              if config.checks else [])
        if progress is not None:
            progress(min(start + BATCH, len(pairs)), len(pairs))
    seconds = time.perf_counter() - started
    accepted = np.array([s >= threshold and not m for s, m in zip(scores, mismatches,
                                                                   strict=True)])
    return VerifierRun(config, scorer.name, threshold, list(pairs), scores, accepted, seconds,
                       mismatches)


COMPARED = ("correct", "accept_supported", "flag_unsupported")
