"""The embedder seam: anything that turns texts into L2-normalised float32 vectors."""

from __future__ import annotations

from collections.abc import Sequence
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
