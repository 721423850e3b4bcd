"""Choose the default local generator by measurement: each candidate GGUF on the same questions.

    python benchmarks/compare_generators.py OUT_DIR [--limit 30] [--threads 1]
        [--hotpotqa ../shared/datasets/hotpotqa-dev500] [--scifact-claims DIR]
        [--model NAME=PATH ...]

For every candidate (default: the bundled SmolLM2-135M and the packaged Qwen2.5-Coder 0.5B and
1.5B that `ragline models assemble` has joined) this runs `ragline eval answers --json` with
`RAGLINE_LLM_MODEL` set to the candidate, on the first `--limit` HotpotQA dev-500 questions and
on the SciFact-claims task (build it first with `benchmarks/scifact_claims_qa.py DIR`; test split,
nothing fitted on it). Each run is in the run registry; OUT_DIR keeps the JSON of each and a
`summary.json` / `summary.md` table: correct rate, citation rate (answers citing any source),
citation precision and recall, p50 latency per question and tokens per question. Speed in tokens/s
and `ragline ask` time to first token come from `local_llm_speed.py --model` and
`ask_latency.py` (same `RAGLINE_LLM_MODEL`).

The llama.cpp, embedder and verifier thread counts are pinned to `--threads` so that a figure does
not depend on what else the machine runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"


def default_candidates() -> dict[str, Path]:
    from ragline.llm.models import bundled_model_path
    from ragline.llm.packaged import PACKAGED_MODELS, find_assembled

    found: dict[str, Path] = {}
    bundled = bundled_model_path()
    if bundled is not None:
        found["smollm2-135m"] = bundled
    for name in PACKAGED_MODELS:
        path = find_assembled(name)
        if path is not None:
            found[name] = path
    return found


def citation_rate(per_question: list[dict[str, Any]]) -> float:
    samples = [s for q in per_question for s in q["samples"] if not s["abstained"]]
    return sum(bool(s["cited"]) for s in samples) / len(samples) if samples else 0.0


def run_one(dataset: Path, model: Path, limit: int, threads: int, out: Path) -> dict[str, Any]:
    env = dict(os.environ, RAGLINE_LLM_MODEL=str(model), RAGLINE_LLM_THREADS=str(threads),
               RAGLINE_EMBED_THREADS=str(threads), RAGLINE_VERIFIER_THREADS=str(threads))
    command = [str(Path(sys.executable).with_name("ragline")), "eval", "answers", "--dataset", str(dataset),
               "--limit", str(limit), "--json"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    out.write_text(done.stdout, encoding="utf-8")
    report = json.loads(done.stdout)
    config = next(iter(report["configs"].values()))
    answers = config["answers"]
    return {
        "run_id": report["run_id"],
        "questions": answers["questions"],
        "correct": config["metrics"]["correct"],
        "F1": answers["F1"],
        "citation_rate": citation_rate(config["per_question"]),
        "citation_precision": answers["citation_precision"],
        "citation_recall": answers["citation_recall"],
        "abstention_rate": answers["abstention_rate"],
        "latency_p50_s": answers["latency_ms"]["p50"] / 1000,
        "output_tokens_per_question": answers["cost"]["output_tokens"] / answers["samples"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hotpotqa", type=Path, default=SHARED / "hotpotqa-dev500")
    parser.add_argument("--scifact-claims", type=Path, default=None,
                        help="Folder written by benchmarks/scifact_claims_qa.py.")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH")
    args = parser.parse_args()

    candidates = (dict((m.split("=", 1)[0], Path(m.split("=", 1)[1])) for m in args.model)
                  if args.model else default_candidates())
    tasks = {"hotpotqa": args.hotpotqa}
    if args.scifact_claims is not None:
        tasks["scifact-claims"] = args.scifact_claims
    missing = [str(p) for p in tasks.values() if not (p / "qa.jsonl").exists()]
    if missing:
        print(f"dataset not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, dict[str, Any]] = {}
    for task, dataset in tasks.items():
        for name, model in candidates.items():
            print(f"{task} / {name} ...", file=sys.stderr, flush=True)
            row = run_one(dataset, model, args.limit, args.threads,
                          args.out / f"{task}--{name}.json")
            summary.setdefault(task, {})[name] = row
            (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = ["| task | model | correct | F1 | cites a source | citation P | citation R | "
             "p50 s/question | tokens/answer | run |", "|" + "---|" * 10]
    for task, rows in summary.items():
        for name, r in rows.items():
            lines.append(
                f"| {task} | {name} | {r['correct']:.2f} | {r['F1']:.2f} | "
                f"{r['citation_rate']:.0%} | {r['citation_precision']:.2f} | "
                f"{r['citation_recall']:.2f} | {r['latency_p50_s']:.1f} | "
                f"{r['output_tokens_per_question']:.0f} | {r['run_id']} |")
    (args.out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
