"""Rerankers: the optional stage between retrieval and the hits a search returns.

`[search] reranker` names one (`none`, the default, changes nothing); `rerank_depth` is how
many retrieved hits it sees. A new reranker implements `ragline.retrieve.base.Reranker` and is
registered under a name with `register_reranker` (a factory of the `[search]` settings), or
passed as an object: `Index(reranker=...)`; search, ask, `ragline eval retrieval` and
`ragline tune retrieval` then use it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ragline.errors import ConfigError
from ragline.retrieve.base import Reranker
from ragline.types import Hit

if TYPE_CHECKING:
    from ragline.config import SearchSettings


class NoReranker:
    """The default: the retrieved order, untouched (and no stage recorded for it)."""

    name = "none"
    depth = 0

    def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        return list(hits)


class CrossEncoderReranker:
    """Reorders hits by a cross-encoder's probability that the chunk answers the query: the
    ONNX model folder format of the claim verifier (`manifest.json`, `model.onnx`,
    `tokenizer.json`), scored by the same code (`SupportModel.score_chunks`, the chunk first,
    truncated to the window beside the query). `window` reads fewer word pieces than the
    model was trained with (cost is about linear in it). `blend` < 1 mixes in the retrieval
    score: `blend * probability + (1 - blend) * retrieval score`, the retrieval scores min-max
    normalised over the reranked hits (so a weak reranker can only nudge a good retrieval
    order; 0 keeps it). `blend=None` takes the blend chosen on the training run's held-out
    queries (`rerank_blend` in the manifest; 1 for a model without one). Ties keep the
    retrieved order."""

    name = "cross-encoder"

    def __init__(self, model_dir: Path, depth: int = 20, *, threads: int | None = None,
                 window: int | None = None, blend: float | None = None) -> None:
        from ragline.answer.support_model import SupportModel

        self.depth = depth
        self.model = SupportModel(model_dir, threads=threads, max_length=window)
        if blend is None:
            blend = float(self.model.info.manifest.get("rerank_blend", 1.0))
        if not 0.0 <= blend <= 1.0:
            raise ConfigError(f"rerank_blend must be between 0 and 1, got {blend}")
        self.blend = blend

    def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        if not hits:
            return []
        if self.blend == 0.0:  # the retrieval order: nothing to pay the model for
            return list(hits)
        probabilities = self.model.score_chunks([(hit.chunk.text, query) for hit in hits])
        scores = blend_scores(probabilities.tolist(), [hit.score for hit in hits], self.blend)
        order = sorted(range(len(hits)), key=lambda i: (-float(scores[i]), i))
        return [replace(hits[i], score=float(scores[i])) for i in order]


def blend_scores(probabilities: Sequence[float], retrieval: Sequence[float],
                 blend: float) -> list[float]:
    """`blend * p + (1 - blend) * r`, r min-max normalised over these hits (all 1 when equal)."""
    if blend >= 1.0:
        return [float(p) for p in probabilities]
    low, high = min(retrieval), max(retrieval)
    span = high - low
    normalised = [(r - low) / span if span > 0 else 1.0 for r in retrieval]
    return [blend * float(p) + (1.0 - blend) * r
            for p, r in zip(probabilities, normalised, strict=True)]


RerankerFactory = Callable[["SearchSettings"], Reranker]  # from the [search] settings


def _cross_encoder(settings: SearchSettings) -> Reranker:
    if not settings.rerank_model:
        raise ConfigError('[search] reranker = "cross-encoder" needs rerank_model = "DIR" (a '
                          "model folder with manifest.json, model.onnx and tokenizer.json)")
    return CrossEncoderReranker(Path(settings.rerank_model).expanduser(), settings.rerank_depth,
                                window=settings.rerank_window, blend=settings.rerank_blend)


_REGISTRY: dict[str, RerankerFactory] = {"none": lambda _settings: NoReranker(),
                                         "cross-encoder": _cross_encoder}


def register_reranker(name: str, factory: RerankerFactory) -> None:
    """Make `[search] reranker = "<name>"` build a reranker with `factory(settings)`, where
    `settings` is the `[search]` table (`rerank_depth`, `rerank_model`, ...)."""
    _REGISTRY[name] = factory


def make_reranker(settings: SearchSettings) -> Reranker:
    try:
        factory = _REGISTRY[settings.reranker]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ConfigError(f"[search] reranker = {settings.reranker!r} is not a known reranker "
                          f"(known: {known})") from None
    return factory(settings)
