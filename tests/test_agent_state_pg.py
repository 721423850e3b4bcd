"""The `AgentStore` contract, run against every backend, and the agent CLI's `--config` store.

Each conformance test runs on SQLite and on PostgreSQL (ids `[sqlite]`, `[postgres]`), the
server of `scripts/postgres.sh` (the `pg_dsn` fixture starts it), each test in a schema of its
own that is dropped after it. As in test_store_conformance.py the postgres tests fail, never
skip, when the server cannot start: `RAGLINE_NO_POSTGRES=1` deselects them on purpose.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from ragline.agent import state
from ragline.agent.loop import Agent, StopReason
from ragline.agent.state import (
    AGENT_SCHEMA_SUFFIX,
    AgentStore,
    CallRow,
    CallStatus,
    RunNotFound,
    RunStatus,
    StepRow,
)
from ragline.agent.tools import AgentTool, calculator
from ragline.config import StoreSettings, parse_config
from ragline.errors import ConfigError, StoreUnavailable
from ragline.llm.types import Message, ToolCall
from tests.fakes._http import Reply
from tests.fakes.support import RecordingSleep, llm_for
from tests.test_agent import ScriptedServer, call, serve

ROOT = Path(__file__).resolve().parents[1]
NO_POSTGRES = os.environ.get("RAGLINE_NO_POSTGRES") == "1"
BACKENDS = ["sqlite"] + ([] if NO_POSTGRES else ["postgres"])
needs_postgres = pytest.mark.skipif(NO_POSTGRES, reason="RAGLINE_NO_POSTGRES=1")
UNREACHABLE = "postgresql://ragline@127.0.0.1:1/postgres"  # nothing listens on port 1
NOW = 1712345678.123456789  # a float4 column would give back 1712345728.0


@dataclass(frozen=True)
class Backend:
    """Where one test's runs live: `open()` gives a new connection to the same store."""

    settings: StoreSettings | None
    path: Path

    def open(self) -> AgentStore:
        return AgentStore.from_settings(self.settings, self.path)


def _drop(dsn: str, schema: str) -> None:
    from ragline.store.postgres import drop_schema

    drop_schema(dsn, schema)


