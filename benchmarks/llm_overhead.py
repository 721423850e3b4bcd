"""The LLM layer's overhead over a raw SDK call, against a local fake OpenAI server.

    PYTHONPATH=src:. python benchmarks/llm_overhead.py [--n 300]

Interleaves a raw `openai` client call (max_retries=0) and `LLM.complete` (cache off,
ledger on: one SQLite row per call) on the same server and prompt, and prints p50/p95 of
each and of the per-pair difference. Not a test: the figure depends on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import openai
from tests.fakes.openai_server import FakeOpenAIServer

from ragline.llm import LLM, Ledger
from ragline.llm.ledger import percentile


def measure(n: int, warmup: int = 20) -> dict[str, float]:
    with FakeOpenAIServer() as server, tempfile.TemporaryDirectory() as home:
        raw = openai.OpenAI(api_key="k", base_url=server.base_url, max_retries=0, timeout=30)
        llm = LLM(
            "openai",
            "gpt-4o-mini",
            base_url=server.base_url,
            api_key="k",
            cache=False,
            ledger=Ledger(Path(home) / "ledger.sqlite"),
        )
        messages = [{"role": "user", "content": "Say hello."}]
        raw_s, layer_s = [], []
        for i in range(n + warmup):
            t0 = time.perf_counter()
            raw.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
            t1 = time.perf_counter()
            llm.complete("Say hello.")
            t2 = time.perf_counter()
            if i >= warmup:
                raw_s.append(t1 - t0)
                layer_s.append(t2 - t1)
        llm.close()
    diffs = [b - a for a, b in zip(raw_s, layer_s, strict=True)]
    return {
        "n": n,
        "raw_p50_ms": percentile(raw_s, 50) * 1e3,
        "raw_p95_ms": percentile(raw_s, 95) * 1e3,
        "llm_p50_ms": percentile(layer_s, 50) * 1e3,
        "llm_p95_ms": percentile(layer_s, 95) * 1e3,
        "overhead_p50_ms": (percentile(layer_s, 50) - percentile(raw_s, 50)) * 1e3,
        "overhead_p95_ms": (percentile(layer_s, 95) - percentile(raw_s, 95)) * 1e3,
        "pairwise_diff_median_ms": statistics.median(diffs) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=300)
    result = measure(parser.parse_args().n)
    for key, value in result.items():
        print(f"{key:>24}: {value:.3f}" if isinstance(value, float) else f"{key:>24}: {value}")


if __name__ == "__main__":
    main()
