"""Build the HotpotQA dev-500 agent task set (and the pooled-paragraph corpus to index):

    python benchmarks/agent_tasks_hotpotqa.py --out hotpot-tasks.jsonl --corpus hotpot-docs [--limit N]
    ragline ingest hotpot-docs --index hotpot-ix
    ragline eval agent --tasks hotpot-tasks.jsonl --index hotpot-ix --baseline ask --provider ...

The questions are read from ../shared/datasets/hotpotqa-dev500/qa.jsonl (override with --qa) and
never copied into the repository; without the file the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ragline.evaluate.agent_tasks import hotpotqa_corpus, hotpotqa_tasks, write_tasks

QA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "hotpotqa-dev500" / "qa.jsonl"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qa", type=Path, default=QA)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, help="Write the pooled paragraphs here.")
    parser.add_argument("--limit", type=int)
    args = parser.parse_args(argv)
    if not args.qa.is_file():
        print(f"skipped: {args.qa} is absent (HotpotQA dev-500 is not on this machine)")
        return 0
    n = write_tasks(hotpotqa_tasks(args.qa, args.limit), args.out)
    print(f"wrote {n} tasks to {args.out}")
    if args.corpus is not None:
        print(f"wrote {hotpotqa_corpus(args.qa, args.corpus)} documents to {args.corpus}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
