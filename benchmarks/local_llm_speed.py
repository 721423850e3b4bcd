"""Prompt-processing and generation speed of the embedded llama.cpp server, per thread count.

    python benchmarks/local_llm_speed.py                 # bundled SmolLM2, 1 and 2 threads
    python benchmarks/local_llm_speed.py --threads 1 2 4 --runs 5 --json
    python benchmarks/local_llm_speed.py --model path/to/model.gguf

Numbers come from llama.cpp's own `timings` (prompt_per_second, predicted_per_second) of
`/v1/chat/completions` with prompt caching off, so each run re-processes the whole prompt.
The generation is forced to the full length (`ignore_eos`). The median of `--runs` is shown,
next to the 1-minute load average: on a shared machine the numbers are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from ragline.llm.local_server import LocalModelServer

PARAGRAPH = (
    "Retrieval-augmented generation answers a question from passages found in a corpus. "
    "A retriever ranks chunks by keyword and vector similarity, the best few are placed in "
    "the prompt, and the model writes an answer that cites them. "
)


@dataclass(frozen=True)
class SpeedResult:
    threads: int
    prompt_tokens: int
    generated_tokens: int
    prompt_tok_s: float
    generate_tok_s: float
    runs: int
    load_avg_1m: float


def build_prompt(server: LocalModelServer, target_tokens: int) -> str:
    """Repeat a paragraph until the text is at least `target_tokens` model tokens long."""
    text = PARAGRAPH
    while server.count_tokens(text) < target_tokens:
        text += PARAGRAPH
    return text


def one_run(server: LocalModelServer, prompt: str, max_tokens: int) -> dict[str, float]:
    body = {
        "model": server.model_name,
        "messages": [{"role": "user", "content": prompt + "\nSummarise the text above."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "seed": 0,
        "cache_prompt": False,
        "ignore_eos": True,
    }
    response = httpx.post(
        server.base_url + "/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=300.0,
        trust_env=False,
    )
    response.raise_for_status()
    timings: dict[str, float] = response.json()["timings"]
    return timings


def measure(
    model: Path | None, threads: int, *, prompt_tokens: int, gen: int, runs: int
) -> SpeedResult:
    with LocalModelServer(model, threads=threads, ctx_size=2048) as server:
        prompt = build_prompt(server, prompt_tokens)
        one_run(server, prompt, 4)  # warm-up: first-call allocations are not speed
        samples = [one_run(server, prompt, gen) for _ in range(runs)]
    return SpeedResult(
        threads=threads,
        prompt_tokens=int(samples[0]["prompt_n"]),
        generated_tokens=int(samples[0]["predicted_n"]),
        prompt_tok_s=round(statistics.median(s["prompt_per_second"] for s in samples), 1),
        generate_tok_s=round(statistics.median(s["predicted_per_second"] for s in samples), 1),
        runs=runs,
        load_avg_1m=round(os.getloadavg()[0], 2),
    )


def print_table(results: list[SpeedResult]) -> None:
    print(
        f"{'threads':>7} {'prompt tok':>10} {'gen tok':>7} {'prompt tok/s':>12} "
        f"{'gen tok/s':>9} {'load 1m':>7}"
    )
    for r in results:
        print(
            f"{r.threads:>7} {r.prompt_tokens:>10} {r.generated_tokens:>7} "
            f"{r.prompt_tok_s:>12.1f} {r.generate_tok_s:>9.1f} {r.load_avg_1m:>7.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: bundled)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--prompt-tokens", type=int, default=300)
    parser.add_argument("--generate", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    results = [
        measure(args.model, t, prompt_tokens=args.prompt_tokens, gen=args.generate, runs=args.runs)
        for t in args.threads
    ]
    if args.json:
        json.dump([asdict(r) for r in results], sys.stdout, indent=2)
        print()
    else:
        print(f"cpus: {os.cpu_count()}  (shared machine: numbers are noisy)")
        print_table(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
