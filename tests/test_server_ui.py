"""The web UI (ragline.server.ui): pages, their security headers, the data calls they make, and
one run in a real headless Chromium (Debian's, driven by playwright) against a real uvicorn.

The browser test skips when /usr/bin/chromium or playwright is missing (`make test` installs
both). Answers come from the scripted model of tests/test_server.py, or are extractive; set
RAGLINE_UI_SCREENSHOTS=DIR to keep a screenshot of each page.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ragline.embed.base import Embedder
from ragline.evaluate.registry import QueryResult, RunRegistry
from ragline.server.ui import MAX_SOURCE_CHARS, source_window
from tests.test_server import (
    CITED,
    DOCS,
    QUESTION,
    Service,
    auth,
    serving,
    upload,
    wait_for_job,
)

STATIC = Path(__file__).resolve().parents[1] / "src" / "ragline" / "server" / "static"
TEMPLATES = STATIC.parent / "templates"
PAGES = ("/ui/login", "/ui/chat", "/ui/documents", "/ui/evaluation", "/ui/traces")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
HOSTILE = ("Louvre notes <script>alert(1)</script>\n\n"
           "The Louvre pyramid was completed in 1989 in Paris "
           "<img src=x onerror=\"window.__pwned=1;alert(2)\"> by I. M. Pei.\n")
HOSTILE_QUESTION = "<b>bold</b><img src=y onerror=\"window.__pwned=2\"> When was the Louvre " \
                   "pyramid completed?"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Service:
    """A `docs` collection with the two notes of tests/test_server.py, ingested."""
    svc = Service(tmp_path_factory.mktemp("server-ui"), embedder)
    with TestClient(svc.app()) as client:
        assert client.post("/collections", json={"name": "docs"},
                           headers=auth(svc.admin)).status_code == 201
        reply = upload(client, svc.admin, {n: t.encode() for n, t in DOCS.items()},
                       ingest="true")
        assert wait_for_job(client, reply.json()["job"]["id"], svc.admin)["status"] == "done"
    return svc


@pytest.fixture
def client(service: Service) -> Iterator[TestClient]:
    service.llm.text, service.llm.delay = CITED, 0.0
    with TestClient(service.app()) as test_client:
        yield test_client


def record_run(name: str = "scifact-test") -> str:
    """A complete retrieval run with two configurations in this test's run registry."""
    registry = RunRegistry()
    run_id = registry.start_run("retrieval", name, {"config": {"dataset": "tiny"}, "seed": 0})
    for config, shift in (("bm25", 0.0), ("hybrid", 0.1)):
        registry.add_query_results(run_id, config, [
            QueryResult(f"q{i}", {"ndcg_cut_10": min(1.0, 0.3 + shift + i / 40)}, 0.01 + i / 1000)
            for i in range(20)])
    registry.finish_run(run_id, {"configs": ["bm25", "hybrid"]})
    registry.close()
    return run_id


# ---------------------------------------------------------------- pages and their headers


@pytest.mark.parametrize("path", PAGES)
def test_pages_are_served_without_a_key_under_a_strict_csp(client: TestClient,
                                                           path: str) -> None:
    reply = client.get(path)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/html")
    policy = dict(part.strip().split(" ", 1) for part in
                  reply.headers["content-security-policy"].split(";"))
    assert policy["script-src"] == "'self'" and policy["default-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'" and policy["base-uri"] == "'none'"
    assert reply.headers["x-content-type-options"] == "nosniff"
    scripts = re.findall(r"<script\b[^>]*>", reply.text)
    assert scripts and all('src="/ui/static/' in s for s in scripts)  # no inline script
    assert not re.search(r"<script\b[^>]*>\s*[^<\s]", reply.text)
    assert not re.search(r"\son[a-z]+\s*=", reply.text)  # no inline event handlers


def test_the_ui_root_opens_the_chat_and_the_bar_links_the_pages(client: TestClient) -> None:
    assert client.get("/ui", follow_redirects=False).headers["location"] == "/ui/chat"
    page = client.get("/ui/documents").text
    assert 'href="/ui/documents" aria-current="page"' in page
    assert 'href="/ui/chat"' in page and 'href="/ui/evaluation"' in page
    assert 'href="/ui/traces"' in page


def test_static_assets_are_served_and_unknown_ones_are_404(client: TestClient) -> None:
    for name in ("ragline.js", "chat.js", "documents.js", "evaluation.js", "login.js",
                 "traces.js", "ragline.css"):
        reply = client.get(f"/ui/static/{name}")
        assert reply.status_code == 200, name
    assert client.get("/ui/static/../ui.py").status_code == 404
    assert client.get("/ui/static/missing.js").status_code == 404


def test_scripts_never_parse_data_as_html() -> None:
    sources = {p.name: p.read_text() for p in STATIC.glob("*.js")}
    assert {"ragline.js", "chat.js", "documents.js", "evaluation.js", "login.js",
            "traces.js"} <= set(sources)
    for name, text in sources.items():
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                     "eval(", "new Function", "setAttribute(\"on"):
            assert sink not in text, (name, sink)
    templates = "\n".join(p.read_text() for p in TEMPLATES.glob("*.html"))
    assert "|safe" not in templates.replace(" ", "") and "autoescape false" not in templates


