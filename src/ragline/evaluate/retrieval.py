"""Retrieval evaluation: run configurations over a labelled query set and record every number.

Each configuration gets its own index (keyed by its chunking and embedding settings, so two
configurations that differ only in search settings share one), the corpus is ingested
incrementally, every query is searched and timed, and per-query metrics go to the run registry.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragline.config import RaglineConfig
from ragline.errors import DatasetError
from ragline.evaluate.datasets import (
    RetrievalDataset,
    load_beir,
    load_hotpotqa,
    load_qa_jsonl,
)
from ragline.evaluate.metrics import (
    DEFAULT_MEASURES,
    evaluate_run,
    latency_summary,
    run_from_hits,
)
from ragline.index import Index
from ragline.paths import ragline_home
from ragline.types import Hit

RETRIEVE_K = 100  # Recall@100 needs a hundred documents per query
# Chunks retrieved per query: a document with several chunks appears once per chunk, so more
# than a hundred chunks are needed to rank a hundred documents.
RETRIEVE_CHUNKS = 300

Say = Callable[[str], None]


def load_dataset(path: Path, split: str = "test") -> RetrievalDataset:
    """A BEIR folder, a HotpotQA-style folder (qa.jsonl) or a question-set JSONL file."""
    if path.is_dir() and (path / "corpus.jsonl").exists():
        return load_beir(path, split)
    if path.is_dir() and (path / "qa.jsonl").exists():
        return load_hotpotqa(path)
    if path.is_file() and path.suffix == ".jsonl":
        return load_qa_jsonl(path)
    raise DatasetError(
        f"{path} is not a dataset ragline can read: give a BEIR folder (corpus.jsonl, "
        "queries.jsonl, qrels/<split>.tsv), a folder with qa.jsonl, or a question-set .jsonl file"
    )


def index_for(dataset: RetrievalDataset, config: RaglineConfig, *, cache_queries: bool = False,
              root: Path | None = None) -> Index:
    """The index a configuration is evaluated on; shared by configs with equal ingest settings."""
    fingerprint = config.fingerprint('chunking', 'embedder')
    name = f"{dataset.name}-{fingerprint}"
    if config.store.backend != "sqlite":
        # A schema of its own per dataset and ingest settings (as the folder is for SQLite), and
        # search files of its own: one evaluation never adds documents to another's index.
        schema = re.sub(r"[^a-z0-9_]", "_", f"{config.store.schema_name}_{dataset.name}_"
                        f"{fingerprint[:8]}".lower())[:63]
        config = config.model_copy(update={"store": config.store.model_copy(
            update={"schema_name": schema})})
        name += f"-{config.store.backend}-{schema}"
    folder = (root or ragline_home() / "eval-index") / name
    # Query embeddings are timed as part of search latency, so by default they are not cached.
    return Index(folder, config, embedder=config.embedder.build(cache_queries=cache_queries))


@dataclass
class ConfigResult:
    """One configuration's evaluation: per-query metrics and latencies, their summaries."""

    name: str
    config: RaglineConfig
    per_query: dict[str, dict[str, float]]
    latencies: dict[str, float]
    means: dict[str, float]
    latency_ms: dict[str, float]
    index: dict[str, Any]
    ingest: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"metrics": self.means, "latency_ms": self.latency_ms, "index": self.index,
                "ingest": self.ingest, "config": self.config.model_dump(mode="json")}


def evaluate_config(
    dataset: RetrievalDataset,
    config: RaglineConfig,
    *,
    name: str,
    measures: Sequence[Any] = DEFAULT_MEASURES,
    skip: set[str] | None = None,
    on_query: Callable[[str, dict[str, float], float], None] | None = None,
    say: Say = lambda _m: None,
) -> ConfigResult:
    """Ingest (incrementally), search every query (except `skip`), score with ir-measures."""
    with index_for(dataset, config) as index:
        return _evaluate(index, dataset, config, name=name, measures=measures, skip=skip,
                         on_query=on_query, say=say)


def _evaluate(
    index: Index,
    dataset: RetrievalDataset,
    config: RaglineConfig,
    *,
    name: str,
    measures: Sequence[Any],
    skip: set[str] | None,
    on_query: Callable[[str, dict[str, float], float], None] | None,
    say: Say,
) -> ConfigResult:
    say(f"[{name}] ingesting the corpus into {index.path} ...")
    ingest = index.ingest_documents(dataset.iter_documents()).to_dict()
    queries = {q: t for q, t in dataset.queries.items() if q in dataset.qrels}
    index.search(next(iter(queries.values()), "warm up"), k=1)  # load model and index once
    say(f"[{name}] searching {len(queries)} queries ...")
    hits: dict[str, list[Hit]] = {}
    latencies: dict[str, float] = {}
    k = max(RETRIEVE_CHUNKS, config.search.k)
    for qid, text in queries.items():
        if skip and qid in skip:
            continue
        start = time.perf_counter()
        hits[qid] = index.search(text, k=k)
        latencies[qid] = time.perf_counter() - start
    qrels = {q: dataset.qrels[q] for q in hits}
    scores = evaluate_run(qrels, run_from_hits(hits), measures) if qrels else None
    per_query = scores.per_query if scores else {}
    if on_query is not None:
        for qid, values in per_query.items():
            on_query(qid, values, latencies[qid])
    stats = index.stats()
    return ConfigResult(
        name=name, config=config, per_query=per_query, latencies=latencies,
        means=scores.means if scores else {},
        latency_ms=_ms(list(latencies.values())), index=stats, ingest=ingest,
    )


def _ms(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {}
    return {k: round(v * 1000, 3) for k, v in latency_summary(seconds).to_dict().items()}
