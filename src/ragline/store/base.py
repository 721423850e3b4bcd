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
- `bulk_ingest` wraps one ingest run, so a store can defer index maintenance to its end
  (PostgreSQL builds HNSW once after a first load); whatever it defers, a failed run must leave
  the data complete and searchable;
- an index written by a newer schema is refused (`IndexVersionError`), and vectors of another
  dimension than the index's are refused with both dimensions named (`ConfigError`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ragline.types import Chunk, DocType, Document, Heading

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


# (generation, row ids, the [n, dim] embeddings as blocks of rows, texts), all in row-id order
Snapshot = tuple[int, npt.NDArray[np.int64], Iterator[Matrix], Iterator[str]]
SNAPSHOT_BLOCK = 8192  # rows of embeddings per block: what a build holds of the matrix at once

# The columns both backends select, in this order, to build documents and chunks; JSON fields
# come back as text from SQLite and already decoded from PostgreSQL (`decode` says which).
DOCUMENT_COLUMNS = ("id, text, doc_type, content_hash, title, source_path, modified, headings,"
                    " metadata")
Decode = Callable[[Any], Any]


def document_from_row(row: Sequence[Any], decode: Decode) -> Document:
    return Document(
        id=row[0], text=row[1], doc_type=DocType(row[2]), content_hash=row[3], title=row[4],
        source_path=row[5], modified=row[6],
        headings=tuple(Heading(int(s), int(lv), str(t)) for s, lv, t in decode(row[7])),
        metadata=decode(row[8]))


def stored_chunk_from_row(row: Sequence[Any], decode: Decode) -> StoredChunk:
    """From (id, doc_id, ordinal, start, end, text, heading_path, token_count, doc title,
    doc type, source path, pages)."""
    chunk = Chunk(id=row[0], doc_id=row[1], ordinal=int(row[2]), text=row[5],
                  start=int(row[3]), end=int(row[4]), heading_path=tuple(decode(row[6])),
                  token_count=int(row[7]), pages=tuple(decode(row[11])))
    return StoredChunk(chunk, doc_title=row[8], doc_type=row[9], source_path=row[10])


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

    def bulk_ingest(self) -> AbstractContextManager[None]: ...

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
