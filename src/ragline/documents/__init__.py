"""Load files into documents and split them into chunks with exact character offsets."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragline._lazy import lazy_exports

_EXPORTS = {
    "DEFAULT_MAX_FILE_BYTES": "ragline.documents.loaders",
    "SUPPORTED_SUFFIXES": "ragline.documents.loaders",
    "ChunkStrategy": "ragline.documents.chunking",
    "ChunkingConfig": "ragline.documents.chunking",
    "ChunkingError": "ragline.documents.chunking",
    "DecodeErrors": "ragline.documents.loaders",
    "LoadResult": "ragline.documents.loaders",
    "TokenCounter": "ragline.documents.chunking",
    "chunk_document": "ragline.documents.chunking",
    "chunk_documents": "ragline.documents.chunking",
    "content_hash": "ragline.documents.loaders",
    "iter_files": "ragline.documents.loaders",
    "load_file": "ragline.documents.loaders",
    "load_file_report": "ragline.documents.loaders",
    "resolve_strategy": "ragline.documents.chunking",
}

if TYPE_CHECKING:
    from ragline.documents.chunking import (
        ChunkingConfig,
        ChunkingError,
        ChunkStrategy,
        TokenCounter,
        chunk_document,
        chunk_documents,
        resolve_strategy,
    )
    from ragline.documents.loaders import (
        DEFAULT_MAX_FILE_BYTES,
        SUPPORTED_SUFFIXES,
        DecodeErrors,
        LoadResult,
        content_hash,
        iter_files,
        load_file,
        load_file_report,
    )

__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "SUPPORTED_SUFFIXES",
    "ChunkStrategy",
    "ChunkingConfig",
    "ChunkingError",
    "DecodeErrors",
    "LoadResult",
    "TokenCounter",
    "chunk_document",
    "chunk_documents",
    "content_hash",
    "iter_files",
    "load_file",
    "load_file_report",
    "resolve_strategy",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
