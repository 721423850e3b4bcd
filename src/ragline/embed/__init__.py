"""Embedders (texts → unit vectors), the embedding cache, and the factory that builds them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragline._lazy import lazy_exports

_EXPORTS = {
    "CachedEmbedder": "ragline.embed.cache",
    "ChecksumMismatch": "ragline.embed.hub",
    "EmbedKind": "ragline.embed.base",
    "Embedder": "ragline.embed.base",
    "EmbedderConfig": "ragline.embed.factory",
    "EmbeddingCache": "ragline.embed.cache",
    "EmbeddingCacheError": "ragline.embed.cache",
    "ModelDownloadError": "ragline.embed.hub",
    "OnnxEmbedder": "ragline.embed.onnx",
    "OpenAICompatibleEmbedder": "ragline.embed.openai_compat",
    "Vectors": "ragline.embed.base",
    "build_embedder": "ragline.embed.factory",
    "download_model": "ragline.embed.hub",
}

if TYPE_CHECKING:
    from ragline.embed.base import Embedder, EmbedKind, Vectors
    from ragline.embed.cache import CachedEmbedder, EmbeddingCache, EmbeddingCacheError
    from ragline.embed.factory import EmbedderConfig, build_embedder
    from ragline.embed.hub import ChecksumMismatch, ModelDownloadError, download_model
    from ragline.embed.onnx import OnnxEmbedder
    from ragline.embed.openai_compat import OpenAICompatibleEmbedder

__all__ = [
    "CachedEmbedder",
    "ChecksumMismatch",
    "EmbedKind",
    "Embedder",
    "EmbedderConfig",
    "EmbeddingCache",
    "EmbeddingCacheError",
    "ModelDownloadError",
    "OnnxEmbedder",
    "OpenAICompatibleEmbedder",
    "Vectors",
    "build_embedder",
    "download_model",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
