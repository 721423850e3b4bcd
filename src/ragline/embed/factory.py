"""Build an embedder from configuration."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, get_args

from ragline.config import EmbedderSettings
from ragline.embed.base import Embedder
from ragline.embed.cache import CachedEmbedder, EmbeddingCache
from ragline.errors import ConfigError

Provider = Literal["onnx", "openai-compatible"]
PROVIDERS: tuple[str, ...] = get_args(Provider)


# The typed `[embedder]` settings are what the factory takes: one declaration of each field and
# default (`config.EmbedderSettings`). `EmbedderConfig` is the name this module used to give a
# copy of them; it stays as an alias for code that imported it.
EmbedderConfig = EmbedderSettings


def build_embedder(config: EmbedderSettings, *, cache_path: Path | None = None) -> Embedder:
    """The configured embedder, wrapped in a CachedEmbedder (at `cache_path`, else the default
    cache) when `config.cache` is true.

    For "onnx", `model` is an optional path to another ONNX export of all-MiniLM-L6-v2 (the
    packaged int8 model otherwise). For "openai-compatible", `model` and `base_url` are required
    and the API key is read from the environment variable named by `api_key_env` (unset is fine
    for local servers).
    """
    inner = build_inner(config)
    if not config.cache:
        return inner
    return CachedEmbedder(inner, EmbeddingCache(cache_path))


def build_inner(config: EmbedderSettings) -> Embedder:
    """The configured embedder without a cache."""
    if config.provider == "onnx":
        from ragline.embed.onnx import OnnxEmbedder  # onnxruntime loads on first use

        model_path = Path(config.model).expanduser() if config.model else None
        return OnnxEmbedder(model_path, threads=config.threads, batch_size=config.batch_size)
    if config.provider == "openai-compatible":
        if not config.model or not config.base_url:
            raise ConfigError(
                "embedder provider 'openai-compatible' needs both [embedder] model and "
                "base_url, e.g. model = \"nomic-embed-text\", "
                "base_url = \"http://127.0.0.1:11434/v1\""
            )
        from ragline.embed.openai_compat import OpenAICompatibleEmbedder

        return OpenAICompatibleEmbedder(
            config.model,
            config.base_url,
            api_key=os.environ.get(config.api_key_env),
            batch_size=config.batch_size,
        )
    raise ConfigError(
        f"unknown embedder provider {config.provider!r}; valid providers: {', '.join(PROVIDERS)}"
    )
