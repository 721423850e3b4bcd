"""SQLite, the index's source of truth: documents, chunks, embeddings and ingest state.

Every derived structure (the BM25 index, the vector matrix) is rebuilt from here.
Each committed write bumps `generation`, which is how a derived index knows it is stale.
A document and all its chunks are written in one transaction, so a process killed at any
moment leaves each document either fully stored or absent, never half-written.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ragline import _sqlite
from ragline.errors import IndexDamaged, IndexNotFound, IndexVersionError
from ragline.store.base import (
    DOCUMENT_COLUMNS,
    FILTER_COLUMNS,
    SNAPSHOT_BLOCK,
    FileState,
    Matrix,
    Snapshot,
    StoredChunk,
    document_from_row,
    record_file_of,
    stored_chunk_from_row,
)
from ragline.types import Chunk, Document

SCHEMA_VERSION = 2  # 2: chunks.pages
DB_NAME = "ragline.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    source_path TEXT,
    title TEXT NOT NULL,
    doc_type TEXT NOT NULL,
    modified REAL,
    content_hash TEXT NOT NULL,
    settings TEXT NOT NULL,
    text TEXT NOT NULL,
    headings TEXT NOT NULL,
    metadata TEXT NOT NULL,
    ingested_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_path ON documents(source_path);
CREATE TABLE IF NOT EXISTS chunks (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    text TEXT NOT NULL,
    heading_path TEXT NOT NULL,
    token_count INTEGER NOT NULL,
    embedding BLOB NOT NULL,
    pages TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    settings TEXT NOT NULL,
    doc_ids TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    path TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    at REAL NOT NULL
);
"""

