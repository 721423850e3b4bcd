"""The versioned price table (`prices.toml`) and the cost of one attempt.

A model without a row is *unpriced*: its cost is None, never a silently wrong 0, and the
ledger summary counts such calls. Dated snapshots ("gpt-4o-2024-08-06",
"claude-sonnet-4-20250514") and "-latest" aliases take the price of their base model.
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ragline.llm.errors import LLMConfigError
from ragline.llm.types import Usage

_SNAPSHOT = re.compile(r"^-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")
_RATES = ("input", "cached_input", "cache_write", "reasoning", "output")
PER_TOKENS = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens by class, with the page the figures came from and when."""

    provider: str
    model: str
    input: float
    cached_input: float
    cache_write: float
    reasoning: float
    output: float
    source: str
    as_of: str

    def cost(self, usage: Usage) -> float:
        """USD for one attempt's usage (see `ragline.llm.types` for the token classes)."""
        uncached = max(0, usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens)
        visible = max(0, usage.output_tokens - usage.reasoning_tokens)
        total = (
            uncached * self.input
            + usage.cached_input_tokens * self.cached_input
            + usage.cache_write_tokens * self.cache_write
            + usage.reasoning_tokens * self.reasoning
            + visible * self.output
        )
        return total / PER_TOKENS


@dataclass(frozen=True, slots=True)
class PriceTable:
    version: int
    updated: str
    prices: tuple[Price, ...]

    def lookup(self, provider: str, model: str) -> Price | None:
        """The row for `model` (or its base model), else the provider's "*" row, else None."""
        rows = [p for p in self.prices if p.provider == provider]
        exact = {p.model: p for p in rows}
        if model in exact:
            return exact[model]
        for base in sorted(exact, key=len, reverse=True):
            if model.startswith(base) and _SNAPSHOT.match(model[len(base) :]):
                return exact[base]
        return exact.get("*")

    def cost(self, provider: str, model: str, usage: Usage) -> float | None:
        price = self.lookup(provider, model)
        return None if price is None else price.cost(usage)


def _price(row: dict[str, Any], where: str) -> Price:
    missing = [k for k in ("provider", "model", *_RATES, "source", "as_of") if k not in row]
    if missing:
        raise LLMConfigError(f"{where}: a [[price]] row lacks {missing}; every row needs them")
    return Price(
        provider=str(row["provider"]),
        model=str(row["model"]),
        **{k: float(row[k]) for k in _RATES},
        source=str(row["source"]),
        as_of=str(row["as_of"]),
    )


def load_prices(path: Path | None = None) -> PriceTable:
    """Read a price table (default: the one shipped with ragline)."""
    if path is None:
        text = resources.files("ragline.llm").joinpath("prices.toml").read_text("utf-8")
        where = "ragline/llm/prices.toml"
    else:
        text, where = path.read_text("utf-8"), str(path)
    data = tomllib.loads(text)
    return PriceTable(
        version=int(data["version"]),
        updated=str(data["updated"]),
        prices=tuple(_price(row, where) for row in data.get("price", [])),
    )


@functools.cache
def default_prices() -> PriceTable:
    return load_prices()
