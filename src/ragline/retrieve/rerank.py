"""Rerankers: the optional stage between retrieval and the hits a search returns.

`[search] reranker` names one (`none`, the default, changes nothing); `rerank_depth` is how
many retrieved hits it sees. A new reranker implements `ragline.retrieve.base.Reranker` and is
registered under a name with `register_reranker` (or passed as an object: `Index(reranker=...)`);
search, ask, `ragline eval retrieval` and `ragline tune retrieval` then use it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ragline.errors import ConfigError
from ragline.retrieve.base import Reranker
from ragline.types import Hit


class NoReranker:
    """The default: the retrieved order, untouched (and no stage recorded for it)."""

    name = "none"
    depth = 0

    def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        return list(hits)


RerankerFactory = Callable[[int], Reranker]  # rerank_depth -> a reranker
_REGISTRY: dict[str, RerankerFactory] = {"none": lambda _depth: NoReranker()}


def register_reranker(name: str, factory: RerankerFactory) -> None:
    """Make `[search] reranker = "<name>"` build a reranker with `factory(rerank_depth)`."""
    _REGISTRY[name] = factory


def make_reranker(name: str, depth: int) -> Reranker:
    try:
        factory = _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ConfigError(f"[search] reranker = {name!r} is not a known reranker "
                          f"(known: {known})") from None
    return factory(depth)