class SQLiteStore:
    """The embedded index database (a `store.base.Store`). Readers never block writers (WAL);
    one writer at a time."""

    def __init__(self, index_dir: Path, *, create: bool = False) -> None:
        self.index_dir = index_dir
        self.path = index_dir / DB_NAME
        if not self.path.exists():
            if not create:
                raise IndexNotFound(
                    f"no ragline index at {index_dir} (run `ragline ingest PATH --index {index_dir}` first)"
                )
            index_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = _sqlite.connect(self.path, timeout=60.0, autocommit=True,
                                         foreign_keys=True)
        except sqlite3.DatabaseError as exc:
            raise IndexVersionError(
                f"{self.path} is not a ragline index ({exc}); point --index at another folder"
            ) from exc
        try:
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise IndexVersionError(
                f"{self.path} is not a ragline index ({exc}); point --index at another folder"
            ) from exc
        except BaseException:
            self._conn.close()
            raise

    # -- schema -----------------------------------------------------------------------------

    def _init_schema(self) -> None:
        has_meta = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        if has_meta:
            row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise IndexVersionError(
                    f"the index at {self.index_dir} has schema version {version}, but this ragline "
                    f"reads version {SCHEMA_VERSION}: upgrade ragline (pip install -U ragline), "
                    "or ingest into a new --index folder"
                )
            if version == SCHEMA_VERSION:
                return
            if version == 1:
                self._migrate_to_pages()
                return
        with self.transaction() as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('generation', '0')")
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('store_id', ?)",
                         (uuid.uuid4().hex,))

    def _migrate_to_pages(self) -> None:
        """Version 1 -> 2: chunks learn their pages, computed from each PDF's page offsets."""
        from ragline.documents.chunking import pages_of

        with self.transaction() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None or int(row[0]) != 1:
                return  # another process migrated it while this one waited for the lock
            conn.execute("ALTER TABLE chunks ADD COLUMN pages TEXT NOT NULL DEFAULT '[]'")
            paged = conn.execute(
                "SELECT id, json_extract(metadata, '$.page_starts') FROM documents"
                " WHERE json_type(metadata, '$.page_starts') = 'array'"
            ).fetchall()
            for doc_id, raw in paged:
                starts = [int(v) for v in json.loads(raw)]
                spans = conn.execute('SELECT rowid, start, "end" FROM chunks WHERE doc_id=?',
                                     (doc_id,)).fetchall()
                conn.executemany("UPDATE chunks SET pages=? WHERE rowid=?",
                                 [(json.dumps(list(pages_of(starts, a, b))), rowid)
                                  for rowid, a, b in spans])
            conn.execute("UPDATE meta SET value=? WHERE key='schema_version'",
                         (str(SCHEMA_VERSION),))

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; rolls back on any exception."""
        return _sqlite.immediate(self._conn)

    def close(self) -> None:
        self._conn.close()

    def integrity_problems(self, *, quick: bool = False) -> list[str]:
        """SQLite's own check of every page and index (`PRAGMA integrity_check`, or the faster
        `quick_check` that skips index contents); an empty list means sound."""
        pragma = "quick_check" if quick else "integrity_check"
        try:
            rows = self._conn.execute(f"PRAGMA {pragma}(20)").fetchall()
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        problems = [str(r[0]) for r in rows]
        return [] if problems == ["ok"] else problems

    def raise_if_damaged(self, *, quick: bool = True) -> None:
        problems = self.integrity_problems(quick=quick)
        if problems:
            raise IndexDamaged(damage_message(self.index_dir, "; ".join(problems[:3])))

    # -- meta -------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    @property
    def store_id(self) -> str:
        # Indexes created before store ids are named by their file's path.
        return self.get_meta("store_id") or f"sqlite:{self.path.resolve()}"

    @staticmethod
    def _bump(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")

    # -- writes -----------------------------------------------------------------------------

    def write_documents(
        self,
        items: Sequence[tuple[Document, Sequence[Chunk], Matrix]],
        *,
        settings: str,
        files: Sequence[tuple[str, FileState]] = (),
    ) -> None:
        """Replace each document with its new chunks and embeddings, all in one transaction."""
        now = time.time()
        with self.transaction() as conn:
            for doc, chunks, vectors in items:
                conn.execute("DELETE FROM chunks WHERE doc_id=?", (doc.id,))
                conn.execute(
                    "INSERT OR REPLACE INTO documents(id, source_path, title, doc_type, modified,"
                    " content_hash, settings, text, headings, metadata, ingested_at)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (doc.id, doc.source_path, doc.title, doc.doc_type.value, doc.modified,
                     doc.content_hash, settings, doc.text,
                     json.dumps([[h.start, h.level, h.title] for h in doc.headings]),
                     json.dumps(doc.metadata, default=str), now),
                )
                conn.executemany(
                    'INSERT INTO chunks(id, doc_id, ordinal, start, "end", text, heading_path,'
                    " token_count, embedding, pages) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    [(c.id, c.doc_id, c.ordinal, c.start, c.end, c.text,
                      json.dumps(list(c.heading_path)), c.token_count,
                      np.ascontiguousarray(v, dtype=np.float32).tobytes(),
                      json.dumps(list(c.pages)))
                     for c, v in zip(chunks, vectors, strict=True)],
                )
            for path, state in files:
                self._put_file(conn, path, state)
            self._bump(conn)

    def record_files(self, files: Sequence[tuple[str, FileState]]) -> None:
        if not files:
            return
        with self.transaction() as conn:
            for path, state in files:
                self._put_file(conn, path, state)

    @staticmethod
    def _put_file(conn: sqlite3.Connection, path: str, state: FileState) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO files(path, size, mtime_ns, settings, doc_ids) VALUES (?,?,?,?,?)",
            (path, state.size, state.mtime_ns, state.settings, json.dumps(list(state.doc_ids))),
        )

    def delete_documents(self, doc_ids: Iterable[str]) -> int:
        ids = list(doc_ids)
        if not ids:
            return 0
        with self.transaction() as conn:
            for doc_id in ids:
                conn.execute("DELETE FROM documents WHERE id=?", (doc_id,))
            self._bump(conn)
        return len(ids)

    def forget_files(self, paths: Iterable[str]) -> None:
        with self.transaction() as conn:
            for path in paths:
                conn.execute("DELETE FROM files WHERE path=?", (path,))
                _clear_failures(conn, path)

    def clear_failures(self, path: str) -> None:
        """Forget a file's recorded failures (before it is read again)."""
        with self.transaction() as conn:
            _clear_failures(conn, path)

    def record_failure(self, path: str, reason: str, message: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO failures(path, reason, message, at) VALUES (?,?,?,?)",
                (path, reason, message, time.time()),
            )

    # -- reads ------------------------------------------------------------------------------

    def file_state(self, path: str) -> FileState | None:
        row = self._conn.execute(
            "SELECT size, mtime_ns, settings, doc_ids FROM files WHERE path=?", (path,)
        ).fetchone()
        if row is None:
            return None
        return FileState(int(row[0]), int(row[1]), str(row[2]), tuple(json.loads(row[3])))

    def failed_files_under(self, prefix: str) -> set[str]:
        """The files under `prefix` with a recorded failure (a record's "path:LINE" counts for
        its file)."""
        rows = self._conn.execute(
            "SELECT path FROM failures WHERE substr(path, 1, ?) = ?", (len(prefix), prefix))
        return {record_file_of(str(path)) for (path,) in rows}

    def files_under(self, prefix: str) -> list[str]:
        """Recorded file paths at or under `prefix` (an absolute path)."""
        rows = self._conn.execute(
            "SELECT path FROM files WHERE path = ? OR substr(path, 1, ?) = ?",
            (prefix, len(prefix) + 1, prefix.rstrip("/") + "/"),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def document_states(self, doc_ids: Sequence[str]) -> dict[str, tuple[str, str, str | None]]:
        """doc id -> (content hash, settings fingerprint, source path) for the stored ids."""
        out: dict[str, tuple[str, str, str | None]] = {}
        for start in range(0, len(doc_ids), 500):
            part = list(doc_ids[start:start + 500])
            marks = ",".join("?" * len(part))
            for row in self._conn.execute(
                f"SELECT id, content_hash, settings, source_path FROM documents"
                f" WHERE id IN ({marks})", part
            ):
                out[str(row[0])] = (str(row[1]), str(row[2]), row[3])
        return out

    def get_document(self, doc_id: str) -> Document | None:
        row = self._conn.execute(
            f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id=?", (doc_id,)).fetchone()
        return None if row is None else document_from_row(row, json.loads)

    _CHUNK_COLUMNS = (
        'c.id, c.doc_id, c.ordinal, c.start, c."end", c.text, c.heading_path, c.token_count,'
        " d.title, d.doc_type, d.source_path, c.pages"
    )

    @staticmethod
    def _stored_chunk(row: Sequence[Any]) -> StoredChunk:
        return stored_chunk_from_row(row, json.loads)

    def get_chunk(self, chunk_id: str) -> StoredChunk | None:
        row = self._conn.execute(
            f"SELECT {self._CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.doc_id"
            " WHERE c.id=?",
            (chunk_id,),
        ).fetchone()
        return None if row is None else self._stored_chunk(row)

    def chunks_by_rowid(self, rowids: Sequence[int]) -> dict[int, StoredChunk]:
        out: dict[int, StoredChunk] = {}
        for start in range(0, len(rowids), 500):
            part = [int(r) for r in rowids[start:start + 500]]
            marks = ",".join("?" * len(part))
            for row in self._conn.execute(
                f"SELECT c.rowid, {self._CHUNK_COLUMNS} FROM chunks c"
                f" JOIN documents d ON d.id = c.doc_id WHERE c.rowid IN ({marks})",
                part,
            ):
                out[int(row[0])] = self._stored_chunk(row[1:])
        return out

    @contextmanager
    def chunk_snapshot(
        self, dim: int
    ) -> Iterator[Snapshot]:
        """(generation, rowids, embeddings in blocks of rows, texts) of every chunk in rowid
        order, all read in one transaction that stays open while the block runs.

        Memory is a block, not the corpus: the embeddings and the texts are streams, read (in
        the same snapshot) as they are consumed.
        """
        self._conn.execute("BEGIN")
        try:
            generation = self.generation
            rowids = np.fromiter((row[0] for row in self._conn.execute(
                "SELECT rowid FROM chunks ORDER BY rowid")), dtype=np.int64)
            blocks = self._vector_blocks(dim)
            texts = (str(row[0]) for row in self._conn.execute(
                "SELECT text FROM chunks ORDER BY rowid"))
            yield generation, rowids, blocks, texts
        finally:
            self._conn.execute("COMMIT")

    def _vector_blocks(self, dim: int) -> Iterator[Matrix]:
        cursor = self._conn.execute("SELECT embedding FROM chunks ORDER BY rowid")
        while rows := cursor.fetchmany(SNAPSHOT_BLOCK):
            block = np.frombuffer(b"".join(row[0] for row in rows), dtype=np.float32)
            yield block.reshape(len(rows), dim)

    @contextmanager
    def bulk_ingest(self) -> Iterator[None]:
        """An ingest run: SQLite keeps no index that is cheaper to build afterwards."""
        yield

    def rowids_matching(
        self, where: dict[str, str | Sequence[str]], path_prefix: str | None
    ) -> list[int]:
        """Chunk rowids whose document matches every filter and the path prefix; a filter is
        `key=value`, or `key` in several values (any of them matches)."""
        clauses: list[str] = []
        params: list[Any] = []
        for key, value in where.items():
            values = [value] if isinstance(value, str) else list(value)
            marks = ",".join("?" * len(values))
            column = FILTER_COLUMNS.get(key)
            if column is not None:
                clauses.append(f"d.{column} IN ({marks})")
            else:
                clauses.append(f"CAST(json_extract(d.metadata, ?) AS TEXT) IN ({marks})")
                params.append(f"$.{json.dumps(key)}")
            params.extend(values)
        if path_prefix is not None:
            clauses.append("substr(coalesce(json_extract(d.metadata, '$.path'), d.id), 1, ?) = ?")
            params.extend([len(path_prefix), path_prefix])
        sql = "SELECT c.rowid FROM chunks c JOIN documents d ON d.id = c.doc_id"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        return [int(r[0]) for r in self._conn.execute(sql, params)]

    def doc_ids_by_rowid(self) -> dict[int, str]:
        return {int(r[0]): str(r[1]) for r in self._conn.execute("SELECT rowid, doc_id FROM chunks")}

    def count_documents(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM documents").fetchone()[0])

    def count_chunks(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM chunks").fetchone()[0])

    def failures(self) -> list[tuple[str, str, str]]:
        rows = self._conn.execute("SELECT path, reason, message FROM failures ORDER BY path")
        return [(str(a), str(b), str(c)) for a, b, c in rows]


def is_damage(exc: BaseException) -> bool:
    """A DatabaseError that means a damaged file, not a lock, a constraint or a missing table."""
    return type(exc) is sqlite3.DatabaseError or (
        isinstance(exc, sqlite3.DatabaseError)
        and any(s in str(exc) for s in ("malformed", "not a database", "corrupt"))
    )


def damage_message(index_dir: Path, detail: object) -> str:
    return (
        f"the index database {index_dir / DB_NAME} is damaged ({detail}); run `ragline doctor "
        f"--index {index_dir}` to see what is affected, and `ragline doctor --repair --index "
        f"{index_dir}` to recover every readable document (the damaged file is kept beside it)"
    )


def _clear_failures(conn: sqlite3.Connection, path: str) -> None:
    """Clear a file's own failure and those of its records ("path:LINE") together."""
    conn.execute("DELETE FROM failures WHERE path = ? OR substr(path, 1, ?) = ?",
                 (path, len(path) + 1, path + ":"))

