from __future__ import annotations

import math

import pytest

from ragline.evaluate.metrics import (
    DEFAULT_MEASURES,
    MetricsError,
    evaluate_run,
    latency_summary,
    metric_label,
    parse_measures,
    run_from_hits,
)
from ragline.types import Chunk, Hit

QRELS = {"q1": {"d1": 1, "d2": 1}, "q2": {"d3": 1}, "q3": {"d9": 1}}
# q1: relevant at ranks 1 and 3; q2: relevant at rank 2; q3: nothing retrieved.
RUN = {"q1": {"d1": 3.0, "dx": 2.0, "d2": 1.0}, "q2": {"dy": 1.0, "d3": 0.5}}


def test_default_measures_are_labelled_with_their_cutoffs() -> None:
    names = [str(m) for m in DEFAULT_MEASURES]
    assert names == ["nDCG@10", "R@10", "R@100", "RR@10", "AP@100"]
    assert [metric_label(n) for n in names] == [
        "nDCG@10",
        "Recall@10",
        "Recall@100",
        "MRR@10",
        "MAP@100",
    ]


def test_ndcg_matches_hand_computation() -> None:
    scores = evaluate_run(QRELS, RUN)
    # q1: DCG = 1/log2(2) + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3).
    assert scores.per_query["q1"]["nDCG@10"] == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    # q2: one relevant document at rank 2.
    assert scores.per_query["q2"]["nDCG@10"] == pytest.approx(1 / math.log2(3))


def test_rr_recall_and_ap_match_hand_computation() -> None:
    scores = evaluate_run(QRELS, RUN)
    assert scores.per_query["q1"]["RR@10"] == 1.0
    assert scores.per_query["q2"]["RR@10"] == 0.5
    assert scores.per_query["q1"]["R@10"] == 1.0
    assert scores.per_query["q1"]["AP@100"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert scores.per_query["q2"]["AP@100"] == pytest.approx(0.5)


def test_query_with_no_retrieved_documents_scores_zero_and_counts_in_mean() -> None:
    scores = evaluate_run(QRELS, RUN)
    assert scores.n_queries == 3
    assert all(v == 0.0 for v in scores.per_query["q3"].values())
    expected = (1.5 / (1 + 1 / math.log2(3)) + 1 / math.log2(3)) / 3
    assert scores.means["nDCG@10"] == pytest.approx(expected)


def test_empty_run_scores_every_query_zero() -> None:
    scores = evaluate_run(QRELS, {"q1": {}})
    assert scores.means == dict.fromkeys(scores.measures, 0.0)


def test_graded_relevance_uses_linear_gain() -> None:
    scores = evaluate_run({"q": {"a": 1, "b": 2}}, {"q": {"a": 2.0, "b": 1.0}})
    dcg = 1 + 2 / math.log2(3)
    idcg = 2 + 1 / math.log2(3)
    assert scores.per_query["q"]["nDCG@10"] == pytest.approx(dcg / idcg)


def test_run_queries_without_qrels_are_ignored() -> None:
    scores = evaluate_run(QRELS, {**RUN, "q_unjudged": {"d1": 1.0}})
    assert set(scores.per_query) == {"q1", "q2", "q3"}


def test_recall_at_cutoff_counts_only_the_top_k() -> None:
    run = {"q": {f"d{i}": float(100 - i) for i in range(20)}}
    scores = evaluate_run({"q": {"d15": 1}}, run, parse_measures(["R@10", "R@100"]))
    assert scores.per_query["q"] == {"R@10": 0.0, "R@100": 1.0}


def test_empty_qrels_raise() -> None:
    with pytest.raises(MetricsError, match="qrels are empty"):
        evaluate_run({}, RUN)


def test_unknown_measure_name_raises_with_examples() -> None:
    with pytest.raises(MetricsError, match="nDCG@10"):
        parse_measures(["NotAMeasure@3"])


def _hit(doc_id: str, rank: int, ordinal: int = 0) -> Hit:
    chunk = Chunk(
        id=f"{doc_id}#{ordinal}", doc_id=doc_id, ordinal=ordinal, text="t", start=0, end=1
    )
    return Hit(chunk=chunk, score=1.0, rank=rank)


def test_run_from_hits_keeps_each_documents_best_rank() -> None:
    hits = [_hit("a", 1), _hit("b", 2), _hit("a", 3, ordinal=1), _hit("c", 4)]
    run = run_from_hits({"q": hits})
    assert sorted(run["q"], key=lambda d: -run["q"][d]) == ["a", "b", "c"]


def test_run_from_hits_order_survives_scoring() -> None:
    # Tied search scores must not be reordered by document id.
    hits = [_hit("z", 1), _hit("a", 2)]
    scores = evaluate_run({"q": {"z": 1}}, run_from_hits({"q": hits}))
    assert scores.per_query["q"]["RR@10"] == 1.0


def test_latency_summary_percentiles() -> None:
    summary = latency_summary([0.01 * i for i in range(1, 101)])
    assert summary.p50 == pytest.approx(0.505)
    assert summary.p95 == pytest.approx(0.9505)
    assert summary.mean == pytest.approx(0.505)
    assert summary.max == pytest.approx(1.0)
    assert set(summary.to_dict()) == {"p50", "p95", "mean", "max"}


def test_latency_summary_rejects_empty_input() -> None:
    with pytest.raises(MetricsError):
        latency_summary([])


def test_mrr_at_10_applies_its_cutoff() -> None:
    """Hand-computed: the only relevant document at rank 11 scores 0 for MRR@10 (1/11 for MRR),
    at rank 3 it scores 1/3; pytrec_eval alone would give 1/11 for the first."""
    run = {f"d{i}": float(100 - i) for i in range(1, 13)}  # d1 at rank 1 ... d12 at rank 12
    qrels = {"late": {"d11": 1}, "early": {"d3": 1}}
    scores = evaluate_run(qrels, {"late": run, "early": run}, parse_measures(["RR@10", "RR"]))
    assert scores.per_query["late"]["RR@10"] == 0.0
    assert scores.per_query["late"]["RR"] == pytest.approx(1 / 11)
    assert scores.per_query["early"]["RR@10"] == pytest.approx(1 / 3)
    assert scores.means["RR@10"] == pytest.approx(1 / 6)
