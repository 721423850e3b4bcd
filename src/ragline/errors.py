"""Typed errors a user can hit. Each message says what happened and what to do next."""

from __future__ import annotations


class RaglineError(Exception):
    """Base class of every error ragline raises on purpose."""


class ConfigError(RaglineError):
    """A configuration value or file is invalid."""


class DocumentError(RaglineError):
    """A document could not be loaded. `reason` is a short machine-readable tag."""

    def __init__(self, path: str, reason: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.reason = reason
        self.message = message


class UnsupportedFileType(DocumentError):
    def __init__(self, path: str, suffix: str) -> None:
        super().__init__(path, "unsupported", f"unsupported file type {suffix!r}")


class FileTooLarge(DocumentError):
    def __init__(self, path: str, size: int, limit: int) -> None:
        super().__init__(
            path, "too_large", f"file is {size:,} bytes, over the limit of {limit:,} bytes "
            "(raise it with --max-file-size or max_file_bytes)"
        )


class CorruptDocument(DocumentError):
    def __init__(self, path: str, detail: str) -> None:
        super().__init__(path, "corrupt", detail)


class IndexNotFound(RaglineError):
    """No index exists at the given path."""


class IndexVersionError(RaglineError):
    """The index was written by a newer (or incompatible) ragline."""


class IndexLocked(RaglineError):
    """Another process holds the index's write lock."""


class EmptyQuery(RaglineError):
    """The query has no searchable content."""


class EmbedderError(RaglineError):
    """The embedding model could not be loaded or failed."""


class DatasetError(RaglineError):
    """An evaluation dataset is missing a file or is malformed."""


class IndexDamaged(RaglineError):
    """The index database is damaged (not merely stale): `ragline doctor` checks and repairs it."""


class StoreUnavailable(RaglineError):
    """The index's database server cannot be reached or refused the login."""
