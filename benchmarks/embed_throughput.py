"""Raw embedding-model throughput: texts/s and tokens/s, no cache.

    python benchmarks/embed_throughput.py --beir ../shared/datasets/scifact --limit 300 --threads 1

Embeds the first `--limit` documents of a BEIR corpus (title + " " + text, the BEIR convention)
with OnnxEmbedder: length-sorted batches, each padded only to its own longest member, straight
through the onnxruntime session. The model load and one warm-up batch are not timed.
`measure_raw_throughput(embedder, texts)` is the same measurement for other scripts (the ingest
benchmark compares its docs/s with this raw model figure on the same texts).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ragline.embed import CachedEmbedder, Embedder, OnnxEmbedder


def load_beir_texts(folder: Path, limit: int | None) -> list[str]:
    """`title + " " + text` of the first `limit` documents of `folder/corpus.jsonl`."""
    texts: list[str] = []
    with (folder / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            if limit is not None and len(texts) >= limit:
                break
            record = json.loads(line)
            texts.append(f"{record.get('title', '')} {record['text']}".strip())
    return texts


def raw_model(embedder: Embedder) -> Embedder:
    """The model under any cache wrappers, so the figure is the model's own speed."""
    while isinstance(embedder, CachedEmbedder):
        embedder = embedder.inner
    return embedder


def measure_raw_throughput(embedder: Embedder, texts: Sequence[str]) -> dict[str, Any]:
    """Embed `texts` once with the bare model (cache unwrapped) and report the rates.

    `tokens` counts what the model actually runs: word pieces plus [CLS]/[SEP], capped at
    `max_tokens` (for non-ONNX embedders, their own `count_tokens`, capped likewise).
    """
    model = raw_model(embedder)
    model.embed([texts[0]] if texts else ["warm-up"])  # loads the session; not timed
    special = 2 if isinstance(model, OnnxEmbedder) else 0
    tokens = sum(min(n + special, model.max_tokens) for n in model.count_tokens(texts))
    start = time.perf_counter()
    model.embed(texts)
    seconds = time.perf_counter() - start
    return {
        "model_id": model.model_id,
        "texts": len(texts),
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "texts_per_s": round(len(texts) / seconds, 1) if seconds else 0.0,
        "tokens_per_s": round(tokens / seconds, 1) if seconds else 0.0,
        "threads": getattr(model, "threads", None),
        "batch_size": getattr(model, "batch_size", None),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beir", type=Path, required=True, help="BEIR folder with corpus.jsonl")
    parser.add_argument("--limit", type=int, default=500, help="documents to embed")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    texts = load_beir_texts(args.beir, args.limit)
    embedder = OnnxEmbedder(threads=args.threads, batch_size=args.batch_size)
    result = measure_raw_throughput(embedder, texts)
    print(json.dumps(result))
    print(
        f"{result['texts']} texts, {result['tokens']} tokens in {result['seconds']} s: "
        f"{result['texts_per_s']} texts/s, {result['tokens_per_s']} tokens/s "
        f"({result['threads']} thread(s), batch {result['batch_size']}, "
        f"load avg {result['load_avg_1m']} on {result['cpu_count']} cores)"
    )


if __name__ == "__main__":
    main()
