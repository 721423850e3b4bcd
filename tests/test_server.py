"""`ragline serve` (ragline.server): collections, uploads, ingest jobs, search, ask (JSON and
SSE), verify, keys and limits, metrics, and the OpenAI-compatible /v1 endpoints.

Most tests use FastAPI's TestClient; the OpenAI SDK and the client-disconnect tests run against
a real uvicorn server on 127.0.0.1. Answers come from a scripted model (`ScriptedLLM`: real
stream events, no server) or are extractive, so no test starts the local model.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import uvicorn
from fastapi.testclient import TestClient

from ragline.embed.base import Embedder
from ragline.llm import StreamEventKind
from ragline.llm.types import StreamEvent
from ragline.server import ServerSettings, create_app
from ragline.server.keys import KeyStore
from ragline.server.limits import InferencePool, RateLimiter
from ragline.server.uploads import safe_name
from tests.pdfs import make_pdf

DOCS = {
    "eiffel.md": "# Eiffel Tower\n\nThe Eiffel Tower was completed in 1889 in Paris. It is 330 "
                 "metres tall and was designed by the company of Gustave Eiffel.\n",
    "python.md": "# Python\n\nPython is a programming language created by Guido van Rossum. "
                 "It was first released in 1991.\n",
}
QUESTION = "When was the Eiffel Tower completed?"
CITED = "The Eiffel Tower was completed in 1889 [1]."


class ScriptedLLM:
    """Stands in for `ragline.llm.LLM` in text mode: streams `text` word by word (every
    `delay` seconds) as real `StreamEvent`s, and records how far it got and whether its stream
    was closed (the pipeline stopped generating)."""

    provider_name = "local"  # the small-model family: plain text with [n] markers
    model = "scripted"

    def __init__(self) -> None:
        self.text, self.delay = CITED, 0.0
        self.sent = 0
        self.closed = threading.Event()

    def stream(self, messages: Any, **options: Any) -> Iterator[StreamEvent]:
        self.sent = 0
        self.closed.clear()
        try:
            for i, word in enumerate(self.text.split(" ")):
                time.sleep(self.delay)
                self.sent += 1
                yield StreamEvent(StreamEventKind.TEXT, text=word if i == 0 else " " + word)
            yield StreamEvent(StreamEventKind.DONE)
        finally:
            self.closed.set()

    def complete(self, messages: Any, **options: Any) -> Any:
        """A follow-up's rewrite (the only non-streamed call an answer makes): the question."""
        return types.SimpleNamespace(text=QUESTION)

    def close(self) -> None:
        pass


class Service:
    """A data directory with a TestClient app over it, and keys of three kinds."""

    def __init__(self, root: Path, embedder: Embedder, **settings: Any) -> None:
        config = root / "ragline.toml"
        config.write_text("[chunking]\nchunk_tokens = 16\noverlap_tokens = 0\n")
        self.settings = ServerSettings(data_dir=root / "data", keys_path=root / "keys.sqlite",
                                       config=config, **settings)
        keys = KeyStore(self.settings.keys_file())
        self.admin = keys.create(["*"], name="admin")[1]
        self.docs_only = keys.create(["docs"], name="docs-only")[1]
        self.other = keys.create(["other"], name="other")[1]
        self.llm = ScriptedLLM()
        self.embedder = embedder

    def app(self, **overrides: Any) -> Any:
        settings = self.settings.model_copy(update=overrides)
        return create_app(settings, llm=self.llm, embedder=self.embedder)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def wait_for_job(client: TestClient, job_id: str, key: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}", headers=auth(key)).json()
        if job["status"] not in ("queued", "running"):
            return dict(job)
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def upload(client: TestClient, key: str, files: dict[str, bytes], collection: str = "docs",
           **params: Any) -> httpx.Response:
    return client.post(f"/collections/{collection}/documents", headers=auth(key), params=params,
                       files=[("files", (name, data)) for name, data in files.items()])


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Service:
    """The `docs` collection with two notes and a five-page PDF, ingested through the API."""
    svc = Service(tmp_path_factory.mktemp("server"), embedder)
    pages = [f"Page {n} of the annual report covers topic number {n}." for n in range(1, 6)]
    pages[3] = "Total current assets were 16,525 million dollars in fiscal 2019."
    with TestClient(svc.app()) as client:
        assert client.post("/collections", json={"name": "docs"},
                           headers=auth(svc.admin)).status_code == 201
        files = {name: text.encode() for name, text in DOCS.items()}
        files["report.pdf"] = make_pdf(pages, title="Annual report")
        reply = upload(client, svc.admin, files, ingest="true")
        assert reply.status_code == 201, reply.text
        job = wait_for_job(client, reply.json()["job"]["id"], svc.admin)
        assert job["status"] == "done", job
    return svc


