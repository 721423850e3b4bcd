"""A content-addressed embedding cache: SQLite keyed by (model_id, sha256(text)).

Re-embedding an unchanged corpus costs a lookup instead of a model run, so a benchmark embeds
a corpus once. The database runs in WAL mode with a busy timeout, so several processes (an
ingest and a benchmark, or parallel test workers) can read and write it at the same time.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ragline import _sqlite
from ragline.embed.base import Embedder, EmbedKind, Vectors, count_tokens_capped
from ragline.errors import EmbedderError
from ragline.paths import ragline_home

BUSY_TIMEOUT_MS = 30_000
# Below SQLite's smallest default limit on bound parameters (999), leaving room for model_id.
LOOKUP_BATCH = 900

SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    model_id TEXT NOT NULL,
    text_sha256 BLOB NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model_id, text_sha256)
) WITHOUT ROWID
"""


class EmbeddingCacheError(EmbedderError):
    """The embedding cache database could not be used."""


def default_cache_path() -> Path:
    """`ragline_home()/cache/embeddings.sqlite`."""
    return ragline_home() / "cache" / "embeddings.sqlite"


def text_key(text: str) -> bytes:
    """The cache key of a text: sha256 of its UTF-8 bytes (lone surrogates kept, not dropped)."""
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).digest()


class EmbeddingCache:
    """Float32 vectors in SQLite, keyed by (model_id, sha256(text)). Safe across processes."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else default_cache_path()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0

    def get_many(self, model_id: str, texts: Sequence[str]) -> list[npt.NDArray[np.float32] | None]:
        """The cached vector of each text, or None where it is not cached."""
        keys = [text_key(t) for t in texts]
        found: dict[bytes, npt.NDArray[np.float32]] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            conn = self._connection()
            for start in range(0, len(unique), LOOKUP_BATCH):
                batch = unique[start : start + LOOKUP_BATCH]
                marks = ",".join("?" * len(batch))
                rows = self._execute(
                    conn,
                    "SELECT text_sha256, dim, vector FROM embeddings "
                    f"WHERE model_id = ? AND text_sha256 IN ({marks})",
                    [model_id, *batch],
                ).fetchall()
                for key, dim, blob in rows:
                    found[key] = decode_vector(blob, dim)
        return [found.get(k) for k in keys]

    def put_many(self, model_id: str, texts: Sequence[str], vectors: npt.ArrayLike) -> None:
        """Store one vector per text (replacing what was there) in one transaction."""
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != len(texts):
            raise EmbeddingCacheError(
                f"put_many needs one vector per text: got {len(texts)} texts and an array of "
                f"shape {matrix.shape}"
            )
        rows = [
            (model_id, text_key(t), matrix.shape[1], matrix[i].tobytes())
            for i, t in enumerate(texts)
        ]
        with self._lock:
            conn = self._connection()
            with conn:
                self._execute_many(
                    conn,
                    "INSERT OR REPLACE INTO embeddings (model_id, text_sha256, dim, vector) "
                    "VALUES (?, ?, ?, ?)",
                    rows,
                )

    def count(self, model_id: str | None = None) -> int:
        """How many vectors are stored (for one model, or for all)."""
        with self._lock:
            conn = self._connection()
            if model_id is None:
                cursor = self._execute(conn, "SELECT COUNT(*) FROM embeddings", [])
            else:
                cursor = self._execute(
                    conn, "SELECT COUNT(*) FROM embeddings WHERE model_id = ?", [model_id]
                )
            return int(cursor.fetchone()[0])

    def close(self) -> None:
        """Close the database connection (it reopens on next use)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connection(self) -> sqlite3.Connection:
        # A connection must not cross a fork: a child process opens its own.
        if self._conn is None or self._pid != os.getpid():
            self._conn = self._open()
            self._pid = os.getpid()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        try:
            conn = _sqlite.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000)
            with conn:
                conn.execute(SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise EmbeddingCacheError(
                f"cannot open the embedding cache at {self.path}: {exc}; delete the file or "
                "point the cache elsewhere (RAGLINE_HOME)"
            ) from exc
        return conn

    def _execute(
        self, conn: sqlite3.Connection, sql: str, params: Sequence[object]
    ) -> sqlite3.Cursor:
        try:
            return conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise EmbeddingCacheError(f"embedding cache {self.path}: {exc}") from exc

    def _execute_many(
        self, conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[object]]
    ) -> None:
        try:
            conn.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise EmbeddingCacheError(f"embedding cache {self.path}: {exc}") from exc


