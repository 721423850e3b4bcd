"""An embedder for any OpenAI-compatible `/v1/embeddings` endpoint.

Works with OpenAI, vLLM, Ollama, the llama.cpp server and Hugging Face TEI through the official
`openai` SDK. Vectors are L2-normalised here, whatever the server returns, and put back in
input order by each item's `index`.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import logging
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragline.embed.base import EmbedKind, Vectors
from ragline.embed.onnx import l2_normalise
from ragline.errors import EmbedderError

if TYPE_CHECKING:
    import openai
    import tiktoken

log = logging.getLogger(__name__)

TOKEN_INSTALL = "For exact counts: pip install tiktoken bpe-openai"
# The sha256 of the uncompressed cl100k_base.tiktoken, as pinned by tiktoken_ext.openai_public.
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
CL100K_SPECIAL = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}
# Rough English average for BPE tokenizers, used only when tiktoken's data is unavailable.
CHARS_PER_TOKEN_ESTIMATE = 4
PROBE_TEXT = "dimension probe"


class OpenAICompatibleEmbedder:
    """Embeds through `client.embeddings.create` in batches of `batch_size` texts.

    `dim` is discovered from the first response when not given; reading `dim` before any
    `embed` call sends one one-text request to learn it. `max_retries` is handed to the SDK,
    which retries connection errors, 408/409/429 and 5xx with backoff and honours Retry-After.
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
        self._client = make_client(base_url, api_key, timeout, max_retries)
        self._encoding: tiktoken.Encoding | None = None
        self._encoding_loaded = False
        self._lock = threading.Lock()

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
        """cl100k_base token counts (from the `bpe-openai` package's data), or ~chars/4 without it.

        Other servers' models use other tokenizers, so treat this as an estimate there.
        """
        encoding = self._tiktoken()
        if encoding is None:
            return [math.ceil(len(t) / CHARS_PER_TOKEN_ESTIMATE) for t in texts]
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
        import openai

        try:
            return self._client.embeddings.create(
                model=self.model, input=texts, encoding_format="float"
            )
        except openai.APIStatusError as exc:
            raise EmbedderError(
                f"{self.base_url} answered HTTP {exc.status_code} for model {self.model!r}: "
                f"{exc.message}; check the model name, API key and server logs"
            ) from exc
        except openai.APIConnectionError as exc:
            raise EmbedderError(
                f"cannot reach {self.base_url}: {exc}; check that the server is running and "
                "base_url ends in /v1"
            ) from exc
        except (openai.OpenAIError, ValueError) as exc:
            # Malformed bodies surface as APIResponseValidationError or a JSON ValueError.
            raise EmbedderError(
                f"{self.base_url} sent an unreadable embeddings response: {exc}"
            ) from exc

    def _tiktoken(self) -> tiktoken.Encoding | None:
        with self._lock:
            if not self._encoding_loaded:
                self._encoding = load_cl100k()
                self._encoding_loaded = True
            return self._encoding


def make_client(
    base_url: str, api_key: str | None, timeout: float, max_retries: int
) -> openai.OpenAI:
    """The SDK client; local servers accept any key, so a placeholder stands in for none."""
    import openai

    return openai.OpenAI(
        base_url=base_url, api_key=api_key or "not-needed", timeout=timeout, max_retries=max_retries
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


def load_cl100k() -> tiktoken.Encoding | None:
    """tiktoken's cl100k_base built from the BPE file inside `bpe-openai` (nothing downloaded).

    The file is read without importing `bpe_openai` (its import parses three vocabularies) and
    checked against the sha256 tiktoken itself pins, so token ids equal tiktoken's.
    """
    try:
        import tiktoken
    except ImportError:
        log.warning("tiktoken is not installed; counting tokens as chars/4. %s", TOKEN_INSTALL)
        return None
    path = bpe_openai_file("cl100k_base.tiktoken.gz")
    if path is None:
        log.warning("bpe-openai is not installed; counting tokens as chars/4. %s", TOKEN_INSTALL)
        return None
    raw = gzip.decompress(path.read_bytes())
    if hashlib.sha256(raw).hexdigest() != CL100K_SHA256:
        raise EmbedderError(
            f"{path} is not tiktoken's cl100k_base file (sha256 differs); "
            f"reinstall it: {TOKEN_INSTALL} --force-reinstall"
        )
    ranks = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in raw.splitlines() if line)
    }
    return tiktoken.Encoding(
        name="cl100k_base",
        pat_str=CL100K_PATTERN,
        mergeable_ranks=ranks,
        special_tokens=CL100K_SPECIAL,
    )


def bpe_openai_file(name: str) -> Path | None:
    """A data file of the installed `bpe-openai` package, found without importing it."""
    spec = importlib.util.find_spec("bpe_openai")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "data" / name
        if candidate.is_file():
            return candidate
    return None
