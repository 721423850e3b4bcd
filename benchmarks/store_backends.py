"""SQLite vs PostgreSQL + pgvector as the index database: ingest rate, query latency (one
client and 8 concurrent ones), HNSW recall against exact search, and how they grow with size.

    scripts/postgres.sh && RAGLINE_PG_PASSWORD=ragline-test \\
        python benchmarks/store_backends.py [--sizes 10000 50000 200000] [--json]

Data: the chunk vectors and texts of the SciFact eval index (real MiniLM embeddings; run
`ragline eval retrieval --dataset ../shared/datasets/scifact -c configs/hybrid.toml` first),
repeated with small Gaussian noise (sigma 0.02 per coordinate, re-normalised) up to each size:
the corpus is SciFact-like, not SciFact. Queries: the 300 SciFact test queries, embedded by the
default model. Each size gets a fresh SQLite file and a fresh PostgreSQL schema, written through
`Store.write_documents` in batches of 500 one-chunk documents (COPY), twice for PostgreSQL:
inside `bulk_ingest` (a first ingest: HNSW built once after the load; its queries are the ones
measured) and, up to `--incremental-max` chunks, with HNSW maintained row by row (what adding
to an index that already holds chunks costs). Latency is the store's own search call: SQLite's is the exact
scan of the derived matrix (`DerivedIndex`-style numpy product, top 100), PostgreSQL's the HNSW
query (`dense_candidates`, k 100, ef_search 100) and its full-text query (`keyword_candidates`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ragline.config import RaglineConfig
from ragline.evaluate.datasets import load_beir
from ragline.evaluate.retrieval import index_for
from ragline.store.sqlite import SQLiteStore
from ragline.types import Chunk, DocType, Document

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"
DSN = os.environ.get("RAGLINE_TEST_PG_DSN", "postgresql://ragline@127.0.0.1:54329/postgres")
K = 100
BATCH = 500


def source_chunks() -> tuple[np.ndarray, list[str]]:
    dataset = load_beir(DATASET, "test")
    index = index_for(dataset, RaglineConfig())
    db = index.path / "ragline.sqlite"
    if not db.exists():
        sys.exit(f"no SciFact eval index at {index.path}: run `ragline eval retrieval --dataset "
                 f"{DATASET} -c configs/hybrid.toml` first")
    store = SQLiteStore(index.path)
    with store.chunk_snapshot(384) as (_g, _rows, blocks, texts):
        matrix = np.vstack(list(blocks))
        text_list = list(texts)
    store.close()
    return matrix, text_list


def query_vectors() -> np.ndarray:
    from ragline.embed.onnx import OnnxEmbedder

    dataset = load_beir(DATASET, "test")
    texts = list(dataset.queries.values())
    return np.asarray(OnnxEmbedder().embed(texts, kind="query"), dtype=np.float32)


def corpus(base: np.ndarray, texts: list[str], n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    picks = np.arange(n) % len(base)
    vectors = base[picks] + rng.normal(0, 0.02, size=(n, base.shape[1])).astype(np.float32)
    vectors[: len(base)] = base[: min(n, len(base))]  # the first copy is SciFact itself
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), [texts[i] for i in picks]


def write(store: Any, vectors: np.ndarray, texts: list[str]) -> float:
    started = time.perf_counter()
    for start in range(0, len(texts), BATCH):
        items = []
        for i in range(start, min(start + BATCH, len(texts))):
            doc_id = f"d{i}"
            text = texts[i]
            doc = Document(id=doc_id, text=text, doc_type=DocType.TXT,
                           content_hash=hashlib.sha256(text.encode()).hexdigest(),
                           metadata={"path": doc_id})
            chunk = Chunk(id=f"{doc_id}#0", doc_id=doc_id, ordinal=0, text=text, start=0,
                          end=len(text))
            items.append((doc, [chunk], vectors[i:i + 1]))
        store.write_documents(items, settings="bench")
    return time.perf_counter() - started


def percentiles(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {"p50_ms": round(statistics.median(ordered), 2),
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2)}


def exact_top(matrix: np.ndarray, rowids: np.ndarray, query: np.ndarray) -> list[int]:
    scores = matrix @ query
    top = np.argpartition(-scores, K)[:K] if len(scores) > K else np.arange(len(scores))
    return [int(rowids[i]) for i in top[np.argsort(-scores[top])]]


def concurrent(make_store: Any, queries: np.ndarray, clients: int) -> dict[str, float]:
    latencies: list[float] = []
    lock = threading.Lock()

    def client(part: np.ndarray) -> None:
        store = make_store()
        mine = []
        for q in part:
            t = time.perf_counter()
            store.dense_candidates(q, K)
            mine.append((time.perf_counter() - t) * 1000)
        store.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(queries[i::clients],))
               for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {**percentiles(latencies), "queries_per_s": round(len(latencies) / wall, 1)}


def measure(n: int, base: np.ndarray, texts: list[str], queries: np.ndarray,
            clients: int, incremental_max: int) -> dict[str, Any]:
    from ragline.store.postgres import PostgresStore

    vectors, chunk_texts = corpus(base, texts, n, seed=n)
    row: dict[str, Any] = {"chunks": n}
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = SQLiteStore(Path(tmp), create=True)
        seconds = write(sqlite, vectors, chunk_texts)
        row["sqlite_ingest_chunks_per_s"] = round(n / seconds, 1)
        with sqlite.chunk_snapshot(384) as (_g, rowids, blocks, _t):
            matrix = np.vstack(list(blocks))
        sqlite.close()
    exact = []
    ms = []
    for q in queries:
        t = time.perf_counter()
        exact.append(exact_top(matrix, rowids, q))
        ms.append((time.perf_counter() - t) * 1000)
    row["sqlite_exact_dense"] = percentiles(ms)

    if n <= incremental_max:  # HNSW maintained row by row, as when adding to a large index
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        pg = PostgresStore(DSN, schema=schema, dim=384, create=True)
        try:
            seconds = write(pg, vectors, chunk_texts)
            row["postgres_incremental_chunks_per_s"] = round(n / seconds, 1)
        finally:
            pg._conn.execute(f"DROP SCHEMA {schema} CASCADE")
            pg.close()
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    pg = PostgresStore(DSN, schema=schema, dim=384, create=True)
    try:
        started = time.perf_counter()
        with pg.bulk_ingest():  # a first ingest: load, then build HNSW once
            seconds = write(pg, vectors, chunk_texts)
        total = time.perf_counter() - started
        row["postgres_bulk_load_chunks_per_s"] = round(n / seconds, 1)
        row["postgres_hnsw_build_s"] = round(total - seconds, 1)
        row["postgres_bulk_ingest_chunks_per_s"] = round(n / total, 1)
        pg_rowids = {int(r): i for i, r in enumerate(sorted(pg.doc_ids_by_rowid()))}
        sqlite_pos = {int(r): i for i, r in enumerate(rowids)}
        ms, recalls = [], []
        for q, truth in zip(queries, exact, strict=True):
            t = time.perf_counter()
            found = pg.dense_candidates(q, K)
            ms.append((time.perf_counter() - t) * 1000)
            got = {pg_rowids[r] for r, _ in found}
            want = {sqlite_pos[r] for r in truth}
            recalls.append(len(got & want) / len(want))
        row["postgres_hnsw_dense"] = percentiles(ms)
        row["hnsw_recall_at_100"] = round(float(np.mean(recalls)), 4)
        dataset = load_beir(DATASET, "test")
        ms = []
        for text in list(dataset.queries.values()):
            t = time.perf_counter()
            pg.keyword_candidates(text, K)
            ms.append((time.perf_counter() - t) * 1000)
        row["postgres_fulltext"] = percentiles(ms)
        row[f"postgres_hnsw_{clients}_clients"] = concurrent(
            lambda: PostgresStore(DSN, schema=schema, dim=384), queries, clients)
    finally:
        pg._conn.execute(f"DROP SCHEMA {schema} CASCADE")
        pg.close()
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--incremental-max", type=int, default=50_000,
                        help="also time writes with HNSW maintained per row up to this size")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not DATASET.is_dir():
        print(f"SciFact not found at {DATASET}", file=sys.stderr)
        return 2
    base, texts = source_chunks()
    queries = query_vectors()
    rows = []
    for n in args.sizes:
        rows.append(measure(n, base, texts, queries, args.clients, args.incremental_max))
        if not args.json:
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        print(json.dumps({"load_average_1m": os.getloadavg()[0], "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
