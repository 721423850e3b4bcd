"""The embedder seam: anything that turns texts into L2-normalised float32 vectors."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

EmbedKind = Literal["document", "query"]
Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Contract of an embedding model.

    `model_id` names the model and its settings (it keys the embedding cache);
    `embed` returns an array of shape [len(texts), dim], each row L2-normalised.
    """

    model_id: str
    dim: int
    max_tokens: int

    def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...


def count_tokens_capped(
    counter: Callable[..., list[int]], texts: Sequence[str], limit: int
) -> list[int]:
    """Token counts where only "at most `limit`" matters: a counter that takes `limit=` (the
    ONNX embedder's) stops tokenising early; any other counts in full."""
    try:
        accepts = "limit" in inspect.signature(counter).parameters
    except (TypeError, ValueError):
        accepts = False
    return list(counter(texts, limit=limit) if accepts else counter(texts))
