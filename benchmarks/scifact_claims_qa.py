"""The SciFact-claims answer task: is an expert-written claim true, given a few abstracts?

    python benchmarks/scifact_claims_qa.py OUT_DIR [--split test] [--distractors 3]
    ragline eval answers --dataset OUT_DIR --limit 40

Writes OUT_DIR/qa.jsonl in the HotpotQA layout that `ragline eval answers` reads: one question a
SciFact claim of the split ("Is it true that <claim>? Answer yes or no, then explain."), gold
answer "yes" (SUPPORT) or "no" (CONTRADICT), and as contexts the abstract the claim's evidence
cites (the supporting passage) plus the `--distractors` abstracts BM25 ranks highest for the
claim (on topic, so the model must read, not match words). Contexts of all questions are pooled
into one corpus. "correct" then means the answer's first word is the gold yes/no, and citation
precision/recall says whether the model cited the abstract that decides it. Test-split claims
measure; nothing is fitted on them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import bm25s
import Stemmer

from ragline.evaluate.claim_data import load_scifact_claims

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--split", default="test")
    parser.add_argument("--distractors", type=int, default=3)
    args = parser.parse_args()
    if not (args.dataset / "corpus.jsonl").exists():
        print(f"SciFact not found at {args.dataset}", file=sys.stderr)
        return 2
    corpus = [json.loads(line) for line in (args.dataset / "corpus.jsonl").open()]
    texts = [f"{d.get('title', '')}. {d.get('text', '')}" for d in corpus]
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False),
                    show_progress=False)
    claims = load_scifact_claims(args.dataset, args.split)
    args.out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    with (args.out / "qa.jsonl").open("w", encoding="utf-8") as out:
        for pair in claims.pairs:
            if pair.group in seen:  # one question per claim: its first cited abstract
                continue
            seen.add(pair.group)
            gold_id = pair.id.rsplit(":", 1)[1]
            ranked, _ = retriever.retrieve(
                bm25s.tokenize([pair.claim], stopwords="en", stemmer=stemmer,
                               show_progress=False), k=args.distractors + 1, show_progress=False)
            contexts = [{"title": corpus[i]["title"], "text": corpus[i]["text"],
                         "is_supporting": str(corpus[i]["_id"]) == gold_id}
                        for i in ranked[0].tolist()]
            if not any(c["is_supporting"] for c in contexts):
                gold = next(d for d in corpus if str(d["_id"]) == gold_id)
                contexts = [{"title": gold["title"], "text": gold["text"],
                             "is_supporting": True}, *contexts[:args.distractors]]
            out.write(json.dumps({
                "id": pair.group, "question": f"Is it true that {pair.claim.rstrip('.')}? "
                "Answer yes or no, then explain.",
                "answers": ["yes" if pair.label else "no"], "contexts": contexts}) + "\n")
    print(f"{len(seen)} questions -> {args.out / 'qa.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
