"""The `local` provider: a GGUF model served by an embedded llama.cpp server on 127.0.0.1.

The server (`ragline.llm.local_server.LocalModelServer`) is imported lazily and started on
the first call, then every call goes through the OpenAI-compatible provider. Tools and
structured output are schema-constrained: llama.cpp compiles the JSON schema to a grammar.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragline.llm.providers.openai_compatible import OpenAICompatibleProvider, ToolMode
from ragline.llm.types import Message, RawResult, Request, StreamEvent

if TYPE_CHECKING:
    from ragline.llm.local_server import LocalModelServer

DEFAULT_MODEL = "local"  # "the model the server was started with"


class LocalProvider:
    """Starts `LocalModelServer` on first use; `close()` stops it."""

    name = "local"

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        threads: int | None = None,
        ctx_size: int = 4096,
        timeout: float = 120.0,
        tool_mode: ToolMode = ToolMode.SCHEMA,
    ) -> None:
        self._model_path = model_path
        self._threads = threads
        self._ctx_size = ctx_size
        self._timeout = timeout
        self._tool_mode = tool_mode
        self._lock = threading.Lock()
        self._server: LocalModelServer | None = None
        self._inner: OpenAICompatibleProvider | None = None

    @property
    def context_window(self) -> int:
        """The context of one request, prompt and reply (llama.cpp's per-slot ctx_size)."""
        return self._ctx_size

    @property
    def default_model(self) -> str:
        """The served model's name (the GGUF file's stem), known without starting the server."""
        from ragline.llm.local_server import LocalModelServer

        return LocalModelServer(self._model_path, threads=self._threads).model_name

    def _ready(self) -> tuple[LocalModelServer, OpenAICompatibleProvider]:
        with self._lock:
            if self._server is None or self._inner is None:
                from ragline.llm.local_server import LocalModelServer

                server = LocalModelServer(
                    self._model_path, threads=self._threads, ctx_size=self._ctx_size,
                    startup_timeout=max(60.0, self._timeout),
                ).start()
                self._inner = OpenAICompatibleProvider(
                    base_url=server.base_url,
                    api_key=server.api_key,
                    timeout=self._timeout,
                    tool_mode=self._tool_mode,
                )
                self._server = server
            return self._server, self._inner

    def _resolve(self, request: Request) -> tuple[OpenAICompatibleProvider, Request]:
        server, inner = self._ready()
        if request.model in ("", DEFAULT_MODEL):
            request = replace(request, model=server.model_name)
        return inner, request

    def complete(self, request: Request) -> RawResult:
        inner, request = self._resolve(request)
        return inner.complete(request)

    async def acomplete(self, request: Request) -> RawResult:
        inner, request = self._resolve(request)
        return await inner.acomplete(request)

    def stream(self, request: Request) -> Iterator[StreamEvent]:
        inner, request = self._resolve(request)
        yield from inner.stream(request)

    async def astream(self, request: Request) -> AsyncIterator[StreamEvent]:
        inner, request = self._resolve(request)
        async for event in inner.astream(request):
            yield event

    def count_tokens(self, messages: tuple[Message, ...]) -> int:
        """Prompt tokens under the model's own tokenizer and chat template."""
        server, _ = self._ready()
        rendered: list[dict[str, Any]] = [
            {"role": m.role.value, "content": m.content} for m in messages
        ]
        return server.count_chat_tokens(rendered)

    def close(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.stop()
            self._server = None
            self._inner = None
