"""Rank fusion of several retrievers' candidates, vectorised with numpy.

A candidate list is `(rows, scores)`: row positions in the derived index, best first, and their
scores. Fusion returns the same shape, one entry per distinct row (unsorted); `top` orders it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

Rows = npt.NDArray[np.int64]
Values = npt.NDArray[np.float64]
Ranked = tuple[Rows, Values]


def as_ranked(pairs: Sequence[tuple[int, float]]) -> Ranked:
    """A (row, score) list as a candidate list."""
    rows = np.fromiter((r for r, _ in pairs), dtype=np.int64, count=len(pairs))
    scores = np.fromiter((s for _, s in pairs), dtype=np.float64, count=len(pairs))
    return rows, scores


def as_pairs(ranked: Ranked) -> list[tuple[int, float]]:
    rows, scores = ranked
    return list(zip(rows.tolist(), scores.tolist(), strict=True))


def _accumulate(parts: Sequence[Ranked]) -> Ranked:
    """Sum the values of each distinct row (in list order, as a running sum would)."""
    parts = [p for p in parts if p[0].size]
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    rows = np.concatenate([r for r, _ in parts])
    values = np.concatenate([v for _, v in parts])
    unique, inverse = np.unique(rows, return_inverse=True)
    sums = np.bincount(inverse, weights=values, minlength=unique.size).astype(np.float64)
    return unique.astype(np.int64), sums


def reciprocal_rank_fusion(lists: Mapping[str, Ranked], *, k: int = 60) -> Ranked:
    """RRF (Cormack et al. 2009): score(d) = sum over lists of 1 / (k + rank of d), ranks from 1."""
    return _accumulate([(rows, 1.0 / (k + np.arange(1, rows.size + 1, dtype=np.float64)))
                        for rows, _ in lists.values()])


def minmax_fusion(lists: Mapping[str, Ranked], weights: Mapping[str, float]) -> Ranked:
    """Weighted sum of min-max normalised scores; a row missing from a list gets 0 from it.

    Normalisation is over each list's candidates (as in Pyserini's hybrid "Normalize").
    A list whose scores are all equal contributes 1 for each of its rows.
    """
    parts = []
    for name, (rows, scores) in lists.items():
        if not rows.size:
            continue
        low, high = float(scores.min()), float(scores.max())
        span = high - low
        normalised = (scores - low) / span if span > 0 else np.ones_like(scores)
        parts.append((rows, weights.get(name, 0.0) * normalised))
    return _accumulate(parts)


def top(fused: Ranked, k: int) -> Ranked:
    """The k best rows, by score descending, ties broken by row for determinism."""
    rows, scores = fused
    order = np.lexsort((rows, -scores))[:k]
    return rows[order], scores[order]
