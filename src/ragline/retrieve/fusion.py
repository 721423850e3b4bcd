"""Rank fusion of several retrievers' result lists. Pure functions over (row, score) lists."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

K = TypeVar("K", int, str)
Ranked = Sequence[tuple[K, float]]


def reciprocal_rank_fusion(lists: Mapping[str, Ranked[K]], *, k: int = 60) -> dict[K, float]:
    """RRF (Cormack et al. 2009): score(d) = sum over lists of 1 / (k + rank of d), ranks from 1."""
    fused: dict[K, float] = {}
    for ranked in lists.values():
        for rank, (row, _score) in enumerate(ranked, start=1):
            fused[row] = fused.get(row, 0.0) + 1.0 / (k + rank)
    return fused


def minmax_fusion(lists: Mapping[str, Ranked[K]], weights: Mapping[str, float]) -> dict[K, float]:
    """Weighted sum of min-max normalised scores; a row missing from a list gets 0 from it.

    Normalisation is over each list's candidates (as in Pyserini's hybrid "Normalize").
    A list whose scores are all equal contributes 1 for each of its rows.
    """
    fused: dict[K, float] = {}
    for name, ranked in lists.items():
        if not ranked:
            continue
        weight = weights.get(name, 0.0)
        scores = [score for _row, score in ranked]
        low, high = min(scores), max(scores)
        span = high - low
        for row, score in ranked:
            normalised = (score - low) / span if span > 0 else 1.0
            fused[row] = fused.get(row, 0.0) + weight * normalised
    return fused


def top(fused: Mapping[K, float], k: int) -> list[tuple[K, float]]:
    """The k best keys, by score descending, ties broken by key for determinism."""
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]
