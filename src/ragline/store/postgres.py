"""PostgreSQL + pgvector as an index database: the same `Store` contract as SQLite.

One index is one PostgreSQL schema (`schema`, default "ragline"), so a server holds several.
Chunks keep their embedding in a `vector(dim)` column with an HNSW index (cosine; pgvector
>= 0.8) for the dense retriever that runs in SQL, and a generated `tsvector` column with a GIN
index for PostgreSQL full-text search. Writes follow `store/base.py`: a document, its chunks
and its file records in one transaction that bumps `generation`; row ids come from a sequence,
so they only grow. Concurrent writers serialise on the `generation` row (each write updates
it), readers never wait for them (MVCC), and `chunk_snapshot` reads in one REPEATABLE READ
transaction.

The password comes from the DSN's environment variable (`password_env`, default
`RAGLINE_PG_PASSWORD`), or from libpq's own `PGPASSWORD` / `~/.pgpass`; it is never logged or
put into an error message. Needs `pip install 'ragline[postgres]'`.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt

from ragline.errors import ConfigError, IndexNotFound, IndexVersionError, StoreUnavailable
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

SCHEMA_VERSION = 1
HNSW_INDEX = "chunks_embedding_hnsw"  # built by `build_hnsw`, not with the tables
HNSW_BUILD_MEMORY = "256MB"  # maintenance_work_mem for the build: the graph fits, no spill
PASSWORD_ENV = "RAGLINE_PG_PASSWORD"
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_TABLES = """
CREATE TABLE {s}.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE {s}.documents (
    id TEXT PRIMARY KEY,
    source_path TEXT,
    title TEXT NOT NULL,
    doc_type TEXT NOT NULL,
    modified DOUBLE PRECISION,
    content_hash TEXT NOT NULL,
    settings TEXT NOT NULL,
    text TEXT NOT NULL,
    headings JSONB NOT NULL,
    metadata JSONB NOT NULL,
    ingested_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX ON {s}.documents (source_path);
CREATE TABLE {s}.chunks (
    rowid BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    doc_id TEXT NOT NULL REFERENCES {s}.documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    start_offset INTEGER NOT NULL,
    end_offset INTEGER NOT NULL,
    text TEXT NOT NULL,
    heading_path JSONB NOT NULL,
    token_count INTEGER NOT NULL,
    pages JSONB NOT NULL,
    embedding vector({dim}) NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED
);
CREATE INDEX ON {s}.chunks (doc_id);
CREATE INDEX ON {s}.chunks USING gin (tsv);
CREATE TABLE {s}.files (
    path TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    mtime_ns BIGINT NOT NULL,
    settings TEXT NOT NULL,
    doc_ids JSONB NOT NULL
);
CREATE TABLE {s}.failures (
    path TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
)
"""


def describe_dsn(dsn: str) -> str:
    """host:port/dbname as user, for messages: never the password."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(dsn)
    except Exception:  # a malformed DSN: say so without echoing it (it may hold a password)
        return "(an unparsable DSN)"
    host = parts.get("host") or "localhost"
    port = parts.get("port") or "5432"
    return f"{host}:{port}/{parts.get('dbname') or parts.get('user') or ''} as " \
           f"{parts.get('user') or os.environ.get('PGUSER') or '(default user)'}"


def check_schema_name(schema: str) -> str:
    """`schema`, if it is a name SQL may hold unquoted (it is put into statements as is)."""
    if not _NAME.fullmatch(schema):
        raise ConfigError(f"[store] schema {schema!r}: use lower-case letters, digits and _ "
                          "(at most 63, not starting with a digit)")
    return schema


def connect(dsn: str, *, password_env: str = PASSWORD_ENV, connect_timeout: float = 10.0) -> Any:
    """An autocommit psycopg connection, with errors that say what to check (never the
    password)."""
    try:
        import psycopg
    except ImportError:
        raise ConfigError("the postgres store needs: pip install 'ragline[postgres]'") from None
    extra: dict[str, Any] = {"connect_timeout": max(1, int(connect_timeout))}
    password = os.environ.get(password_env)
    if password:
        extra["password"] = password
    try:
        return psycopg.connect(dsn, autocommit=True, **extra)
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(_connect_advice(describe_dsn(dsn), str(exc), password_env)) from None
    except psycopg.ProgrammingError as exc:  # a malformed DSN
        raise ConfigError(f"[store] dsn is not a PostgreSQL connection string: {exc}") from None


def create_schema(dsn: str, schema: str, *, password_env: str = PASSWORD_ENV) -> bool:
    """Create the empty schema of a new index; False when it exists already (nothing done).
    Atomic on the server, so of two processes creating the same schema exactly one wins."""
    import psycopg

    with connect(dsn, password_env=password_env) as conn:
        try:
            conn.execute(f"CREATE SCHEMA {check_schema_name(schema)}")
        except psycopg.errors.DuplicateSchema:
            return False
        except psycopg.errors.UniqueViolation:  # a concurrent CREATE SCHEMA of the same name
            return False
    return True


def index_exists(dsn: str, schema: str, *, password_env: str = PASSWORD_ENV) -> bool:
    """Whether `schema` holds a ragline index (its tables are made by the first ingest)."""
    with connect(dsn, password_env=password_env) as conn:
        return conn.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = %s"
            " AND table_name = 'meta'", (check_schema_name(schema),)).fetchone() is not None