@pytest.fixture
def pg_schema(pg_dsn: str) -> Iterator[str]:
    """A fresh [store] schema name; its agent schema is dropped after the test."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield schema
    _drop(pg_dsn, schema + AGENT_SCHEMA_SUFFIX)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend(None, tmp_path / "agent.sqlite")
    settings = StoreSettings(backend="postgres", dsn=request.getfixturevalue("pg_dsn"),
                             schema=request.getfixturevalue("pg_schema"))
    return Backend(settings, tmp_path / "not-used.sqlite")


@pytest.fixture
def store(backend: Backend) -> Iterator[AgentStore]:
    with backend.open() as opened:
        yield opened


def _frozen_clock(monkeypatch: pytest.MonkeyPatch, *times: float) -> None:
    ticks = iter(times)
    monkeypatch.setattr(state, "time", SimpleNamespace(time=lambda: next(ticks, times[-1])))


RECORD = ToolCall("c1", "record", {"n": 1})
CALC = ToolCall("c2", "calculator", {"expression": "1+1"})


def _planned_run(store: AgentStore, *calls: ToolCall) -> str:
    run_id = store.create_run("record one", {"cli": {"tool_names": ["record"]}})
    store.add_user_message(run_id, 0, "record one")
    store.plan_step(run_id, 0, Message.assistant("", calls), {"input_tokens": 5}, None)
    return run_id


# --- the conformance suite: every backend -------------------------------------------------


def test_the_store_is_where_the_settings_say(backend: Backend, store: AgentStore) -> None:
    if backend.settings is None:
        assert store.where == str(backend.path) and backend.path.exists()
    else:
        assert store.where.startswith(f"schema {backend.settings.schema_name}_agent at ")
        assert not backend.path.exists()


def test_a_step_round_trips_with_full_double_precision(
        store: AgentStore, monkeypatch: pytest.MonkeyPatch) -> None:
    _frozen_clock(monkeypatch, NOW)
    run_id = store.create_run("add ünïcode", {"cli": {"max_steps": 3}})
    store.add_user_message(run_id, 0, "add ünïcode")
    reply = Message.assistant("let me", (RECORD, CALC))
    store.plan_step(run_id, 0, reply, {"input_tokens": 12, "output_tokens": 3}, 0.000123456789)
    store.call_started(run_id, 0, 0, RECORD, True)
    store.call_done(run_id, 0, 0, RECORD, True, "ok", "recorded 1", 0.123456789)
    store.call_done(run_id, 0, 1, CALC, False, "ok", "2", 1e-9)
    results = [Message.tool("c1", "recorded 1"), Message.tool("c2", "2")]
    store.finish_step(run_id, 0, results)
    store.finish_run(run_id, "answered", "two")

    record = store.load(run_id)
    assert (record.task, record.status, record.stop_reason, record.answer) == (
        "add ünïcode", RunStatus.FINISHED, "answered", "two")
    assert record.config == {"cli": {"max_steps": 3}}
    assert record.created == NOW and record.updated == NOW
    assert record.conversation == [Message.user("add ünïcode"), reply, *results]
    assert [s for s, _ in record.messages] == [0, 0, 0, 0]
    assert record.steps == [StepRow(0, "done", {"input_tokens": 12, "output_tokens": 3},
                                    0.000123456789)]
    assert record.calls == [
        CallRow(0, 0, "c1", "record", {"n": 1}, CallStatus.DONE, "ok", "recorded 1", True,
                0.123456789),
        CallRow(0, 1, "c2", "calculator", {"expression": "1+1"}, CallStatus.DONE, "ok", "2",
                False, 1e-9)]
    json.dumps(record.to_dict())  # what `agent show --json` prints


def test_a_new_user_turn_makes_a_finished_run_running_again(store: AgentStore) -> None:
    run_id = _planned_run(store)
    store.finish_step(run_id, 0, [])
    store.finish_run(run_id, "answered", "done")
    store.add_user_message(run_id, 1, "and again")
    record = store.load(run_id)
    assert (record.status, record.stop_reason, record.answer) == (RunStatus.RUNNING, None, None)
    assert record.messages[-1] == (1, Message.user("and again"))


def test_list_runs_is_newest_first_with_step_counts(
        store: AgentStore, monkeypatch: pytest.MonkeyPatch) -> None:
    _frozen_clock(monkeypatch, 1.5, 1.5, 2.5, 2.5, 3.5)
    first = store.create_run("first", {})
    store.add_user_message(first, 0, "first")
    second = store.create_run("second", {})
    store.plan_step(second, 0, Message.assistant("hi"), {}, None)
    third = store.create_run("third", {})
    listed = store.list_runs()
    assert [r["run_id"] for r in listed] == [third, second, first]
    assert [r["steps"] for r in listed] == [0, 1, 0]
    assert listed[1] == {"run_id": second, "task": "second", "status": "running",
                         "stop_reason": None, "updated": 2.5, "steps": 1}
    assert [r["run_id"] for r in store.list_runs(limit=2)] == [third, second]


def test_an_unknown_run_is_run_not_found_naming_the_store(store: AgentStore) -> None:
    with pytest.raises(RunNotFound, match="agent list") as caught:
        store.load("nope")
    assert store.where in str(caught.value)


def test_a_started_side_effect_call_is_still_started_after_reopening(backend: Backend) -> None:
    with backend.open() as first:
        run_id = _planned_run(first, RECORD)
        first.call_started(run_id, 0, 0, RECORD, True)
    with backend.open() as reopened:  # as after a kill -9: a new process, a new connection
        record = reopened.load(run_id)
    assert record.steps[-1].status == "planned"
    assert record.calls == [CallRow(0, 0, "c1", "record", {"n": 1}, CallStatus.STARTED, None,
                                    None, True, None)]


def test_resume_reports_a_started_side_effect_interrupted_and_never_reruns_it(
        backend: Backend, runs: list[ScriptedServer]) -> None:
    with backend.open() as killed:
        run_id = _planned_run(killed, RECORD)
        killed.call_started(run_id, 0, 0, RECORD, True)
    effects: list[int] = []

    def record(n: int) -> str:
        """Record n (a side effect)."""
        effects.append(n)
        return f"recorded {n}"

    runs.append(server := serve(lambda steps, body: Reply(text="stopped after one")))
    llm = llm_for("openai", server, sleeper=RecordingSleep(), cache=False)
    with backend.open() as store:
        result = Agent(llm, [AgentTool(record, side_effects=True)], store=store).resume(run_id)
        calls = store.load(run_id).calls
    assert result.stop_reason is StopReason.ANSWERED and result.answer == "stopped after one"
    assert effects == []
    assert [(c.status, c.outcome) for c in calls] == [(CallStatus.DONE, "interrupted")]


def test_an_agent_run_end_to_end_keeps_its_trace_in_the_store(
        backend: Backend, runs: list[ScriptedServer]) -> None:
    runs.append(server := serve(
        lambda steps, body: call("calculator", expression="3*3") if steps == 0
        else Reply(text="nine")))
    llm = llm_for("openai", server, sleeper=RecordingSleep(), cache=False)
    with backend.open() as store:
        result = Agent(llm, [calculator], store=store).run("three squared")
    assert result.stop_reason is StopReason.ANSWERED and result.answer == "nine"
    with backend.open() as store:
        record = store.load(result.run_id)
        listed = store.list_runs()
    assert record.status is RunStatus.FINISHED and record.answer == "nine"
    assert [s.status for s in record.steps] == ["done", "planned"]  # the answer has no tools
    assert [(c.name, c.outcome, c.result) for c in record.calls] == [("calculator", "ok", "9")]
    assert isinstance(record.calls[0].seconds, float)
    assert [r["run_id"] for r in listed] == [result.run_id]


def test_stores_opened_at_once_share_one_set_of_tables(backend: Backend) -> None:
    opened: list[AgentStore] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            opened.append(backend.open())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    run_id = opened[0].create_run("shared", {})
    assert all(s.load(run_id).task == "shared" for s in opened)
    for s in opened:
        s.close()


# --- PostgreSQL: where the tables are, and what a bad setting says -------------------------


@needs_postgres
def test_postgres_tables_are_double_precision_in_the_agent_schema(
        pg_dsn: str, pg_schema: str) -> None:
    from ragline.store.postgres import connect, index_exists

    settings = StoreSettings(backend="postgres", dsn=pg_dsn, schema=pg_schema)
    AgentStore.from_settings(settings).close()
    with connect(pg_dsn) as conn:
        columns = dict(conn.execute(
            "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND data_type <> 'text'",
            (pg_schema + "_agent",)).fetchall())
    assert columns["runs.created"] == columns["tool_calls.seconds"] == "double precision"
    assert columns["steps.cost_usd"] == "double precision"
    assert not index_exists(pg_dsn, pg_schema)  # the index's own schema is left alone


@needs_postgres
def test_a_lost_server_mid_run_is_store_unavailable(pg_dsn: str, pg_schema: str) -> None:
    from ragline.store.postgres import connect

    settings = StoreSettings(backend="postgres", dsn=pg_dsn, schema=pg_schema)
    with AgentStore.from_settings(settings) as store:
        run_id = store.create_run("t", {})
        (pid,) = store._db.execute("SELECT pg_backend_pid()").fetchone()
        with connect(pg_dsn) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(StoreUnavailable, match="lost the agent store in schema t_"):
            store.finish_run(run_id, "answered", "x")
    with AgentStore.from_settings(settings) as reopened:  # nothing half-written
        assert reopened.load(run_id).status is RunStatus.RUNNING


def test_a_bad_schema_name_is_a_config_error() -> None:
    settings = StoreSettings(backend="postgres", dsn=UNREACHABLE, schema="Bad-Name")
    with pytest.raises(ConfigError, match="lower-case letters"):
        AgentStore.from_settings(settings)


def test_an_unreachable_server_is_store_unavailable_with_advice() -> None:
    settings = StoreSettings(backend="postgres", dsn=UNREACHABLE)
    with pytest.raises(StoreUnavailable, match=r"cannot connect to PostgreSQL at 127\.0\.0\.1:1"):
        AgentStore.from_settings(settings)


# --- the CLI's --config ------------------------------------------------------------------


def _config(tmp_path: Path, dsn: str, schema: str = "ragline") -> Path:
    path = tmp_path / "pg.toml"
    path.write_text(f'[store]\nbackend = "postgres"\ndsn = "{dsn}"\nschema = "{schema}"\n')
    return path


@needs_postgres
def test_agent_cli_with_a_postgres_config_keeps_its_runs_there(
        tmp_path: Path, pg_dsn: str, pg_schema: str, runs: list[ScriptedServer]) -> None:
    from ragline.cli.root import app

    runs.append(server := serve(
        lambda steps, body: call("calculator", expression="3*3") if steps % 2 == 0
        else Reply(text="nine")))
    config = str(_config(tmp_path, pg_dsn, pg_schema))
    cli = CliRunner()
    ran = cli.invoke(app, ["agent", "run", "three squared", "--tools", "calculator",
                           "--provider", "openai-compatible", "--base-url", server.base_url,
                           "--model", "scripted", "-c", config, "--json"])
    assert ran.exit_code == 0, ran.output
    run_id = json.loads(ran.stdout)["run_id"]
    listed = cli.invoke(app, ["agent", "list", "--config", config, "--json"])
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [run_id]
    shown = cli.invoke(app, ["agent", "show", run_id, "-c", config, "--json"])
    assert shown.exit_code == 0 and json.loads(shown.stdout)["answer"] == "nine"
    assert cli.invoke(app, ["agent", "show", run_id]).exit_code == 2  # not in agent.sqlite
    resumed = cli.invoke(app, ["agent", "resume", run_id, "-c", config, "--json"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["run_id"] == run_id


@pytest.mark.parametrize("args", [["list"], ["show", "abc"], ["resume", "abc"],
                                  ["run", "task", "--tools", "calculator"]],
                         ids=["list", "show", "resume", "run"])
def test_agent_cli_with_an_unreachable_server_fails_with_advice(
        tmp_path: Path, args: list[str]) -> None:
    from ragline.cli.root import app

    result = CliRunner().invoke(app, ["agent", *args, "-c", str(_config(tmp_path, UNREACHABLE))])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "cannot connect to PostgreSQL at 127.0.0.1:1" in result.output
    assert "scripts/postgres.sh" in result.output


def test_agent_cli_with_a_bad_config_fails_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[store]\nbackend = "postgres"\n')  # no dsn
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for config in (bad, _config(tmp_path, UNREACHABLE)):
        done = subprocess.run([sys.executable, "-m", "ragline.cli", "agent", "list", "-c",
                               str(config)], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert "error:" in done.stderr


def test_the_docs_store_example_is_a_valid_config() -> None:
    text = (ROOT / "docs" / "agents.md").read_text(encoding="utf-8")
    block = text.split("## Where runs are stored", 1)[1].split("```toml\n", 1)[1].split("```")[0]
    store = parse_config(tomllib.loads(block)).store
    assert (store.backend, store.schema_name) == ("postgres", "ragline")
