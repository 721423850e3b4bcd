"""The `Store` contract (`ragline.store.base`), run against every backend.

Each test runs on SQLite and on PostgreSQL + pgvector (the ids say which: `[sqlite]`,
`[postgres]`). The PostgreSQL server is the one `scripts/postgres.sh` installs and starts
(`make test` runs it; the fixture runs it too when `RAGLINE_TEST_PG_DSN` is unset). If it
cannot be started the postgres tests fail, never skip: set `RAGLINE_NO_POSTGRES=1` to
deselect them on purpose.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragline.errors import ConfigError, IndexNotFound, IndexVersionError, StoreUnavailable
from ragline.store.base import FileState, Store
from ragline.store.sqlite import SQLiteStore
from ragline.types import Chunk, DocType, Document, Heading

DIM = 8
ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ["sqlite"] + ([] if os.environ.get("RAGLINE_NO_POSTGRES") == "1" else ["postgres"])

OpenStore = Callable[..., Any]


@pytest.fixture(params=BACKENDS)
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """`open_store(create=True)`: a store of this backend, always the same index."""
    opened: list[Any] = []
    if request.param == "sqlite":
        def open_sqlite(*, create: bool = True, dim: int = DIM) -> SQLiteStore:
            store = SQLiteStore(tmp_path / "index", create=create)
            opened.append(store)
            return store
        yield open_sqlite
    else:
        from ragline.store.postgres import PostgresStore

        dsn = request.getfixturevalue("pg_dsn")
        schema = f"t_{uuid.uuid4().hex[:12]}"

        def open_pg(*, create: bool = True, dim: int | None = DIM) -> PostgresStore:
            store = PostgresStore(dsn, schema=schema, dim=dim, create=create)
            opened.append(store)
            return store
        yield open_pg
        _drop_schema(dsn, schema)
    for store in opened:
        store.close()


def _drop_schema(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True,
                         password=os.environ.get("RAGLINE_PG_PASSWORD")) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def store(open_store: OpenStore) -> Store:
    return open_store()  # type: ignore[no-any-return]


def _doc(doc_id: str, text: str, **metadata: Any) -> Document:
    return Document(id=doc_id, text=text, doc_type=DocType.MARKDOWN,
                    content_hash=hashlib.sha256(text.encode()).hexdigest(), title=doc_id.upper(),
                    source_path=f"/data/{doc_id}", modified=1.5,
                    headings=(Heading(0, 1, "Top"),), metadata={"path": doc_id, **metadata})


def _chunks(doc: Document, n: int = 2) -> list[Chunk]:
    step = max(1, len(doc.text) // n)
    return [Chunk(id=f"{doc.id}#{i}", doc_id=doc.id, ordinal=i,
                  text=doc.text[i * step:(i + 1) * step], start=i * step, end=(i + 1) * step,
                  heading_path=("Top",), token_count=3, pages=(i + 1,)) for i in range(n)]


def _vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _write(store: Store, doc: Document, n: int = 2, seed: int = 0) -> np.ndarray:
    vectors = _vectors(n, seed)
    store.write_documents([(doc, _chunks(doc, n), vectors)], settings="s1")
    return vectors


def test_a_document_and_its_chunks_read_back_as_written(store: Store) -> None:
    doc = _doc("a.md", "Alpha beta gamma. Delta epsilon zeta.", year=2024, team="core")
    before = store.generation
    _write(store, doc)
    assert store.generation == before + 1
    assert store.get_document("a.md") == doc
    chunk = store.get_chunk("a.md#1")
    assert chunk is not None and chunk.chunk == _chunks(doc)[1]
    assert (chunk.doc_title, chunk.doc_type, chunk.source_path) == ("A.MD", "md",
                                                                    "/data/a.md")
    assert store.document_states(["a.md", "missing"]) == {
        "a.md": (doc.content_hash, "s1", "/data/a.md")}
    assert (store.count_documents(), store.count_chunks()) == (1, 2)


def test_rewriting_a_document_replaces_its_chunks(store: Store) -> None:
    _write(store, _doc("a.md", "one two three four"))
    old = set(store.doc_ids_by_rowid())
    _write(store, _doc("a.md", "five six seven eight nine"), n=3, seed=1)
    rows = store.doc_ids_by_rowid()
    assert len(rows) == 3 and set(rows.values()) == {"a.md"}
    assert old  # row ids are unique among the chunks present (SQLite may reuse freed ones)
    assert store.get_document("a.md").text == "five six seven eight nine"  # type: ignore[union-attr]


def test_a_failed_write_leaves_nothing_behind(store: Store) -> None:
    _write(store, _doc("keep.md", "kept text here"))
    generation = store.generation
    good, bad = _doc("b.md", "fine document"), _doc("c.md", "broken document")
    with pytest.raises(ValueError):  # two chunks, one vector: the batch fails as a whole
        store.write_documents([(good, _chunks(good), _vectors(2, 0)),
                               (bad, _chunks(bad), _vectors(1, 0))], settings="s1")
    assert store.get_document("b.md") is None and store.get_document("c.md") is None
    assert store.count_chunks() == 2 and store.generation == generation


def test_deleting_documents_removes_their_chunks(store: Store) -> None:
    _write(store, _doc("a.md", "alpha alpha"))
    _write(store, _doc("b.md", "beta beta"))
    assert store.delete_documents(["a.md"]) == 1
    assert store.get_document("a.md") is None and store.get_chunk("a.md#0") is None
    assert set(store.doc_ids_by_rowid().values()) == {"b.md"}
    assert store.delete_documents([]) == 0


def test_file_states_and_failures(store: Store) -> None:
    state = FileState(size=10, mtime_ns=123, settings="s1", doc_ids=("a.md", "b.md"))
    doc = _doc("a.md", "text of a")
    store.write_documents([(doc, _chunks(doc), _vectors(2, 0))], settings="s1",
                          files=[("/data/a.md", state)])
    store.record_files([("/data/sub/c.md", FileState(1, 2, "s1", ()))])
    assert store.file_state("/data/a.md") == state and store.file_state("/nope") is None
    assert sorted(store.files_under("/data")) == ["/data/a.md", "/data/sub/c.md"]
    assert store.files_under("/dat") == []  # a prefix is a folder, not a string prefix
    store.record_failure("/data/x.jsonl:7", "corrupt", "line 7 is not JSON")
    store.record_failure("/data/y.pdf", "needs_ocr", "no text layer")
    store.record_failure("/data/y.pdf", "needs_ocr", "still no text layer")  # replaces
    assert store.failed_files_under("/data") == {"/data/x.jsonl", "/data/y.pdf"}
    assert ("/data/y.pdf", "needs_ocr", "still no text layer") in store.failures()
    store.clear_failures("/data/x.jsonl")  # clears its records' failures too
    assert store.failed_files_under("/data") == {"/data/y.pdf"}
    store.forget_files(["/data/a.md", "/data/y.pdf"])
    assert store.file_state("/data/a.md") is None and store.failures() == []


def test_the_snapshot_holds_every_chunk_in_row_order(store: Store,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("sqlite", "postgres"):  # blocks of 2 rows: the embeddings come in 3 blocks
        monkeypatch.setattr(f"ragline.store.{module}.SNAPSHOT_BLOCK", 2)
    va = _write(store, _doc("a.md", "alpha text one two"), seed=1)
    vb = _write(store, _doc("b.md", "beta text three four"), n=3, seed=2)
    with store.chunk_snapshot(DIM) as (generation, rowids, blocks, texts):
        assert generation == store.generation
        assert list(rowids) == sorted(rowids) and len(rowids) == 5
        np.testing.assert_allclose(np.vstack(list(blocks)), np.vstack([va, vb]), atol=1e-6)
        assert list(texts) == [c.text for c in _chunks(_doc("a.md", "alpha text one two"))
                               + _chunks(_doc("b.md", "beta text three four"), 3)]


def test_filters_match_columns_metadata_and_path_prefix(store: Store) -> None:
    _write(store, _doc("reports/2023.md", "old report", year="2023", team="core"))
    _write(store, _doc("reports/2024.md", "new report", year="2024", team="web"))
    _write(store, _doc("notes/n.md", "a note", year="2024", team="core"))
    rows = store.doc_ids_by_rowid()

    def docs(where: dict[str, Any], prefix: str | None = None) -> set[str]:
        return {rows[r] for r in store.rowids_matching(where, prefix)}

    assert docs({}) == set(rows.values())
    assert docs({"year": "2024"}) == {"reports/2024.md", "notes/n.md"}
    assert docs({"year": "2024", "team": "core"}) == {"notes/n.md"}
    assert docs({"team": ["web", "core"]}) == set(rows.values())
    assert docs({"doc_id": "notes/n.md"}) == {"notes/n.md"}
    assert docs({"type": "md"}, "reports/") == {"reports/2023.md", "reports/2024.md"}
    assert docs({"missing_key": "x"}) == set()


def test_chunks_by_rowid_returns_what_it_finds(store: Store) -> None:
    _write(store, _doc("a.md", "alpha beta"))
    rowids = list(store.doc_ids_by_rowid())
    found = store.chunks_by_rowid([*rowids, 10**9])
    assert set(found) == set(rowids)
    assert {c.chunk.id for c in found.values()} == {"a.md#0", "a.md#1"}


def test_meta_round_trips_and_a_newer_schema_is_refused(open_store: OpenStore) -> None:
    store = open_store()
    store.set_meta("config", '{"a": 1}')
    store.set_meta("config", '{"a": 2}')
    assert store.get_meta("config") == '{"a": 2}' and store.get_meta("nothing") is None
    store.set_meta("schema_version", "99")
    store.close()
    with pytest.raises(IndexVersionError, match="99"):
        open_store(create=False)


def test_a_store_keeps_its_id_across_opens(open_store: OpenStore) -> None:
    store = open_store()
    name = store.store_id
    store.close()
    assert open_store(create=False).store_id == name and len(name) >= 16


def test_opening_an_index_that_does_not_exist_says_so(open_store: OpenStore) -> None:
    with pytest.raises(IndexNotFound):
        open_store(create=False)


def test_text_with_nul_characters_is_stored(store: Store) -> None:
    doc = _doc("nul.md", "before\x00after")
    store.write_documents([(doc, _chunks(doc, 1), _vectors(1, 0))], settings="s1")
    stored = store.get_document("nul.md")
    assert stored is not None and stored.text.startswith("before") and "after" in stored.text


# -- PostgreSQL only ------------------------------------------------------------------------


@pytest.fixture
def pg_store(pg_dsn: str) -> Iterator[Any]:
    from ragline.store.postgres import PostgresStore

    schema = f"t_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(pg_dsn, schema=schema, dim=DIM, create=True)
    yield store
    store.close()
    _drop_schema(pg_dsn, schema)


def test_postgres_refuses_embeddings_of_another_dimension(pg_store: Any, pg_dsn: str) -> None:
    from ragline.store.postgres import PostgresStore

    with pytest.raises(ConfigError, match=r"holds 8-dimensional.*gives 384"):
        PostgresStore(pg_dsn, schema=pg_store.schema, dim=384)
    doc = _doc("a.md", "text")
    with pytest.raises(ConfigError, match="dimension 4"):
        pg_store.write_documents([(doc, _chunks(doc, 1), np.ones((1, 4), np.float32))],
                                 settings="s1")


def test_postgres_not_running_is_a_clear_error_without_the_password() -> None:
    from ragline.store.postgres import PostgresStore

    with pytest.raises(StoreUnavailable) as caught:
        PostgresStore("postgresql://ragline:s3cret@127.0.0.1:1/postgres", connect_timeout=2)
    message = str(caught.value)
    assert "127.0.0.1:1" in message and "is running" in message and "s3cret" not in message


def test_postgres_wrong_password_says_to_check_the_password(
        pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from ragline.store.postgres import PostgresStore

    monkeypatch.setenv("RAGLINE_PG_PASSWORD", "wrong-password")
    with pytest.raises(StoreUnavailable, match="password") as caught:
        PostgresStore(pg_dsn)
    assert "wrong-password" not in str(caught.value)


def test_postgres_two_writers_at_once_both_complete(pg_store: Any, pg_dsn: str) -> None:
    from ragline.store.postgres import PostgresStore

    errors: list[BaseException] = []

    def ingest(prefix: str, seed: int) -> None:
        try:
            store = PostgresStore(pg_dsn, schema=pg_store.schema, dim=DIM)
            for i in range(15):
                _write(store, _doc(f"{prefix}{i}.md", f"document {prefix} {i} text"), seed=seed)
            store.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    start = pg_store.generation
    threads = [threading.Thread(target=ingest, args=(p, s)) for p, s in (("x", 1), ("y", 2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert pg_store.count_documents() == 30 and pg_store.count_chunks() == 60
    assert pg_store.generation == start + 30


def test_postgres_retrievers_find_the_nearest_vector_and_the_keyword(pg_store: Any) -> None:
    texts = {f"d{i}.md": f"common words and topic{i} here" for i in range(20)}
    texts["special.md"] = "the aurora borealis glows over the arctic"
    vectors = {}
    for i, (doc_id, text) in enumerate(texts.items()):
        vectors[doc_id] = _write(pg_store, _doc(doc_id, text), n=1, seed=i)
    rows = pg_store.doc_ids_by_rowid()
    nearest = pg_store.dense_candidates(vectors["special.md"][0], 3)
    assert rows[nearest[0][0]] == "special.md" and nearest[0][1] == pytest.approx(1.0, abs=1e-5)
    found = pg_store.keyword_candidates("Auroras over Arctic!", 5)
    assert [rows[r] for r, _ in found] == ["special.md"]
    assert pg_store.keyword_candidates("the and", 5) == []  # stop words only


# -- the whole index on each backend ----------------------------------------------------------


def _index_config(backend: str, request: pytest.FixtureRequest) -> Any:
    from ragline.config import RaglineConfig

    if backend == "sqlite":
        return RaglineConfig()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    dsn = request.getfixturevalue("pg_dsn")
    request.addfinalizer(lambda: _drop_schema(dsn, schema))
    return RaglineConfig.model_validate({"store": {"backend": "postgres", "dsn": dsn,
                                                   "schema": schema}})


def test_ingest_and_hybrid_search_give_the_same_hits_on_sqlite_and_postgres(
        tmp_path: Path, embedder: Any, request: pytest.FixtureRequest) -> None:
    from ragline import Index

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "mars.md").write_text("# Mars\n\nMars is the fourth planet from the Sun.\n")
    (corpus / "risotto.txt").write_text("A good risotto needs arborio rice and patience.\n")
    (corpus / "search.md").write_text("# Search\n\nHybrid search fuses BM25 keyword scores "
                                      "with dense vector similarity.\n")
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    results = {}
    for backend in ("sqlite", "postgres"):
        config = _index_config(backend, request)
        with Index(tmp_path / f"index-{backend}", config, embedder=embedder) as index:
            report = index.ingest(corpus)
            assert (report.failed, report.added) == (1, 3)  # one bad file, the rest ingested
            again = index.ingest(corpus)
            assert again.unchanged == 3  # unchanged files are not re-read
            hits = index.search("which planet is fourth from the sun", k=3)
            filtered = index.search("planet", k=3, where={"doc_id": "corpus/risotto.txt"})
            results[backend] = ([(h.chunk.id, round(h.score, 5)) for h in hits],
                                [h.chunk.doc_id for h in filtered])
    assert results["postgres"] == results["sqlite"]
    assert results["sqlite"][0][0][0].startswith("corpus/mars.md")
    assert results["sqlite"][1] == ["corpus/risotto.txt"]


def test_postgres_index_refuses_another_embedder_dimension(
        tmp_path: Path, embedder: Any, request: pytest.FixtureRequest) -> None:
    from ragline import Index
    from ragline.embed.onnx import OnnxEmbedder

    config = _index_config("postgres", request)
    (tmp_path / "a.md").write_text("Some text about a topic.\n")
    with Index(tmp_path / "index", config, embedder=embedder) as index:
        index.ingest(tmp_path / "a.md")

    class Wider(OnnxEmbedder):
        @property
        def dim(self) -> int:
            return 768

    with pytest.raises(ConfigError, match=r"384-dimensional.*768"):
        Index(tmp_path / "index", config, embedder=Wider(threads=1)).search("topic")


def test_postgres_connection_dropped_mid_ingest_resumes_with_nothing_lost_or_doubled(
        tmp_path: Path, embedder: Any, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    from ragline import Index

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(6):
        (corpus / f"note{i}.md").write_text(f"# Note {i}\n\nThe note number {i} is about topic "
                                            f"{i * 7}, and nothing else.\n")
    monkeypatch.setattr("ragline.ingest.BATCH_CHUNKS", 1)  # one transaction per document
    config = _index_config("postgres", request)
    dsn = request.getfixturevalue("pg_dsn")

    class Dropping:
        """The real embedder; on its third call the server ends every ragline connection."""

        def __init__(self, inner: Any) -> None:
            self.inner, self.calls = inner, 0

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def embed(self, texts: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == 3:
                with psycopg.connect(dsn, autocommit=True,
                                     password=os.environ.get("RAGLINE_PG_PASSWORD")) as admin:
                    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE usename = current_user AND pid <> pg_backend_pid()")
            return self.inner.embed(texts, **kwargs)

    with (Index(tmp_path / "index", config, embedder=Dropping(embedder)) as index,
          pytest.raises(StoreUnavailable)):
        index.ingest(corpus)
    with Index(tmp_path / "index", config, embedder=embedder) as index:
        resumed = index.ingest(corpus)
        assert resumed.added + resumed.unchanged == 6 and 1 <= resumed.unchanged <= 3
        assert index.count_chunks() == 6  # one chunk a note: none lost, none doubled
        assert index.search("topic 35", k=1)[0].chunk.doc_id == "corpus/note5.md"


def test_a_bulk_ingest_run_writes_and_reads_back(store: Store) -> None:
    with store.bulk_ingest():
        va = _write(store, _doc("a.md", "alpha text one two"), seed=1)
    with store.chunk_snapshot(DIM) as (_generation, rowids, blocks, _texts):
        assert len(rowids) == 2
        np.testing.assert_allclose(np.vstack(list(blocks)), va, atol=1e-6)


def _hnsw(pg_store: Any) -> list[str]:
    return pg_store._hnsw_indexes()  # type: ignore[no-any-return]


def test_postgres_bulk_ingest_builds_hnsw_once_at_the_end(pg_store: Any) -> None:
    assert _hnsw(pg_store), "a new index is created with its HNSW index"
    with pg_store.bulk_ingest():
        assert not _hnsw(pg_store), "an empty index drops it while loading"
        vectors = _write(pg_store, _doc("a.md", "alpha text one two"), n=4, seed=1)
    assert _hnsw(pg_store)
    nearest = pg_store.dense_candidates(vectors[2], 1)
    assert nearest and nearest[0][1] == pytest.approx(1.0, abs=1e-5)
    with pg_store.bulk_ingest():  # an index that holds chunks keeps it, maintained per row
        assert _hnsw(pg_store)
        _write(pg_store, _doc("b.md", "beta text"), seed=2)


def test_postgres_a_failed_bulk_ingest_leaves_exact_search_and_the_next_builds_hnsw(
        pg_store: Any) -> None:
    with pytest.raises(RuntimeError), pg_store.bulk_ingest():
        vectors = _write(pg_store, _doc("a.md", "alpha text one two"), n=4, seed=1)
        raise RuntimeError("killed")
    assert not _hnsw(pg_store)
    assert pg_store.dense_candidates(vectors[3], 1)[0][1] == pytest.approx(1.0, abs=1e-5)
    with pg_store.bulk_ingest():  # the resumed run loads in bulk mode again
        _write(pg_store, _doc("b.md", "beta text"), seed=2)
    assert _hnsw(pg_store) and pg_store.count_chunks() == 6


@pytest.mark.integration
def test_postgres_killed_ingest_resumes_without_duplicates_or_losses(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    import json
    import signal
    import subprocess
    import sys
    import time

    import psycopg

    dsn = request.getfixturevalue("pg_dsn")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    request.addfinalizer(lambda: _drop_schema(dsn, schema))
    config = tmp_path / "pg.toml"
    config.write_text(f'[store]\nbackend = "postgres"\ndsn = "{dsn}"\nschema = "{schema}"\n')
    n = 1200
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(n):
        (corpus / f"f{i:04d}.txt").write_text(f"document {i} talks about subject {i % 37}")
    cmd = [sys.executable, "-m", "ragline.cli", "ingest", str(corpus), "--index",
           str(tmp_path / "ix"), "--config", str(config), "--json"]
    env = {**os.environ, "RAGLINE_EMBED_THREADS": "1"}
    password = os.environ.get("RAGLINE_PG_PASSWORD")

    def count(table: str) -> int:
        try:
            with psycopg.connect(dsn, password=password, connect_timeout=2) as conn:
                return int(conn.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()[0])
        except psycopg.Error:
            return 0

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline, stored = time.monotonic() + 180, 0
    while time.monotonic() < deadline and proc.poll() is None:
        stored = count("documents")
        if stored > 0:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < stored < n, "the ingest finished before it could be killed; use more files"
    resumed = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["added"] + summary["unchanged"] == n and summary["unchanged"] >= stored
    assert count("documents") == n and count("chunks") == n  # one chunk a file, none doubled
    with psycopg.connect(dsn, password=password) as conn:
        assert conn.execute("SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND "
                            "indexdef LIKE '%%USING hnsw%%'", (schema,)).fetchone()[0] == 1


def test_postgres_doctor_checks_the_server_and_rebuilds_a_missing_hnsw_index(
        tmp_path: Path, embedder: Any, request: pytest.FixtureRequest) -> None:
    from ragline import Index
    from ragline.config import RaglineConfig
    from ragline.store.doctor import OK, PROBLEM, REPAIRED, diagnose
    from ragline.store.postgres import HNSW_INDEX

    config = _index_config("postgres", request)
    (tmp_path / "a.md").write_text("# A\n\nSome text about a topic.\n")
    with Index(tmp_path / "index", config, embedder=embedder) as index:
        index.ingest(tmp_path / "a.md")
        index._open(create=False)._conn.execute(  # as an interrupted first ingest leaves it
            f"DROP INDEX {config.store.schema_name}.{HNSW_INDEX}")
    found = {f.check: f for f in diagnose(tmp_path / "index", config=config).findings}
    assert found["database"].status == OK and "1 chunks" in found["database"].detail
    assert found["HNSW index"].status == PROBLEM and "--repair" in found["HNSW index"].fix
    repaired = diagnose(tmp_path / "index", config=config, repair=True)
    assert {f.check: f.status for f in repaired.findings}["HNSW index"] == REPAIRED
    assert diagnose(tmp_path / "index", config=config).healthy

    down = RaglineConfig.model_validate({"store": {
        "backend": "postgres", "dsn": "postgresql://ragline@127.0.0.1:9/postgres"}})
    report = diagnose(tmp_path / "index", config=down)
    assert not report.healthy and "127.0.0.1:9" in report.findings[0].detail


def test_postgres_native_search_builds_no_search_files_at_ingest(
        tmp_path: Path, embedder: Any, request: pytest.FixtureRequest) -> None:
    from ragline import Index
    from ragline.config import RaglineConfig

    config = _index_config("postgres", request)
    native = RaglineConfig.model_validate({"store": {**config.store.model_dump(by_alias=True),
                                                     "search": "native"}})
    (tmp_path / "mars.md").write_text("# Mars\n\nMars is the fourth planet from the Sun.\n")
    with Index(tmp_path / "index", native, embedder=embedder) as index:
        index.ingest(tmp_path / "mars.md")
        assert not list((tmp_path / "index").glob("derived/g*"))  # nothing corpus-sized built
        hits = index.search("fourth planet", k=1)
        assert hits[0].chunk.doc_id.endswith("mars.md") and hits[0].stage("bm25") is not None


def test_postgres_verify_and_ask_open_the_index_through_config(
        tmp_path: Path, embedder: Any, request: pytest.FixtureRequest) -> None:
    import json

    from typer.testing import CliRunner

    from ragline import Index
    from ragline.cli import app

    config = _index_config("postgres", request)
    (tmp_path / "mars.md").write_text("# Mars\n\nMars is the fourth planet from the Sun.\n")
    with Index(tmp_path / "index", config, embedder=embedder) as index:
        index.ingest(tmp_path / "mars.md")
        chunk = index.search("fourth planet", k=1)[0].chunk
    toml = tmp_path / "pg.toml"
    toml.write_text(f'[store]\nbackend = "postgres"\ndsn = "{config.store.dsn}"\n'
                    f'schema = "{config.store.schema_name}"\n')
    answer = tmp_path / "answer.json"
    answer.write_text(json.dumps({"question": "Which planet is fourth?",
                                  "answer": "Mars is the fourth planet from the Sun.",
                                  "citations": [{"sentence": "Mars is the fourth planet from the "
                                                 "Sun.", "chunk_id": chunk.id}]}))
    runner = CliRunner()
    verified = runner.invoke(app, ["verify", str(answer), "--index", str(tmp_path / "index"),
                                   "--config", str(toml), "--json"])
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout)["ok"] is True  # the cited claim is supported
    asked = runner.invoke(app, ["ask", "Which planet is fourth from the Sun?", "--index",
                                str(tmp_path / "index"), "--config", str(toml), "--extractive",
                                "--json"])
    assert asked.exit_code == 0, asked.output
    assert "fourth planet" in json.loads(asked.stdout)["text"]
