"""`LLM`: one interface for every model, with retries, cache, ledger and structured output.

    llm = LLM("openai", "gpt-4o-mini")
    answer = llm.complete("What is RAG?", temperature=0)
    for event in llm.stream("Tell me a story"):
        ...

Every attempt (retry, fallback, structured-output re-ask, cache hit) is one ledger row.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from pydantic import BaseModel, ValidationError

from ragline.llm.cache import ResponseCache, cache_allowed, cache_key
from ragline.llm.errors import LLMConfigError, StructuredOutputError
from ragline.llm.ledger import CACHE_HIT, CANCELLED, OK, CallRecord, Ledger
from ragline.llm.pricing import PriceTable, default_prices
from ragline.llm.providers import Provider, build_provider, parse_provider
from ragline.llm.retry import AttemptInfo, RetryExecutor, RetryPolicy
from ragline.llm.stream import StreamAccumulator, replay_events
from ragline.llm.structured import (
    DEFAULT_MAX_REASKS,
    parse_reply,
    reask_messages,
    response_schema,
)
from ragline.llm.tokens import count_prompt_tokens
from ragline.llm.tools import ToolFunction, as_tool_specs
from ragline.llm.types import (
    CallOptions,
    Completion,
    Message,
    ProviderName,
    RawResult,
    Request,
    Role,
    StreamEvent,
    StreamEventKind,
    ToolSpec,
    Usage,
)

DEFAULT_MODELS = {
    ProviderName.OPENAI: "gpt-4o-mini",
    ProviderName.ANTHROPIC: "claude-haiku-4-5",
}
_OPTION_NAMES = frozenset(f.name for f in fields(CallOptions))
Messages = str | Message | Sequence[Message | dict[str, str]]


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A provider and a model: one link of the fallback chain."""

    provider: str
    model: str


def parse_model_ref(ref: str, default_provider: str) -> ModelRef:
    """ "provider:model" or a bare model name (on `default_provider`)."""
    head, sep, tail = ref.partition(":")
    if sep and head in {p.value for p in ProviderName}:
        return ModelRef(head, tail)
    return ModelRef(default_provider, ref)


def as_messages(messages: Messages) -> tuple[Message, ...]:
    """A str becomes one user message."""
    if isinstance(messages, str):
        return (Message.user(messages),)
    if isinstance(messages, Message):
        return (messages,)
    return tuple(m if isinstance(m, Message) else _from_dict(m) for m in messages)


def _from_dict(message: Any) -> Message:
    """An OpenAI-style {"role": ..., "content": ...} dict, the shape most users already have."""
    if not isinstance(message, dict) or "role" not in message or "content" not in message:
        raise LLMConfigError(
            f"a message must be a Message or a dict with 'role' and 'content', got {message!r}"
        )
    return Message(Role(message["role"]), str(message["content"]))


@dataclass
class _Call:
    """The bookkeeping of one logical call across attempts and re-asks."""

    call_id: str
    purpose: str
    started: float
    attempts: int = 0
    reask: int = 0
    usage: Usage = field(default_factory=Usage)
    cost: float | None = 0.0
    ttft: float | None = None
    stream_acc: dict[int, StreamAccumulator] = field(default_factory=dict)


log = logging.getLogger("ragline")
_T = TypeVar("_T")
WAIT_NOTICE_S = 10.0  # a first attempt still unanswered after this long is announced
_DEFAULT_HOSTS = {"openai": "api.openai.com", "anthropic": "api.anthropic.com",
                  "local": "the local model"}


class _WaitNotice:
    """Says on the `ragline` logger that a call is waiting: at once for a retry, after
    WAIT_NOTICE_S for a first attempt, so a slow or hanging server is never silent."""

    def __init__(self, host: str, number: int, of: int) -> None:
        self.message = f"waiting for {host} (attempt {number}/{of})..."
        self.number = number
        self._timer: threading.Timer | None = None

    def __enter__(self) -> _WaitNotice:
        if self.number > 1:
            log.warning(self.message)
        else:
            self._timer = threading.Timer(WAIT_NOTICE_S, log.warning, (self.message,))
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()


