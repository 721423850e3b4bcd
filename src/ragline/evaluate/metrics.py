"""Retrieval metrics via ir-measures (pytrec_eval backend), plus latency summaries.

Nothing here computes nDCG and friends by hand: `ir_measures` with the pytrec_eval provider does,
as BEIR does, except reciprocal rank with a cutoff: pytrec_eval maps `RR@10` to trec_eval's
`recip_rank` and silently drops the cutoff (plain MRR), so `RR@k` goes to ir-measures' `msmarco`
provider, which applies it. This module fixes the default measures, fills in queries the backend drops (a query
with nothing retrieved scores 0, it is not left out of the mean) and turns ranked hits into runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ir_measures
import numpy as np
from ir_measures import AP, RR, R, nDCG

from ragline.errors import RaglineError
from ragline.types import Hit

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]

# MAP is average precision over the top 100 (AP@100), labelled as such everywhere.
DEFAULT_MEASURES: tuple[Any, ...] = (nDCG @ 10, R @ 10, R @ 100, RR @ 10, AP @ 100)

# How each measure is named for people: ir-measures name -> report label.
METRIC_LABELS: dict[str, str] = {
    "nDCG@10": "nDCG@10",
    "R@10": "Recall@10",
    "R@100": "Recall@100",
    "RR@10": "MRR@10",
    "AP@100": "MAP@100",
}

PRIMARY_METRIC = "nDCG@10"


class MetricsError(RaglineError):
    """Metrics could not be computed from the given inputs."""


def metric_label(name: str) -> str:
    """The human label of an ir-measures measure name (MRR@10 for RR@10, ...)."""
    return METRIC_LABELS.get(name, name)


def parse_measures(names: Iterable[str]) -> tuple[Any, ...]:
    """ir-measures Measure objects from names such as 'nDCG@10' or 'AP@100'."""
    measures = []
    for name in names:
        try:
            measures.append(ir_measures.parse_measure(name))
        except (ValueError, NameError, SyntaxError) as exc:
            raise MetricsError(
                f"unknown measure {name!r}; use ir-measures names such as nDCG@10, R@100, RR@10, "
                "AP@100"
            ) from exc
    return tuple(measures)


@dataclass(frozen=True, slots=True)
class RetrievalScores:
    """Per-query values of every measure for every query in the qrels, and their means."""

    measures: tuple[str, ...]
    per_query: dict[str, dict[str, float]]
    means: dict[str, float]

    @property
    def n_queries(self) -> int:
        return len(self.per_query)

    def to_dict(self) -> dict[str, Any]:
        return {"n_queries": self.n_queries, "means": self.means, "per_query": self.per_query}


def evaluate_run(
    qrels: Qrels, run: Run, measures: Sequence[Any] = DEFAULT_MEASURES
) -> RetrievalScores:
    """Score `run` ({qid: {doc_id: score}}) against `qrels` ({qid: {doc_id: grade}}).

    Every query in `qrels` gets a value for every measure; a query with no retrieved documents
    scores 0. Queries in `run` but not in `qrels` are ignored.
    """
    if not qrels:
        raise MetricsError("the qrels are empty; load a dataset split that has judgements")
    names = tuple(str(m) for m in measures)
    per_query = {qid: dict.fromkeys(names, 0.0) for qid in qrels}
    judged_run = {qid: dict(docs) for qid, docs in run.items() if qid in qrels and docs}
    qrels_dict = {qid: dict(docs) for qid, docs in qrels.items()}
    if judged_run:
        by_provider: dict[Any, list[Any]] = {}
        for measure in measures:
            by_provider.setdefault(_provider(measure), []).append(measure)
        for provider, group in by_provider.items():
            for metric in provider.iter_calc(group, qrels_dict, judged_run):
                per_query[metric.query_id][str(metric.measure)] = float(metric.value)
    means = {name: float(np.mean([row[name] for row in per_query.values()])) for name in names}
    return RetrievalScores(measures=names, per_query=per_query, means=means)


def _provider(measure: Any) -> Any:
    if measure.NAME == "RR" and measure.params.get("cutoff") is not None:
        return ir_measures.msmarco
    return ir_measures.pytrec_eval


def run_from_hits(hits_by_query: Mapping[str, Sequence[Hit]]) -> dict[str, dict[str, float]]:
    """A document-level run from ranked chunk hits: each document takes its best (first) rank.

    Scores are rank-derived (n - position), so the backend sees exactly the search order and
    never breaks score ties by document id.
    """
    run: dict[str, dict[str, float]] = {}
    for qid, hits in hits_by_query.items():
        ordered: list[str] = []
        seen: set[str] = set()
        for hit in sorted(hits, key=lambda h: h.rank):
            if hit.chunk.doc_id not in seen:
                seen.add(hit.chunk.doc_id)
                ordered.append(hit.chunk.doc_id)
        run[qid] = {doc_id: float(len(ordered) - i) for i, doc_id in enumerate(ordered)}
    return run


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Latency in seconds: median, 95th percentile, mean and max over `n` queries."""

    p50: float
    p95: float
    mean: float
    max: float
    n: int

    def to_dict(self) -> dict[str, float]:
        return {"p50": self.p50, "p95": self.p95, "mean": self.mean, "max": self.max}


def latency_summary(seconds: Sequence[float]) -> LatencySummary:
    """p50 / p95 (numpy's linear-interpolation percentiles), mean and max of latencies."""
    x = np.asarray(seconds, dtype=np.float64)
    if x.size == 0:
        raise MetricsError("no latencies to summarise; time at least one query")
    if np.any(x < 0) or not np.all(np.isfinite(x)):
        raise MetricsError("latencies must be finite and non-negative seconds")
    p50, p95 = np.percentile(x, [50, 95])
    return LatencySummary(
        p50=float(p50), p95=float(p95), mean=float(x.mean()), max=float(x.max()), n=int(x.size)
    )
