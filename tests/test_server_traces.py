"""Request traces (OpenTelemetry spans in traces.sqlite), `ragline traces`, feedback and online
A/B experiments of `ragline serve`.

The app is built as in tests/test_server.py: a data directory with the `docs` collection, a
scripted model (`ScriptedLLM`) or extractive answers; no test starts the local model or opens
a network connection.
"""

from __future__ import annotations

import json
import sys
import time
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ragline.cli import app as cli_app
from ragline.embed.base import Embedder
from ragline.errors import ConfigError
from ragline.retrieve.rerank import register_reranker
from ragline.server.experiments import Experiment, ExperimentStore, experiment_report
from ragline.server.keys import KeyStore
from ragline.server.traces import SpanRow, TraceStore
from ragline.server.tracing import TRACE_HEADER, Tracing
from ragline.types import Hit
from tests.test_server import DOCS, QUESTION, Service, auth, upload, wait_for_job


class ReversingReranker:
    """A reranker that reverses the retrieved order (and takes a moment)."""

    name = "reverse"
    depth = 10

    def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        time.sleep(0.002)
        return list(reversed(hits))


register_reranker("reverse", lambda settings: ReversingReranker())


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Service:
    svc = Service(tmp_path_factory.mktemp("traced"), embedder, trace_flush_ms=50)
    with TestClient(svc.app()) as client:
        assert client.post("/collections", json={"name": "docs"},
                           headers=auth(svc.admin)).status_code == 201
        reply = upload(client, svc.admin, {n: t.encode() for n, t in DOCS.items()},
                       ingest="true")
        assert wait_for_job(client, reply.json()["job"]["id"], svc.admin)["status"] == "done"
    return svc


@pytest.fixture
def client(service: Service) -> Iterator[TestClient]:
    with TestClient(service.app()) as test_client:
        yield test_client


def key_id(service: Service, key: str) -> str:
    found = KeyStore(service.settings.keys_file()).authenticate(key)
    assert found is not None
    return found.id


