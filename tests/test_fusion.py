"""Vectorised fusion against hand-computed cases."""

from __future__ import annotations

import pytest

from ragline.retrieve.fusion import as_pairs, as_ranked, minmax_fusion, reciprocal_rank_fusion, top
from ragline.retrieve.search import SearchParams, fuse
from ragline.types import FusionMethod

BM25 = [(7, 12.0), (3, 8.0), (5, 2.0)]
DENSE = [(3, 0.9), (9, 0.7), (7, 0.5)]


def test_minmax_fusion_by_hand() -> None:
    # bm25 normalised: 7 -> 1, 3 -> 0.6, 5 -> 0; dense: 3 -> 1, 9 -> 0.5, 7 -> 0.
    fused = dict(as_pairs(minmax_fusion({"bm25": as_ranked(BM25), "dense": as_ranked(DENSE)},
                                        {"bm25": 0.6, "dense": 0.4})))
    assert fused == pytest.approx({7: 0.6, 3: 0.36 + 0.4, 5: 0.0, 9: 0.2})


def test_rrf_by_hand_and_ties_broken_by_row() -> None:
    fused = reciprocal_rank_fusion({"bm25": as_ranked(BM25), "dense": as_ranked(DENSE)}, k=60)
    by_row = dict(as_pairs(fused))
    assert by_row[3] == pytest.approx(1 / 62 + 1 / 61)
    assert by_row[7] == pytest.approx(1 / 61 + 1 / 63)
    rows, _ = top(fused, 4)
    assert rows.tolist() == [3, 7, 9, 5]  # 9 (1/62) and 5 (1/63) after the two shared rows


def test_fuse_keeps_one_list_as_is_and_cuts_to_k() -> None:
    params = SearchParams(k=2, fusion=FusionMethod.MINMAX, alpha=0.4)
    assert fuse({"bm25": BM25}, params) == BM25[:2]
    assert [row for row, _ in fuse({"bm25": BM25, "dense": DENSE}, params)] == [3, 7]
    assert fuse({}, params) == []