@pytest.fixture
def client(service: Service) -> Iterator[TestClient]:
    service.llm.text, service.llm.delay = CITED, 0.0
    with TestClient(service.app()) as test_client:
        yield test_client


# ---------------------------------------------------------------- health, keys, limits


def test_health_probes_need_no_key(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


@pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Bearer rlk_000000000000_nope",
                                    "Bearer not-a-key-at-all"])
def test_a_missing_or_invalid_key_is_401(client: TestClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    for method, path in (("GET", "/collections"), ("GET", "/metrics"), ("GET", "/v1/models"),
                         ("POST", "/collections/docs/search"), ("GET", "/openapi.json")):
        reply = client.request(method, path, headers=headers, json={"query": "x"})
        assert reply.status_code == 401, (path, reply.text)
        assert reply.headers["www-authenticate"] == "Bearer"
        assert reply.json()["error"]["type"] == "authentication_error"


def test_a_revoked_key_is_refused(service: Service, client: TestClient) -> None:
    keys = KeyStore(service.settings.keys_file())
    record, key = keys.create(["docs"])
    assert client.get("/collections", headers=auth(key)).status_code == 200
    keys.revoke(record.id)
    reply = client.get("/collections", headers=auth(key))
    assert reply.status_code == 401 and "revoked" in reply.json()["error"]["message"]


def test_keys_are_stored_hashed(service: Service) -> None:
    import hashlib
    import sqlite3

    with sqlite3.connect(service.settings.keys_file()) as conn:
        rows = conn.execute("SELECT * FROM keys").fetchall()
    stored = "\n".join(str(value) for row in rows for value in row)
    for key in (service.admin, service.docs_only, service.other):
        secret = key.split("_", 2)[2]  # rlk_<id>_<secret>; the secret may itself hold "_"
        assert key not in stored and secret not in stored
        assert hashlib.sha256(key.encode()).hexdigest() in stored


def test_a_key_without_access_to_a_collection_is_403(service: Service,
                                                     client: TestClient) -> None:
    other = auth(service.other)
    reply = client.post("/collections/docs/search", headers=other, json={"query": "Eiffel"})
    assert reply.status_code == 403 and "'docs'" in reply.json()["error"]["message"]
    assert client.get("/collections", headers=other).json() == {"collections": []}
    assert client.post("/collections", json={"name": "docs2"}, headers=other).status_code == 403
    models = client.get("/v1/models", headers=other).json()["data"]
    assert models == []
    chat = client.post("/v1/chat/completions", headers=other, json={
        "model": "ragline:docs", "messages": [{"role": "user", "content": QUESTION}]})
    assert chat.status_code == 403
    listed = client.get("/collections", headers=auth(service.docs_only)).json()["collections"]
    assert [c["name"] for c in listed] == ["docs"]


def test_over_the_rate_limit_is_429_with_retry_after(service: Service,
                                                     client: TestClient) -> None:
    _, key = KeyStore(service.settings.keys_file()).create(["docs"], rate=0.2, burst=2)
    assert [client.get("/collections", headers=auth(key)).status_code for _ in range(2)] == \
        [200, 200]
    reply = client.get("/collections", headers=auth(key))
    assert reply.status_code == 429
    assert int(reply.headers["retry-after"]) >= 1
    assert reply.json()["error"]["type"] == "rate_limit_error"


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert limiter.take("k", rate=2.0, burst=1) == 0.0
    assert limiter.take("k", rate=2.0, burst=1) == pytest.approx(0.5)
    now[0] += 0.5
    assert limiter.take("k", rate=2.0, burst=1) == 0.0


def test_over_the_concurrency_limit_is_429(service: Service, client: TestClient) -> None:
    _, key = KeyStore(service.settings.keys_file()).create(["docs"], concurrency=1)
    record = KeyStore(service.settings.keys_file()).authenticate(key)
    assert record is not None
    state = client.app.state.ragline  # type: ignore[attr-defined]
    # a request of this key still in flight
    held = state.limits.admit(record.id, rate=10, burst=10, concurrency=1)
    reply = client.get("/collections", headers=auth(key))
    assert reply.status_code == 429 and reply.headers["retry-after"] == "1"
    assert "concurrency" in reply.json()["error"]["message"]
    held.release()
    assert client.get("/collections", headers=auth(key)).status_code == 200


def test_a_full_inference_queue_answers_503_at_once(service: Service) -> None:
    with TestClient(service.app(inference_workers=1, inference_queue=0)) as client:
        state = client.app.state.ragline  # type: ignore[attr-defined]
        slot = state.pool.reserve()  # the one model thread is taken
        started = time.monotonic()
        reply = client.post("/collections/docs/search", headers=auth(service.admin),
                            json={"query": "Eiffel"})
        assert reply.status_code == 503 and reply.headers["retry-after"] == "1"
        assert time.monotonic() - started < 5
        stream = client.post("/collections/docs/ask", headers=auth(service.admin),
                             json={"question": QUESTION, "stream": True})
        assert stream.status_code == 503
        slot.release()
        assert client.post("/collections/docs/search", headers=auth(service.admin),
                           json={"query": "Eiffel"}).status_code == 200


def test_the_pool_frees_a_slot_when_its_work_ends() -> None:
    import asyncio

    pool = InferencePool(workers=1, queue=1)

    async def main() -> list[int]:
        results = await asyncio.gather(pool.run(lambda: 1), pool.run(lambda: 2))
        return list(results)

    assert asyncio.run(main()) == [1, 2]
    assert pool.admitted == 0
    pool.shutdown()


def test_a_key_never_appears_in_a_log_line(service: Service, client: TestClient,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client.get("/collections", headers=auth(service.admin))
    client.post("/collections/docs/search", headers=auth(service.admin), json={"query": "x"})
    client.post("/collections/docs/search", headers=auth(service.other), json={"query": "x"})
    client.get("/collections", headers=auth(service.admin + "x"))
    logged = "\n".join(r.getMessage() + str(r.args) for r in caplog.records)
    for key in (service.admin, service.other):
        assert key not in logged and key.split("_", 2)[2] not in logged


# ---------------------------------------------------------------- bad input


def test_malformed_json_is_422_naming_the_field(service: Service, client: TestClient) -> None:
    reply = client.post("/collections/docs/search", headers=auth(service.admin), json={"k": 3})
    assert reply.status_code == 422
    body = reply.json()
    assert any(e["loc"][-1] == "query" for e in body["detail"])
    assert "query" in body["error"]["message"]
    reply = client.post("/collections/docs/search", headers={**auth(service.admin),
                        "Content-Type": "application/json"}, content=b'{"query": "x",')
    assert reply.status_code == 422
    reply = client.post("/collections/docs/ask", headers=auth(service.admin),
                        json={"question": QUESTION, "k": "many"})
    assert reply.status_code == 422 and "k" in reply.json()["error"]["message"]


def test_an_oversized_upload_is_413(service: Service) -> None:
    with TestClient(service.app(max_upload_bytes=2000, max_body_bytes=500)) as client:
        reply = upload(client, service.admin, {"big.txt": b"word " * 1000})
        assert reply.status_code == 413
        assert "2,000 bytes" in reply.json()["error"]["message"]
        body = client.post("/collections/docs/search", headers=auth(service.admin),
                           json={"query": "x" * 1000})
        assert body.status_code == 413 and "500 bytes" in body.json()["error"]["message"]
    uploads = service.settings.data_dir / "collections" / "docs" / "uploads"
    assert not (uploads / "big.txt").exists()


def test_a_chunked_upload_over_the_limit_is_413(service: Service) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b"x" * 1000

    with TestClient(service.app(max_upload_bytes=2000)) as client:
        reply = client.post("/collections/docs/documents", headers={
            **auth(service.admin), "Content-Type": "multipart/form-data; boundary=b"},
            content=chunks())
        assert reply.status_code == 413


@pytest.mark.parametrize(("name", "data", "reason"), [
    ("tool.exe", b"MZ\x90\x00", "'.exe'"),
    ("README", b"plain words", "without a suffix"),
    ("fake.pdf", b"just text, not a PDF", "%PDF-"),
    ("fake.docx", b"not a zip", "ZIP"),
    ("binary.txt", b"\x00\x01\x02\x03" * 100, "binary"),
])
def test_an_unsupported_type_is_415_with_the_reason(service: Service, client: TestClient,
                                                    name: str, data: bytes, reason: str) -> None:
    reply = upload(client, service.admin, {name: data})
    assert reply.status_code == 415
    message = reply.json()["error"]["message"]
    assert reason in message and name in message


def test_path_traversal_in_a_file_name_is_neutralised(service: Service,
                                                      client: TestClient) -> None:
    data_dir = service.settings.data_dir
    names = ["../../escaped.md", "..\\..\\win.md", "/etc/abs.md", ".hidden.md",
             "a/../../b.md"]
    reply = upload(client, service.admin,
                   {n: b"# Note\n\nA harmless note.\n" for n in names}, collection="docs")
    assert reply.status_code == 201, reply.text
    stored = [d["name"] for d in reply.json()["documents"]]
    assert stored == ["escaped.md", "win.md", "abs.md", "hidden.md", "b.md"]
    assert all(d["renamed_from"] for d in reply.json()["documents"])
    uploads = data_dir / "collections" / "docs" / "uploads"
    for name in stored:
        assert (uploads / name).is_file()
        client.delete(f"/collections/docs/documents/{name}", headers=auth(service.admin))
    assert not list(data_dir.parent.glob("*.md")) and not (data_dir / "escaped.md").exists()
    assert safe_name("..") == "upload" and safe_name("x\x00y.md") == "x_y.md"


def test_unknown_collection_and_model_are_404(service: Service, client: TestClient) -> None:
    reply = client.post("/collections/nope/search", headers=auth(service.admin),
                        json={"query": "x"})
    assert reply.status_code == 404 and "POST /collections" in reply.json()["error"]["message"]
    reply = client.post("/v1/chat/completions", headers=auth(service.admin), json={
        "model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 404 and "ragline:COLLECTION" in reply.json()["error"]["message"]
    assert client.get("/nowhere", headers=auth(service.admin)).json()["error"]["code"] == \
        "not_found"


def test_a_chat_request_ragline_cannot_answer_is_a_clear_error(service: Service,
                                                              client: TestClient) -> None:
    headers = auth(service.admin)
    too_long = client.post("/v1/chat/completions", headers=headers, json={
        "model": "ragline:docs", "messages": [{"role": "user", "content": "why " * 2000}]})
    assert too_long.status_code == 422 and "question" in too_long.json()["error"]["message"]
    no_question = client.post("/v1/chat/completions", headers=headers, json={
        "model": "ragline:docs", "messages": [{"role": "assistant", "content": "Hello"}]})
    assert no_question.status_code == 400 and "user message" in no_question.text
    no_messages = client.post("/v1/chat/completions", headers=headers,
                              json={"model": "ragline:docs", "messages": []})
    assert no_messages.status_code == 422 and "messages" in no_messages.json()["error"]["message"]


def test_chat_follow_ups_use_the_conversation(service: Service, client: TestClient) -> None:
    reply = client.post("/v1/chat/completions", headers=auth(service.admin), json={
        "model": "ragline:docs:extractive", "messages": [
            {"role": "user", "content": "Tell me about the Eiffel Tower."},
            {"role": "assistant", "content": "It is a tower in Paris."},
            {"role": "user", "content": [{"type": "text", "text": "When was it completed?"}]}]})
    assert reply.status_code == 200, reply.text
    assert "1889" in reply.json()["choices"][0]["message"]["content"]


def test_bad_collection_names_are_refused(service: Service, client: TestClient) -> None:
    for name in ("../x", "UPPER", "", "a" * 65):
        reply = client.post("/collections", json={"name": name}, headers=auth(service.admin))
        assert reply.status_code == 422, name


# ---------------------------------------------------------------- collections and documents


def test_documents_list_shows_what_is_indexed(service: Service, client: TestClient) -> None:
    listed = client.get("/collections/docs/documents", headers=auth(service.admin)).json()
    by_name = {d["name"]: d for d in listed["documents"]}
    assert {"eiffel.md", "python.md", "report.pdf"} <= by_name.keys()
    assert by_name["eiffel.md"]["status"] == "indexed"
    assert by_name["eiffel.md"]["doc_ids"] == ["uploads/eiffel.md"]


def test_ingest_job_reports_progress_and_a_summary(service: Service, client: TestClient) -> None:
    reply = client.post("/collections", json={"name": "jobs"}, headers=auth(service.admin))
    assert reply.status_code == 201
    upload(client, service.admin, {"one.md": b"# One\n\nThe first note.\n",
                                   "two.md": b"# Two\n\nThe second note.\n"}, collection="jobs")
    reply = client.post("/collections/jobs/ingest", headers=auth(service.admin))
    assert reply.status_code == 202 and reply.headers["location"].startswith("/jobs/")
    job = wait_for_job(client, reply.json()["id"], service.admin)
    assert job["status"] == "done"
    assert job["progress"]["files_total"] == 2 and job["progress"]["files_done"] == 2
    assert job["summary"]["added"] == 2
    assert client.get(f"/jobs/{job['id']}", headers=auth(service.other)).status_code == 403
    assert client.get("/jobs/nope", headers=auth(service.admin)).status_code == 404
    # delete one document: the job started by the delete prunes it from the index
    reply = client.delete("/collections/jobs/documents/one.md", headers=auth(service.admin))
    assert reply.status_code == 200
    job = wait_for_job(client, reply.json()["job"]["id"], service.admin)
    assert job["summary"]["removed"] == 1
    hits = client.post("/collections/jobs/search", headers=auth(service.admin),
                       json={"query": "first note", "mode": "bm25"}).json()["hits"]
    assert all(h["doc_id"] != "uploads/one.md" for h in hits)
    assert client.delete("/collections/jobs", headers=auth(service.admin)).json() == \
        {"deleted": "jobs"}
    assert client.get("/collections/jobs/documents",
                      headers=auth(service.admin)).status_code == 404


def test_a_failed_file_is_reported_not_fatal(service: Service, client: TestClient) -> None:
    client.post("/collections", json={"name": "broken"}, headers=auth(service.admin))
    reply = upload(client, service.admin, {"bad.pdf": b"%PDF-1.4 but nothing else",
                                           "ok.md": b"# Ok\n\nFine.\n"},
                   collection="broken", ingest="true")
    job = wait_for_job(client, reply.json()["job"]["id"], service.admin)
    assert job["status"] == "done" and job["summary"]["failed"] == 1
    docs = {d["name"]: d for d in client.get(
        "/collections/broken/documents", headers=auth(service.admin)).json()["documents"]}
    assert docs["bad.pdf"]["status"] == "failed" and docs["bad.pdf"]["reason"] == "corrupt"
    assert docs["ok.md"]["status"] == "indexed"
    client.delete("/collections/broken", headers=auth(service.admin))


def test_an_empty_collection_says_to_upload_and_ingest(service: Service,
                                                       client: TestClient) -> None:
    client.post("/collections", json={"name": "empty"}, headers=auth(service.admin))
    reply = client.post("/collections/empty/ask", headers=auth(service.admin),
                        json={"question": QUESTION})
    assert reply.status_code == 409 and "ingest" in reply.json()["error"]["message"]
    client.delete("/collections/empty", headers=auth(service.admin))


# ---------------------------------------------------------------- search, ask, verify


def test_search_returns_citable_spans_with_pages(service: Service, client: TestClient) -> None:
    reply = client.post("/collections/docs/search", headers=auth(service.admin),
                        json={"query": "total current assets fiscal 2019", "k": 3})
    assert reply.status_code == 200
    top = reply.json()["hits"][0]
    assert top["doc_id"] == "uploads/report.pdf" and top["page"] == 4
    assert top["citation"] == {"doc_id": "uploads/report.pdf", "start": top["start"],
                               "end": top["end"], "page": 4, "pages": [4],
                               "label": "uploads/report.pdf p. 4"}
    assert "path" not in top  # the server's own file paths stay on the server
    assert top["stages"]["bm25"]["rank"] >= 1


def test_ask_answers_json_with_a_verdict_per_claim(service: Service, client: TestClient) -> None:
    reply = client.post("/collections/docs/ask", headers=auth(service.admin),
                        json={"question": QUESTION, "mode": "bm25", "k": 2})
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert not answer["abstained"]
    assert answer["verdicts"][0]["sentence"].startswith("The Eiffel Tower was completed")
    assert answer["verdicts"][0]["verdict"] in ("supported", "partially_supported")
    (citation,) = answer["citations"]
    assert citation["doc_id"] == "uploads/eiffel.md" and citation["label"] == "uploads/eiffel.md"
    assert all("path" not in s for s in answer["sources"])


def test_ask_streams_sse_deltas_then_the_verdicts(service: Service, client: TestClient) -> None:
    reply = client.post("/collections/docs/ask", headers=auth(service.admin),
                        json={"question": QUESTION, "stream": True, "mode": "bm25", "k": 2})
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = [(block.split("\n")[0].removeprefix("event: "),
               json.loads(block.split("\n")[1].removeprefix("data: ")))
              for block in reply.text.strip().split("\n\n")]
    kinds = [k for k, _ in events]
    assert kinds[-1] == "answer" and kinds.count("delta") > 3
    assert "".join(d["text"] for k, d in events if k == "delta").strip() == CITED
    final = events[-1][1]
    assert [v["verdict"] for v in final["verdicts"]] == ["supported"]


def test_ask_extractive_needs_no_model(service: Service, client: TestClient) -> None:
    reply = client.post("/collections/docs/ask", headers=auth(service.admin),
                        json={"question": QUESTION, "extractive": True})
    assert reply.status_code == 200
    assert "1889" in reply.json()["text"] and reply.json()["checks"]


def test_verify_checks_any_answer(service: Service, client: TestClient) -> None:
    body = {"question": QUESTION, "answer": "The Eiffel Tower was completed in 1925.",
            "citations": [{"sentence": "The Eiffel Tower was completed in 1925.",
                           "doc_id": "uploads/eiffel.md"}]}
    reply = client.post("/collections/docs/verify", headers=auth(service.admin), json=body)
    assert reply.status_code == 200, reply.text
    report = reply.json()
    assert report["ok"] is False and report["flagged"] == 1
    body["citations"][0]["doc_id"] = None
    reply = client.post("/collections/docs/verify", headers=auth(service.admin), json=body)
    assert reply.status_code == 422


def test_metrics_count_requests_by_route(service: Service, client: TestClient) -> None:
    client.post("/collections/docs/search", headers=auth(service.admin), json={"query": "Eiffel"})
    client.post("/collections/docs/ask", headers=auth(service.admin),
                json={"question": QUESTION, "mode": "bm25", "k": 2})
    text = client.get("/metrics", headers=auth(service.admin)).text
    assert ('ragline_http_requests_total{method="POST",route="/collections/{name}/search",'
            'status="200"} 1.0') in text
    assert 'ragline_http_request_duration_seconds_bucket{le="0.005",method="POST",' \
           'route="/collections/{name}/search"}' in text
    assert 'ragline_answer_claims_total{verdict="supported"}' in text


def test_openapi_schema_lists_the_endpoints(service: Service, client: TestClient) -> None:
    paths = client.get("/openapi.json", headers=auth(service.admin)).json()["paths"]
    assert {"/collections/{name}/ask", "/v1/chat/completions", "/v1/embeddings",
            "/jobs/{job_id}"} <= paths.keys()


# ---------------------------------------------------------------- the CLI


def test_keys_commands_create_list_and_revoke(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ragline.cli import app

    keys = str(tmp_path / "keys.sqlite")
    runner = CliRunner()
    made = runner.invoke(app, ["keys", "create", "--collections", "a,b", "--name", "ci",
                               "--keys", keys])
    assert made.exit_code == 0, made.output
    key = made.stdout.strip().splitlines()[0]
    record = KeyStore(Path(keys)).authenticate(key)
    assert record is not None and record.collections == ("a", "b")
    listed = runner.invoke(app, ["keys", "list", "--json", "--keys", keys])
    assert json.loads(listed.stdout)[0]["name"] == "ci" and key not in listed.stdout
    assert runner.invoke(app, ["keys", "revoke", record.id, "--keys", keys]).exit_code == 0
    assert KeyStore(Path(keys)).authenticate(key) is None
    bad = runner.invoke(app, ["keys", "create", "--collections", "../x", "--keys", keys])
    assert bad.exit_code == 2 and "invalid collection name" in bad.output


def test_serve_and_keys_help_match_the_lazy_listing() -> None:
    from ragline.cli import LAZY_COMMANDS, load_lazy_command

    for name in ("serve", "keys"):
        command = load_lazy_command(name)
        assert (command.help or "").strip().split("\n")[0] == LAZY_COMMANDS[name][3]
    options = {o for p in load_lazy_command("serve").params for o in p.opts}
    assert {"--index", "--config", "--host", "--port", "--workers"} <= options


# ---------------------------------------------------------------- a real server


@pytest.fixture(scope="module")
def live_app(service: Service) -> Any:
    return service.app()


@pytest.fixture(scope="module")
def live(live_app: Any) -> Iterator[str]:
    with serving(live_app) as url:
        yield url


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """`app` under uvicorn on 127.0.0.1 (a free port), in a thread: its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=15)
    sock.close()


@pytest.fixture
def openai_client(service: Service, live: str) -> Any:
    service.llm.text, service.llm.delay = CITED, 0.0
    return openai.OpenAI(base_url=f"{live}/v1", api_key=service.admin, max_retries=0)


@pytest.mark.integration
def test_openai_sdk_lists_the_models(openai_client: Any) -> None:
    ids = [m.id for m in openai_client.models.list()]
    assert "ragline:docs" in ids and "ragline:docs:extractive" in ids


@pytest.mark.integration
def test_openai_sdk_chat_completion_carries_citations_and_verdicts(openai_client: Any) -> None:
    completion = openai_client.chat.completions.create(
        model="ragline:docs", messages=[{"role": "system", "content": "Be brief."},
                                        {"role": "user", "content": QUESTION}])
    assert completion.choices[0].message.content.startswith("The Eiffel Tower was completed")
    assert completion.choices[0].finish_reason == "stop"
    extra = completion.model_extra["ragline"]
    assert extra["verdicts"][0]["verdict"] == "supported"
    assert extra["citations"][0]["doc_id"] == "uploads/eiffel.md"
    extractive = openai_client.chat.completions.create(
        model="ragline:docs:extractive", messages=[{"role": "user", "content": QUESTION}])
    assert "1889" in extractive.choices[0].message.content


@pytest.mark.integration
def test_openai_sdk_streams_chunks_and_done(openai_client: Any) -> None:
    stream = openai_client.chat.completions.create(
        model="ragline:docs", stream=True, messages=[{"role": "user", "content": QUESTION}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.strip() == CITED
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].model_extra["ragline"]["verdicts"][0]["verdict"] == "supported"
    assert len(chunks) > 4


@pytest.mark.integration
def test_openai_sdk_errors_are_typed(service: Service, live: str) -> None:
    bad = openai.OpenAI(base_url=f"{live}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    other = openai.OpenAI(base_url=f"{live}/v1", api_key=service.other, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        other.chat.completions.create(model="ragline:docs",
                                      messages=[{"role": "user", "content": QUESTION}])


@pytest.mark.integration
def test_openai_sdk_embeddings_use_the_collection_embedder(service: Service,
                                                           openai_client: Any) -> None:
    reply = openai_client.embeddings.create(model="ragline:docs", input=["Eiffel Tower", "Python"])
    vectors = np.array([d.embedding for d in reply.data], dtype=np.float32)
    expected = service.embedder.embed(["Eiffel Tower", "Python"])
    assert vectors.shape == expected.shape
    assert np.allclose(vectors, expected, atol=1e-5)
    assert reply.usage.prompt_tokens > 0
    floats = openai_client.embeddings.create(model="ragline:docs", input="Eiffel Tower",
                                             encoding_format="float")
    assert np.allclose(floats.data[0].embedding, expected[0], atol=1e-5)


@pytest.mark.integration
def test_a_client_that_disconnects_mid_stream_stops_generation(service: Service, live: str,
                                                               live_app: Any) -> None:
    llm = service.llm
    llm.text = " ".join(f"Sentence number {n} says something new." for n in range(60))
    llm.delay = 0.02  # 360 words: about 7 s if nobody stops it
    total = len(llm.text.split(" "))
    with httpx.Client(base_url=live, timeout=30) as http:
        with http.stream("POST", "/collections/docs/ask", headers=auth(service.admin),
                         json={"question": QUESTION, "stream": True, "mode": "bm25"}) as reply:
            assert reply.status_code == 200
            for line in reply.iter_lines():
                if line.startswith("data:"):
                    break  # the first piece arrived: hang up
        assert llm.closed.wait(10), "generation went on after the client left"
        assert llm.sent < total
        state = live_app.state.ragline
        deadline = time.monotonic() + 5
        while (state.pool.admitted or state.limits.active()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert state.pool.admitted == 0 and state.limits.active() == 0  # the slots are free
        llm.text, llm.delay = CITED, 0.0
        # the slot is free again and the server keeps serving
        reply = http.post("/collections/docs/ask", headers=auth(service.admin),
                          json={"question": QUESTION, "mode": "bm25", "k": 2})
        assert reply.status_code == 200 and reply.json()["verdicts"]
