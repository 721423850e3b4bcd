"""Collections: separate index folders under the server's data directory.

    <data_dir>/collections/<name>/index/     the index (ragline.sqlite, derived/)
    <data_dir>/collections/<name>/uploads/   the uploaded files, ingested from here
    <data_dir>/collections/<name>/store.json where its database is, when not SQLite
    <data_dir>/collections/<name>/id         a random id, new each time the name is created

When the server's `--config` names `[store] backend = "postgres"`, a new collection's database
is a PostgreSQL schema of its own, `<schema>_<name>` (`collection_schema`), made when the
collection is (so two names, or two workers, never share one) and dropped when it is deleted;
its folder keeps the uploads and the search files. A collection keeps the backend it was made
with: `store.json` records the schema, and SQLite is the default when it is absent.

A collection mounted with `ragline serve --index DIR` keeps its index in DIR and its uploads
in `<data_dir>/mounts/<name>/uploads/`; it cannot be deleted through the API.

An `Index` keeps one database connection that must not be used by two threads at once, so each
model thread keeps its own `Index` per collection (`index`), all sharing one embedder per
embedding configuration; short bookkeeping calls open and close one (`opened`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragline.config import RaglineConfig, StoreSettings
from ragline.embed.base import Embedder
from ragline.index import Index
from ragline.retrieve.rerank import make_reranker
from ragline.server.errors import ApiError
from ragline.server.keys import valid_collection_name
from ragline.store import postgres
from ragline.store.sqlite import DB_NAME

STORE_RECORD = "store.json"
_SCHEMA_MAX = 63  # PostgreSQL's longest identifier


def collection_schema(base: str, name: str) -> str:
    """The PostgreSQL schema of collection `name` under the configured `[store] schema`:
    `<base>_<name>`, '-' written '_', cut to 63 characters with a hash of the name when
    longer. Two names may map to one schema ("a-b", "a_b"): creating the second is refused."""
    schema = f"{base}_{name.replace('-', '_')}"
    if len(schema) > _SCHEMA_MAX:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        schema = f"{schema[:_SCHEMA_MAX - len(digest) - 1]}_{digest}"
    return postgres.check_schema_name(schema)


@dataclass(frozen=True, slots=True)
class Collection:
    name: str
    root: Path
    index_dir: Path
    uploads: Path
    mounted: bool = False
    schema: str | None = None  # its PostgreSQL schema; None: SQLite in `index_dir`


class Catalog:
    """The collections of one data directory, and the `Index` objects that serve them."""

    def __init__(self, data_dir: Path, *, mounts: dict[str, Path] | None = None,
                 config: RaglineConfig | None = None, embedder: Embedder | None = None) -> None:
        self.data_dir = data_dir
        self.mounts = dict(mounts or {})
        self.config = config
        self._embedder = embedder
        self._embedders: dict[str, Embedder] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._indexed: set[tuple[str, str]] = set()  # (name, incarnation) known to hold an index
        (data_dir / "collections").mkdir(parents=True, exist_ok=True)

    # -- the folders ------------------------------------------------------------------------

    def names(self) -> list[str]:
        found = {p.name for p in (self.data_dir / "collections").iterdir()
                 if p.is_dir() and valid_collection_name(p.name) and (p / "id").exists()}
        return sorted(found | set(self.mounts))

    def get(self, name: str) -> Collection:
        if name in self.mounts:
            root = self.data_dir / "mounts" / name
            return Collection(name, root, self.mounts[name], root / "uploads", mounted=True)
        root = self.data_dir / "collections" / name
        if not valid_collection_name(name) or not (root / "id").exists():
            raise ApiError(404, "collection_not_found",
                           f"no collection {name!r}; POST /collections creates one")
        return Collection(name, root, root / "index", root / "uploads", schema=_schema_of(root))

    def create(self, name: str) -> Collection:
        if not valid_collection_name(name):
            raise ApiError(422, "invalid_name", f"invalid collection name {name!r}: use "
                           "lower-case letters, digits, '-' and '_' (at most 64 characters)")
        root = self.data_dir / "collections" / name
        with self._lock:
            if name in self.mounts or (root / "id").exists():
                raise ApiError(409, "collection_exists", f"collection {name!r} already exists")
            schema = self._new_schema(name)
            try:
                (root / "uploads").mkdir(parents=True, exist_ok=True)
                (root / "index").mkdir(exist_ok=True)
                if schema is not None:
                    (root / STORE_RECORD).write_text(json.dumps(
                        {"backend": "postgres", "schema": schema}), encoding="utf-8")
                (root / "id").write_text(secrets.token_hex(8), encoding="utf-8")
            except BaseException:
                if schema is not None:
                    self._drop_schema(schema)
                raise
        return self.get(name)

    def _new_schema(self, name: str) -> str | None:
        """The PostgreSQL schema made for a new collection (None: it is SQLite)."""
        store = self.config.store if self.config is not None else None
        if store is None or store.backend != "postgres":
            return None
        assert store.dsn is not None  # StoreSettings requires it for postgres
        schema = collection_schema(store.schema_name, name)
        if not postgres.create_schema(store.dsn, schema, password_env=store.password_env):
            raise ApiError(409, "collection_exists", f"PostgreSQL schema {schema!r} exists "
                           f"already at {postgres.describe_dsn(store.dsn)}: it holds another "
                           f"collection whose name maps to it, or an index made outside this "
                           f"server; choose another name (or drop the schema if it is left over)")
        return schema

    def _drop_schema(self, schema: str) -> None:
        store = self._postgres(schema)
        assert store.dsn is not None
        postgres.drop_schema(store.dsn, schema, password_env=store.password_env)

    def delete(self, name: str) -> None:
        collection = self.get(name)
        if collection.mounted:
            raise ApiError(409, "collection_mounted", f"collection {name!r} is an index folder "
                           "mounted with --index; it is not deleted through the API")
        with self._lock:
            if collection.schema is not None:  # first: if the server refuses, nothing is lost
                self._drop_schema(collection.schema)
            (collection.root / "id").unlink(missing_ok=True)  # gone for every reader at once
            shutil.rmtree(collection.root, ignore_errors=True)

    def incarnation(self, collection: Collection) -> str:
        if collection.mounted:
            return "mounted"
        try:
            return (collection.root / "id").read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ApiError(404, "collection_not_found",
                           f"collection {collection.name!r} was deleted") from None

    # -- indexes ----------------------------------------------------------------------------

    def _config_for(self, collection: Collection) -> RaglineConfig | None:
        if collection.mounted:
            return self.config
        if collection.schema is not None:  # the server's PostgreSQL, in the collection's schema
            store = self._postgres(collection.schema)
            assert self.config is not None  # _postgres checked it
            return self.config.model_copy(update={
                "store": store.model_copy(update={"schema_name": collection.schema})})
        if self.config is None:
            return None
        # made on SQLite: a folder of its own, whatever [store] the file names now
        return self.config.model_copy(update={"store": StoreSettings()})

    def _postgres(self, schema: str) -> StoreSettings:
        """The `[store]` that reaches a collection's PostgreSQL schema: the server's."""
        store = self.config.store if self.config is not None else None
        if store is None or store.backend != "postgres":
            raise ApiError(503, "store_unavailable", f"this collection is stored in PostgreSQL "
                           f"(schema {schema!r}), but the server's --config names no "
                           "PostgreSQL [store]: serve it with the configuration it was made with")
        return store

    def has_index(self, collection: Collection) -> bool:
        """Whether the collection holds an index yet (made by its first ingest): a file for
        SQLite, a question to the server for PostgreSQL (remembered once the answer is yes)."""
        store = self._config_for(collection)
        settings = store.store if store is not None else StoreSettings()
        if settings.backend != "postgres":
            return (collection.index_dir / DB_NAME).exists()
        slot = (collection.name, self.incarnation(collection))
        if slot in self._indexed:
            return True
        assert settings.dsn is not None
        if not postgres.index_exists(settings.dsn, settings.schema_name,
                                     password_env=settings.password_env):
            return False
        self._indexed.add(slot)
        return True

    def new_index(self, collection: Collection, overrides: dict[str, Any] | None = None,
                  *, timed: bool = False) -> Index:
        """A fresh `Index` for `collection` (the caller closes it), with the shared embedder;
        `overrides` (an experiment arm's `[search]`/`[llm]`) apply on top of its settings, and
        `timed` puts `TimedReranker` around a configured reranker (for request traces)."""
        config = self._config_for(collection)
        probe = Index(collection.index_dir, config)
        try:
            settings = probe.config
        finally:
            probe.close()
        if overrides:
            config = settings = settings.merged(overrides)
        reranker = None
        if timed:
            from ragline.server.tracing import timed as timed_reranker

            reranker = timed_reranker(make_reranker(settings.search))
        return Index(collection.index_dir, config, embedder=self.embedder_for(settings),
                     reranker=reranker)

    @contextmanager
    def opened(self, name: str) -> Iterator[Index]:
        index = self.new_index(self.built(name))
        try:
            yield index
        finally:
            index.close()

    def built(self, name: str) -> Collection:
        """The collection, which must hold an index already (409 otherwise)."""
        collection = self.get(name)
        if not collection.mounted and not self.has_index(collection):
            raise ApiError(409, "collection_empty", f"collection {name!r} has no documents yet: "
                           f"upload some (POST /collections/{name}/documents) and ingest them "
                           f"(POST /collections/{name}/ingest)")
        return collection

    def index(self, name: str, overrides: dict[str, Any] | None = None) -> Index:
        """This thread's `Index` of collection `name` (model threads only: they are few), with
        an experiment arm's `overrides` when given (one `Index` per arm)."""
        collection = self.built(name)
        incarnation = self.incarnation(collection)
        cached: dict[str, tuple[str, Index]] = self._local.__dict__.setdefault("indexes", {})
        slot = f"{name}#{json.dumps(overrides, sort_keys=True)}" if overrides else name
        held = cached.get(slot)
        if held is not None and held[0] == incarnation:
            return held[1]
        if held is not None:
            held[1].close()
        index = self.new_index(collection, overrides, timed=True)
        cached[slot] = (incarnation, index)
        return index

    def embedder(self, name: str) -> Embedder:
        """The embedder collection `name` is (or will be) built with."""
        probe = Index(self.get(name).index_dir, self._config_for(self.get(name)))
        try:
            return self.embedder_for(probe.config)
        finally:
            probe.close()

    def embedder_for(self, config: RaglineConfig) -> Embedder:
        if self._embedder is not None:
            return self._embedder
        key = config.fingerprint("embedder")
        with self._lock:
            if key not in self._embedders:
                self._embedders[key] = config.embedder.build()
            return self._embedders[key]

    def summary(self, name: str) -> dict[str, Any]:
        """What `GET /collections` shows of one collection."""
        collection = self.get(name)
        uploads = [p for p in collection.uploads.glob("*") if p.is_file()] \
            if collection.uploads.exists() else []
        info: dict[str, Any] = {"name": name, "mounted": collection.mounted,
                                "uploads": len(uploads), "documents": 0, "chunks": 0}
        if self.has_index(collection):
            with self.opened(name) as index:
                info["documents"] = index.store.count_documents()
                info["chunks"] = index.store.count_chunks()
        return info


def _schema_of(root: Path) -> str | None:
    """The PostgreSQL schema `store.json` records for a collection (None: SQLite)."""
    try:
        record = json.loads((root / STORE_RECORD).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return postgres.check_schema_name(str(record["schema"]))
