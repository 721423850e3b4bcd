"""The provider seam: ONE attempt per call, typed errors, no retries (see `retry.py`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Protocol, runtime_checkable

from ragline.llm.types import RawResult, Request, StreamEvent


@runtime_checkable
class Provider(Protocol):
    """Contract of a model provider.

    Each method makes exactly one attempt and raises a `ProviderError` subclass on failure.
    A stream must end with a DONE event; a stream that stops before it raises
    `StreamInterrupted`.
    """

    name: str

    def complete(self, request: Request) -> RawResult: ...

    def stream(self, request: Request) -> Iterator[StreamEvent]: ...

    async def acomplete(self, request: Request) -> RawResult: ...

    def astream(self, request: Request) -> AsyncIterator[StreamEvent]: ...
