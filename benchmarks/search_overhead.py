"""Per-query overhead of `Index.search` over the engines it calls, query embedding excluded.

    python benchmarks/search_overhead.py [--beir ../shared/datasets/scifact] [--k 10 100]
        [--repeats 3] [--json]

Uses the SciFact benchmark index of `ragline bench retrieval` (built, incrementally, if missing),
embeds every test query once up front, and then times, per query:

* `ragline`: `Index.search(query, mode="hybrid", k=K)` with the default fusion (min-max,
  alpha 0.4, depth 200), the query vector served from memory, so the figure is ragline's own
  work: BM25 scoring, the vector scan, fusion, fetching the K hits from SQLite, building them;
* `engines`: the same work written directly against bm25s and numpy on the same derived files
  (BM25 scores, matrix-vector product, the two top-200 lists, min-max fusion, top K), without
  fetching any text: the floor that the engines themselves cost.

`overhead_ms` is ragline minus engines (p50). Issue #9's target: <= 1 ms at p50 on SciFact. Peak
RSS of the process after the run is reported too (index loaded and queried).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ragline.config import RaglineConfig
from ragline.embed.base import EmbedKind, Vectors
from ragline.evaluate.bench import benchmark_config, default_bench_index
from ragline.evaluate.datasets import load_beir
from ragline.index import Index

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"


class Precomputed:
    """The configured embedder, except that known query vectors come from memory."""

    def __init__(self, inner: Any, vectors: dict[str, np.ndarray]) -> None:
        self.inner, self.vectors = inner, vectors
        self.model_id, self.dim = inner.model_id, inner.dim

    def embed(self, texts: Any, *, kind: EmbedKind = "document") -> Vectors:
        if kind == "query" and all(t in self.vectors for t in texts):
            return np.stack([self.vectors[t] for t in texts])
        return self.inner.embed(texts, kind=kind)

    def count_tokens(self, texts: Any) -> list[int]:
        return list(self.inner.count_tokens(texts))


def engines_only(derived: Any, query: str, vector: np.ndarray, k: int, depth: int = 200,
                 alpha: float = 0.4) -> list[int]:
    bm25 = derived.bm25.scores(query)
    dense = derived.vectors.matrix @ vector
    fused: dict[int, float] = {}
    for scores, weight, positive in ((bm25, 1 - alpha, True), (dense, alpha, False)):
        rows = np.argpartition(-scores, depth)[:depth]
        rows = rows[scores[rows] > 0] if positive else rows
        picked = scores[rows]
        low, span = picked.min(), picked.max() - picked.min()
        for row, score in zip(rows.tolist(), ((picked - low) / span).tolist(), strict=True):
            fused[row] = fused.get(row, 0.0) + weight * score
    return sorted(fused, key=fused.__getitem__, reverse=True)[:k]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beir", type=Path, default=DATASET)
    parser.add_argument("--k", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not (args.beir / "corpus.jsonl").exists():
        print(f"dataset not found at {args.beir}", file=sys.stderr)
        return 2
    dataset = load_beir(args.beir, split="test")
    config: RaglineConfig = benchmark_config(None)
    embedder = config.embedder.build(cache_queries=False)
    index = Index(default_bench_index(dataset, config), config, embedder=embedder)
    index.ingest_documents(dataset.iter_documents())
    queries = list(dataset.queries.values())
    vectors = dict(zip(queries, embedder.embed(queries, kind="query"), strict=True))
    index.close()
    index = Index(default_bench_index(dataset, config), config,
                  embedder=Precomputed(embedder, vectors))  # type: ignore[arg-type]
    derived = index._derived_index()
    result: dict[str, Any] = {"dataset": dataset.name, "queries": len(queries), "k": {}}
    for k in args.k:
        index.search(queries[0], k=k)
        ours: list[float] = []
        floor: list[float] = []
        for _ in range(args.repeats):
            for query in queries:
                start = time.perf_counter()
                index.search(query, k=k)
                ours.append(time.perf_counter() - start)
                start = time.perf_counter()
                engines_only(derived, query, vectors[query], k)
                floor.append(time.perf_counter() - start)
        ours_p50, floor_p50 = statistics.median(ours) * 1e3, statistics.median(floor) * 1e3
        result["k"][k] = {"ragline_p50_ms": round(ours_p50, 3),
                          "ragline_p95_ms": round(float(np.percentile(ours, 95)) * 1e3, 3),
                          "engines_p50_ms": round(floor_p50, 3),
                          "overhead_ms": round(ours_p50 - floor_p50, 3)}
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, row in result["k"].items():
            print(f"k={k}: ragline p50 {row['ragline_p50_ms']} ms (p95 {row['ragline_p95_ms']}), "
                  f"engines {row['engines_p50_ms']} ms, overhead {row['overhead_ms']} ms")
        print(f"peak RSS {result['peak_rss_mb']} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