def trace_of(client: TestClient, key: str, trace_id: str) -> dict[str, Any]:
    reply = client.get(f"/traces/{trace_id}", headers=auth(key))
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def spans_by_name(tree: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for node in tree:
        found[node["name"]] = node
        found.update(spans_by_name(node["children"]))
    return found


def ask(client: TestClient, key: str, **body: Any) -> Any:
    reply = client.post("/collections/docs/ask", headers=auth(key),
                        json={"question": QUESTION, "mode": "bm25", "k": 2, **body})
    assert reply.status_code == 200, reply.text
    return reply


# ---------------------------------------------------------------- spans


def test_an_extractive_ask_records_its_stage_spans(service: Service,
                                                   client: TestClient) -> None:
    reply = ask(client, service.admin, extractive=True)
    trace_id = reply.headers[TRACE_HEADER]
    assert reply.json()["trace_id"] == trace_id and len(trace_id) == 32
    found = trace_of(client, service.admin, trace_id)
    (root,) = found["spans"]
    assert root["name"] == "ask" and root["parent_id"] is None
    attrs = root["attributes"]
    assert attrs["ragline.collection"] == "docs"
    assert attrs["ragline.key_id"] == key_id(service, service.admin)
    assert len(attrs["ragline.config_hash"]) == 64
    assert attrs["ragline.question"] == QUESTION and "1889" in attrs["ragline.answer"]
    assert attrs["ragline.claims"] >= 1 and attrs["ragline.claims_flagged"] == 0
    assert [c["name"] for c in root["children"]] == ["retrieve", "generate"]
    retrieve, generate = root["children"]
    assert retrieve["attributes"]["ragline.doc_ids"][0] == "uploads/eiffel.md"
    assert generate["attributes"]["ragline.generation"] == "extractive"
    assert 0 < retrieve["duration_s"] <= root["duration_s"]
    assert root["start"] <= retrieve["start"] <= generate["start"] <= root["end"] + 1e-3
    assert found["trace"]["name"] == "ask" and found["trace"]["claims"] >= 1


def test_a_generated_answer_has_generate_and_verify_spans(service: Service,
                                                          client: TestClient) -> None:
    trace_id = ask(client, service.admin).headers[TRACE_HEADER]
    spans = spans_by_name(trace_of(client, service.admin, trace_id)["spans"])
    assert {"ask", "retrieve", "generate", "verify"} <= spans.keys()
    assert spans["generate"]["attributes"]["ragline.model"] == "scripted"
    assert spans["generate"]["attributes"]["ragline.generation"] == "text"
    assert spans["verify"]["attributes"]["ragline.claims"] == 1
    assert spans["verify"]["attributes"]["ragline.verdict.supported"] == 1
    assert spans["generate"]["end"] <= spans["verify"]["start"] + 1e-6


def test_a_streamed_ask_has_its_trace_too(service: Service, client: TestClient) -> None:
    reply = ask(client, service.admin, stream=True)
    trace_id = reply.headers[TRACE_HEADER]
    blocks = reply.text.strip().split("\n\n")
    final = json.loads(blocks[-1].split("\n")[1].removeprefix("data: "))
    assert final["trace_id"] == trace_id
    spans = spans_by_name(trace_of(client, service.admin, trace_id)["spans"])
    assert spans["ask"]["attributes"]["ragline.streamed"] is True
    assert "ragline.cancelled" not in spans["ask"]["attributes"]
    assert {"retrieve", "generate", "verify"} <= spans.keys()


def test_search_verify_and_chat_completions_are_traced(service: Service,
                                                       client: TestClient) -> None:
    search = client.post("/collections/docs/search", headers=auth(service.admin),
                         json={"query": "Eiffel Tower", "k": 2})
    verify = client.post("/collections/docs/verify", headers=auth(service.admin), json={
        "question": QUESTION, "answer": "It was completed in 1925.",
        "citations": [{"sentence": "It was completed in 1925.", "doc_id": "uploads/eiffel.md"}]})
    chat = client.post("/v1/chat/completions", headers=auth(service.admin), json={
        "model": "ragline:docs:extractive", "messages": [{"role": "user", "content": QUESTION}],
        "user": "carol"})
    names = {}
    for reply in (search, verify, chat):
        assert reply.status_code == 200, reply.text
        tree = trace_of(client, service.admin, reply.headers[TRACE_HEADER])["spans"]
        names[tree[0]["name"]] = spans_by_name(tree)
    assert search.json()["trace_id"] == search.headers[TRACE_HEADER]
    assert names["search"]["retrieve"]["attributes"]["ragline.hits"] == 2
    assert names["verify"]["verify"]["attributes"]["ragline.claims_flagged"] == 1
    assert chat.json()["ragline"]["trace_id"] == chat.headers[TRACE_HEADER]
    assert names["chat.completions"]["chat.completions"]["attributes"]["ragline.user"] == "carol"


def test_a_failed_request_is_traced_as_an_error(service: Service, client: TestClient) -> None:
    reply = client.post("/collections/docs/search", headers=auth(service.admin),
                        json={"query": "   "})
    assert reply.status_code == 400
    listed = client.get("/traces", params={"limit": 5}, headers=auth(service.admin)).json()
    failed = [t for t in listed["traces"] if t["status"] == "error"]
    assert failed and failed[0]["name"] == "search"


def test_no_key_text_reaches_the_traces_database(service: Service, client: TestClient) -> None:
    ask(client, service.docs_only, extractive=True)
    client.post("/v1/chat/completions", headers=auth(service.docs_only), json={
        "model": "ragline:docs:extractive", "messages": [{"role": "user", "content": QUESTION}]})
    client.app.state.ragline.tracing.flush()  # type: ignore[attr-defined]
    files = list(service.settings.data_dir.glob("traces.sqlite*"))
    blob = b"".join(p.read_bytes() for p in files)
    assert key_id(service, service.docs_only).encode() in blob
    for key in (service.admin, service.docs_only, service.other):
        assert key.encode() not in blob
        assert key[len("rlk_") + 13:].encode() not in blob  # not even the secret part


def test_otlp_is_used_only_when_configured(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    module = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
    monkeypatch.delitem(sys.modules, module, raising=False)
    plain = Tracing(tmp_path)
    assert plain.otlp is None and module not in sys.modules
    plain.close()

    made: list[dict[str, Any]] = []

    class FakeExporter:
        def __init__(self, **options: Any) -> None:
            made.append(options)

        def export(self, spans: Any) -> Any:
            return None

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 0) -> bool:
            return True

    fake = types.ModuleType(module)
    fake.OTLPSpanExporter = FakeExporter  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module, fake)
    Tracing(tmp_path, otlp="http://collector:4318").close()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4318")
    Tracing(tmp_path).close()
    assert made == [{"endpoint": "http://collector:4318/v1/traces"}, {}]
    monkeypatch.setitem(sys.modules, module, None)  # the otlp extra is not installed
    with pytest.raises(ConfigError, match=r"ragline\[otlp\]"):
        Tracing(tmp_path)


