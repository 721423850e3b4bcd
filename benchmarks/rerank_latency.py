"""Latency of a cross-encoder reranking stage: hybrid search alone vs hybrid + reranking the
top N, in one run, on the SciFact test queries (issue #11's target: top 20 under 150 ms p95 on
2 cores).

    python benchmarks/rerank_latency.py [--depth 20] [--limit 300] [--threads 2] [--model DIR]
        [--window N ...]

The model defaults to the shipped claim verifier: a MiniLM-L6 cross-encoder (int8 ONNX, 256-piece
window) in the reranker's folder format, so the figure is the cost of a reranker of that size;
give `--model` a reranker from `ragline adapt train-reranker` to time that one. `--window` (one
or more) also times reading fewer word pieces (`[search] rerank_window`); quality is measured by
`ragline eval retrieval`, not here.
Each query is searched once with each setup, alternating, after one warm-up query; the query
embedding is included in both.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"


def main() -> int:
    from ragline.answer.support_model import SHIPPED_DIR
    from ragline.config import RaglineConfig
    from ragline.evaluate.datasets import load_beir
    from ragline.evaluate.retrieval import index_for
    from ragline.index import Index
    from ragline.retrieve.rerank import CrossEncoderReranker

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", type=Path, default=SHIPPED_DIR)
    parser.add_argument("--window", type=int, nargs="*", default=[])
    args = parser.parse_args()
    if not DATASET.is_dir():
        print(f"SciFact not found at {DATASET}", file=sys.stderr)
        return 2
    data = load_beir(DATASET, "test")
    queries = [data.queries[q] for q in data.qrels][: args.limit]
    plain = index_for(data, RaglineConfig())
    plain.ingest_documents(data.iter_documents())
    setups = {"hybrid": plain}
    for window in [None, *args.window]:
        reranker = CrossEncoderReranker(args.model, depth=args.depth, threads=args.threads,
                                        window=window)
        name = f"hybrid + rerank top {args.depth}" + (f", window {window}" if window else "")
        setups[name] = Index(plain.path, plain.config, embedder=plain.embedder,
                             reranker=reranker)
    for index in setups.values():
        index.search(queries[0], k=10)  # load the index and the models
    times: dict[str, list[float]] = {name: [] for name in setups}
    for query in queries:
        for name, index in setups.items():
            start = time.perf_counter()
            index.search(query, k=10)
            times[name].append((time.perf_counter() - start) * 1000)
    result = {name: {"p50_ms": round(statistics.median(ms), 1),
                     "p95_ms": round(sorted(ms)[int(0.95 * (len(ms) - 1))], 1)}
              for name, ms in times.items()}
    print(json.dumps({"queries": len(queries), "threads": args.threads, "model": str(args.model),
                      "results": result}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
