"""Claims per second of the trained verifier, by evidence length and thread count.

    python benchmarks/verifier_speed.py [--threads 1 2] [--model DIR ...] [--json]

Claims are SciFact test claims (speed only: nothing is scored against labels here). Evidence:
`short` = the claim's rationale sentences (~40 words), `abstract` = its cited abstract
(~250 words, ~400 word pieces: the issue's "~400-token evidence"), `1000 words` = that abstract
followed by other abstracts up to 1,000 words. Each (evidence, claim) pair is scored through
`SupportModel.score` (chunking included) in batches of 64, after one warm-up batch; the median of
`--runs` runs is reported, with the 1-minute load average (a busy machine is slower). `--model`
compares verifier folders (default: the shipped one) in the same run, one after the other per
evidence set, so a change of machine speed hits both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from ragline.answer.support_model import SupportModel
from ragline.evaluate.claim_data import load_scifact_claims

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"


def evidence_sets(n: int) -> dict[str, list[tuple[str, str]]]:
    pairs = load_scifact_claims(DATASET, "test").pairs[:n]
    pool = [p.doc for p in pairs]
    long = []
    for i, p in enumerate(pairs):
        words = p.doc.split()
        j = i
        while len(words) < 1000:
            j = (j + 1) % len(pool)
            words += pool[j].split()
        long.append((" ".join(words[:1000]), p.claim))
    return {
        "short": [(" ".join(p.sentences[k] for k in p.rationale if k < len(p.sentences)),
                   p.claim) for p in pairs],
        "abstract": [(p.doc, p.claim) for p in pairs],
        "1000 words": long,
    }


def measure(model: SupportModel, pairs: list[tuple[str, str]], runs: int) -> float:
    model.score(pairs[:16])  # warm-up: session, tokenizer, first allocations
    rates = []
    for _ in range(runs):
        model._chunk_memo.clear()  # chunking is part of the cost
        started = time.perf_counter()
        for i in range(0, len(pairs), 64):
            model.score(pairs[i:i + 64])
        rates.append(len(pairs) / (time.perf_counter() - started))
    return statistics.median(rates)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--claims", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", type=Path, action="append",
                        help="a verifier folder (repeatable; default: the shipped model)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not DATASET.is_dir():
        print(f"SciFact not found at {DATASET}", file=sys.stderr)
        return 2
    sets = evidence_sets(args.claims)
    result = {"claims": args.claims, "load_average_1m": os.getloadavg()[0], "rows": []}
    folders: list[Path | None] = list(args.model or [None])
    for threads in args.threads:
        models = [SupportModel(folder, threads=threads) for folder in folders]
        for name, pairs in sets.items():
            words = statistics.mean(len(e.split()) for e, _ in pairs)
            for folder, model in zip(folders, models, strict=True):
                rate = measure(model, pairs, args.runs)
                result["rows"].append({"model": str(folder or "shipped"), "threads": threads,
                                       "evidence": name, "mean_words": round(words),
                                       "claims_per_s": round(rate, 1)})
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.claims} SciFact test claims, load average {result['load_average_1m']:.2f}")
    for row in result["rows"]:
        label = f"{row['model']}  " if len(folders) > 1 else ""
        print(f"{label}threads {row['threads']}  {row['evidence']:>10} "
              f"(~{row['mean_words']} words): {row['claims_per_s']:.1f} claims/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
