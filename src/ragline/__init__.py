"""ragline: retrieval-augmented generation with verified citations, and evaluation you can trust."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragline._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "Chunk": "ragline.types",
    "Document": "ragline.types",
    "FusionMethod": "ragline.types",
    "Hit": "ragline.types",
    "Index": "ragline.index",
    "IngestSummary": "ragline.ingest",
    "RaglineConfig": "ragline.config",
    "RaglineError": "ragline.errors",
    "RetrievalMode": "ragline.types",
    "load_config": "ragline.config",
}

if TYPE_CHECKING:
    from ragline.config import RaglineConfig, load_config
    from ragline.errors import RaglineError
    from ragline.index import Index
    from ragline.ingest import IngestSummary
    from ragline.types import Chunk, Document, FusionMethod, Hit, RetrievalMode

__all__ = [
    "Chunk",
    "Document",
    "FusionMethod",
    "Hit",
    "Index",
    "IngestSummary",
    "RaglineConfig",
    "RaglineError",
    "RetrievalMode",
    "__version__",
    "load_config",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
