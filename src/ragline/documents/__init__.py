"""Load files into documents and split them into chunks with exact character offsets."""

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
