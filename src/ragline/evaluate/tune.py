"""`ragline tune retrieval`: a grid over fusion methods, weights and candidate depths.

Each retriever's candidates are computed once per query at the largest depth; every grid point
then fuses truncated copies, so quality for the whole grid costs one pass of retrieval. Latency
is measured for real per grid point on a sample of queries. Run it on a *train* split: the
point it picks becomes the default, and the test split is reported once, afterwards.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ragline.config import RaglineConfig, SearchSettings
from ragline.evaluate.datasets import RetrievalDataset
from ragline.evaluate.metrics import DEFAULT_MEASURES, evaluate_run, latency_summary
from ragline.evaluate.retrieval import Say, index_for
from ragline.evaluate.stats import mean_ci
from ragline.retrieve.rerank import NoReranker
from ragline.retrieve.search import SearchParams, fuse
from ragline.types import FusionMethod, RetrievalMode

PRIMARY = "nDCG@10"
RRF_KS = (10, 20, 40, 60, 100)
ALPHAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEPTHS = (20, 50, 100, 200)
DOCS_PER_QUERY = 100


@dataclass(frozen=True, slots=True)
class GridPoint:
    mode: RetrievalMode
    fusion: FusionMethod | None = None
    rrf_k: int | None = None
    alpha: float | None = None
    depth: int = 100

    @property
    def label(self) -> str:
        if self.mode is not RetrievalMode.HYBRID:
            return str(self.mode.value)
        if self.fusion is FusionMethod.RRF:
            return f"rrf k={self.rrf_k} depth={self.depth}"
        return f"minmax alpha={self.alpha} depth={self.depth}"

    def search_overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode.value, "depth": self.depth}
        if self.fusion is not None:
            out["fusion"] = self.fusion.value
        if self.rrf_k is not None:
            out["rrf_k"] = self.rrf_k
        if self.alpha is not None:
            out["alpha"] = self.alpha
        return out


def default_grid(depths: Sequence[int] = DEPTHS) -> list[GridPoint]:
    points = [GridPoint(RetrievalMode.BM25), GridPoint(RetrievalMode.DENSE)]
    for depth in depths:
        points += [GridPoint(RetrievalMode.HYBRID, FusionMethod.RRF, rrf_k=k, depth=depth)
                   for k in RRF_KS]
        points += [GridPoint(RetrievalMode.HYBRID, FusionMethod.MINMAX, alpha=a, depth=depth)
                   for a in ALPHAS]
    return points


@dataclass(frozen=True, slots=True)
class PointResult:
    point: GridPoint
    means: dict[str, float]
    ci: tuple[float, float]
    latency_ms: dict[str, float]
    per_query: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.point.label, "search": self.point.search_overrides(),
                "metrics": self.means, f"{PRIMARY}_ci95": list(self.ci),
                "latency_ms": self.latency_ms}


def sweep(
    dataset: RetrievalDataset,
    base: RaglineConfig,
    *,
    grid: Sequence[GridPoint] | None = None,
    latency_sample: int = 100,
    seed: int = 0,
    say: Say = lambda _m: None,
) -> list[PointResult]:
    """Evaluate every grid point on `dataset`; results in grid order."""
    points = list(grid or default_grid())
    index = index_for(dataset, base)
    say(f"ingesting the corpus into {index.path} ...")
    index.ingest_documents(dataset.iter_documents())
    queries = {q: t for q, t in dataset.queries.items() if q in dataset.qrels}
    max_depth = max([p.depth for p in points] + [100])
    say(f"retrieving {len(queries)} queries once at depth {max_depth} ...")
    candidates = {qid: index.candidates(text, depth=max_depth) for qid, text in queries.items()}
    row_docs = index.chunk_doc_ids()
    reranked = None if isinstance(index.reranker, NoReranker) else index
    sample = list(queries.items())[:latency_sample]
    results = []
    for i, point in enumerate(points, 1):
        say(f"[{i}/{len(points)}] {point.label}")
        run = {qid: _ranked_run(lists, point, row_docs, rerank=None if reranked is None
                                else functools.partial(reranked.rerank_rows, queries[qid]),
                                rescore=functools.partial(index.rescore_rows, queries[qid]))
               for qid, lists in candidates.items()}
        scores = evaluate_run(dataset.qrels, run, DEFAULT_MEASURES)
        values = [row[PRIMARY] for row in scores.per_query.values()]
        ci = mean_ci(values, seed=seed)
        latencies = _time_point(index, point, sample)
        results.append(PointResult(point, scores.means, (ci.low, ci.high), latencies,
                                   scores.per_query))
    index.close()
    return results


def _ranked_run(
    lists: dict[str, list[tuple[int, float]]], point: GridPoint, row_docs: dict[int, str],
    rerank: Callable[[list[int], list[float]], list[int]] | None = None,
    rescore: Callable[[list[tuple[int, float]]], list[tuple[int, float]]] | None = None,
) -> dict[str, float]:
    """The document run `ragline search` would produce at this grid point: the same chunk-level
    fusion (`retrieve.search.fuse`), the filing metadata signal (`Index.rescore_rows`) and,
    when one is configured, the same reranker (`Index.rerank_rows`), then each document at its
    best chunk's rank."""
    wanted = {RetrievalMode.BM25: ("bm25",), RetrievalMode.DENSE: ("dense",)}.get(
        point.mode, ("bm25", "dense"))
    # Single retrievers keep their whole candidate list (so 100 documents can be ranked); fused
    # points cut each list at their own depth, as search does.
    depth = point.depth if point.mode is RetrievalMode.HYBRID else None
    cut = {name: rows[:depth] for name, rows in lists.items() if name in wanted}
    params = SearchParams.from_settings(  # knobs a point leaves unset take the `[search]` defaults
        SearchSettings(), mode=point.mode, k=max(1, sum(len(rows) for rows in cut.values())),
        fusion=point.fusion, rrf_k=point.rrf_k, alpha=point.alpha, depth=point.depth)
    ranked: list[str] = []
    seen: set[str] = set()
    fused = fuse(cut, params)
    if rescore is not None:
        fused = rescore(fused)
    rows = [row for row, _score in fused]
    if rerank is not None:
        rows = rerank(rows, [score for _row, score in fused])
    for row in rows:
        doc_id = row_docs.get(row, "")
        if doc_id and doc_id not in seen:
            seen.add(doc_id)
            ranked.append(doc_id)
            if len(ranked) == DOCS_PER_QUERY:
                break
    return {doc_id: float(len(ranked) - i) for i, doc_id in enumerate(ranked)}


def _time_point(index: Any, point: GridPoint, sample: list[tuple[str, str]]) -> dict[str, float]:
    overrides = point.search_overrides()
    seconds = []
    for _qid, text in sample:
        start = time.perf_counter()
        index.search(text, k=10, **overrides)
        seconds.append(time.perf_counter() - start)
    return {k: round(v * 1000, 3) for k, v in latency_summary(seconds).to_dict().items()}


def pareto_front(results: Sequence[PointResult]) -> list[PointResult]:
    """Points no other point beats on both quality (higher) and p50 latency (lower)."""
    front = []
    for r in results:
        dominated = any(
            o.means[PRIMARY] >= r.means[PRIMARY] and o.latency_ms["p50"] <= r.latency_ms["p50"]
            and (o.means[PRIMARY] > r.means[PRIMARY] or o.latency_ms["p50"] < r.latency_ms["p50"])
            for o in results
        )
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: r.latency_ms["p50"])


def best(results: Sequence[PointResult]) -> PointResult:
    """The highest mean primary metric (ties: the faster one)."""
    return max(results, key=lambda r: (round(r.means[PRIMARY], 6), -r.latency_ms["p50"]))
