"""Collections on PostgreSQL (`ragline.server.catalog`): with `[store] backend = "postgres"` in
the server's `--config`, each collection made through the API is a schema of its own,
`<schema>_<name>`, dropped when the collection is deleted, and shared by every worker.

The server is the one `scripts/postgres.sh` starts (the `pg_dsn` fixture); as in
`test_store_conformance.py`, these tests fail when it cannot start, and `RAGLINE_NO_POSTGRES=1`
deselects them.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ragline.server import ServerSettings, create_app
from ragline.server.catalog import collection_schema
from ragline.server.keys import KeyStore

NO_POSTGRES = os.environ.get("RAGLINE_NO_POSTGRES") == "1"
needs_postgres = pytest.mark.skipif(NO_POSTGRES, reason="RAGLINE_NO_POSTGRES=1")
DOCS = {
    "eiffel.md": b"# Eiffel Tower\n\nThe Eiffel Tower was completed in 1889 in Paris.\n",
    "python.md": b"# Python\n\nPython is a programming language created by Guido van Rossum.\n",
}


def _connect(dsn: str) -> Any:
    import psycopg

    return psycopg.connect(dsn, autocommit=True, password=os.environ.get("RAGLINE_PG_PASSWORD"))


def _schemas(dsn: str, prefix: str) -> set[str]:
    with _connect(dsn) as conn:
        rows = conn.execute("SELECT schema_name FROM information_schema.schemata"
                            " WHERE left(schema_name, %s) = %s", (len(prefix), prefix)).fetchall()
    return {row[0] for row in rows}


class Workers:
    """Two apps over one data directory and one PostgreSQL `[store]` (`--workers 2`)."""

    def __init__(self, root: Path, dsn: str, base: str, embedder: Any) -> None:
        config = root / "ragline.toml"
        config.write_text("[chunking]\nchunk_tokens = 16\noverlap_tokens = 0\n\n"
                          f'[store]\nbackend = "postgres"\ndsn = "{dsn}"\nschema = "{base}"\n')
        self.settings = ServerSettings(data_dir=root / "data", keys_path=root / "keys.sqlite",
                                       config=config, extractive=True, workers=2)
        key = KeyStore(self.settings.keys_file()).create(["*"])[1]
        self.headers = {"Authorization": f"Bearer {key}"}
        self.embedder = embedder

    def app(self) -> Any:
        return create_app(self.settings, embedder=self.embedder)


@pytest.fixture
def base(request: pytest.FixtureRequest) -> Iterator[str]:
    """A `[store] schema` of this test's own; every schema made under it is dropped after."""
    prefix = f"t_{uuid.uuid4().hex[:10]}"
    yield prefix
    if NO_POSTGRES:
        return
    dsn = request.getfixturevalue("pg_dsn")
    with _connect(dsn) as conn:
        for schema in _schemas(dsn, prefix):
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def workers(tmp_path: Path, base: str, embedder: Any,
            request: pytest.FixtureRequest) -> Workers:
    return Workers(tmp_path, request.getfixturevalue("pg_dsn"), base, embedder)


def _ingested(client: TestClient, headers: dict[str, str], name: str) -> None:
    reply = client.post(f"/collections/{name}/documents", headers=headers,
                        params={"ingest": "true"},
                        files=[("files", (n, data)) for n, data in DOCS.items()])
    assert reply.status_code == 201, reply.text
    job_id = reply.json()["job"]["id"]
    deadline = time.monotonic() + 60
    while (job := client.get(f"/jobs/{job_id}", headers=headers).json())["status"] in (
            "queued", "running"):
        assert time.monotonic() < deadline, "the ingest job did not finish"
        time.sleep(0.1)
    assert job["status"] == "done", job


def test_collection_schemas_are_valid_identifiers_named_after_the_collection() -> None:
    assert collection_schema("ragline", "docs") == "ragline_docs"
    assert collection_schema("ragline", "my-notes_2") == "ragline_my_notes_2"
    long = collection_schema("ragline", "x" * 64)
    assert len(long) == 63 and long.startswith("ragline_xxx")
    assert long != collection_schema("ragline", "x" * 63)  # cut, but told apart by the hash


