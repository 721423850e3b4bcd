"""`ragline bench retrieval`: ingest a BEIR dataset, run its queries per search mode, and report
quality (ir-measures) beside query latency and ingest throughput."""

from __future__ import annotations

import json
import tempfile
import time
from contextlib import nullcontext
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ragline.config import RaglineConfig
from ragline.embed.base import Embedder
from ragline.embed.cache import CachedEmbedder
from ragline.evaluate.datasets import BeirDataset, load_beir
from ragline.evaluate.metrics import evaluate_run, latency_summary, parse_measures, run_from_hits
from ragline.index import Index
from ragline.paths import ragline_home
from ragline.types import Hit, RetrievalMode

BENCH_MEASURES = ("nDCG@10", "R@100", "RR@10")

# One chunk per record: a BEIR abstract is one unit, truncated by the model at 256 word pieces,
# exactly as MTEB/BEIR evaluate all-MiniLM-L6-v2 (so the published figures are comparable).
BEIR_CHUNKING = {"strategy": "record", "record_max_tokens": 100_000}


def benchmark_config(config: RaglineConfig | None) -> RaglineConfig:
    base = config or RaglineConfig()
    return base.merged({"chunking": BEIR_CHUNKING})


def default_bench_index(dataset: BeirDataset, config: RaglineConfig) -> Path:
    return ragline_home() / "bench" / f"{dataset.name}-{config.fingerprint('chunking', 'embedder')}"


def run_retrieval_benchmark(
    beir: Path,
    *,
    split: str = "test",
    index_dir: Path | None = None,
    config: RaglineConfig | None = None,
    cold_ingest: bool = False,
    progress_console: Console | None = None,
) -> dict[str, Any]:
    """Ingest (incrementally) and evaluate every search mode; returns a JSON-ready dict.

    With `cold_ingest`, the corpus is ingested into a fresh index with the embedding cache
    bypassed, and the raw model is timed on the same texts, so ingest overhead can be stated.
    """
    dataset = load_beir(beir, split=split)
    cfg = benchmark_config(config)
    say = progress_console.print if progress_console else (lambda *a, **k: None)
    embedder = cfg.embedder.build(cache_queries=False)
    result: dict[str, Any] = {
        "dataset": dataset.name, "split": split, "queries": len(dataset.queries),
        "dataset_hash": dataset.hash, "embedder": embedder.model_id,
        "config": cfg.model_dump(mode="json"),
    }
    if cold_ingest:
        with tempfile.TemporaryDirectory(prefix="ragline-bench-") as tmp:
            result["ingest"] = _cold_ingest(dataset, cfg, embedder, Path(tmp), say)
    target = index_dir or default_bench_index(dataset, cfg)
    index = Index(target, cfg, embedder=embedder)
    say(f"ingesting {dataset.corpus_path} into {target} (incremental) ...")
    summary = index.ingest_documents(dataset.iter_documents())
    result.setdefault("ingest", summary.to_dict())
    result["index"] = index.stats()
    result["modes"] = {}
    for mode in RetrievalMode:
        say(f"running {len(dataset.queries)} queries, mode {mode.value} ...")
        result["modes"][mode.value] = _evaluate_mode(index, dataset, mode)
    result["published"] = published_baselines()
    return result


def _cold_ingest(dataset: BeirDataset, cfg: RaglineConfig, embedder: Embedder, folder: Path,
                 say: Any) -> dict[str, Any]:
    say("cold ingest: fresh index, embedding cache bypassed ...")
    index = Index(folder, cfg, embedder=embedder)
    bypass = embedder.bypass() if isinstance(embedder, CachedEmbedder) else nullcontext()
    with bypass:
        summary = index.ingest_documents(dataset.iter_documents())
        say("timing the raw model on the same texts ...")
        texts = [doc.text for doc in dataset.iter_documents()]
        inner = embedder.inner if isinstance(embedder, CachedEmbedder) else embedder
        start = time.perf_counter()
        inner.embed(texts, kind="document")
        raw_seconds = time.perf_counter() - start
    data = summary.to_dict()
    data["raw_model_seconds"] = round(raw_seconds, 3)
    data["raw_model_docs_per_second"] = round(len(texts) / raw_seconds, 2)
    data["overhead_percent"] = round(100 * (summary.total_seconds / raw_seconds - 1), 1)
    index.close()
    return data


def _evaluate_mode(index: Index, dataset: BeirDataset, mode: RetrievalMode) -> dict[str, Any]:
    k = 100  # Recall@100 needs a hundred documents per query
    index.search("warm up", mode=mode, k=k)  # loads the derived index and the model once
    hits: dict[str, list[Hit]] = {}
    latencies = []
    for qid, text in dataset.queries.items():
        start = time.perf_counter()
        hits[qid] = index.search(text, mode=mode, k=k)
        latencies.append(time.perf_counter() - start)
    scores = evaluate_run(dataset.qrels, run_from_hits(hits), parse_measures(BENCH_MEASURES))
    latency = latency_summary(latencies)
    return {
        "metrics": {name: round(value, 4) for name, value in scores.means.items()},
        "latency_ms": {key: round(value * 1000, 2) for key, value in latency.to_dict().items()},
        "per_query": scores.per_query,
    }


def published_baselines() -> dict[str, float]:
    """Published SciFact nDCG@10 figures, for context (see docs/benchmarks.md for sources)."""
    text = resources.files("ragline.evaluate").joinpath("published_scifact.json").read_text()
    data: dict[str, float] = json.loads(text)
    return data


def render_benchmark(result: dict[str, Any], console: Console) -> None:
    table = Table(title=f"{result['dataset']} ({result['split']}, {result['queries']} queries)")
    for column in ("mode", "nDCG@10", "Recall@100", "MRR@10", "p50 ms", "p95 ms"):
        table.add_column(column, justify="right" if column != "mode" else "left")
    for mode, data in result["modes"].items():
        m, lat = data["metrics"], data["latency_ms"]
        table.add_row(mode, f"{m['nDCG@10']:.4f}", f"{m['R@100']:.4f}", f"{m['RR@10']:.4f}",
                      f"{lat['p50']:.1f}", f"{lat['p95']:.1f}")
    console.print(table)
    ingest = result["ingest"]
    line = (f"ingest: {ingest['added'] + ingest['updated']} embedded, {ingest['unchanged']} "
            f"unchanged, {ingest['documents_per_second']:.1f} docs/s")
    if "raw_model_docs_per_second" in ingest:
        line += (f"; raw model {ingest['raw_model_docs_per_second']:.1f} docs/s, "
                 f"overhead {ingest['overhead_percent']:.1f}%")
    console.print(line)
    published = Table(title="published nDCG@10 (test split), for context")
    published.add_column("system")
    published.add_column("nDCG@10", justify="right")
    for name, value in result["published"].items():
        published.add_row(name, f"{value:.3f}")
    console.print(published)
