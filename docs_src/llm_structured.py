"""The README's LLM example: structured output with a retry policy and a fallback chain.

`python docs_src/llm_structured.py` runs it on the embedded local model; pass a provider and
model (e.g. `openai gpt-4o-mini`) to run it on a hosted one.
"""

from __future__ import annotations

import sys

from pydantic import BaseModel

from ragline.llm import LLM, RetryPolicy


class City(BaseModel):
    name: str
    country: str


def main(provider: str = "local", model: str | None = None) -> City:
    llm = LLM(provider, model, retry=RetryPolicy(max_attempts=4))
    city = llm.complete("Name the capital of France.", response_model=City).parsed
    assert isinstance(city, City)
    print(city)
    return city


if __name__ == "__main__":
    main(*sys.argv[1:3])