@needs_postgres
def test_a_collection_lives_in_its_own_schema_searched_and_deleted_by_any_worker(
        workers: Workers, pg_dsn: str, base: str) -> None:
    headers = workers.headers
    with TestClient(workers.app()) as one, TestClient(workers.app()) as two:
        reply = one.post("/collections", json={"name": "docs"}, headers=headers)
        assert reply.status_code == 201, reply.text
        assert _schemas(pg_dsn, base) == {f"{base}_docs"}
        root = workers.settings.data_dir / "collections" / "docs"
        assert json.loads((root / "store.json").read_text())["schema"] == f"{base}_docs"
        assert not (root / "index" / "ragline.sqlite").exists()
        # before any ingest the collection is empty for both workers
        for client in (one, two):
            empty = client.post("/collections/docs/search", headers=headers,
                                json={"query": "Eiffel"})
            assert empty.status_code == 409 and "ingest" in empty.json()["error"]["message"]

        _ingested(one, headers, "docs")
        assert not (root / "index" / "ragline.sqlite").exists()  # the rows are in PostgreSQL
        with _connect(pg_dsn) as conn:
            count = conn.execute(f"SELECT count(*) FROM {base}_docs.documents").fetchone()[0]
        assert count == 2
        for client in (one, two):  # the other worker reads the same schema
            hits = client.post("/collections/docs/search", headers=headers,
                               json={"query": "When was the Eiffel Tower completed?"}
                               ).json()["hits"]
            assert hits and hits[0]["doc_id"] == "uploads/eiffel.md"
            listed = {c["name"]: c for c in client.get(
                "/collections", headers=headers).json()["collections"]}
            assert listed["docs"]["documents"] == 2
        docs = two.get("/collections/docs/documents", headers=headers).json()["documents"]
        assert {d["status"] for d in docs} == {"indexed"}
        answer = two.post("/collections/docs/ask", headers=headers,
                          json={"question": "When was the Eiffel Tower completed?"})
        assert answer.status_code == 200 and "1889" in answer.json()["text"]

        assert two.delete("/collections/docs", headers=headers).json() == {"deleted": "docs"}
        assert _schemas(pg_dsn, base) == set()
        assert not root.exists()
        gone = one.post("/collections/docs/search", headers=headers, json={"query": "Eiffel"})
        assert gone.status_code == 404
        # made again: a new, empty schema, not the old rows
        assert one.post("/collections", json={"name": "docs"}, headers=headers).status_code == 201
        again = two.post("/collections/docs/search", headers=headers, json={"query": "Eiffel"})
        assert again.status_code == 409
        assert one.delete("/collections/docs", headers=headers).status_code == 200


@needs_postgres
def test_two_names_mapping_to_one_schema_are_refused(workers: Workers, pg_dsn: str,
                                                     base: str) -> None:
    with TestClient(workers.app()) as client:
        assert client.post("/collections", json={"name": "my-docs"},
                           headers=workers.headers).status_code == 201
        clash = client.post("/collections", json={"name": "my_docs"}, headers=workers.headers)
        assert clash.status_code == 409
        assert f"{base}_my_docs" in clash.json()["error"]["message"]
        assert [c["name"] for c in client.get(
            "/collections", headers=workers.headers).json()["collections"]] == ["my-docs"]
        assert client.delete("/collections/my-docs", headers=workers.headers).status_code == 200
    assert _schemas(pg_dsn, base) == set()


@needs_postgres
def test_a_collection_made_on_sqlite_stays_on_sqlite(tmp_path: Path, workers: Workers,
                                                     base: str, pg_dsn: str) -> None:
    """Switching the server's [store] to PostgreSQL does not move the collections it has."""
    sqlite_config = tmp_path / "sqlite.toml"
    sqlite_config.write_text("[chunking]\nchunk_tokens = 16\noverlap_tokens = 0\n")
    on_sqlite = workers.settings.model_copy(update={"config": sqlite_config})
    with TestClient(create_app(on_sqlite, embedder=workers.embedder)) as client:
        assert client.post("/collections", json={"name": "old"},
                           headers=workers.headers).status_code == 201
        _ingested(client, workers.headers, "old")
    with TestClient(workers.app()) as client:
        hits = client.post("/collections/old/search", headers=workers.headers,
                           json={"query": "Eiffel"}).json()["hits"]
        assert hits and hits[0]["doc_id"] == "uploads/eiffel.md"
    assert (workers.settings.data_dir / "collections" / "old" / "index" /
            "ragline.sqlite").exists()
    assert _schemas(pg_dsn, base) == set()