class LLM:
    """A model behind the one interface. See the module docstring for an example.

    `provider` is "openai", "anthropic", "openai-compatible", "local", or a Provider object.
    `cache=True` caches replies at temperature 0 (per call: `cache=True/False`); `ledger`
    records every attempt. `sleep`/`async_sleep`/`clock` are injectable for tests.
    """

    def __init__(
        self,
        provider: str | ProviderName | Provider = ProviderName.OPENAI,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        cache: bool | ResponseCache = True,
        ledger: bool | Ledger = True,
        prices: PriceTable | None = None,
        max_reasks: int = DEFAULT_MAX_REASKS,
        defaults: CallOptions | None = None,
        model_path: Path | None = None,
        threads: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._build_kw: dict[str, Any] = {
            "timeout": timeout,
            "model_path": model_path,
            "threads": threads,
        }
        self._providers: dict[str, Provider] = {}
        name = self._primary_provider(provider, base_url, api_key)
        self.provider_name = name
        self.model = model or self._default_model(self._providers[name])
        self.retry = retry or RetryPolicy()
        self.targets = (
            ModelRef(name, self.model),
            *(parse_model_ref(f, name) for f in self.retry.fallbacks),
        )
        self.cache = (
            cache if isinstance(cache, ResponseCache) else (ResponseCache() if cache else None)
        )
        self.ledger = ledger if isinstance(ledger, Ledger) else (Ledger() if ledger else None)
        self.prices = prices or default_prices()
        self.max_reasks = max_reasks
        self.defaults = defaults or CallOptions()
        self.clock = clock
        self.executor = RetryExecutor(self.retry, clock=clock, sleep=sleep, async_sleep=async_sleep)

    # --- construction ------------------------------------------------------------------

    def _primary_provider(
        self, provider: str | ProviderName | Provider, base_url: str | None, api_key: str | None
    ) -> str:
        if isinstance(provider, str | ProviderName):
            kind = parse_provider(provider)
            self._providers[kind.value] = build_provider(
                kind, base_url=base_url, api_key=api_key, **self._build_kw
            )
            return kind.value
        self._providers[provider.name] = provider
        return provider.name

    @staticmethod
    def _default_model(provider: Provider) -> str:
        served = getattr(provider, "default_model", None)
        if isinstance(served, str):
            return served
        try:
            return DEFAULT_MODELS[ProviderName(provider.name)]
        except (KeyError, ValueError):
            raise LLMConfigError(
                f"provider {provider.name!r} has no default model: pass --model NAME ([llm] "
                "model), e.g. the name the server lists at /v1/models"
            ) from None

    def _provider(self, name: str) -> Provider:
        if name not in self._providers:  # a fallback on another provider: default settings
            self._providers[name] = build_provider(name, **self._build_kw)
        return self._providers[name]

    def _options(self, overrides: dict[str, Any]) -> CallOptions:
        unknown = set(overrides) - _OPTION_NAMES
        if unknown:
            raise LLMConfigError(
                f"unknown call option(s) {sorted(unknown)}: use {sorted(_OPTION_NAMES)}"
            )
        if isinstance(overrides.get("stop"), str):
            overrides["stop"] = (overrides["stop"],)
        elif overrides.get("stop") is not None:
            overrides["stop"] = tuple(overrides["stop"])
        return replace(self.defaults, **overrides)

    def _request(
        self,
        messages: Messages,
        options: dict[str, Any],
        tools: Iterable[ToolSpec | ToolFunction] | None,
        tool_choice: str | None,
        response_model: type[BaseModel] | None,
    ) -> Request:
        return Request(
            model=self.model,
            messages=as_messages(messages),
            options=self._options(options),
            tools=as_tool_specs(tools or ()),
            tool_choice=tool_choice,
            response_schema=response_schema(response_model) if response_model else None,
        )

    # --- the public calls ------------------------------------------------------------

    def complete(
        self,
        messages: Messages,
        *,
        response_model: type[BaseModel] | None = None,
        tools: Iterable[ToolSpec | ToolFunction] | None = None,
        tool_choice: str | None = None,
        max_reasks: int | None = None,
        **options: Any,
    ) -> Completion:
        """One logical call: retries, fallbacks and structured-output re-asks included."""
        request = self._request(messages, options, tools, tool_choice, response_model)
        call = self._new_call(request)
        reasks = self.max_reasks if max_reasks is None else max_reasks
        while True:
            raw, cached = self._attempts(call, request)
            parsed, retry_with = self._check(call, request, raw, response_model, reasks)
            if retry_with is None:
                return self._completion(call, raw, parsed, cached)
            request = retry_with

    async def acomplete(
        self,
        messages: Messages,
        *,
        response_model: type[BaseModel] | None = None,
        tools: Iterable[ToolSpec | ToolFunction] | None = None,
        tool_choice: str | None = None,
        max_reasks: int | None = None,
        **options: Any,
    ) -> Completion:
        """Async twin of `complete`."""
        request = self._request(messages, options, tools, tool_choice, response_model)
        call = self._new_call(request)
        reasks = self.max_reasks if max_reasks is None else max_reasks
        while True:
            raw, cached = await self._aattempts(call, request)
            parsed, retry_with = self._check(call, request, raw, response_model, reasks)
            if retry_with is None:
                return self._completion(call, raw, parsed, cached)
            request = retry_with

    def stream(
        self,
        messages: Messages,
        *,
        tools: Iterable[ToolSpec | ToolFunction] | None = None,
        tool_choice: str | None = None,
        **options: Any,
    ) -> Iterator[StreamEvent]:
        """Events as they arrive; the last is DONE and carries the whole `completion`.

        A stream cut off before any content reached you is retried; after that it raises
        `StreamInterrupted` with the text so far in `partial_text` (see `retry.py`).
        """
        request = self._request(messages, options, tools, tool_choice, None)
        call = self._new_call(request)
        hit = self._cache_lookup(call, request)
        if hit is not None:
            yield from self._replay(call, hit)
            return
        record = self._stream_recorder(call, request)
        runner = self.executor.run_stream(
            self.targets, self._opener(request), _content_text, record
        )
        for info, event in runner:
            out = self._on_stream_event(call, info, event)
            if out is not None:
                yield out
        yield self._stream_done(call, request)

    async def astream(
        self,
        messages: Messages,
        *,
        tools: Iterable[ToolSpec | ToolFunction] | None = None,
        tool_choice: str | None = None,
        **options: Any,
    ) -> AsyncIterator[StreamEvent]:
        """Async twin of `stream`."""
        request = self._request(messages, options, tools, tool_choice, None)
        call = self._new_call(request)
        hit = self._cache_lookup(call, request)
        if hit is not None:
            for event in self._replay(call, hit):
                yield event
            return
        record = self._stream_recorder(call, request)
        runner = self.executor.arun_stream(
            self.targets, self._aopener(request), _content_text, record
        )
        async for info, event in runner:
            out = self._on_stream_event(call, info, event)
            if out is not None:
                yield out
        yield self._stream_done(call, request)

    def count_prompt_tokens(self, messages: Messages) -> int:
        """Prompt tokens before sending (exact for OpenAI and local, estimated for Anthropic)."""
        msgs = as_messages(messages)
        provider = self._provider(self.provider_name)
        counter = getattr(provider, "count_tokens", None)
        if counter is not None:
            return int(counter(msgs))
        return count_prompt_tokens(self.provider_name, self.model, msgs)

    @property
    def context_window(self) -> int | None:
        """Tokens one request may hold (prompt and reply), where the provider knows it (the local
        model's context size); None for hosted models, whose windows are large."""
        window = getattr(self._provider(self.provider_name), "context_window", None)
        return int(window) if isinstance(window, int) else None

    def close(self) -> None:
        """Stop a local model server and close the ledger and cache connections."""
        for provider in self._providers.values():
            closer = getattr(provider, "close", None)
            if closer is not None:
                closer()
        if self.ledger is not None:
            self.ledger.close()
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> LLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- attempts, cache, ledger ---------------------------------------------------

    def _new_call(self, request: Request) -> _Call:
        return _Call(uuid.uuid4().hex, request.options.purpose, self.clock())

    def _use_cache(self, request: Request) -> bool:
        return self.cache is not None and cache_allowed(request.options)

    def _cache_lookup(self, call: _Call, request: Request) -> RawResult | None:
        if self.cache is None or not self._use_cache(request):
            return None
        hit = self.cache.get(cache_key(self.provider_name, request))
        if hit is not None:
            call.attempts += 1
            self._write(
                CallRecord(
                    call.call_id,
                    call.attempts,
                    self.provider_name,
                    self.model,
                    call.purpose,
                    CACHE_HIT,
                    usage=hit.usage,
                    cost_usd=0.0,
                    reask=call.reask,
                )
            )
        return hit

    def _cache_store(self, request: Request, raw: RawResult, info: AttemptInfo[ModelRef]) -> None:
        # A fallback model's reply must not be served later as the primary model's.
        if self.cache is not None and self._use_cache(request) and info.target_index == 0:
            self.cache.put(cache_key(self.provider_name, request), raw)

    def _attempts(self, call: _Call, request: Request) -> tuple[RawResult, bool]:
        hit = self._cache_lookup(call, request)
        if hit is not None:
            return hit, True
        raw, info = self.executor.run(
            self.targets,
            self._announced(
                lambda t: self._provider(t.provider).complete(replace(request, model=t.model))),
            self._recorder(call),
        )
        self._cache_store(request, raw, info)
        return raw, False

    async def _aattempts(self, call: _Call, request: Request) -> tuple[RawResult, bool]:
        hit = self._cache_lookup(call, request)
        if hit is not None:
            return hit, True
        numbers = itertools.count(1)

        async def attempt(t: ModelRef) -> RawResult:
            with self._wait_notice(t, next(numbers)):
                return await self._provider(t.provider).acomplete(replace(request, model=t.model))

        raw, info = await self.executor.arun(self.targets, attempt, self._recorder(call))
        self._cache_store(request, raw, info)
        return raw, False

    def _recorder(self, call: _Call) -> Callable[[AttemptInfo[ModelRef], RawResult | None], None]:
        offset = call.attempts

        def record(info: AttemptInfo[ModelRef], raw: RawResult | None) -> None:
            call.attempts = offset + info.number
            usage = raw.usage if raw is not None else Usage()
            self._record_attempt(call, info, usage, None)

        return record

    def _record_attempt(
        self, call: _Call, info: AttemptInfo[ModelRef], usage: Usage, ttft: float | None
    ) -> None:
        target, error = info.target, info.error
        cost = self.prices.cost(target.provider, target.model, usage) if error is None else 0.0
        call.usage = call.usage + usage
        call.cost = None if cost is None or call.cost is None else call.cost + cost
        outcome = CANCELLED if info.cancelled else (OK if error is None else type(error).__name__)
        self._write(
            CallRecord(
                call.call_id,
                call.attempts,
                target.provider,
                target.model,
                call.purpose,
                outcome,
                usage=usage,
                cost_usd=cost,
                wait_s=info.wait_s,
                provider_s=info.provider_s,
                ttft_s=ttft,
                reask=call.reask,
                fallback=info.target_index > 0,
                error=error.detail if error is not None else None,
            )
        )

    def _write(self, record: CallRecord) -> None:
        if self.ledger is not None:
            self.ledger.record(record)

    def _check(
        self,
        call: _Call,
        request: Request,
        raw: RawResult,
        response_model: type[BaseModel] | None,
        reasks: int,
    ) -> tuple[BaseModel | None, Request | None]:
        """(parsed, None) when done, or (None, the re-ask request)."""
        if response_model is None:
            return None, None
        try:
            return parse_reply(raw.text, response_model), None
        except ValidationError as error:
            if call.reask >= reasks:
                failure = StructuredOutputError(
                    f"reply did not validate as {response_model.__name__} after {reasks} "
                    f"re-ask(s): {error.errors()[:3]}",
                    provider=self.provider_name,
                    model=self.model,
                )
                failure.attempts = call.attempts
                raise failure from error
            call.reask += 1
            return None, replace(
                request, messages=reask_messages(request.messages, raw.text, error)
            )

    def _completion(
        self, call: _Call, raw: RawResult, parsed: BaseModel | None, cached: bool
    ) -> Completion:
        return Completion(
            text=raw.text,
            model=raw.model,
            provider=self.provider_name,
            usage=call.usage,  # every real attempt of this call; cache hits add nothing
            finish_reason=raw.finish_reason,
            tool_calls=raw.tool_calls,
            parsed=parsed,
            latency_s=self.clock() - call.started,
            time_to_first_token_s=call.ttft,
            attempts=call.attempts,
            cost_usd=call.cost,
            cached=cached,
            call_id=call.call_id,
        )

    # --- streaming internals ---------------------------------------------------------

    def _opener(self, request: Request) -> Callable[[ModelRef], Iterator[StreamEvent]]:
        numbers = itertools.count(1)

        def open_stream(t: ModelRef) -> Iterator[StreamEvent]:
            events = self._provider(t.provider).stream(replace(request, model=t.model))
            with self._wait_notice(t, next(numbers)):  # until the first event arrives
                first = next(events, None)
            if first is not None:
                yield first
                yield from events

        return open_stream

    def _aopener(self, request: Request) -> Callable[[ModelRef], AsyncIterator[StreamEvent]]:
        numbers = itertools.count(1)

        async def open_stream(t: ModelRef) -> AsyncIterator[StreamEvent]:
            events = self._provider(t.provider).astream(replace(request, model=t.model))
            with self._wait_notice(t, next(numbers)):
                first = await anext(events, None)
            if first is not None:
                yield first
                async for event in events:
                    yield event

        return open_stream

    def _announced(self, attempt: Callable[[ModelRef], _T]) -> Callable[[ModelRef], _T]:
        numbers = itertools.count(1)

        def announced(t: ModelRef) -> _T:
            with self._wait_notice(t, next(numbers)):
                return attempt(t)

        return announced

    def _wait_notice(self, target: ModelRef, number: int) -> _WaitNotice:
        return _WaitNotice(self._host(target), number, self.retry.max_attempts * len(self.targets))

    def _host(self, target: ModelRef) -> str:
        provider = self._provider(target.provider)
        base = getattr(provider, "base_url", None)
        if base:
            return urlparse(str(base)).netloc or str(base)
        return _DEFAULT_HOSTS.get(target.provider, target.provider)

    def _on_stream_event(
        self, call: _Call, info: AttemptInfo[ModelRef], event: StreamEvent
    ) -> StreamEvent | None:
        acc = call.stream_acc.setdefault(
            info.number, StreamAccumulator(target=info.target, info=info)
        )
        acc.add(event, self.clock())
        if call.ttft is None and _content_text(event) is not None:
            call.ttft = self.clock() - call.started
        return None if event.kind is StreamEventKind.DONE else event

    def _stream_recorder(
        self, call: _Call, request: Request
    ) -> Callable[[AttemptInfo[ModelRef]], None]:
        def record(info: AttemptInfo[ModelRef]) -> None:
            call.attempts = info.number
            acc = call.stream_acc.get(info.number)
            usage = acc.usage if acc is not None and info.error is None else Usage()
            ttft = acc.first_content_at - info.started if acc and acc.first_content_at else None
            self._record_attempt(call, info, usage, ttft)
            if acc is not None and info.error is None and not info.cancelled:
                self._cache_store(request, acc.result(info.target.model), info)

        return record

    def _stream_done(self, call: _Call, request: Request) -> StreamEvent:
        acc = call.stream_acc[call.attempts]
        raw = acc.result(acc.target.model)
        completion = self._completion(call, raw, None, False)
        return StreamEvent(
            StreamEventKind.DONE, finish_reason=raw.finish_reason, completion=completion
        )

    def _replay(self, call: _Call, hit: RawResult) -> Iterator[StreamEvent]:
        call.ttft = self.clock() - call.started
        completion = self._completion(call, hit, None, True)
        yield from replay_events(hit, completion)


def _content_text(event: StreamEvent) -> str | None:
    """What the caller received of the reply: text, "" for a tool-call piece, None otherwise."""
    if event.kind is StreamEventKind.TEXT:
        return event.text
    return "" if event.kind is StreamEventKind.TOOL_CALL_DELTA else None
