"""Time to first token and total time of `ragline ask` on the default local model.

    python benchmarks/ask_latency.py [--json] [--max-tokens 200] [--repeats 1]

Ingests the project's docs/ (and README.md) into a temporary index, then asks a few typical
questions about ragline through the same code path as `ragline ask --stream` (`Index.ask` with a
stream callback). The first question is asked cold (the local llama.cpp server starts inside the
call, as in a one-shot `ragline ask`); the rest reuse the warm server, as in `ragline chat`.

`ttft_s` is measured from the start of the call to the first piece of answer text the user sees
(retrieval, relevance gate, prompt building, server start when cold, and prompt processing
included). `model_ttft_s` is the LLM layer's own time to first token for the generation call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ragline.index import Index
from ragline.llm import LLM
from ragline.llm.local_server import default_threads

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = (
    "How does hybrid search fuse BM25 and dense results?",
    "Which local model does ragline run without an API key?",
    "Where does ragline keep its embedding cache?",
    "How are documents split into chunks?",
)


def ask_once(index: Index, question: str, llm: LLM, max_tokens: int) -> dict[str, Any]:
    started = time.perf_counter()
    first: list[float] = []

    def on_text(piece: str) -> None:
        if not first and piece.strip():
            first.append(time.perf_counter() - started)

    answer = index.ask(question, llm=llm, stream=on_text, max_tokens=max_tokens)
    total = time.perf_counter() - started
    tokens = answer.usage.get("tokens") or {}
    return {
        "question": question,
        "ttft_s": round(first[0], 3) if first else None,
        "model_ttft_s": answer.timings.get("ttft_s"),
        "total_s": round(total, 3),
        "retrieve_s": answer.timings.get("retrieve_s"),
        "generate_s": answer.timings.get("generate_s"),
        "verify_s": answer.timings.get("verify_s"),
        "output_tokens": tokens.get("output_tokens"),
        "abstained": answer.abstained,
        "claims": len(answer.checks),
        "flagged": sum(c.flagged for c in answer.checks),
        "answer": answer.text[:160],
    }


def run(max_tokens: int, repeats: int) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ragline-ask-latency-") as tmp:
        index = Index(Path(tmp) / "index")
        summary = index.ingest([ROOT / "docs", ROOT / "README.md"])
        llm = LLM("local", cache=False)  # never serve a timed answer from the cache
        try:
            for round_ in range(repeats):
                for i, question in enumerate(QUESTIONS):
                    row = ask_once(index, question, llm, max_tokens)
                    row["cold"] = round_ == 0 and i == 0
                    rows.append(row)
        finally:
            llm.close()
            index.close()
    warm = [r for r in rows if not r["cold"] and r["ttft_s"] is not None]
    return {
        "model": llm.model,
        "threads": default_threads(),
        "max_tokens": max_tokens,
        "documents": summary.added,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
        "warm_median_ttft_s": _median([r["ttft_s"] for r in warm]),
        "warm_median_total_s": _median([r["total_s"] for r in warm]),
    }


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    result = run(args.max_tokens, args.repeats)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['model']} · {result['threads']} thread(s) · max_tokens {args.max_tokens} · "
          f"{result['machine']}")
    print(f"{'question':<56} {'cold':>4} {'ttft':>6} {'total':>6} {'tokens':>6} {'flagged':>7}")
    for r in result["rows"]:
        ttft = f"{r['ttft_s']:.2f}" if r["ttft_s"] is not None else "-"
        flagged = "abstain" if r["abstained"] else f"{r['flagged']}/{r['claims']}"
        print(f"{r['question'][:56]:<56} {'yes' if r['cold'] else '':>4} {ttft:>6} "
              f"{r['total_s']:>6.2f} {r['output_tokens'] or '-':>6} {flagged:>7}")
    print(f"warm median: ttft {result['warm_median_ttft_s']} s, "
          f"total {result['warm_median_total_s']} s")


if __name__ == "__main__":
    main()