# ---------------------------------------------------------------- a cited span's source


def test_source_returns_the_document_text_with_the_cited_span(service: Service,
                                                              client: TestClient) -> None:
    hits = client.post("/collections/docs/search", headers=auth(service.admin),
                       json={"query": "Eiffel Tower completed", "mode": "bm25", "k": 1}).json()
    cited = hits["hits"][0]["citation"]
    reply = client.get("/collections/docs/source", headers=auth(service.admin), params={
        "doc_id": cited["doc_id"], "start": cited["start"], "end": cited["end"]})
    assert reply.status_code == 200, reply.text
    source = reply.json()
    assert source["doc_id"] == "uploads/eiffel.md" and source["text_start"] == 0
    assert source["text"] == DOCS["eiffel.md"].strip() or source["length"] == len(source["text"])
    span = source["text"][source["start"]:source["end"]]
    assert span == hits["hits"][0]["text"]


def test_source_needs_a_key_with_access_and_a_real_span(service: Service,
                                                        client: TestClient) -> None:
    params = {"doc_id": "uploads/eiffel.md", "start": 0, "end": 5}
    assert client.get("/collections/docs/source", params=params).status_code == 401
    assert client.get("/collections/docs/source", params=params,
                      headers=auth(service.other)).status_code == 403
    missing = client.get("/collections/docs/source", headers=auth(service.admin),
                         params={**params, "doc_id": "uploads/nope.md"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "document_not_found"
    outside = client.get("/collections/docs/source", headers=auth(service.admin),
                         params={**params, "end": 10**6})
    assert outside.status_code == 422 and outside.json()["error"]["code"] == "invalid_span"


def test_a_long_document_is_sent_as_a_window_around_the_span() -> None:
    text = "x" * (3 * MAX_SOURCE_CHARS)
    start, end = 2 * MAX_SOURCE_CHARS, 2 * MAX_SOURCE_CHARS + 100
    window = source_window(text, start, end, doc_id="d", title="")
    assert window["text_end"] - window["text_start"] == MAX_SOURCE_CHARS
    assert window["text_start"] <= start and end <= window["text_end"]
    assert window["text"] == text[window["text_start"]:window["text_end"]]
    whole = source_window("short text", 0, 5, doc_id="d", title="t")
    assert (whole["text_start"], whole["text_end"], whole["text"]) == (0, 10, "short text")


# ---------------------------------------------------------------- evaluation runs


def test_runs_are_listed_and_a_run_has_its_html_report(service: Service,
                                                       client: TestClient) -> None:
    assert client.get("/runs", headers=auth(service.admin)).json() == {"runs": []}
    run_id = record_run(name="<script>alert(1)</script>")
    runs = client.get("/runs", headers=auth(service.admin)).json()["runs"]
    assert [r["id"] for r in runs] == [run_id] and runs[0]["status"] == "complete"
    record = client.get(f"/runs/{run_id[-4:]}", headers=auth(service.admin)).json()
    assert record["id"] == run_id and record["has_report"] and record["configs"] == [
        "bm25", "hybrid"]
    report = client.get(f"/runs/{run_id}/report", headers=auth(service.admin))
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "<svg" in report.text and "Quality and latency" in report.text
    assert "sandbox" in report.headers["content-security-policy"]
    assert "script-src" not in report.headers["content-security-policy"]


def test_runs_need_a_key_for_every_collection(service: Service, client: TestClient) -> None:
    assert client.get("/runs").status_code == 401
    denied = client.get("/runs", headers=auth(service.docs_only))
    assert denied.status_code == 403 and "all collections" in denied.json()["error"]["message"]
    record_run()
    missing = client.get("/runs/rzzzz", headers=auth(service.admin))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "run_not_found"


def test_runs_compare_is_the_paired_comparison_of_runs_compare(service: Service,
                                                               client: TestClient) -> None:
    run_id = record_run()
    reply = client.get("/runs/compare", headers=auth(service.admin), params={
        "a": run_id, "b": run_id[-4:], "config_a": "bm25", "config_b": "hybrid"})
    assert reply.status_code == 200, reply.text
    found = reply.json()
    with RunRegistry() as registry:
        expected = registry.compare_runs(run_id, run_id, "bm25", "hybrid").to_dict()
    assert {k: found[k] for k in expected} == expected
    assert found["run_a"] == found["run_b"] == run_id and found["n_queries"] == 20
    (metric,) = found["metrics"]
    assert metric["metric"] == "ndcg_cut_10" and metric["verdict"] == "better"
    assert metric["ci_low"] > 0 and found["gate"] == {"passed": True, "failures": []}
    worse = client.get("/runs/compare", headers=auth(service.admin), params={
        "a": run_id, "b": run_id, "config_a": "hybrid", "config_b": "bm25"}).json()
    assert worse["metrics"][0]["verdict"] == "worse" and not worse["gate"]["passed"]


def test_runs_compare_refuses_what_it_cannot_compare(service: Service,
                                                     client: TestClient) -> None:
    params = {"a": "r1", "b": "r2"}
    assert client.get("/runs/compare", params=params).status_code == 401
    assert client.get("/runs/compare", params=params,
                      headers=auth(service.docs_only)).status_code == 403
    missing = client.get("/runs/compare", params=params, headers=auth(service.admin))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "run_not_found"
    run_id = record_run()
    several = client.get("/runs/compare", headers=auth(service.admin),
                         params={"a": run_id, "b": run_id})
    assert several.status_code == 422 and several.json()["error"]["code"] == "not_comparable"
    assert "name the one to compare" in several.json()["error"]["message"]
    unknown = client.get("/runs/compare", headers=auth(service.admin), params={
        "a": run_id, "b": run_id, "config_a": "bm25", "config_b": "nope"})
    assert unknown.status_code == 422 and "has no configuration 'nope'" in unknown.text
    assert client.get("/runs/compare", headers=auth(service.admin),
                      params={"a": run_id}).status_code == 422  # b is required


def record_ledger() -> None:
    from ragline.llm.ledger import CallRecord, Ledger
    from ragline.llm.types import Usage

    ledger = Ledger()
    for n, (purpose, seconds) in enumerate((("answer", 0.5), ("answer", 1.5),
                                            ("rewrite", 0.1))):
        ledger.record(CallRecord(call_id=f"c{n}", attempt=1, provider="local", model="qwen",
                                 purpose=purpose, outcome="ok", provider_s=seconds,
                                 usage=Usage(input_tokens=100, output_tokens=10)))
    ledger.close()


def test_ledger_summary_is_what_ledger_summary_prints(service: Service,
                                                     client: TestClient) -> None:
    from ragline.llm.ledger import Ledger

    empty = client.get("/ledger/summary", headers=auth(service.admin))
    assert empty.status_code == 200 and empty.json()["rows"] == []
    record_ledger()
    found = client.get("/ledger/summary", headers=auth(service.admin)).json()
    expected = [row.to_dict() for row in Ledger().summarize()]
    assert found["group_by"] == ["model", "purpose"] and found["rows"] == expected
    answer = next(r for r in found["rows"] if r["group"]["purpose"] == "answer")
    assert answer["calls"] == 2 and answer["input_tokens"] == 200
    by_provider = client.get("/ledger/summary", headers=auth(service.admin),
                             params={"by": "provider", "since": "2000-01-01"}).json()
    assert [r["group"] for r in by_provider["rows"]] == [{"provider": "local"}]
    assert by_provider["rows"][0]["calls"] == 3
    future = client.get("/ledger/summary", headers=auth(service.admin),
                        params={"since": "2999-01-01T00:00"}).json()
    assert future["rows"] == []


def test_ledger_summary_needs_an_admin_key_and_known_groups(service: Service,
                                                           client: TestClient) -> None:
    assert client.get("/ledger/summary").status_code == 401
    assert client.get("/ledger/summary", headers=auth(service.docs_only)).status_code == 403
    for by in ("cost", "model,model", ",", "model;purpose"):
        bad = client.get("/ledger/summary", headers=auth(service.admin), params={"by": by})
        assert bad.status_code == 422 and "group by one or more of" in bad.text, by
    bad_time = client.get("/ledger/summary", headers=auth(service.admin),
                          params={"since": "yesterday"})
    assert bad_time.status_code == 422 and "since" in bad_time.json()["error"]["message"]


def test_ledger_summary_since_the_year_1_is_every_call_not_a_500(service: Service,
                                                                 client: TestClient) -> None:
    # schemathesis found it: year 1 read as local time is before the first representable
    # instant, and datetime.timestamp() raised ValueError ("year 0 is out of range").
    record_ledger()
    for since in ("0001-01-01T00:00:00", "0001-01-01"):
        reply = client.get("/ledger/summary", headers=auth(service.admin),
                           params={"since": since})
        assert reply.status_code == 200, reply.text
        assert sum(r["calls"] for r in reply.json()["rows"]) == 3


# ---------------------------------------------------------------- a real browser


@pytest.fixture(scope="module")
def live(service: Service) -> Iterator[str]:
    with serving(service.app()) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless chromium through playwright (never playwright's own download)."""
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: `make chromium` installs Debian's package")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (the `dev` extra)")
    with sync_api.sync_playwright() as playwright:
        found = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                           headless=True)
        try:
            yield found
        finally:
            found.close()


class Shots:
    """Screenshots of each page when RAGLINE_UI_SCREENSHOTS names a folder (manual checks)."""

    def __init__(self) -> None:
        where = os.environ.get("RAGLINE_UI_SCREENSHOTS")
        self.folder = Path(where) if where else None
        if self.folder:
            self.folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, page: Any, name: str) -> None:
        if self.folder:
            page.screenshot(path=str(self.folder / f"{name}.png"), full_page=True)


@pytest.mark.integration
def test_the_ui_in_a_real_browser(service: Service, live: str, browser: Any) -> None:
    service.llm.text, service.llm.delay = CITED, 0.05  # 8 words, streamed over 0.4 s
    run_id = record_run()
    shots = Shots()
    context = browser.new_context(viewport={"width": 1360, "height": 860})
    page = context.new_page()
    dialogs: list[str] = []
    errors: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.accept()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(30_000)

    # Signing in: a page that needs the key sends the browser to the login page and back.
    page.goto(f"{live}/ui/chat")
    page.wait_for_url(re.compile(r"/ui/login\?next="))
    shots(page, "login")
    page.fill("#key", "rlk_000000000000_wrong")
    page.click("#login-form button")
    page.wait_for_selector("#login-error:not([hidden])")
    page.fill("#key", service.admin)
    page.click("#login-form button")
    page.wait_for_url(f"{live}/ui/chat")
    assert page.evaluate("sessionStorage.getItem('ragline.key')") == service.admin

    # Documents: upload a hostile file through the page and follow its ingest job.
    page.goto(f"{live}/ui/documents")
    page.wait_for_selector('#documents tr[data-name="eiffel.md"][data-status="indexed"]')
    page.set_input_files("#files", files=[{"name": "hostile.txt", "mimeType": "text/plain",
                                           "buffer": HOSTILE.encode()}])
    page.click("#upload-button")
    page.wait_for_selector('#job[data-status="done"]')
    page.wait_for_selector('#documents tr[data-name="hostile.txt"][data-status="indexed"]')
    assert "done" in page.text_content("#job-status")
    shots(page, "documents")

    # Chat: the answer streams in, then each claim's verdict; [1] opens the cited span.
    page.goto(f"{live}/ui/chat")
    page.wait_for_selector('#collection option[value="docs"]', state="attached")
    page.select_option("#mode", "hybrid")
    page.fill("#k", "2")
    page.fill("#question", QUESTION)
    page.click("#ask-button")
    page.wait_for_function(  # part of the answer is on the page before the answer is done
        "() => { const t = document.querySelector('article.turn');"
        " return t && t.dataset.state === 'streaming'"
        " && t.querySelector('.streamed').textContent.length > 0; }")
    turn = page.locator("article.turn").first
    page.wait_for_selector('article.turn[data-state="done"]')
    assert turn.locator(".answer-text").text_content().strip() == CITED
    assert turn.locator(".claim .verdict").text_content() == "supported"
    turn.locator('.answer-text button.cite[data-number="1"]').click()
    page.wait_for_selector("#source-panel:not([hidden]) mark#cited-span")
    assert "uploads/eiffel.md" in page.text_content("#source-title")
    assert "completed in 1889" in page.text_content("#cited-span")
    assert DOCS["eiffel.md"].strip().startswith(page.text_content("#source-text").strip()[:40])
    shots(page, "chat")

    # Markup in a document and in a question is shown as text: no element, no script, no dialog.
    page.click("#new-chat")  # no history: a follow-up would be rewritten with the first question
    assert page.locator("article.turn").count() == 0
    page.check("#extractive")
    page.fill("#question", HOSTILE_QUESTION)
    page.click("#ask-button")
    page.wait_for_selector('article.turn[data-state="done"]')
    second = page.locator("article.turn").first
    assert second.locator(".question").text_content() == HOSTILE_QUESTION
    assert "1989" in second.locator(".answer-text").text_content()
    second.locator(".answer-text button.cite").first.click()
    page.wait_for_function(
        "() => document.querySelector('#source-title').textContent.includes('hostile.txt')")
    source = page.text_content("#source-text")
    assert "<script>alert(1)</script>" in source and "<img src=x onerror=" in source
    shots(page, "chat-hostile")
    assert page.locator("main img, main b, main script").count() == 0
    assert page.evaluate("document.querySelectorAll('script:not([src])').length") == 0
    assert page.evaluate("window.__pwned") is None
    assert not [d for d in dialogs if not d.startswith("confirm")]

    # Traces: the answer links its trace; the page lists the request and shows its span tree
    # with each span's time and attributes (the hostile question as text there too).
    trace_id = second.locator("a.trace").get_attribute("data-trace")
    second.locator("a.trace").click()
    page.wait_for_url(re.compile(r"/ui/traces\?trace=[0-9a-f]{32}$"))
    page.wait_for_selector(f'#trace-card[data-trace="{trace_id}"]:not([hidden])')
    page.wait_for_selector(f'#traces tr[data-trace="{trace_id}"]')
    spans = page.locator("#spans li.span")
    names = [spans.nth(i).get_attribute("data-span") for i in range(spans.count())]
    assert names[0] == "ask" and {"retrieve", "generate"} <= set(names), names
    assert re.search(r"\d+(\.\d)? m?s", page.text_content('li.span[data-span="retrieve"] '
                                                         '.span-time') or "")
    page.locator('li.span[data-span="ask"] > details summary').click()
    attributes = page.text_content('li.span[data-span="ask"] > details dl') or ""
    assert HOSTILE_QUESTION in attributes and "collection" in attributes
    assert page.locator("main img, main b").count() == 0
    assert page.evaluate("window.__pwned") is None
    shots(page, "traces")

    # Evaluation: the recorded run, and its report with plots in a sandboxed frame.
    page.goto(f"{live}/ui/evaluation")
    page.click(f'#runs tr[data-run="{run_id}"] button')
    report = page.frame_locator("#report")
    assert "Quality and latency" in report.locator("h2").first.text_content()
    assert report.locator("svg").count() >= 1
    shots(page, "evaluation")

    # Compare: the run's two configurations, B (hybrid) against A (bm25), paired.
    page.wait_for_function("() => document.querySelector('#config-b').value === 'hybrid'")
    assert page.input_value("#run-a") == page.input_value("#run-b") == run_id
    assert page.input_value("#config-a") == "bm25"
    page.click("#compare-button")
    page.wait_for_selector("#comparison:not([hidden])")
    row = page.locator('#comparison-rows tr[data-metric="ndcg_cut_10"]')
    assert row.locator(".verdict").text_content() == "better"
    assert "20 queries" in page.text_content("#comparison-title")
    assert "passed" in page.text_content("#gate")
    shots(page, "evaluation-compare")

    # Deleting a document starts the ingest that takes it out of the index.
    page.goto(f"{live}/ui/documents")
    page.click('#documents tr[data-name="hostile.txt"] button')
    page.wait_for_selector('#job[data-status="done"]')
    page.wait_for_selector('#documents tr[data-name="hostile.txt"]', state="detached")
    assert any(d.startswith("confirm") for d in dialogs)
    assert not [d for d in dialogs if not d.startswith("confirm")]
    assert errors == []
    context.close()
