"""Calibrate the retrieval-relevance threshold below which `ragline ask` abstains.

    python benchmarks/calibrate_abstention.py [--json] [--write] [--k 5]

Answerable questions: SciFact train claims against the SciFact corpus, and HotpotQA dev-500
questions against their pooled paragraphs. Unanswerable questions: the same questions asked of the
wrong corpus (HotpotQA questions against SciFact, SciFact claims against HotpotQA). Every question
is a positive once and a negative once, so the classes are balanced by construction.

The split is by question id (sha256, even last hex digit = calibration, odd = held out), so a
question's positive and negative fall in the same half. The threshold maximises balanced accuracy
on the calibration half; the figures reported come from the held-out half only. With --write the
threshold, the embedder id, date, datasets and held-out figures go to
src/ragline/answer/abstention.json.

Indexes are built once (default config, incremental) under $RAGLINE_HOME/bench/, and embeddings
are cached by content in $RAGLINE_HOME/cache: run with RAGLINE_HOME unset to reuse the cache.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from ragline.answer.abstention import best_relevance, fit_threshold, rates
from ragline.config import RaglineConfig
from ragline.evaluate.bench import embedder_for
from ragline.evaluate.datasets import load_beir, load_hotpotqa
from ragline.index import Index
from ragline.paths import ragline_home

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
OUTPUT = ROOT / "src" / "ragline" / "answer" / "abstention.json"


def held_out(question_id: str) -> bool:
    return int(hashlib.sha256(question_id.encode()).hexdigest()[-1], 16) % 2 == 1


def corpus_index(name: str, documents: Any, cfg: RaglineConfig) -> Index:
    folder = ragline_home() / "bench" / f"{name}-{cfg.fingerprint('chunking', 'embedder')}"
    index = Index(folder, cfg, embedder=embedder_for(cfg, cache_queries=True))
    summary = index.ingest_documents(documents)
    print(f"{name}: {summary.added} added, {summary.unchanged} unchanged ({folder})",
          file=sys.stderr)
    return index


def scores(index: Index, questions: dict[str, str], k: int) -> dict[str, float]:
    """The best question-chunk cosine over the top-k hits of the configured (hybrid) search."""
    out = {}
    for qid, text in questions.items():
        hits = index.search(text, k=k)
        out[qid] = best_relevance(text, hits, index.embedder)
    return out


def split(values: dict[str, float], *, held: bool) -> list[float]:
    return [v for qid, v in values.items() if held_out(qid) is held]


def run(k: int) -> dict[str, Any]:
    cfg = RaglineConfig()
    scifact = load_beir(DATASETS / "scifact", split="train")
    hotpot = load_hotpotqa(DATASETS / "hotpotqa-dev500")
    sci_index = corpus_index("scifact", scifact.iter_documents(), cfg)
    hot_index = corpus_index(hotpot.name, hotpot.iter_documents(), cfg)
    started = time.perf_counter()
    sci_q = {f"scifact:{q}": t for q, t in scifact.queries.items()}
    hot_q = {f"hotpot:{i.id}": i.question for i in hotpot.items}
    pos = {**scores(sci_index, sci_q, k), **scores(hot_index, hot_q, k)}
    neg = {**scores(hot_index, sci_q, k), **scores(sci_index, hot_q, k)}
    threshold = fit_threshold(split(pos, held=False), split(neg, held=False))
    per_dataset = {
        name: rates(
            [v for q, v in pos.items() if q.startswith(name) and held_out(q)],
            [v for q, v in neg.items() if q.startswith(name) and held_out(q)],
            threshold,
        )
        for name in ("scifact", "hotpot")
    }
    return {
        "threshold": round(threshold, 4),
        "embedder": sci_index.embedder.model_id,
        "signal": f"max cosine(question, chunk) over the top-{k} hits of the default hybrid search",
        "date": dt.date.today().isoformat(),
        "command": "python benchmarks/calibrate_abstention.py --write",
        "datasets": {
            "answerable": [
                f"SciFact train claims ({len(sci_q)}) against the SciFact corpus",
                f"HotpotQA dev-500 questions ({len(hot_q)}) against their pooled paragraphs",
            ],
            "unanswerable": [
                "HotpotQA dev-500 questions against the SciFact corpus",
                "SciFact train claims against the HotpotQA pooled paragraphs",
            ],
            "split": "sha256(question id) last hex digit even = calibration, odd = held out",
        },
        "calibration": rates(split(pos, held=False), split(neg, held=False), threshold),
        "held_out": rates(split(pos, held=True), split(neg, held=True), threshold),
        "held_out_by_question_set": per_dataset,
        "config": {"k": k, "search": cfg.search.model_dump(mode="json"),
                   "chunking": cfg.chunking.model_dump(mode="json")},
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=5, help="hits per question (as `ragline ask`)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--write", action="store_true", help=f"write {OUTPUT.relative_to(ROOT)}")
    args = parser.parse_args()
    result = run(args.k)
    if args.write:
        OUTPUT.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"threshold {result['threshold']} ({result['embedder']})")
    for part in ("calibration", "held_out"):
        r = result[part]
        print(f"{part:>12}: accuracy {r['accuracy']:.3f}  false-abstain "
              f"{r['false_abstain_rate']:.3f}  false-answer {r['false_answer_rate']:.3f}  "
              f"(n = {r['n_answerable']} + {r['n_unanswerable']})")


if __name__ == "__main__":
    main()
