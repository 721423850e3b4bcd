"""`Index`: the Python API over one index folder. The CLI is a thin layer over this class."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from filelock import FileLock, Timeout

from ragline.config import RaglineConfig, StoreSettings
from ragline.embed.base import Embedder
from ragline.errors import ConfigError, IndexDamaged, IndexLocked, StoreUnavailable
from ragline.ingest import Ingestor, IngestProgress, IngestSummary, chunking_config, pid_alive
from ragline.retrieve.base import Reranker, Retriever
from ragline.retrieve.metadata import DocumentFacts
from ragline.retrieve.rerank import NoReranker, make_reranker
from ragline.retrieve.search import SearchParams, candidate_lists, make_retriever, search
from ragline.store.base import Store
from ragline.store.derived import DerivedIndex, ensure_built, load_or_build
from ragline.store.keyword import BM25Config
from ragline.store.sqlite import DB_NAME, SQLiteStore, damage_message, is_damage
from ragline.types import Chunk, Document, FusionMethod, Hit, RetrievalMode

if TYPE_CHECKING:
    from ragline.answer.types import Answer

DEFAULT_INDEX = Path(".ragline")

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _guarded(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn SQLite's "database disk image is malformed" into IndexDamaged naming the fix."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            index = args[0]
            assert isinstance(index, Index)
            raise IndexDamaged(damage_message(index.path, exc)) from exc
        except Exception as exc:
            psycopg = sys.modules.get("psycopg")  # loaded only when a postgres store is open
            if psycopg is None or not isinstance(exc, psycopg.OperationalError
                                                 | psycopg.InterfaceError):
                raise
            # The server went away or refused mid-call: what was committed stays, and an ingest
            # run again resumes from there (each document is one transaction).
            index = args[0]
            assert isinstance(index, Index)
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StoreUnavailable(
                f"PostgreSQL at {index.store_location()} failed: {detail}; check the server, "
                "then run the command again (an ingest resumes where it stopped)") from None

    return wrapper


class Index:
    """An index folder: `Index(path).ingest([...])`, then `.search("query")`.

    Opening an existing index uses the configuration it was built with unless `config` is given;
    a changed chunking or embedding setting makes the next ingest re-process the documents.
    """

    def __init__(
        self,
        path: str | Path = DEFAULT_INDEX,
        config: RaglineConfig | None = None,
        *,
        embedder: Embedder | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        self.path = Path(path)
        self._given_config = config
        self._embedder = embedder
        self._reranker = reranker
        self._store: Store | None = None
        self._derived: DerivedIndex | None = None
        self._facts = DocumentFacts()  # filing metadata of the documents, for the search signal

    # -- lifecycle --------------------------------------------------------------------------

    def _store_settings(self) -> StoreSettings:
        # The backend must be known before the store is opened, so it comes from the given
        # configuration (an index on PostgreSQL is always opened with its `[store]` table).
        return self._given_config.store if self._given_config is not None else StoreSettings()

    def store_location(self) -> str:
        """Where the index's database is, for messages (never a password)."""
        settings = self._store_settings()
        if settings.backend == "postgres":
            from ragline.store.postgres import describe_dsn

            return f"{describe_dsn(settings.dsn or '')} (schema {settings.schema_name})"
        return str(self.path / DB_NAME)

    def _open(self, *, create: bool) -> Store:
        if self._store is None:
            settings = self._store_settings()
            if settings.backend == "postgres":
                from ragline.store.postgres import PostgresStore

                assert settings.dsn is not None  # StoreSettings requires it for postgres
                self._store = PostgresStore(
                    settings.dsn, schema=settings.schema_name, password_env=settings.password_env,
                    dim=self.embedder.dim, create=create)
            else:
                self._store = SQLiteStore(self.path, create=create)
        return self._store

    @property
    def store(self) -> Store:
        """The index's database (opened on first use; it must exist)."""
        return self._open(create=False)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        self._derived = None

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def config(self) -> RaglineConfig:
        if self._given_config is not None:
            return self._given_config
        if self._store is None and (self.path / DB_NAME).exists():
            self._open(create=False)
        stored = self._store.get_meta("config") if self._store is not None else None
        self._given_config = (RaglineConfig.from_stored(json.loads(stored)) if stored
                              else RaglineConfig())
        return self._given_config

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = self.config.embedder.build()
        return self._embedder

    def _settings_fingerprint(self) -> str:
        blob = json.dumps([self.config.fingerprint("chunking"), self.embedder.model_id])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    # -- ingest -----------------------------------------------------------------------------

    @_guarded
    def ingest(
        self,
        paths: str | Path | Sequence[str | Path],
        *,
        prune: bool = False,
        progress: IngestProgress | None = None,
        lock_timeout: float = 0.0,
        follow_symlinks: bool = False,
    ) -> IngestSummary:
        """Add new, update changed (and with `prune`, remove deleted) files under `paths`.

        Symbolic links inside the folders are passed over (with a warning naming them) unless
        `follow_symlinks`: by default an ingest never reads outside the tree it was given."""
        items = [paths] if isinstance(paths, str | Path) else list(paths)
        with self._write_lock(lock_timeout):
            ingestor = self._ingestor(progress)
            summary = ingestor.ingest_paths([Path(p) for p in items], prune=prune,
                                            follow_symlinks=follow_symlinks)
            self._after_ingest()
            return summary

    @_guarded
    def ingest_documents(
        self,
        documents: Iterable[Document],
        *,
        progress: IngestProgress | None = None,
        lock_timeout: float = 0.0,
    ) -> IngestSummary:
        """Ingest in-memory documents (e.g. a BEIR corpus); unchanged ones are skipped."""
        with self._write_lock(lock_timeout):
            summary = self._ingestor(progress).ingest_documents(documents)
            self._after_ingest()
            return summary

    def _after_ingest(self) -> None:
        """The search files built now, or checked and repaired: never a silent "ok". A store
        searched natively does not need them to search, so they are left to the first use
        that does (the term weights of `ask`'s abstention), not built at every ingest."""
        if self._store_settings().search != "native":
            self.build_search_files()

    def _ingestor(self, progress: IngestProgress | None) -> Ingestor:
        store = self._open(create=True)
        store.raise_if_damaged(quick=True)  # an "unchanged" ingest must not hide a broken file
        config = self.config
        self._check_embedder(store)
        store.set_meta("config", config.stored_json())
        store.set_meta("embedder", self.embedder.model_id)
        c = config.chunking
        return Ingestor(
            store, self.embedder,
            chunking_config(c.strategy, c.chunk_tokens, c.overlap_tokens, c.record_max_tokens),
            settings=self._settings_fingerprint(), max_file_bytes=config.max_file_bytes,
            decode_errors=config.decode_errors,
            progress=progress,
        )

    def _write_lock(self, timeout: float) -> _WriteLock:
        self.path.mkdir(parents=True, exist_ok=True)
        return _WriteLock(self.path, timeout)

    # -- search -----------------------------------------------------------------------------

    @_guarded
    def search(
        self,
        query: str,
        *,
        mode: RetrievalMode | str | None = None,
        k: int | None = None,
        fusion: FusionMethod | str | None = None,
        rrf_k: int | None = None,
        alpha: float | None = None,
        depth: int | None = None,
        where: dict[str, str | Sequence[str]] | None = None,
        path_prefix: str | None = None,
        metadata_boost: float | None = None,
    ) -> list[Hit]:
        """Search the index; unset arguments take the configured defaults."""
        params = self._params(mode=mode, k=k, fusion=fusion, rrf_k=rrf_k, alpha=alpha,
                              depth=depth, where=dict(where or {}), path_prefix=path_prefix,
                              metadata_boost=metadata_boost)
        return search(query, params, self.retriever(params), self._open(create=False),
                      self.reranker, self._facts)

    @_guarded
    def candidates(
        self, query: str, *, mode: RetrievalMode | str = RetrievalMode.HYBRID, depth: int = 100
    ) -> dict[str, list[tuple[int, float]]]:
        """Each retriever's ranked (row id, score) chunk candidates before fusion (for sweeps).

        Row ids key `chunk_doc_ids()`; fuse them with `ragline.retrieve.search.fuse`.
        """
        params = self._params(mode=RetrievalMode(mode), k=depth, depth=depth)
        return candidate_lists(query, depth, self.retriever(params), self._open(create=False),
                               params)

    @_guarded
    def rerank_rows(self, query: str, rowids: Sequence[int],
                    scores: Sequence[float] | None = None) -> list[int]:
        """These chunk row ids (fused candidates, best first) in the configured reranker's
        order: it reorders the first `rerank_depth`, the rest follow as given (unchanged when
        no reranker is configured). `scores` are the fused scores (a blended reranker mixes
        them in; without them all count equal). What `tune` uses to score a grid point as
        search would."""
        import numpy as np

        from ragline.retrieve.base import Ranking
        from ragline.retrieve.search import hits_for, rerank

        reranker, rows = self.reranker, list(rowids)
        if isinstance(reranker, NoReranker) or not rows:
            return rows
        store = self.store
        head = np.asarray(rows[: reranker.depth], dtype=np.int64)
        stored = store.chunks_by_rowid(head.tolist())
        row_of = {item.chunk.id: rowid for rowid, item in stored.items()}
        fused = (np.zeros(len(head)) if scores is None
                 else np.asarray(list(scores)[: len(head)], dtype=np.float64))
        ranking = Ranking.single("fused", (head, fused))
        hits = hits_for(ranking, store, stored)
        order = [row_of[hit.chunk.id] for hit in rerank(query, hits, reranker)]
        return order + rows[len(head):]

    @_guarded
    def rescore_rows(self, query: str, fused: Sequence[tuple[int, float]]
                     ) -> list[tuple[int, float]]:
        """Fused (row id, score) candidates, best first, re-scored by the filing metadata signal
        at the configured `metadata_boost`, as search re-scores them (unchanged for an index
        without filings); what `tune` uses so that its grid scores what search returns."""
        import numpy as np

        from ragline.retrieve.base import Ranking
        from ragline.retrieve.metadata import metadata_signal

        store = self._open(create=False)
        signal = metadata_signal(query, self._params().metadata_boost, store, self._facts)
        if signal is None or not fused:
            return list(fused)
        rows = np.asarray([row for row, _ in fused], dtype=np.int64)
        scores = np.asarray([score for _, score in fused], dtype=np.float64)
        ranking = signal.apply(Ranking.single("fused", (rows, scores)), store, len(fused))
        return [(int(r), float(v)) for r, v in zip(*ranking.final, strict=True)]

    def retriever(self, params: SearchParams | None = None) -> Retriever:
        """The retriever a search with `params` (default: the configured ones) runs."""
        params = params or self._params()
        native = self._store_settings().search == "native"
        return make_retriever(params, None if native else self._derived_index(),
                              self._open(create=False), self.embedder, native=native,
                              bm25=self._bm25_config())

    @property
    def reranker(self) -> Reranker:
        """The reranking stage: the one given, else `[search] reranker` (none by default)."""
        if self._reranker is None:
            self._reranker = make_reranker(self.config.search)
        return self._reranker

    def _params(self, **overrides: Any) -> SearchParams:
        return SearchParams.from_settings(self.config.search, **overrides)

    @_guarded
    def term_weights(self, text: str) -> list[tuple[str, float]]:
        """The keyword terms of `text` (as BM25 tokenises them) with their inverse document
        frequency in this index (Lucene's formula; a term the index never saw weighs most)."""
        import math

        bm25 = self._derived_index().bm25
        if bm25 is None:
            return []
        terms = list(dict.fromkeys(bm25.query_tokens(text)))
        n = bm25.num_docs
        return [(t, math.log(1 + (n - df + 0.5) / (df + 0.5)))
                for t, df in zip(terms, bm25.document_frequencies(terms), strict=True)]

    @_guarded
    def keyword_terms(self, text: str) -> set[str]:
        """The keyword terms of `text` as BM25 tokenises them (stopwords out, stemmed)."""
        bm25 = self._derived_index().bm25
        return set() if bm25 is None else set(bm25.query_tokens(text))

    @_guarded
    def build_search_files(self) -> None:
        """Check the derived search files of the current generation, building them when they
        are missing, stale or damaged (what every ingest ends with, and `doctor --repair` runs).
        They are loaded by the first search, not here."""
        store = self._open(create=False)
        if self._derived is not None and self._derived.generation == store.generation:
            return
        self._check_embedder(store)
        ensure_built(store, self.path, dim=self.embedder.dim, bm25=self._bm25_config())

    @_guarded
    def chunk_doc_ids(self) -> dict[int, str]:
        """The document id of every chunk, by chunk row id (what `candidates` lists)."""
        return self._open(create=False).doc_ids_by_rowid()

    def _check_embedder(self, store: Store) -> None:
        """Query vectors must come from the model that embedded the chunks."""
        built_with = store.get_meta("embedder")
        if built_with is not None and built_with != self.embedder.model_id and store.count_chunks():
            raise ConfigError(
                f"the index at {self.path} was embedded with {built_with}, but the configured "
                f"embedder is {self.embedder.model_id}; search without --config (the index "
                "remembers its own), re-embed into a new folder (ragline adapt reembed --index "
                f"{self.path} --model MODEL --out NEW), or ingest into a new --index folder"
            )

    def _derived_index(self) -> DerivedIndex:
        store = self._open(create=False)
        if self._derived is None:
            self._check_embedder(store)
        if self._derived is None or self._derived.generation != store.generation:
            self._derived = load_or_build(store, self.path, dim=self.embedder.dim,
                                          bm25=self._bm25_config())
        return self._derived

    def _bm25_config(self) -> BM25Config:
        b = self.config.bm25
        return BM25Config(k1=b.k1, b=b.b, stopwords=b.stopwords, stemmer=b.stemmer)

    # -- answers ----------------------------------------------------------------------------

    def ask(self, question: str, **options: Any) -> Answer:
        """Answer `question` from this index with verified citations; `options` are those of
        `ragline.answer.pipeline.ask` (declared once, there). Imported on first use: the answer
        stack (LLM clients, the verifier) is not loaded by a search."""
        from ragline.answer.pipeline import ask

        return ask(self, question, **options)

    # -- lookups ----------------------------------------------------------------------------

    @_guarded
    def get_chunk(self, chunk_id: str) -> Chunk | None:
        stored = self._open(create=False).get_chunk(chunk_id)
        return None if stored is None else stored.chunk

    @_guarded
    def get_document(self, doc_id: str) -> Document | None:
        return self._open(create=False).get_document(doc_id)

    @_guarded
    def count_chunks(self) -> int:
        return self._open(create=False).count_chunks()

    @_guarded
    def stats(self) -> dict[str, Any]:
        store = self._open(create=False)
        store.raise_if_damaged(quick=True)
        size = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        return {
            "path": str(self.path), "documents": store.count_documents(),
            "chunks": store.count_chunks(), "generation": store.generation,
            "embedder": self.embedder.model_id, "bytes_on_disk": size,
            "failures": len(store.failures()),
        }


class _WriteLock:
    """The index's single-writer lock, with a message naming the holder when it is taken."""

    def __init__(self, index_dir: Path, timeout: float) -> None:
        self._lock = FileLock(str(index_dir / "write.lock"), timeout=timeout)
        self._info = index_dir / "write.lock.owner"
        self._index_dir = index_dir

    def __enter__(self) -> None:
        try:
            self._lock.acquire()
        except Timeout as exc:
            raise IndexLocked(self._holder_message()) from exc
        self._info.write_text(json.dumps({"pid": os.getpid(), "since": time.time()}))

    def __exit__(self, *exc: object) -> None:
        self._info.unlink(missing_ok=True)
        self._lock.release()

    def _holder_message(self) -> str:
        holder = ""
        try:
            info = json.loads(self._info.read_text())
            if pid_alive(int(info["pid"])):
                since = time.strftime("%H:%M:%S", time.localtime(float(info["since"])))
                holder = f" (pid {info['pid']}, since {since})"
        except (OSError, ValueError, KeyError):
            pass
        return (f"another ingest is writing to the index at {self._index_dir}{holder}; "
                "wait for it to finish, or pass --wait SECONDS to queue behind it")