def drop_schema(dsn: str, schema: str, *, password_env: str = PASSWORD_ENV) -> None:
    """Delete an index on PostgreSQL: its schema and everything in it (waits for running
    transactions on it; a connection still open on it then finds its tables gone)."""
    with connect(dsn, password_env=password_env) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {check_schema_name(schema)} CASCADE")


class PostgresStore:
    """The index database on a PostgreSQL server (a `store.base.Store`)."""

    def __init__(self, dsn: str, *, schema: str = "ragline", dim: int | None = None,
                 create: bool = False, password_env: str = PASSWORD_ENV,
                 connect_timeout: float = 10.0) -> None:
        check_schema_name(schema)
        try:
            import psycopg
            from pgvector.psycopg import register_vector
        except ImportError:
            raise ConfigError("the postgres store needs: pip install 'ragline[postgres]'") from None
        self.dsn_text = describe_dsn(dsn)
        self.schema = schema
        self._stats: tuple[int, int, float] | None = None  # generation, chunks, mean length
        self._psycopg = psycopg
        self._conn = connect(dsn, password_env=password_env, connect_timeout=connect_timeout)
        try:
            self._prepare(dim, create, register_vector)
        except BaseException:
            self._conn.close()
            raise

    # -- schema -----------------------------------------------------------------------------

    def _prepare(self, dim: int | None, create: bool, register_vector: Any) -> None:
        s = self.schema
        exists = self._conn.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = %s"
            " AND table_name = 'meta'", (s,)).fetchone()
        if not exists:
            if not create:
                raise IndexNotFound(f"no ragline index in schema {s!r} at {self.dsn_text} (run "
                                    "`ragline ingest` with this [store] first)")
            if dim is None:
                raise ConfigError("a new postgres index needs its embedding dimension")
            self._create(dim)
        register_vector(self._conn)
        version = int(self.get_meta("schema_version") or 0)
        if version > SCHEMA_VERSION:
            raise IndexVersionError(
                f"the index in schema {s!r} at {self.dsn_text} has schema version {version}, but "
                f"this ragline reads version {SCHEMA_VERSION}: upgrade ragline, or use another "
                "[store] schema")
        self.dim = int(self.get_meta("dim") or 0)
        if dim is not None and dim != self.dim:
            raise ConfigError(
                f"the index in schema {s!r} holds {self.dim}-dimensional embeddings, but the "
                f"embedder gives {dim}: use the embedder it was built with, or another schema")

    def _create(self, dim: int) -> None:
        with self._conn.transaction():
            # One creator at a time: two first ingests must not both build the tables.
            self._conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.schema,))
            if self._conn.execute(
                    "SELECT 1 FROM information_schema.tables WHERE table_schema = %s"
                    " AND table_name = 'meta'", (self.schema,)).fetchone():
                return
            try:
                self._conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except self._psycopg.Error as exc:
                raise StoreUnavailable(
                    f"pgvector is not available on {self.dsn_text} ({exc.diag.message_primary or exc}"
                    "): install it on the server (scripts/postgres.sh does), or ask its owner to "
                    "run CREATE EXTENSION vector") from None
            self._conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
            for statement in _TABLES.format(s=self.schema, dim=int(dim)).split(";"):
                if statement.strip():
                    self._conn.execute(statement)
            self._conn.execute(f"CREATE INDEX {HNSW_INDEX} ON {self.schema}.chunks"
                               " USING hnsw (embedding vector_cosine_ops)")
            self._conn.execute(
                f"INSERT INTO {self.schema}.meta(key, value) VALUES ('schema_version', %s),"
                " ('generation', '0'), ('dim', %s), ('store_id', %s)",
                (str(SCHEMA_VERSION), str(dim), uuid.uuid4().hex))

    @contextmanager
    def _write(self) -> Iterator[Any]:
        """One write transaction that bumps `generation` (taking its row lock first, so
        writers are serialised and see each other's finished work)."""
        with self._conn.transaction():
            self._conn.execute(f"UPDATE {self.schema}.meta SET value = (value::bigint + 1)::text"
                               " WHERE key = 'generation'")
            yield self._conn

    def close(self) -> None:
        self._conn.close()

    def raise_if_damaged(self, *, quick: bool = True) -> None:
        """The server keeps its own files sound (WAL, checksums): nothing to check here."""

    # -- meta -------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._conn.execute(f"SELECT value FROM {self.schema}.meta WHERE key = %s",
                                 (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._conn.execute(
            f"INSERT INTO {self.schema}.meta(key, value) VALUES (%s, %s)"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (key, value))

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    @property
    def store_id(self) -> str:
        return self.get_meta("store_id") or f"postgres:{self.dsn_text}/{self.schema}"

    # -- writes -----------------------------------------------------------------------------

    def write_documents(
        self,
        items: Sequence[tuple[Document, Sequence[Chunk], Matrix]],
        *,
        settings: str,
        files: Sequence[tuple[str, FileState]] = (),
    ) -> None:
        """Replace each document with its new chunks and embeddings, all in one transaction."""
        s = self.schema
        now = time.time()
        for _doc, _chunks, vectors in items:
            width = int(np.asarray(vectors).shape[-1]) if len(vectors) else self.dim
            if width != self.dim:
                raise ConfigError(f"embeddings of dimension {width} do not fit this index's "
                                  f"vector({self.dim}) column")
        with self._write() as conn:
            conn.execute(f"DELETE FROM {s}.chunks WHERE doc_id = ANY(%s)",
                         ([doc.id for doc, _, _ in items],))
            with conn.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO {s}.documents(id, source_path, title, doc_type, modified,"
                    " content_hash, settings, text, headings, metadata, ingested_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (id) DO UPDATE SET source_path = EXCLUDED.source_path,"
                    " title = EXCLUDED.title, doc_type = EXCLUDED.doc_type,"
                    " modified = EXCLUDED.modified, content_hash = EXCLUDED.content_hash,"
                    " settings = EXCLUDED.settings, text = EXCLUDED.text,"
                    " headings = EXCLUDED.headings, metadata = EXCLUDED.metadata,"
                    " ingested_at = EXCLUDED.ingested_at",
                    [(doc.id, doc.source_path, doc.title, doc.doc_type.value, doc.modified,
                      doc.content_hash, settings, _clean(doc.text),
                      json.dumps([[h.start, h.level, h.title] for h in doc.headings]),
                      _clean(json.dumps(doc.metadata, default=str)), now)
                     for doc, _, _ in items])
                # COPY, not INSERT: one stream for every chunk of the batch (~4x faster here)
                with cursor.copy(
                        f"COPY {s}.chunks(id, doc_id, ordinal, start_offset, end_offset, text,"
                        " heading_path, token_count, pages, embedding) FROM STDIN") as copy:
                    for _doc, chunks, vectors in items:
                        for c, v in zip(chunks, vectors, strict=True):
                            copy.write_row((c.id, c.doc_id, c.ordinal, c.start, c.end,
                                            _clean(c.text), json.dumps(list(c.heading_path)),
                                            c.token_count, json.dumps(list(c.pages)),
                                            np.asarray(v, dtype=np.float32)))
            for path, state in files:
                self._put_file(conn, path, state)

    @contextmanager
    def bulk_ingest(self) -> Iterator[None]:
        """An ingest run. Into an empty index (or one whose HNSW index a bulk ingest left
        unbuilt), the HNSW index is dropped while it writes and built once at the end, which is
        several times faster than maintaining it row by row. A run that fails leaves it
        unbuilt: dense search is then exact (a sequential scan, same results, slower) until
        the next ingest, which resumes in bulk mode and builds it."""
        built = self._hnsw_indexes()
        bulk = not built or self.count_chunks() == 0
        if bulk:
            with self._conn.transaction():
                for name in built:
                    self._conn.execute(f"DROP INDEX IF EXISTS {self.schema}.{name}")
        yield
        if bulk:
            self.build_hnsw()

    def build_hnsw(self) -> None:
        """Build the HNSW index over the embeddings if it is missing."""
        with self._conn.transaction():
            self._conn.execute(f"SET LOCAL maintenance_work_mem = '{HNSW_BUILD_MEMORY}'")
            self._conn.execute(f"CREATE INDEX IF NOT EXISTS {HNSW_INDEX} ON {self.schema}.chunks"
                               " USING hnsw (embedding vector_cosine_ops)")

    def _hnsw_indexes(self) -> list[str]:
        """The HNSW indexes on the chunks (one; an index made before they were named counts)."""
        rows = self._conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = 'chunks'"
            " AND indexdef LIKE '%%USING hnsw%%'", (self.schema,)).fetchall()
        return [str(name) for (name,) in rows]

    def record_files(self, files: Sequence[tuple[str, FileState]]) -> None:
        if not files:
            return
        with self._conn.transaction():
            for path, state in files:
                self._put_file(self._conn, path, state)

    def _put_file(self, conn: Any, path: str, state: FileState) -> None:
        conn.execute(
            f"INSERT INTO {self.schema}.files(path, size, mtime_ns, settings, doc_ids)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (path) DO UPDATE SET size = EXCLUDED.size,"
            " mtime_ns = EXCLUDED.mtime_ns, settings = EXCLUDED.settings,"
            " doc_ids = EXCLUDED.doc_ids",
            (path, state.size, state.mtime_ns, state.settings, json.dumps(list(state.doc_ids))))

    def delete_documents(self, doc_ids: Iterable[str]) -> int:
        ids = list(doc_ids)
        if not ids:
            return 0
        with self._write() as conn:
            conn.execute(f"DELETE FROM {self.schema}.documents WHERE id = ANY(%s)", (ids,))
        return len(ids)

    def forget_files(self, paths: Iterable[str]) -> None:
        with self._conn.transaction():
            for path in paths:
                self._conn.execute(f"DELETE FROM {self.schema}.files WHERE path = %s", (path,))
                self._clear_failures(path)

    def clear_failures(self, path: str) -> None:
        self._clear_failures(path)

    def _clear_failures(self, path: str) -> None:
        """A file's own failure and those of its records ("path:LINE") together."""
        self._conn.execute(f"DELETE FROM {self.schema}.failures WHERE path = %s"
                           " OR left(path, %s) = %s", (path, len(path) + 1, path + ":"))

    def record_failure(self, path: str, reason: str, message: str) -> None:
        self._conn.execute(
            f"INSERT INTO {self.schema}.failures(path, reason, message, at)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (path) DO UPDATE SET reason = EXCLUDED.reason,"
            " message = EXCLUDED.message, at = EXCLUDED.at",
            (path, reason, _clean(message), time.time()))

    # -- reads ------------------------------------------------------------------------------

    def file_state(self, path: str) -> FileState | None:
        row = self._conn.execute(
            f"SELECT size, mtime_ns, settings, doc_ids FROM {self.schema}.files WHERE path = %s",
            (path,)).fetchone()
        if row is None:
            return None
        return FileState(int(row[0]), int(row[1]), str(row[2]), tuple(row[3]))

    def failed_files_under(self, prefix: str) -> set[str]:
        rows = self._conn.execute(
            f"SELECT path FROM {self.schema}.failures WHERE left(path, %s) = %s",
            (len(prefix), prefix))
        return {record_file_of(str(path)) for (path,) in rows}

    def files_under(self, prefix: str) -> list[str]:
        rows = self._conn.execute(
            f"SELECT path FROM {self.schema}.files WHERE path = %s OR left(path, %s) = %s",
            (prefix, len(prefix) + 1, prefix.rstrip("/") + "/")).fetchall()
        return [str(r[0]) for r in rows]

    def document_states(self, doc_ids: Sequence[str]) -> dict[str, tuple[str, str, str | None]]:
        rows = self._conn.execute(
            f"SELECT id, content_hash, settings, source_path FROM {self.schema}.documents"
            " WHERE id = ANY(%s)", (list(doc_ids),))
        return {str(r[0]): (str(r[1]), str(r[2]), r[3]) for r in rows}

    def get_document(self, doc_id: str) -> Document | None:
        row = self._conn.execute(
            f"SELECT {DOCUMENT_COLUMNS} FROM {self.schema}.documents WHERE id = %s",
            (doc_id,)).fetchone()
        return None if row is None else document_from_row(row, _decoded)

    _CHUNK_COLUMNS = ("c.id, c.doc_id, c.ordinal, c.start_offset, c.end_offset, c.text,"
                      " c.heading_path, c.token_count, d.title, d.doc_type, d.source_path, c.pages")

    @staticmethod
    def _stored_chunk(row: Sequence[Any]) -> StoredChunk:
        return stored_chunk_from_row(row, _decoded)

    def get_chunk(self, chunk_id: str) -> StoredChunk | None:
        row = self._conn.execute(
            f"SELECT {self._CHUNK_COLUMNS} FROM {self.schema}.chunks c"
            f" JOIN {self.schema}.documents d ON d.id = c.doc_id WHERE c.id = %s",
            (chunk_id,)).fetchone()
        return None if row is None else self._stored_chunk(row)

    def chunks_by_rowid(self, rowids: Sequence[int]) -> dict[int, StoredChunk]:
        rows = self._conn.execute(
            f"SELECT c.rowid, {self._CHUNK_COLUMNS} FROM {self.schema}.chunks c"
            f" JOIN {self.schema}.documents d ON d.id = c.doc_id WHERE c.rowid = ANY(%s)",
            ([int(r) for r in rowids],))
        return {int(row[0]): self._stored_chunk(row[1:]) for row in rows}

    @contextmanager
    def chunk_snapshot(self, dim: int) -> Iterator[Snapshot]:
        """(generation, rowids, embeddings in blocks of rows, texts) of every chunk in rowid
        order, read in one REPEATABLE READ transaction that stays open while the block runs;
        the embeddings and texts stream from server-side cursors as they are consumed."""
        if dim != self.dim:
            raise ConfigError(f"the index holds {self.dim}-dimensional embeddings, not {dim}")
        s = self.schema
        with self._conn.transaction():
            self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            generation = self.generation
            rowids = np.fromiter((row[0] for row in self._conn.execute(
                f"SELECT rowid FROM {s}.chunks ORDER BY rowid")), dtype=np.int64)
            blocks = self._vector_blocks(f"SELECT embedding FROM {s}.chunks ORDER BY rowid", dim)
            texts = self._stream(f"SELECT text FROM {s}.chunks ORDER BY rowid")
            yield generation, rowids, blocks, texts

    def _vector_blocks(self, sql: str, dim: int) -> Iterator[Matrix]:
        with self._conn.cursor(name="ragline_vectors") as cursor:
            cursor.execute(sql)
            while rows := cursor.fetchmany(SNAPSHOT_BLOCK):
                block = np.empty((len(rows), dim), dtype=np.float32)
                for i, (vector,) in enumerate(rows):
                    block[i] = vector.to_numpy() if hasattr(vector, "to_numpy") else vector
                yield block

    def _stream(self, sql: str) -> Iterator[str]:
        with self._conn.cursor(name="ragline_texts") as cursor:
            cursor.execute(sql)
            for (text,) in cursor:
                yield str(text)

    def rowids_matching(
        self, where: dict[str, str | Sequence[str]], path_prefix: str | None
    ) -> list[int]:
        """Chunk row ids whose document matches every filter and the path prefix."""
        clauses: list[str] = []
        params: list[Any] = []
        for key, value in where.items():
            values = [value] if isinstance(value, str) else list(value)
            column = FILTER_COLUMNS.get(key)
            if column is not None:
                clauses.append(f"d.{column} = ANY(%s)")
            else:
                clauses.append("d.metadata ->> %s = ANY(%s)")
                params.append(key)
            params.append(values)
        if path_prefix is not None:
            clauses.append("left(coalesce(d.metadata ->> 'path', d.id), %s) = %s")
            params.extend([len(path_prefix), path_prefix])
        sql = (f"SELECT c.rowid FROM {self.schema}.chunks c"
               f" JOIN {self.schema}.documents d ON d.id = c.doc_id")
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        return [int(r[0]) for r in self._conn.execute(sql, params)]

    def doc_ids_by_rowid(self) -> dict[int, str]:
        rows = self._conn.execute(f"SELECT rowid, doc_id FROM {self.schema}.chunks")
        return {int(r[0]): str(r[1]) for r in rows}

    def count_documents(self) -> int:
        return self._count(f"SELECT count(*) FROM {self.schema}.documents")

    def count_chunks(self) -> int:
        return self._count(f"SELECT count(*) FROM {self.schema}.chunks")

    def _count(self, sql: str) -> int:
        row = self._conn.execute(sql).fetchone()
        return int(row[0]) if row else 0

    def failures(self) -> list[tuple[str, str, str]]:
        rows = self._conn.execute(
            f"SELECT path, reason, message FROM {self.schema}.failures ORDER BY path")
        return [(str(a), str(b), str(c)) for a, b, c in rows]

    # -- retrievers in SQL --------------------------------------------------------------------

    def dense_candidates(self, query: npt.NDArray[np.float32], depth: int, *,
                         allowed: npt.NDArray[np.int64] | None = None,
                         ef_search: int = 100) -> list[tuple[int, float]]:
        """The `depth` nearest chunks by cosine similarity through the HNSW index
        (approximate; `ef_search` trades recall for speed): (row id, similarity). With
        `allowed` (filtered row ids), pgvector's iterative scan keeps walking the graph until
        `depth` allowed chunks are found, in strict distance order."""
        where, params = self._allowed(allowed, " WHERE ")
        with self._conn.transaction():
            self._conn.execute(f"SET LOCAL hnsw.ef_search = {max(int(ef_search), int(depth))}")
            if allowed is not None:
                self._conn.execute("SET LOCAL hnsw.iterative_scan = strict_order")
            vector = np.asarray(query, dtype=np.float32)
            rows = self._conn.execute(
                f"SELECT rowid, 1 - (embedding <=> %s) FROM {self.schema}.chunks{where}"
                " ORDER BY embedding <=> %s LIMIT %s",
                (vector, *params, vector, int(depth))).fetchall()
        return [(int(r), float(score)) for r, score in rows]

    def keyword_candidates(self, query: str, depth: int, *,
                           allowed: npt.NDArray[np.int64] | None = None,
                           k1: float = 1.2, b: float = 0.75) -> list[tuple[int, float]]:
        """BM25 (Lucene's formula, as bm25s scores it) over PostgreSQL's full-text index:
        (row id, score), only `allowed` row ids when given.

        PostgreSQL's own rankings (`ts_rank`, `ts_rank_cd`) weigh every term alike, with no
        inverse document frequency, and ranked SciFact far worse (nDCG@10 0.41 against BM25's
        0.67, docs/benchmarks.md §8). So: the query's lexemes (English stemming, stop words
        out) select the chunks holding any of them through the GIN index, each lexeme's
        document frequency is counted through the same index (exact, in this snapshot: no
        statistics table to keep up), the term frequency comes from the tsvector's positions,
        and the length is the chunk's token count."""
        s = self.schema
        found = self._conn.execute(
            f"SELECT lexeme, (SELECT count(*) FROM {s}.chunks WHERE tsv @@ quote_literal(lexeme)"
            "::tsquery) FROM (SELECT DISTINCT lexeme FROM unnest(to_tsvector('english', %s))) t",
            (query,)).fetchall()
        terms = [(str(lexeme), int(n)) for lexeme, n in found if n]
        if not terms:
            return []
        total, avgdl = self._length_stats()
        tsquery = " | ".join("'" + lexeme.replace("'", "''") + "'" for lexeme, _ in terms)
        where, params = self._allowed(allowed, " AND c.")
        rows = self._conn.execute(
            f"""
            SELECT c.rowid, sum(
                ln(1 + (%s - df.n + 0.5) / (df.n + 0.5)) * cardinality(u.positions)
                / (cardinality(u.positions) + %s * (1 - %s + %s * c.token_count / %s)))
            FROM {s}.chunks c, unnest(c.tsv) u,
                 unnest(%s::text[], %s::bigint[]) AS df(lexeme, n)
            WHERE c.tsv @@ to_tsquery('simple', %s) AND u.lexeme = df.lexeme
                  {where}
            GROUP BY c.rowid ORDER BY 2 DESC, c.rowid LIMIT %s""",
            (total, k1, b, b, avgdl, [t for t, _ in terms], [n for _, n in terms], tsquery,
             *params, int(depth))).fetchall()
        return [(int(r), float(score)) for r, score in rows]

    def _length_stats(self) -> tuple[int, float]:
        """(chunks, mean token count), counted once per generation."""
        generation = self.generation
        if self._stats is None or self._stats[0] != generation:
            row = self._conn.execute(
                f"SELECT count(*), avg(token_count) FROM {self.schema}.chunks").fetchone()
            total, avgdl = row if row is not None else (0, 0.0)
            self._stats = (generation, int(total), max(float(avgdl or 0), 1.0))
        return self._stats[1], self._stats[2]

    @staticmethod
    def _allowed(allowed: npt.NDArray[np.int64] | None,
                 joined_by: str) -> tuple[str, tuple[Any, ...]]:
        """The SQL that keeps only `allowed` row ids (after `joined_by`), and its parameter."""
        if allowed is None:
            return "", ()
        return f"{joined_by}rowid = ANY(%s)", ([int(r) for r in allowed],)


def _decoded(value: Any) -> Any:
    return value  # JSONB columns arrive decoded


def _clean(text: str) -> str:
    """PostgreSQL text cannot hold NUL characters (SQLite can): they become U+FFFD."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _connect_advice(where: str, detail: str, password_env: str) -> str:
    first = detail.strip().splitlines()[0] if detail.strip() else "no answer"
    if "password authentication failed" in detail or "no password supplied" in detail:
        hint = (f"check the user and the password (read from ${password_env}, PGPASSWORD or "
                "~/.pgpass)")
    elif "does not exist" in detail:
        hint = "check the database name in the DSN (create it with createdb)"
    else:
        hint = ("check that PostgreSQL is running and listening there (scripts/postgres.sh "
                "starts a local one)")
    return f"cannot connect to PostgreSQL at {where}: {first}; {hint}"
