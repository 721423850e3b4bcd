"""The agent loop, its durable state and its CLI, against a scripted model on the real wire."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from ragline.agent.loop import Agent, Budget, StopReason
from ragline.agent.state import AgentStore
from ragline.agent.tools import AgentTool, SpanRegistry, builtin_tools, calculator, http_get_tool
from ragline.answer.support import OverlapScorer
from ragline.llm import LLM
from tests.fakes._http import FakeServer, Reply
from tests.fakes.openai_server import OpenAIDialect
from tests.fakes.support import RecordingSleep, llm_for

ROOT = Path(__file__).resolve().parents[1]
Script = Callable[[int, dict[str, Any]], Reply]


class ScriptedDialect(OpenAIDialect):
    """Replies from a script of (steps taken in this user turn, request body): stateless, so a
    resumed run in another process gets the same replies."""

    def __init__(self, script: Script) -> None:
        self.script = script

    def auto_reply(self, body: dict[str, Any]) -> Reply:
        steps = 0
        for m in reversed(body["messages"]):
            if m["role"] == "user":
                break
            steps += m["role"] == "assistant"
        return self.script(steps, body)


class ScriptedServer(FakeServer):
    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"


def serve(script: Script) -> ScriptedServer:
    server = ScriptedServer(ScriptedDialect(script))
    server.start()
    return server


def call(name: str, **args: Any) -> Reply:
    return Reply(tool_calls=((name, args),))


def last_tool_result(body: dict[str, Any]) -> str:
    return str(next(m["content"] for m in reversed(body["messages"]) if m["role"] == "tool"))


def agent_for(server: ScriptedServer, tools: list[Any], tmp_path: Path, **kw: Any) -> Agent:
    llm = llm_for("openai", server, sleeper=RecordingSleep(), cache=False)
    return Agent(llm, tools, store=AgentStore(tmp_path / "agent.sqlite"), **kw)


def test_multi_step_run_searches_calculates_and_answers_with_verified_citations(
        tmp_path: Path, runs: list[ScriptedServer], embedder: Any) -> None:
    from ragline.index import Index

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "eiffel.txt").write_text("The Eiffel Tower was completed in 1889 in Paris.\n")
    (docs / "kitchen.txt").write_text("The office kitchen closes at 5 pm every weekday.\n")
    index = Index(tmp_path / "ix", embedder=embedder)
    index.ingest(docs)

    def script(steps: int, body: dict[str, Any]) -> Reply:
        if steps == 0:
            return call("search", query="Eiffel Tower completed", k=2)
        if steps == 1:
            spans = json.loads(last_tool_result(body))["spans"]
            assert any("1889" in s["text"] for s in spans)
            return call("calculator", expression="2025 - 1889")
        assert last_tool_result(body) == "136"
        return Reply(text="The Eiffel Tower was completed in 1889 in Paris [1].")

    runs.append(server := serve(script))
    registry = SpanRegistry()
    tools = builtin_tools(["search", "read", "calculator"], index=index, registry=registry)
    agent = agent_for(server, tools, tmp_path, registry=registry, scorer=OverlapScorer())
    result = agent.run("How many years ago was the Eiffel Tower completed?")
    index.close()
    assert result.stop_reason is StopReason.ANSWERED and result.steps == 3
    assert result.tool_calls == 2 and result.tool_errors == {}
    (span,) = result.citations
    assert span.doc_id.endswith("eiffel.txt") and "1889" in span.text and span.end > span.start
    assert [c.verdict.value for c in result.checks] == ["supported"]
    assert result.usage.input_tokens == 36
    stored = agent.store.load(result.run_id)  # the verdicts are kept with the run
    assert [c["verdict"] for c in stored.checks] == ["supported"]
    assert stored.citations == [span.to_dict()]
    assert stored.to_dict()["checks"][0]["sentence"].startswith("The Eiffel Tower")


def test_unknown_tool_and_bad_arguments_go_back_to_the_model_and_are_counted(
        tmp_path: Path, runs: list[ScriptedServer]) -> None:
    seen: list[str] = []

    def script(steps: int, body: dict[str, Any]) -> Reply:
        if steps:
            seen.append(last_tool_result(body))
        if steps == 0:
            return call("nope", x=1)
        if steps == 1:
            return call("calculator", expr="1+1")
        if steps == 2:
            return call("calculator", expression="__import__('os')")
        return Reply(text="done")

    runs.append(server := serve(script))
    result = agent_for(server, [calculator], tmp_path).run("compute")
    assert result.stop_reason is StopReason.ANSWERED
    assert result.tool_errors == {"unknown_tool": 1, "invalid_arguments": 1, "raised": 1}
    assert "unknown tool 'nope'" in seen[0] and "calculator" in seen[0]
    assert "invalid arguments for calculator" in seen[1]
    assert "not allowed" in seen[2]


def test_the_same_call_repeated_is_detected_and_stopped(
        tmp_path: Path, runs: list[ScriptedServer]) -> None:
    runs.append(server := serve(lambda steps, body: call("calculator", expression="1+1")))
    result = agent_for(server, [calculator], tmp_path, budget=Budget(max_repeats=3)).run("loop")
    assert result.stop_reason is StopReason.REPEATED_CALL
    assert result.steps == 3 and result.tool_calls == 3
    assert result.tool_errors == {"repeated": 1}  # the third repeat was not run


def page(n: int) -> str:
    """Return page n of a long report.

    Args:
        n: The page number.
    """
    return f"page {n}: " + "lorem ipsum dolor sit amet " * 60


def test_old_tool_results_are_elided_to_fit_the_window_and_kept_in_the_store(
        tmp_path: Path, runs: list[ScriptedServer]) -> None:
    sent: list[list[dict[str, Any]]] = []

    def script(steps: int, body: dict[str, Any]) -> Reply:
        sent.append(body["messages"])
        return call("page", n=steps + 1) if steps < 3 else Reply(text="done")

    runs.append(server := serve(script))
    agent = agent_for(server, [page], tmp_path, context_tokens=1200,
                      budget=Budget(reply_tokens=200))
    result = agent.run("read three pages")
    assert result.stop_reason is StopReason.ANSWERED and result.steps == 4
    tool_texts = [[m["content"] for m in msgs if m["role"] == "tool"] for msgs in sent]
    assert [len(t) for t in tool_texts] == [0, 1, 2, 3]
    assert all(not t.startswith("[elided") for t in tool_texts[1])  # it fitted
    last = tool_texts[3]
    assert last[0].startswith("[elided to fit") and last[-1].startswith("page 3:")
    record = agent.store.load(result.run_id)  # the conversation itself is whole
    assert [c.result.startswith("page") for c in record.calls if c.result] == [True] * 3
    unbounded = agent_for(server, [page], tmp_path / "u")
    assert unbounded.context_tokens is None  # a hosted model's window is not known: no eliding


def test_a_call_repeated_with_other_spacing_or_case_is_the_same_call(
        tmp_path: Path, runs: list[ScriptedServer]) -> None:
    queries = ["1 + 1", "1 + 1 ", " 1  +  1"]
    runs.append(server := serve(lambda steps, body: call("calculator",
                                                         expression=queries[steps % 3])))
    result = agent_for(server, [calculator], tmp_path, budget=Budget(max_repeats=3)).run("loop")
    assert result.stop_reason is StopReason.REPEATED_CALL and result.steps == 3


@pytest.mark.parametrize(("reported", "elided"), [(12, False), (900, True)])
def test_the_fit_counts_the_template_overhead_the_server_reported(
        tmp_path: Path, runs: list[ScriptedServer], reported: int, elided: bool) -> None:
    sent: list[list[dict[str, Any]]] = []

    def script(steps: int, body: dict[str, Any]) -> Reply:
        sent.append(body["messages"])
        if steps < 2:
            return Reply(tool_calls=(("page", {"n": steps + 1}),), input_tokens=reported)
        return Reply(text="done")

    runs.append(server := serve(script))
    agent = agent_for(server, [page], tmp_path, context_tokens=1500,
                      budget=Budget(reply_tokens=200))
    assert agent.run("read two pages").stop_reason is StopReason.ANSWERED
    first_result = next(m["content"] for m in sent[2] if m["role"] == "tool")
    assert first_result.startswith("[elided") is elided


def test_step_budget_stops_with_the_partial_trace(
        tmp_path: Path, runs: list[ScriptedServer]) -> None:
    runs.append(server := serve(lambda steps, body: call("calculator", expression=f"{steps}+1")))
    agent = agent_for(server, [calculator], tmp_path, budget=Budget(max_steps=4))
    result = agent.run("count")
    assert result.stop_reason is StopReason.MAX_STEPS and result.answer is None
    record = agent.store.load(result.run_id)
    assert len(record.steps) == 4 and [c.result for c in record.calls] == ["1", "2", "3", "4"]


def test_cost_budget_stops_the_run(tmp_path: Path, runs: list[ScriptedServer]) -> None:
    runs.append(server := serve(lambda steps, body: call("calculator", expression=f"{steps}+1")))
    agent = agent_for(server, [calculator], tmp_path, budget=Budget(max_cost_usd=1e-9))
    result = agent.run("count")
    assert result.stop_reason is StopReason.MAX_COST and result.steps == 1


def test_a_hanging_tool_is_timed_out(tmp_path: Path, runs: list[ScriptedServer]) -> None:
    def hang(seconds: float) -> str:
        """Sleep."""
        time.sleep(seconds)
        return "woke"

    runs.append(server := serve(
        lambda steps, body: call("hang", seconds=30) if steps == 0 else Reply(text="gave up")))
    result = agent_for(server, [AgentTool(hang, timeout_s=0.3)], tmp_path).run("hang")
    assert result.stop_reason is StopReason.ANSWERED
    assert result.tool_errors == {"timed_out": 1}


def test_continue_run_is_a_multi_turn_conversation(
        tmp_path: Path, runs: list[ScriptedServer]) -> None:
    def script(steps: int, body: dict[str, Any]) -> Reply:
        user = [m["content"] for m in body["messages"] if m["role"] == "user"]
        if steps == 0:
            return call("calculator", expression="6*7" if len(user) == 1 else "42+1")
        return Reply(text=f"answer {last_tool_result(body)} after {len(user)} turn(s)")

    runs.append(server := serve(script))
    agent = agent_for(server, [calculator], tmp_path)
    first = agent.run("six times seven?")
    second = agent.continue_run(first.run_id, "and plus one?")
    assert first.answer == "answer 42 after 1 turn(s)"
    assert second.answer == "answer 43 after 2 turn(s)" and second.run_id == first.run_id
    assert len(agent.store.load(first.run_id).conversation) == 8


def test_calculator_allows_arithmetic_only() -> None:
    assert calculator("(1889 - 1832) * 2 + 2**3 / 4") == "116.0"
    for bad in ("__import__('os').system('id')", "x + 1", "9**9**9", "[1] * 3", "1 if 1 else 2"):
        with pytest.raises(ValueError):
            calculator(bad)


def test_http_get_fetches_allowed_hosts_and_refuses_others() -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello agent")

        def log_message(self, *args: Any) -> None:
            return

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        port = httpd.server_address[1]
        tool = http_get_tool([f"127.0.0.1:{port}"])
        assert json.loads(tool.fn(f"http://127.0.0.1:{port}/x"))["text"] == "hello agent"
        with pytest.raises(PermissionError, match="not allowed"):
            tool.fn(f"http://localhost:{port}/x")
        with pytest.raises(PermissionError):
            tool.fn("file:///etc/passwd")
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_schema_tool_mode_gets_a_final_answer_tool(
        tmp_path: Path, runs: list[ScriptedServer]) -> None:
    from ragline.llm.providers.openai_compatible import OpenAICompatibleProvider, ToolMode

    def script(steps: int, body: dict[str, Any]) -> Reply:
        assert "tools" not in body and body["response_format"]["type"] == "json_schema"
        # schema mode writes tool turns as plain text: count the results it wrote
        if not any(m["content"].startswith("Tool result") for m in body["messages"]):
            return Reply(json_value={"name": "calculator", "arguments": {"expression": "2+2"}})
        return Reply(json_value={"name": "final_answer", "arguments": {"answer": "4"}})

    runs.append(server := serve(script))
    provider = OpenAICompatibleProvider(base_url=server.base_url, tool_mode=ToolMode.SCHEMA)
    agent = Agent(LLM(provider, "smollm2", cache=False), [calculator],
                  store=AgentStore(tmp_path / "a.sqlite"))
    result = agent.run("2+2?")
    assert result.stop_reason is StopReason.ANSWERED and result.answer == "4"


CHILD = """
import sys
from pathlib import Path
from ragline.agent.loop import Agent, Budget
from ragline.agent.state import AgentStore
from ragline.agent.tools import AgentTool
from ragline.llm import LLM, RetryPolicy

