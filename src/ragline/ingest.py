"""Incremental, resumable ingest: files -> documents -> chunks -> embeddings -> SQLite.

Resumability comes from one rule: a document, its chunks and its embeddings are committed in
one transaction, and a file's (size, mtime) is recorded in the same transaction as its last
document. A killed ingest therefore leaves whole documents behind; re-running it skips every
document whose content hash and settings are already stored, and finishes the rest.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ragline.documents.chunking import ChunkingConfig, ChunkStrategy, chunk_documents
from ragline.documents.loaders import DecodeErrors, iter_files, stream_file
from ragline.embed.base import Embedder
from ragline.errors import DocumentError, RaglineError
from ragline.store.base import FileState, Store
from ragline.types import Chunk, Document

BATCH_CHUNKS = 256
BATCH_DOCUMENTS = 256  # documents chunked (and token-counted) per call: a JSONL file is streamed
STAGES = ("discover", "load", "chunk", "embed", "store", "total")


class IngestProgress(Protocol):
    """What a progress display is told: the files found, chunks queued for embedding
    (`chunked`), and then files, documents and chunks *embedded and stored* (`advance`)."""

    def start(self, total_files: int) -> None: ...
    def chunked(self, chunks: int) -> None: ...
    def advance(self, files: int, documents: int, chunks: int) -> None: ...
    def failure(self, path: str, reason: str, message: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Failure:
    path: str
    reason: str
    message: str


@dataclass
class IngestSummary:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: int = 0
    chunks_embedded: int = 0
    files_seen: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    failures: list[Failure] = field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return self.seconds.get("total", 0.0)

    @property
    def documents_per_second(self) -> float:
        done = self.added + self.updated
        return done / self.total_seconds if self.total_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["documents_per_second"] = round(self.documents_per_second, 2)
        data["seconds"] = {k: round(v, 3) for k, v in self.seconds.items()}
        return data


class _Timer:
    def __init__(self, summary: IngestSummary, stage: str) -> None:
        self.summary, self.stage = summary, stage

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.summary.seconds[self.stage] += time.perf_counter() - self.t0


class Ingestor:
    """Runs one ingest into a store. Not thread-safe; the caller holds the index's write lock."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        chunking: ChunkingConfig,
        *,
        settings: str,
        max_file_bytes: int,
        decode_errors: DecodeErrors = "strict",
        progress: IngestProgress | None = None,
    ) -> None:
        self.store, self.embedder, self.chunking = store, embedder, chunking
        self.settings, self.max_file_bytes, self.progress = settings, max_file_bytes, progress
        self.decode_errors = decode_errors
        self.summary = IngestSummary()
        self._pending: list[tuple[Document, list[Chunk]]] = []
        self._pending_files: list[tuple[str, FileState]] = []
        self._pending_chunks = 0
        self._owners: dict[str, str | None] = {}  # doc id -> the source it came from in this run

    # -- entry points -------------------------------------------------------------------------

    def ingest_paths(
        self, paths: Sequence[Path], *, prune: bool = False, follow_symlinks: bool = False
    ) -> IngestSummary:
        start = time.perf_counter()
        with _Timer(self.summary, "discover"):
            plan = [(root, list(iter_files(root, max_file_bytes=self.max_file_bytes,
                                           follow_symlinks=follow_symlinks)))
                    for root in (_resolve(p) for p in paths)]
        if self.progress:
            self.progress.start(sum(len(files) for _, files in plan))
        with self.store.bulk_ingest():
            for root, files in plan:
                id_root = root.parent
                seen: set[str] = set()
                for path in files:
                    seen.add(str(path))
                    self._ingest_file(path, id_root)
                if prune:
                    self._prune(root, seen)
            self._flush()
        self.summary.seconds["total"] = time.perf_counter() - start
        return self.summary

    def ingest_documents(self, documents: Iterable[Document]) -> IngestSummary:
        """Ingest documents built in memory (e.g. a BEIR corpus); unchanged ones are skipped."""
        start = time.perf_counter()
        batch: list[Document] = []
        with self.store.bulk_ingest():
            for doc in documents:
                batch.append(doc)
                if len(batch) >= BATCH_DOCUMENTS:
                    self._queue_documents(batch)
                    batch = []
            self._queue_documents(batch)
            self._flush()
        self.summary.seconds["total"] = time.perf_counter() - start
        return self.summary

    # -- files ------------------------------------------------------------------------------

    def _ingest_file(self, path: Path, id_root: Path) -> None:
        key = str(path)
        self.summary.files_seen += 1
        try:
            stat = path.stat()
        except FileNotFoundError:  # listed, then deleted before it was read
            self.store.clear_failures(key)
            self._fail(key, "vanished", "deleted while the ingest ran", record=False)
            self._advance(1, 0, 0)
            return
        except OSError as exc:
            self._fail(key, "unreadable", f"cannot stat: {exc.strerror or exc}")
            self._advance(1, 0, 0)
            return
        state = self.store.file_state(key)
        if (state is not None and state.size == stat.st_size
                and state.mtime_ns == stat.st_mtime_ns and state.settings == self.settings):
            self.summary.unchanged += len(state.doc_ids)
            self._advance(1, len(state.doc_ids), 0)
            return
        self.store.clear_failures(key)
        items = stream_file(path, root=id_root, max_file_bytes=self.max_file_bytes,
                            decode_errors=self.decode_errors)
        ids: list[str] = []
        try:
            while True:  # a batch of documents at a time: memory is bounded by the batch
                with _Timer(self.summary, "load"):
                    batch = list(itertools.islice(items, BATCH_DOCUMENTS))
                if not batch:
                    break
                documents = []
                for item in batch:
                    if isinstance(item, DocumentError):  # a record: "rel/path:LINE"
                        line = item.path.rpartition(":")[2]
                        where = f"{key}:{line}" if line.isdigit() else key
                        self._fail(where, item.reason, item.message)
                    else:
                        documents.append(item)
                refused = self._queue_documents(documents)
                ids += [doc.id for doc in documents if doc.id not in refused]
        except DocumentError as exc:
            self._fail(key, exc.reason, exc.message)
            self._advance(1, 0, 0)
            return
        if state is not None:
            gone = set(state.doc_ids) - set(ids)
            with _Timer(self.summary, "store"):
                self.summary.removed += self.store.delete_documents(sorted(gone))
        self._pending_files.append(
            (key, FileState(stat.st_size, stat.st_mtime_ns, self.settings, tuple(ids)))
        )
        self._advance(1, 0, 0)

    def _prune(self, root: Path, seen: set[str]) -> None:
        gone = [p for p in self.store.files_under(str(root)) if p not in seen]
        gone += sorted(self.store.failed_files_under(str(root)) - seen - set(gone))
        for path in gone:
            state = self.store.file_state(path)
            if state is not None:
                self.summary.removed += self.store.delete_documents(state.doc_ids)
        self.store.forget_files(gone)

    def _fail(self, path: str, reason: str, message: str, *, record: bool = True) -> None:
        """Count and report a failure; `record` keeps it in the index (for `stats`) until the
        file is read again or pruned."""
        self.summary.failed += 1
        self.summary.failures.append(Failure(path, reason, message))
        if record:
            self.store.record_failure(path, reason, message)
        if self.progress:
            self.progress.failure(path, reason, message)

    # -- documents --------------------------------------------------------------------------

    def _queue_documents(self, documents: Sequence[Document]) -> set[str]:
        """Queue changed documents for embedding; returns the ids refused as duplicates."""
        refused: set[str] = set()
        if not documents:
            return refused
        stored = self.store.document_states([d.id for d in documents])
        changed = []
        for doc in documents:
            previous = stored.get(doc.id)
            owner = self._owners.setdefault(doc.id, doc.source_path)
            if previous is not None and previous[2] != doc.source_path and _exists(previous[2]):
                owner = previous[2]
            if owner != doc.source_path:
                self._fail(doc.source_path or doc.id, "duplicate_id",
                           f"document id {doc.id!r} already comes from {owner}; ids must be "
                           "unique across the index (rename the file or the record's _id)")
                refused.add(doc.id)
                continue
            if previous is not None and previous[:2] == (doc.content_hash, self.settings):
                self.summary.unchanged += 1
                self._advance(0, 1, 0)
            else:
                changed.append(doc)
                if previous is None:
                    self.summary.added += 1
                else:
                    self.summary.updated += 1
        with _Timer(self.summary, "chunk"):  # one tokenizer call for the whole batch
            chunked = chunk_documents(changed, self.chunking, self.embedder.count_tokens)
        if self.progress and changed:
            self.progress.chunked(sum(len(chunks) for chunks in chunked))
        for doc, chunks in zip(changed, chunked, strict=True):
            self._pending.append((doc, chunks))
            self._pending_chunks += len(chunks)
            if self._pending_chunks >= BATCH_CHUNKS:
                self._flush()
        return refused

    def _flush(self) -> None:
        if not self._pending and not self._pending_files:
            return
        texts = [chunk.text for _, chunks in self._pending for chunk in chunks]
        with _Timer(self.summary, "embed"):
            vectors = (self.embedder.embed(texts, kind="document") if texts
                       else np.zeros((0, self.embedder.dim), dtype=np.float32))
        items = []
        offset = 0
        for doc, chunks in self._pending:
            items.append((doc, chunks, vectors[offset: offset + len(chunks)]))
            offset += len(chunks)
        with _Timer(self.summary, "store"):
            if items:
                self.store.write_documents(items, settings=self.settings, files=self._pending_files)
            else:
                self.store.record_files(self._pending_files)
        self.summary.chunks_embedded += len(texts)
        self._advance(0, len(items), len(texts))
        self._pending, self._pending_files, self._pending_chunks = [], [], 0

    def _advance(self, files: int, documents: int, chunks: int) -> None:
        if self.progress:
            self.progress.advance(files, documents, chunks)


def _exists(path: str | None) -> bool:
    return path is not None and Path(path).exists()


def _resolve(path: Path) -> Path:
    resolved = path.expanduser().resolve()
    if not resolved.exists():
        raise RaglineError(f"{path} does not exist: give a file or folder to ingest")
    return resolved


def chunking_config(strategy: str, chunk_tokens: int, overlap_tokens: int,
                    record_max_tokens: int) -> ChunkingConfig:
    return ChunkingConfig(strategy=ChunkStrategy(strategy), chunk_tokens=chunk_tokens,
                          overlap_tokens=overlap_tokens, record_max_tokens=record_max_tokens)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

