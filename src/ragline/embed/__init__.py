"""Embedders (texts → unit vectors), the embedding cache, and the factory that builds them."""

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
