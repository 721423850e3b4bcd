"""Metrics of a claim verifier: balanced accuracy, AUROC, precision/recall/F1 of "unsupported".

Labels: 1 = supported, 0 = not. The positive class of the flag metrics is *unsupported* (what a
verifier exists to catch), so precision = share of flagged claims that really are unsupported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class VerifierScores:
    n: int
    supported: int
    balanced_accuracy: float
    accuracy: float
    auroc: float | None
    flag_precision: float | None
    flag_recall: float
    flag_f1: float | None
    false_flag_rate: float
    threshold: float

    def as_dict(self) -> dict[str, float | int | None]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def auroc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float | None:
    y = np.asarray(labels)
    if y.min(initial=1) == y.max(initial=0):
        return None  # one class only: undefined
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, np.asarray(scores)))


def verifier_scores(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray,
                    threshold: float) -> VerifierScores:
    """Scores at `threshold` (score >= threshold = supported)."""
    y = np.asarray(labels, dtype=int)
    accepted = np.asarray(scores, dtype=float) >= threshold
    pos, neg = y == 1, y == 0
    tpr = float(accepted[pos].mean()) if pos.any() else float("nan")
    tnr = float((~accepted[neg]).mean()) if neg.any() else float("nan")
    flagged = ~accepted
    caught = int((flagged & neg).sum())
    precision = caught / int(flagged.sum()) if flagged.any() else None
    recall = caught / int(neg.sum()) if neg.any() else float("nan")
    f1 = (2 * precision * recall / (precision + recall)
          if precision is not None and precision + recall > 0 else None)
    return VerifierScores(
        n=len(y), supported=int(pos.sum()),
        balanced_accuracy=float(np.nanmean([tpr, tnr])),
        accuracy=float((accepted == pos).mean()) if len(y) else float("nan"),
        auroc=auroc(y, scores), flag_precision=precision, flag_recall=recall, flag_f1=f1,
        false_flag_rate=1.0 - tpr, threshold=threshold,
    )


def best_threshold(groups: Sequence[tuple[Sequence[int], Sequence[float]]]) -> float:
    """The threshold that maximises mean balanced accuracy over the groups (one per source),
    so that no single large source decides it."""
    candidates = np.unique(np.round(np.concatenate([np.asarray(s) for _, s in groups]), 3))
    candidates = candidates[(candidates > 0.01) & (candidates < 0.99)]
    if candidates.size == 0:
        return 0.5
    if candidates.size > 400:
        candidates = np.quantile(candidates, np.linspace(0, 1, 400))
    best, best_value = 0.5, -1.0
    for t in candidates:
        value = float(np.mean([verifier_scores(y, s, float(t)).balanced_accuracy
                               for y, s in groups]))
        if value > best_value:
            best, best_value = float(t), value
    return round(best, 4)
