"""schemathesis against the service's `/openapi.json`: every operation, generated valid and
invalid requests, and no answer is a 500 (`not_a_server_error`).

The app is the one of tests/test_server.py (a `docs` collection with two notes, the scripted
model, so no model is started), reached in-process over schemathesis' ASGI transport with an
admin key that has room for the whole run under its rate limit. Path parameters are steered
towards names that exist (`docs`, an uploaded note, a real trace and run), so the handlers'
insides are reached and not only their 404s (the test checks that they were). Each 500 it
found is fixed, with a regression test beside the endpoint's other tests. Bounded: a dozen
valid and a dozen invalid requests per operation, well under a minute on two cores.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ragline.embed.base import Embedder
from ragline.server.keys import KeyStore
from tests.test_server import DOCS, QUESTION, Service, auth, upload, wait_for_job
from tests.test_server_ui import record_ledger, record_run

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed "
                                   "(the `dev` extra)")
# hypothesis comes with schemathesis
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

MAX_EXAMPLES = 12


class Fuzzed:
    """The service, an admin key for the fuzzer and the real names it steers towards."""

    def __init__(self, service: Service, app: Any) -> None:
        self.service, self.app = service, app
        self.key = KeyStore(service.settings.keys_file()).create(
            ["*"], name="fuzz", rate=10_000, burst=10_000, concurrency=64)[1]
        self.names: dict[str, list[Any]] = {}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Fuzzed]:
    from schemathesis.python.asgi import shutdown_lifespans

    svc = Service(tmp_path_factory.mktemp("server-fuzz"), embedder)
    with TestClient(svc.app()) as client:
        for name in ("docs", "scratch"):
            assert client.post("/collections", json={"name": name},
                               headers=auth(svc.admin)).status_code == 201
        files = {n: t.encode() for n, t in DOCS.items()}
        files["spare.md"] = b"# Spare\n\nA note the fuzzer may delete.\n"
        reply = upload(client, svc.admin, files, ingest="true")
        job = reply.json()["job"]["id"]
        assert wait_for_job(client, job, svc.admin)["status"] == "done"
        asked = client.post("/collections/docs/ask", headers=auth(svc.admin),
                            json={"question": QUESTION, "extractive": True})
        trace_id = asked.json()["trace_id"]
    found = Fuzzed(svc, svc.app())
    found.names = {"name": ["docs", "docs", "scratch"], "document": ["spare.md"],
                   "job_id": [job], "trace_id": [trace_id]}
    yield found
    shutdown_lifespans()


# Real values the fuzzer may put in place of a generated one, by where they go and their name.
STEERED = ("path_parameters", "query", "body")


def steering(operation: Any, names: dict[str, dict[str, list[Any]]]) -> Any:
    """For each steerable field of the operation: None (keep the generated value) or a real
    value. A DELETE of a collection only ever names `scratch`, so `docs` stays."""
    deleting = operation.method.upper() == "DELETE" and operation.path == "/collections/{name}"
    declared = {"path_parameters": {p.name for p in operation.path_parameters},
                "query": {p.name for p in operation.query}}
    choices = {}
    for where in STEERED:
        for key, real in names[where].items():
            if where in declared and key not in declared[where]:
                continue
            if deleting and key == "name":
                real = ["scratch"]
            choices[f"{where}.{key}"] = st.sampled_from([None, *real])
    return st.fixed_dictionaries(choices)


def steer(case: Any, chosen: dict[str, Any]) -> None:
    """Put the chosen real values in: path and query parameters always, body fields only in a
    body that has them (a negative case's body may be anything)."""
    for slot, value in chosen.items():
        where, key = slot.split(".", 1)
        if value is None:
            continue
        if where != "body" and getattr(case, where) is None:
            setattr(case, where, {})
        target = getattr(case, where)
        if isinstance(target, dict) and (where != "body" or key in target):
            target[key] = value


@pytest.mark.integration
def test_no_operation_answers_500(fuzzed: Fuzzed) -> None:
    """Every operation in the served schema, valid and invalid requests: none is a 500."""
    from schemathesis import GenerationMode

    run_id = record_run()
    record_ledger()
    names = {"path_parameters": {**fuzzed.names, "run_id": [run_id, run_id[-4:]]},
             "query": {"doc_id": ["uploads/eiffel.md"], "start": [0], "end": [10],
                       "a": [run_id], "b": [run_id[-4:]], "config_a": ["bm25"],
                       "config_b": ["hybrid"], "since": ["0001-01-01T00:00:00", "2025-01-01"]},
             "body": {"model": ["ragline:docs", "ragline:docs:extractive"],
                      "messages": [[{"role": "user", "content": QUESTION}]],
                      "trace_id": fuzzed.names["trace_id"]}}
    config = schemathesis.Config.from_dict({"generation": {"max-examples": MAX_EXAMPLES}})
    loaded = schemathesis.openapi.from_asgi("/openapi.json", fuzzed.app, config=config,
                                            headers=auth(fuzzed.key))
    operations = [result.ok() for result in loaded.get_all_operations()]
    assert len(operations) >= 20, [op.label for op in operations]
    failures: list[str] = []
    answered: dict[str, set[int]] = {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz_one(fuzzed, operation, mode, names, failures, answered)
    assert not failures, "\n\n".join(failures)
    # the steering reaches the handlers' insides, not only their 404s
    reached = {label for label, statuses in answered.items() if any(s < 300 for s in statuses)}
    assert {"POST /collections/{name}/search", "POST /collections/{name}/ask",
            "POST /v1/chat/completions", "POST /v1/embeddings", "GET /traces/{trace_id}",
            "GET /collections/{name}/source", "GET /runs/compare", "GET /ledger/summary"
            } <= reached, answered


def fuzz_one(fuzzed: Fuzzed, operation: Any, mode: Any, names: dict[str, Any],
             failures: list[str], answered: dict[str, set[int]]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode), chosen=steering(operation, names))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    def run(case: Any, chosen: dict[str, Any]) -> None:
        steer(case, chosen)
        try:
            reply = case.call_and_validate(headers=auth(fuzzed.key), checks=[not_a_server_error])
        except Exception as exc:  # every failure is collected, then reported at once
            failures.append(f"{operation.label} ({mode.value}): {exc}\n{case.as_curl_command()}")
        else:
            answered.setdefault(operation.label, set()).add(reply.status_code)

    try:
        run()
    except Unsatisfiable:
        # an operation without parameters or body has no invalid request to make
        assert mode.value == "negative", operation.label
