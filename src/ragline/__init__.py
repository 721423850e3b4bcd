"""ragline: retrieval-augmented generation with verified citations, and evaluation you can trust."""

from ragline.config import RaglineConfig, load_config
from ragline.errors import RaglineError
from ragline.index import Index
from ragline.ingest import IngestSummary
from ragline.types import Chunk, Document, FusionMethod, Hit, RetrievalMode

__version__ = "0.1.0"

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