# ---------------------------------------------------------------- the CLI and GET /traces


def test_traces_list_and_show_on_the_command_line(service: Service,
                                                  client: TestClient) -> None:
    trace_id = ask(client, service.admin, extractive=True).headers[TRACE_HEADER]
    client.app.state.ragline.tracing.flush()  # type: ignore[attr-defined]
    data = str(service.settings.data_dir)
    runner = CliRunner()
    listed = runner.invoke(cli_app, ["traces", "list", "--limit", "50", "--data-dir", data,
                                     "--json"])
    assert listed.exit_code == 0, listed.output
    assert trace_id in [t["trace_id"] for t in json.loads(listed.stdout)]
    table = runner.invoke(cli_app, ["traces", "list", "--data-dir", data])
    assert table.exit_code == 0 and trace_id in table.stdout
    shown = runner.invoke(cli_app, ["traces", "show", trace_id[:12], "--data-dir", data])
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[1].startswith("ask ") and " ms" in lines[1]
    assert any(line.lstrip("│ ").startswith(("├─ retrieve", "└─ retrieve")) for line in lines)
    assert any("ragline.config_hash = " in line for line in lines)
    as_json = runner.invoke(cli_app, ["traces", "show", trace_id, "--data-dir", data, "--json"])
    assert json.loads(as_json.stdout)["spans"][0]["children"][0]["name"] == "retrieve"
    missing = runner.invoke(cli_app, ["traces", "show", "f" * 32, "--data-dir", data])
    assert missing.exit_code != 0 and "no trace" in missing.output


def test_a_key_sees_only_its_own_traces_unless_admin(service: Service,
                                                     client: TestClient) -> None:
    mine = ask(client, service.docs_only, extractive=True).headers[TRACE_HEADER]
    admins = ask(client, service.admin, extractive=True).headers[TRACE_HEADER]
    listed = client.get("/traces", params={"limit": 500}, headers=auth(service.docs_only))
    ids = {t["trace_id"] for t in listed.json()["traces"]}
    assert mine in ids and admins not in ids
    assert {t["key_id"] for t in listed.json()["traces"]} == {key_id(service, service.docs_only)}
    assert client.get(f"/traces/{admins}", headers=auth(service.docs_only)).status_code == 403
    assert client.get(f"/traces/{mine}", headers=auth(service.admin)).status_code == 200
    assert client.get("/traces").status_code == 401


# ---------------------------------------------------------------- feedback


def test_feedback_is_tied_to_a_trace(service: Service, client: TestClient) -> None:
    trace_id = ask(client, service.docs_only, extractive=True).headers[TRACE_HEADER]
    given = client.post("/feedback", headers=auth(service.docs_only),
                        json={"trace_id": trace_id, "rating": "down", "comment": "wrong year"})
    assert given.status_code == 201, given.text
    assert given.json()["rating"] == "down" and given.json()["comment"] == "wrong year"
    again = client.post("/feedback", headers=auth(service.docs_only),
                        json={"trace_id": trace_id, "rating": "up"})
    assert again.status_code == 201
    assert trace_of(client, service.admin, trace_id)["trace"]["rating"] == "up"