log = Path(sys.argv[3])

def record(n: int) -> str:
    \"\"\"Write n to the log (a side effect).\"\"\"
    with log.open("a") as f:
        f.write(f"{n}\\n")
    if n == int(sys.argv[5]):
        import os, signal
        os.kill(os.getpid(), signal.SIGKILL)  # killed after the effect, before "done"
    import time
    time.sleep(0.15)
    return f"recorded {n}"

llm = LLM("openai", "gpt-4o-mini", base_url=sys.argv[1], api_key="k", cache=False,
          retry=RetryPolicy(max_attempts=1))
agent = Agent(llm, [AgentTool(record, side_effects=True)], store=AgentStore(Path(sys.argv[2])),
              budget=Budget(max_steps=20))
if sys.argv[4] == "new":
    result = agent.run("record 1..10")
else:
    result = agent.resume(sys.argv[4])
print(result.run_id, result.stop_reason.value, result.answer)
"""


def _ten_steps(steps: int, body: dict[str, Any]) -> Reply:
    return call("record", n=steps + 1) if steps < 10 else Reply(text="recorded all ten")


def _child(tmp_path: Path, server: ScriptedServer, run: str,
           kill_at: int = 0) -> subprocess.Popen[str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen(
        [sys.executable, str(script), server.base_url, str(tmp_path / "agent.sqlite"),
         str(tmp_path / "effects.log"), run, str(kill_at)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _done_steps(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM steps WHERE status = 'done'")
                       .fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def _run_id(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("SELECT run_id FROM runs").fetchone()[0])


def test_kill_9_mid_run_resumes_and_finishes_with_no_call_executed_twice(
        tmp_path: Path, runs: list[ScriptedServer]) -> None:
    runs.append(server := serve(_ten_steps))
    db = tmp_path / "agent.sqlite"
    child = _child(tmp_path, server, "new")
    deadline = time.monotonic() + 60
    while _done_steps(db) < 5 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert 5 <= _done_steps(db) < 10
    resumed = _child(tmp_path, server, _run_id(db))
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    assert out.split()[1] == "answered" and "recorded all ten" in out
    effects = (tmp_path / "effects.log").read_text().split()
    assert len(effects) == len(set(effects))  # no call executed twice
    # the kill may land inside a call, before its effect was written: that one call is then
    # reported interrupted on resume, never run again; every other call ran exactly once
    missing = {n for n in range(1, 11) if str(n) not in effects}
    assert len(missing) <= 1
    if missing:
        with AgentStore(db) as store:
            outcomes = {c.arguments["n"]: c.outcome for c in store.load(_run_id(db)).calls}
        assert outcomes[missing.pop()] == "interrupted"


def test_a_started_side_effect_is_reported_interrupted_not_rerun(
        tmp_path: Path, runs: list[ScriptedServer]) -> None:
    runs.append(server := serve(_ten_steps))
    child = _child(tmp_path, server, "new", kill_at=4)  # dies inside record(4)
    child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    db = tmp_path / "agent.sqlite"
    resumed = _child(tmp_path, server, _run_id(db))
    _, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    assert (tmp_path / "effects.log").read_text().split() == [str(n) for n in range(1, 11)]
    with AgentStore(db) as store:
        record = store.load(_run_id(db))
    outcomes = {c.arguments["n"]: c.outcome for c in record.calls}
    assert outcomes[4] == "interrupted" and all(outcomes[n] == "ok" for n in outcomes if n != 4)


def test_agent_show_and_list_print_the_trace(tmp_path: Path, runs: list[ScriptedServer],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from ragline.cli.root import app

    runs.append(server := serve(
        lambda steps, body: call("calculator", expression="3*3") if steps == 0
        else Reply(text="nine")))
    llm = llm_for("openai", server, sleeper=RecordingSleep(), cache=False)
    result = Agent(llm, [calculator]).run("three squared")  # the default store in $RAGLINE_HOME
    shown = CliRunner().invoke(app, ["agent", "show", result.run_id, "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["stop_reason"] == "answered" and data["answer"] == "nine"
    assert data["tool_calls"][0]["result"] == "9" and len(data["steps"]) == 2
    text = CliRunner().invoke(app, ["agent", "show", result.run_id])
    assert "calculator" in text.output and "answer: nine" in text.output
    listed = CliRunner().invoke(app, ["agent", "list"])
    assert result.run_id in listed.output
    missing = CliRunner().invoke(app, ["agent", "show", "nope"])
    assert missing.exit_code == 2


def test_docs_agent_example_runs(tmp_path: Path, runs: list[ScriptedServer]) -> None:
    import runpy

    runs.append(server := serve(
        lambda steps, body: call("calculator", expression="17 * 23") if steps == 0
        else Reply(text=f"17 * 23 = {last_tool_result(body)}")))
    module = runpy.run_path(str(ROOT / "docs_src" / "agent_example.py"))
    llm = llm_for("openai", server, sleeper=RecordingSleep(), cache=False)
    assert module["main"](llm) == "17 * 23 = 391"
