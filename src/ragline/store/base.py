"""The `Store` seam: what ingest, search and the derived index need from an index database.

Two backends implement it: `SQLiteStore` (`store/sqlite.py`, the embedded default) and
`PostgresStore` (`store/postgres.py`, PostgreSQL + pgvector). Both pass one conformance suite
(`tests/test_store_conformance.py`); a new backend is done when it passes it too.

The contract, whatever the backend:

- a document and all its chunks and embeddings are written in one transaction
  (`write_documents`), so a killed ingest leaves each document whole or absent;
- every committed change to documents bumps `generation`, which is how a derived index knows
  it is stale;
- chunks have integer row ids, unique among the chunks present and stable while a chunk
  exists, ascending in insertion order (a freed id may come back: SQLite reuses them);
- `chunk_snapshot` reads every chunk's row id, vector and text from one consistent snapshot;
- an index written by a newer schema is refused (`IndexVersionError`), and vectors of another
  dimension than the index's are refused with both dimensions named (`ConfigError`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ragline.types import Chunk, Document

Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class FileState:
    size: int
    mtime_ns: int
    settings: str
    doc_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """A chunk with its document's display fields, as a search hit needs them."""

    chunk: Chunk
    doc_title: str
    doc_type: str
    source_path: str | None


Snapshot = tuple[int, npt.NDArray[np.int64], Matrix, Iterator[str]]


class Store(Protocol):
    """An index database (see the module docstring for the contract)."""

    def close(self) -> None: ...

    def raise_if_damaged(self, *, quick: bool = True) -> None: ...

    # meta
    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    @property
    def generation(self) -> int: ...

    @property
    def store_id(self) -> str:
        """Names this database (not its location): search files built from another database
        that reached the same generation are never mistaken for its own."""
        ...

    # writes
    def write_documents(
        self,
        items: Sequence[tuple[Document, Sequence[Chunk], Matrix]],
        *,
        settings: str,
        files: Sequence[tuple[str, FileState]] = (),
    ) -> None: ...

    def record_files(self, files: Sequence[tuple[str, FileState]]) -> None: ...

    def delete_documents(self, doc_ids: Iterable[str]) -> int: ...

    def forget_files(self, paths: Iterable[str]) -> None: ...

    def clear_failures(self, path: str) -> None: ...

    def record_failure(self, path: str, reason: str, message: str) -> None: ...

    # reads
    def file_state(self, path: str) -> FileState | None: ...

    def failed_files_under(self, prefix: str) -> set[str]: ...

    def files_under(self, prefix: str) -> list[str]: ...

    def document_states(
        self, doc_ids: Sequence[str]) -> dict[str, tuple[str, str, str | None]]: ...

    def get_document(self, doc_id: str) -> Document | None: ...

    def get_chunk(self, chunk_id: str) -> StoredChunk | None: ...

    def chunks_by_rowid(self, rowids: Sequence[int]) -> dict[int, StoredChunk]: ...

    def chunk_snapshot(self, dim: int) -> AbstractContextManager[Snapshot]: ...

    def rowids_matching(
        self, where: dict[str, str | Sequence[str]], path_prefix: str | None) -> list[int]: ...

    def doc_ids_by_rowid(self) -> dict[int, str]: ...

    def count_documents(self) -> int: ...

    def count_chunks(self) -> int: ...

    def failures(self) -> list[tuple[str, str, str]]: ...


# Filter keys that name a document column rather than a metadata field (both backends).
FILTER_COLUMNS = {"type": "doc_type", "doc_type": "doc_type", "doc_id": "id", "title": "title"}


def record_file_of(path: str) -> str:
    """The file a failure path belongs to: a JSONL record's "path:LINE" counts for its file."""
    head, _, line = path.rpartition(":")
    return head if line.isdigit() and head else path