def test_feedback_errors_are_404_403_and_422(service: Service, client: TestClient) -> None:
    trace_id = ask(client, service.admin, extractive=True).headers[TRACE_HEADER]
    unknown = client.post("/feedback", headers=auth(service.admin),
                          json={"trace_id": "0" * 32, "rating": "up"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "trace_not_found"
    other = client.post("/feedback", headers=auth(service.docs_only),
                        json={"trace_id": trace_id, "rating": "up"})
    assert other.status_code == 403
    for body in ({"trace_id": trace_id, "rating": "meh"}, {"trace_id": "nope", "rating": "up"},
                 {"rating": "up"}, {"trace_id": trace_id, "rating": "up", "extra": 1}):
        reply = client.post("/feedback", headers=auth(service.admin), json=body)
        assert reply.status_code == 422, body
    assert client.post("/feedback", json={"trace_id": trace_id, "rating": "up"}).status_code \
        == 401


# ---------------------------------------------------------------- experiments


def make_experiment(share: float = 0.5, name: str = "exp") -> Experiment:
    return Experiment(name, "docs", share, {"search": {"mode": "bm25"}},
                      {"search": {"mode": "dense"}}, "a.toml", "b.toml", 0.0)


def test_the_split_is_sticky_and_near_its_share() -> None:
    experiment = make_experiment(share=0.3)
    arms = [experiment.arm_for(f"user:{i}") for i in range(5000)]
    assert arms.count("b") / len(arms) == pytest.approx(0.3, abs=0.02)
    assert all(experiment.arm_for(f"user:{i}") == arms[i] for i in range(200))
    other = make_experiment(share=0.3, name="exp2")
    agreement = np.mean([other.arm_for(f"user:{i}") == arms[i] for i in range(5000)])
    assert agreement < 0.7  # each experiment splits users its own way


def test_an_arm_may_set_only_search_and_llm(tmp_path: Path) -> None:
    store = ExperimentStore(tmp_path / "experiments.sqlite")
    (tmp_path / "a.toml").write_text('[search]\nmode = "bm25"\n')
    (tmp_path / "b.toml").write_text('[chunking]\nchunk_tokens = 64\n')
    with pytest.raises(ConfigError, match=r"\[search\] and \[llm\] only"):
        store.create("e", "docs", tmp_path / "a.toml", tmp_path / "b.toml")
    with pytest.raises(ConfigError, match="would not differ"):
        store.create("e", "docs", tmp_path / "a.toml", tmp_path / "a.toml")
    (tmp_path / "b.toml").write_text('[search]\nmode = "dense"\n')
    store.create("e", "docs", tmp_path / "a.toml", tmp_path / "b.toml")
    with pytest.raises(ConfigError, match="already runs experiment 'e'"):
        store.create("f", "docs", tmp_path / "a.toml", tmp_path / "b.toml")


def test_an_experiment_routes_sticky_users_and_records_the_arm(service: Service,
                                                               tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('name = "bm25"\n[search]\nmode = "bm25"\n')
    (tmp_path / "b.toml").write_text('[search]\nmode = "hybrid"\nreranker = "reverse"\n')
    data = str(service.settings.data_dir)
    runner = CliRunner()
    made = runner.invoke(cli_app, ["experiments", "create", "sticky", "--collection", "docs",
                                   "--a", str(tmp_path / "a.toml"), "--b",
                                   str(tmp_path / "b.toml"), "--share", "0.5",
                                   "--data-dir", data])
    assert made.exit_code == 0, made.output
    try:
        with TestClient(service.app(rate_per_second=1000.0, burst=1000)) as client:
            seen: dict[str, set[str]] = {}
            hashes: dict[str, set[str]] = {}
            for user in [f"u{i}" for i in range(8)] * 2:
                reply = client.post("/collections/docs/ask", headers=auth(service.admin),
                                    json={"question": QUESTION, "extractive": True,
                                          "user": user})
                assert reply.status_code == 200, reply.text
                root = trace_of(client, service.admin, reply.json()["trace_id"])["spans"][0]
                arm = root["attributes"]["ragline.arm"]
                seen.setdefault(user, set()).add(arm)
                hashes.setdefault(arm, set()).add(root["attributes"]["ragline.config_hash"])
                if arm == "b":  # arm B's reranker is timed under the retrieve span
                    retrieve = root["children"][0]
                    assert retrieve["children"][0]["name"] == "rerank"
                    assert retrieve["children"][0]["attributes"]["ragline.reranker"] == "reverse"
            assert all(len(arms) == 1 for arms in seen.values())  # sticky
            assert set(hashes) == {"a", "b"} and len(hashes["a"] | hashes["b"]) == 2
            header = client.post("/collections/docs/ask", headers={
                **auth(service.admin), "X-Ragline-User": "u3"},
                json={"question": QUESTION, "extractive": True})
            root = trace_of(client, service.admin, header.json()["trace_id"])["spans"][0]
            assert {root["attributes"]["ragline.arm"]} == seen["u3"]
        report = runner.invoke(cli_app, ["experiments", "report", "sticky", "--data-dir", data,
                                         "--json"])
        assert report.exit_code == 0, report.output
        arms = json.loads(report.stdout)["arms"]
        assert arms["a"]["answers"] + arms["b"]["answers"] == 17
        text = runner.invoke(cli_app, ["experiments", "report", "sticky", "--data-dir", data])
        assert text.exit_code == 0 and "feedback items" in text.stdout
    finally:
        runner.invoke(cli_app, ["experiments", "stop", "sticky", "--data-dir", data])


def synthetic_traces(store: TraceStore, arm: str, n: int, up: float, flagged: float,
                     latency: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        trace_id = f"{seed:04x}{i:028x}"
        duration = int(rng.normal(latency, 0.05 * latency) * 1e9)
        rows.append(SpanRow(trace_id, f"{i:016x}", None, "ask", 10**18, 10**18 + duration, "ok",
                            {"ragline.key_id": "k", "ragline.collection": "docs",
                             "ragline.experiment": "synthetic", "ragline.arm": arm,
                             "ragline.claims": 4,
                             "ragline.claims_flagged": int(rng.binomial(4, flagged)),
                             "ragline.cost_usd": 0.001}))
    store.write(rows)
    for row in rows:
        store.add_feedback(row.trace_id, "k", "up" if rng.random() < up else "down", None)


def test_the_report_finds_a_known_difference_and_not_a_missing_one(tmp_path: Path) -> None:
    traces = TraceStore(tmp_path / "traces.sqlite")
    synthetic_traces(traces, "a", 300, up=0.5, flagged=0.2, latency=1.0, seed=1)
    synthetic_traces(traces, "b", 300, up=0.75, flagged=0.2, latency=1.0, seed=2)
    report = experiment_report(make_experiment(name="synthetic"), traces)
    assert report["arms"]["a"]["feedback"] == 300 and report["arms"]["b"]["answers"] == 300
    up = report["metrics"]["thumbs_up"]
    assert up["diff"] == pytest.approx(up["mean_b"] - up["mean_a"])
    assert 0.15 < up["diff"] < 0.35 and up["ci_low"] > 0 and up["p_holm"] < 0.01
    assert up["verdict"] == "better" and up["mde"] < up["diff"]
    for metric in ("flag_rate", "latency_s"):
        assert report["metrics"][metric]["verdict"] == "no detectable difference", metric
    cost = report["metrics"]["cost_usd"]
    assert cost["diff"] == 0 and cost["verdict"] == "no detectable difference"


def test_the_report_says_when_there_is_not_enough_data(tmp_path: Path) -> None:
    traces = TraceStore(tmp_path / "traces.sqlite")
    synthetic_traces(traces, "a", 1, up=1.0, flagged=0.0, latency=1.0, seed=3)
    report = experiment_report(make_experiment(name="synthetic"), traces)
    assert report["metrics"]["thumbs_up"]["verdict"] == "not enough data"
    assert report["metrics"]["thumbs_up"]["n_a"] == 1
    assert report["metrics"]["thumbs_up"]["n_b"] == 0
