"""Answer evaluation on HotpotQA dev-500 (paragraphs pooled as the corpus): `ragline eval answers`
with the figures' settings. Every argument after the script name goes to the command, e.g.

    python benchmarks/answers_hotpotqa.py --extractive --json > extractive.json
    python benchmarks/answers_hotpotqa.py --limit 100 --json > smollm2.json

The dataset defaults to ../shared/datasets/hotpotqa-dev500 (override with --dataset). Embeddings
are cached in ~/.ragline (or $RAGLINE_HOME), so the corpus is embedded once.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ragline.cli.eval_answers import eval_answers

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "hotpotqa-dev500"


def main(argv: list[str]) -> None:
    app = typer.Typer(add_completion=False)
    app.command()(eval_answers)
    args = argv if "--dataset" in argv else ["--dataset", str(DATASET), *argv]
    app(args)


if __name__ == "__main__":
    main(sys.argv[1:])
