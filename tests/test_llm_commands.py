"""`ragline llm` against the fake OpenAI server, through typer's CliRunner."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from ragline.cli.llm import llm_command
from ragline.llm import Ledger
from tests.fakes import support
from tests.fakes._http import Fault, FaultKind
from tests.fakes.openai_server import FakeOpenAIServer

openai_server = support.openai_server

pytestmark = pytest.mark.integration


def app() -> typer.Typer:
    root = typer.Typer()
    root.command("llm")(llm_command)
    root.command("noop")(lambda: None)  # keep "llm" a subcommand, as in the main CLI
    return root


def invoke(server: FakeOpenAIServer, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app(), ["llm", *args, "--provider", "openai", "--base-url", server.base_url], env={"OPENAI_API_KEY": "test-key"}
    )
    return result.exit_code, result.stdout


def test_llm_prints_the_reply(openai_server: FakeOpenAIServer) -> None:
    code, out = invoke(openai_server, "hello")
    assert code == 0
    assert out.strip() == "Hello from the fake server"
    assert openai_server.requests[-1]["messages"] == [{"role": "user", "content": "hello"}]


def test_llm_json_prints_usage_cost_and_model(openai_server: FakeOpenAIServer) -> None:
    code, out = invoke(openai_server, "hello", "--json", "--model", "gpt-4o")
    data = json.loads(out)
    assert code == 0
    assert data["text"] == "Hello from the fake server"
    assert data["model"] == "gpt-4o"
    assert data["usage"]["output_tokens"] == 5
    assert data["cost_usd"] > 0


def test_llm_stream_prints_tokens(openai_server: FakeOpenAIServer) -> None:
    code, out = invoke(openai_server, "hello", "--stream")
    assert code == 0
    assert out.strip() == "Hello from the fake server"
    assert openai_server.requests[-1]["stream"] is True


def test_llm_stream_json_prints_events_then_done(openai_server: FakeOpenAIServer) -> None:
    code, out = invoke(openai_server, "hello", "--stream", "--json")
    events = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert events[-1]["kind"] == "done"
    assert events[-1]["completion"]["text"] == "Hello from the fake server"


def test_llm_passes_options_and_system_prompt(openai_server: FakeOpenAIServer) -> None:
    invoke(
        openai_server, "hello", "--temperature", "0", "--max-tokens", "2", "--system", "Be terse."
    )
    body = openai_server.requests[-1]
    assert body["temperature"] == 0
    assert body["max_completion_tokens"] == 2
    assert body["messages"][0] == {"role": "system", "content": "Be terse."}


def test_llm_call_is_recorded_in_the_ledger(openai_server: FakeOpenAIServer) -> None:
    invoke(openai_server, "hello")
    assert [r.outcome for r in Ledger().records()] == ["ok"]


def test_llm_non_retryable_error_exits_2_with_a_message(openai_server: FakeOpenAIServer) -> None:
    openai_server.push_fault(Fault(FaultKind.UNAUTHORIZED))
    result = CliRunner().invoke(
        app(), ["llm", "hello", "--provider", "openai", "--base-url", openai_server.base_url], env={"OPENAI_API_KEY": "bad"}
    )
    assert result.exit_code == 2
    assert "API key" in result.stderr


def test_llm_unknown_provider_is_rejected() -> None:
    result = CliRunner().invoke(app(), ["llm", "hello", "--provider", "cohere"])
    assert result.exit_code == 2
