"""An embedder for any OpenAI-compatible `/v1/embeddings` endpoint.

Works with OpenAI, vLLM, Ollama, the llama.cpp server and Hugging Face TEI through the official
`openai` SDK. Vectors are L2-normalised here, whatever the server returns, and put back in
input order by each item's `index`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ragline.embed.base import EmbedKind, Vectors
from ragline.embed.onnx import l2_normalise
from ragline.errors import EmbedderError

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)

PROBE_TEXT = "dimension probe"


class OpenAICompatibleEmbedder:
    """Embeds through `client.embeddings.create` in batches of `batch_size` texts.

    `dim` is discovered from the first response when not given; reading `dim` before any
    `embed` call sends one one-text request to learn it. Retries (429 with Retry-After, 5xx,
    timeouts, dropped connections) follow ragline's one `RetryPolicy`, with `max_retries`
    retries after the first attempt; the SDK's own retries are off.
    """

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key: str | None = None,
        dim: int | None = None,
        batch_size: int = 64,
        timeout: float = 30.0,
        max_tokens: int = 8191,
        *,
        max_retries: int = 2,
    ) -> None:
        if not model:
            raise EmbedderError(
                "model must name the server's embedding model, e.g. "
                "'text-embedding-3-small' or 'nomic-embed-text'"
            )
        if batch_size < 1:
            raise EmbedderError(f"batch_size must be at least 1, got {batch_size}")
        if dim is not None and dim < 1:
            raise EmbedderError(f"dim must be positive, got {dim}")
        self.model = model
        self.base_url = base_url
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.model_id = f"openai-compatible:{base_url}:{model}"
        self._dim = dim
        self._client = make_client(base_url, api_key, timeout)
        self._max_attempts = max_retries + 1
        self._ledger: Any = None  # ragline.llm.ledger.Ledger, opened on the first call

    @property
    def dim(self) -> int:
        """Vector width: given, or learnt from the server (one small request if none was made)."""
        if self._dim is None:
            return int(self._request([PROBE_TEXT]).shape[1])  # _request records it
        return self._dim

    @dim.setter
    def dim(self, value: int) -> None:
        self._dim = value

    def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        """Unit vectors [len(texts), dim] in input order (one request per `batch_size` texts)."""
        del kind  # the endpoint has no query/document distinction
        if isinstance(texts, str):
            raise EmbedderError(
                "embed() takes a sequence of texts, not one string; wrap it: [text]"
            )
        if len(texts) == 0:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        batches = [
            self._request(list(texts[i : i + self.batch_size]))
            for i in range(0, len(texts), self.batch_size)
        ]
        return np.concatenate(batches, axis=0)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """cl100k_base token counts (the `bpe-openai` package's data, via ragline.llm.tokens).

        Other servers' models use other tokenizers, so treat this as an estimate there.
        """
        from ragline.llm.tokens import get_encoding

        encoding = get_encoding("cl100k_base")
        return [len(ids) for ids in encoding.encode_ordinary_batch(list(texts))]

    def _request(self, texts: list[str]) -> Vectors:
        response = self._call(texts)
        vectors = parse_embeddings(response.model_dump(), len(texts), self.base_url)
        if self._dim is None:
            self._dim = vectors.shape[1]
        elif vectors.shape[1] != self._dim:
            raise EmbedderError(
                f"{self.base_url} returned {vectors.shape[1]}-d vectors, expected {self._dim}; "
                "check that `model` and `dim` match the server's model"
            )
        return l2_normalise(vectors)

    def _call(self, texts: list[str]) -> Any:
        from ragline.llm.errors import ProviderError, ServerError
        from ragline.llm.retry import RetryExecutor, RetryPolicy

        executor = RetryExecutor(RetryPolicy(max_attempts=self._max_attempts))
        record = self._ledger_recorder()
        try:
            response, _info = executor.run([self.model], lambda _m: self._attempt(texts), record)
        except ProviderError as exc:
            cause = exc.__cause__
            if isinstance(exc, ServerError) or getattr(cause, "status_code", None):
                status = getattr(cause, "status_code", "?")
                raise EmbedderError(
                    f"{self.base_url} answered HTTP {status} for model {self.model!r}: {exc}; "
                    "check the model name, API key and server logs"
                ) from exc
            raise EmbedderError(f"embedding request to {self.base_url} failed: {exc}") from exc
        return response

    def _ledger_recorder(self) -> Any:
        """Each attempt of one embeddings call becomes a ledger row (purpose "embedding")."""
        import uuid

        from ragline.llm.ledger import OK, CallRecord, Ledger
        from ragline.llm.pricing import default_prices
        from ragline.llm.types import Usage

        if self._ledger is None:
            self._ledger = Ledger()
        ledger, call_id = self._ledger, uuid.uuid4().hex

        def record(info: Any, response: Any) -> None:
            tokens = getattr(getattr(response, "usage", None), "prompt_tokens", 0) or 0
            usage = Usage(input_tokens=int(tokens))
            ledger.record(CallRecord(
                call_id, info.number, "openai-compatible", self.model, "embedding",
                OK if info.error is None else type(info.error).__name__, usage=usage,
                cost_usd=default_prices().cost("openai-compatible", self.model, usage)
                if info.error is None else 0.0,
                wait_s=info.wait_s, provider_s=info.provider_s,
                error=info.error.detail if info.error is not None else None,
            ))

        return record

    def _attempt(self, texts: list[str]) -> Any:
        """One request; SDK errors become the LLM layer's typed (retryable or not) errors."""
        import openai

        from ragline.llm.providers._common import (
            body_error_code,
            error_for_status,
            malformed,
            transport_error,
        )

        where = {"provider": "openai-compatible", "model": self.model}
        try:
            return self._client.embeddings.create(
                model=self.model, input=texts, encoding_format="float"
            )
        except openai.APIStatusError as exc:
            raise error_for_status(exc.status_code, exc.message,
                                   headers=dict(exc.response.headers),
                                   code=body_error_code(exc.body), **where) from exc
        except openai.APIConnectionError as exc:
            raise transport_error(
                RuntimeError(f"cannot reach {self.base_url}: {exc}; check that the server is "
                             "running and base_url ends in /v1"), **where) from exc
        except (openai.OpenAIError, ValueError) as exc:
            # Malformed bodies surface as APIResponseValidationError or a JSON ValueError.
            raise malformed(f"an unreadable embeddings response: {exc}", **where) from exc

def make_client(base_url: str, api_key: str | None, timeout: float) -> openai.OpenAI:
    """The SDK client, its own retries off; local servers accept any key, so a placeholder
    stands in for none."""
    import openai

    return openai.OpenAI(
        base_url=base_url, api_key=api_key or "not-needed", timeout=timeout, max_retries=0
    )


def parse_embeddings(payload: dict[str, Any], expected: int, source: str) -> Vectors:
    """A float32 matrix from an embeddings response body, rows ordered by `data[i].index`."""
    data = payload.get("data")
    if not isinstance(data, list) or len(data) != expected:
        got = len(data) if isinstance(data, list) else "no"
        raise EmbedderError(f"{source} returned {got} embeddings for {expected} inputs")
    try:
        ordered = sorted(data, key=lambda item: int(item["index"]))
        matrix = np.asarray([item["embedding"] for item in ordered], dtype=np.float32)
    except (KeyError, TypeError, ValueError) as exc:
        raise EmbedderError(f"{source} sent malformed embedding items: {exc}") from exc
    indices = [int(item["index"]) for item in ordered]
    if indices != list(range(expected)):
        raise EmbedderError(f"{source} returned indices {indices}, expected 0..{expected - 1}")
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise EmbedderError(f"{source} returned embeddings of uneven or zero length")
    return matrix