def decode_vector(blob: bytes, dim: int) -> npt.NDArray[np.float32]:
    """A stored vector back as a float32 array, checking its length."""
    vector = np.frombuffer(blob, dtype=np.float32)
    if vector.shape[0] != dim:
        raise EmbeddingCacheError(
            f"corrupt cache entry: {vector.shape[0]} floats stored, {dim} expected; "
            "delete the embedding cache file"
        )
    return vector


class CachedEmbedder:
    """An Embedder that serves repeated texts from an EmbeddingCache and embeds only the misses.

    `hits` and `misses` count input texts found / not found in the cache; `embedded` counts
    the distinct texts actually sent to the inner model. Use `with cached.bypass():` (or set
    `enabled = False`) to measure the model itself.
    """

    def __init__(
        self, inner: Embedder, cache: EmbeddingCache | None = None, *, cache_queries: bool = True
    ) -> None:
        self.inner = inner
        self.cache = cache if cache is not None else EmbeddingCache()
        self.cache_queries = cache_queries
        self.enabled = True
        self.hits = 0
        self.misses = 0
        self.embedded = 0

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @model_id.setter
    def model_id(self, value: str) -> None:
        self.inner.model_id = value

    @property
    def dim(self) -> int:
        return self.inner.dim

    @dim.setter
    def dim(self, value: int) -> None:
        self.inner.dim = value

    @property
    def max_tokens(self) -> int:
        return self.inner.max_tokens

    @max_tokens.setter
    def max_tokens(self, value: int) -> None:
        self.inner.max_tokens = value

    @contextmanager
    def bypass(self) -> Iterator[CachedEmbedder]:
        """Within the block, every call goes straight to the inner model (no reads, no writes)."""
        previous = self.enabled
        self.enabled = False
        try:
            yield self
        finally:
            self.enabled = previous

    def count_tokens(self, texts: Sequence[str], *, limit: int | None = None) -> list[int]:
        if limit is None:
            return self.inner.count_tokens(texts)
        return count_tokens_capped(self.inner.count_tokens, texts, limit)

    def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        """Vectors in input order: cached ones looked up, the rest embedded in one inner call."""
        if isinstance(texts, str):
            raise EmbedderError(
                "embed() takes a sequence of texts, not one string; wrap it: [text]"
            )
        skip = not self.enabled or (kind == "query" and not self.cache_queries)
        if skip or len(texts) == 0:
            return self.inner.embed(texts, kind=kind)
        model_id = self.inner.model_id
        cached = self.cache.get_many(model_id, texts)
        missing = list(dict.fromkeys(t for t, v in zip(texts, cached, strict=True) if v is None))
        self.hits += sum(v is not None for v in cached)
        self.misses += sum(v is None for v in cached)
        fresh: dict[str, npt.NDArray[np.float32]] = {}
        if missing:
            vectors = self.inner.embed(missing, kind=kind)
            self.cache.put_many(model_id, missing, vectors)
            self.embedded += len(missing)
            fresh = dict(zip(missing, vectors, strict=True))
        return assemble(texts, cached, fresh)


def assemble(
    texts: Sequence[str],
    cached: Sequence[npt.NDArray[np.float32] | None],
    fresh: dict[str, npt.NDArray[np.float32]],
) -> Vectors:
    """One [len(texts), dim] array from cached vectors and freshly embedded ones."""
    first = next((v for v in cached if v is not None), None)
    dim = first.shape[0] if first is not None else next(iter(fresh.values())).shape[0]
    out = np.empty((len(texts), dim), dtype=np.float32)
    for row, (text, vector) in enumerate(zip(texts, cached, strict=True)):
        out[row] = vector if vector is not None else fresh[text]
    return out
