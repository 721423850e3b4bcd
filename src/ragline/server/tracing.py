"""OpenTelemetry traces of the service's requests: how an operator finds out why it answered that.

Every search, ask, chat completion and verify is a trace: a root span named after the
operation (with the collection, the key's public id, the configuration hash, the experiment
arm, the question, the answer's verdict counts, tokens and cost) and a child span per stage of
the pipeline: `rewrite` (a follow-up made standalone), `retrieve` (search and the relevance
gate) with `rerank` under it when a reranker is configured, `generate` (the model, or the
extractive answer) and `verify`.

The stage spans are placed from the pipeline's own stage timings (`Answer.timings`:
`retrieve_s`, `generate_s`, `verify_s`, ...), so the pipeline knows nothing of OpenTelemetry;
the reranker's calls are timed by `TimedReranker` around the configured one.

Each app has its own `TracerProvider` (never the global one) with a `BatchSpanProcessor` into
`SQLiteSpanExporter` (`<data_dir>/traces.sqlite`); an OTLP/HTTP exporter is added only when an
endpoint is configured (`--otlp-endpoint` or `OTEL_EXPORTER_OTLP_ENDPOINT`), and its package
(`ragline[otlp]`) is imported only then: otherwise nothing leaves the machine.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace as otel
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Span, Status, StatusCode

from ragline.answer.types import Answer
from ragline.errors import ConfigError
from ragline.retrieve.base import Reranker
from ragline.retrieve.rerank import NoReranker
from ragline.server.traces import SpanRow, TraceStore, plain_attributes
from ragline.types import Hit

log = logging.getLogger("ragline.server")
TRACE_HEADER = "X-Ragline-Trace"
OTLP_ENV = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_TEXT_LIMIT = 2000
_STATUS = {StatusCode.OK: "ok", StatusCode.ERROR: "error", StatusCode.UNSET: "unset"}


# ---------------------------------------------------------------- export


class SQLiteSpanExporter(SpanExporter):
    """Finished spans into `traces.sqlite`, one transaction per batch."""

    def __init__(self, store: TraceStore) -> None:
        self.store = store

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            self.store.write([span_row(s) for s in spans])
        except sqlite3.Error as exc:
            log.error("could not store %d trace spans: %s", len(spans), exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def span_row(span: ReadableSpan) -> SpanRow:
    context = span.get_span_context()
    assert context is not None
    parent = span.parent
    return SpanRow(trace_id=format(context.trace_id, "032x"),
                   span_id=format(context.span_id, "016x"),
                   parent_id=format(parent.span_id, "016x") if parent is not None else None,
                   name=span.name, start_ns=int(span.start_time or 0),
                   end_ns=int(span.end_time or span.start_time or 0),
                   status=_STATUS.get(span.status.status_code, "unset"),
                   attributes=plain_attributes(dict(span.attributes or {})))


def otlp_endpoint(configured: str | None) -> str | None:
    """The OTLP endpoint to export to: `--otlp-endpoint`, else the standard variables."""
    return configured or next((os.environ[v] for v in OTLP_ENV if os.environ.get(v)), None)


def _otlp_exporter(configured: str | None) -> SpanExporter:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise ConfigError("exporting traces over OTLP needs the otlp extra: pip install "
                          "'ragline[otlp]' (or drop --otlp-endpoint and unset "
                          "OTEL_EXPORTER_OTLP_ENDPOINT: traces are kept in traces.sqlite "
                          "either way)") from None
    if configured is None:  # the exporter reads the standard variables (and headers) itself
        exporter: SpanExporter = OTLPSpanExporter()
        return exporter
    base = configured.rstrip("/")
    exporter = OTLPSpanExporter(endpoint=base if base.endswith("/v1/traces") else
                                f"{base}/v1/traces")
    return exporter


class Tracing:
    """The tracer of one app, its span processors, and the store they write to."""

    def __init__(self, data_dir: Path, *, otlp: str | None = None,
                 delay_ms: int = 500) -> None:
        from importlib.metadata import version

        self.store = TraceStore.in_dir(data_dir)
        self.delay_ms = delay_ms
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": "ragline",
                                      "service.version": version("ragline")}),
            shutdown_on_exit=False)
        self.provider.add_span_processor(BatchSpanProcessor(
            SQLiteSpanExporter(self.store), schedule_delay_millis=delay_ms))
        self.otlp = otlp_endpoint(otlp)
        if self.otlp is not None:
            self.provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(otlp)))
        self.tracer = self.provider.get_tracer("ragline.server")

    def start(self, name: str, *, key_id: str, collection: str | None,
              **attributes: Any) -> RequestTrace:
        """The root span of one request (ended by `RequestTrace.end`)."""
        span = self.tracer.start_span(name, kind=otel.SpanKind.SERVER)
        trace = RequestTrace(self.tracer, span)
        trace.set(key_id=key_id, collection=collection, operation=name, **attributes)
        return trace

    def flush(self) -> None:
        """Write this process's finished spans now (before reading them back)."""
        self.provider.force_flush(5_000)

    def close(self) -> None:
        self.provider.shutdown()


# ---------------------------------------------------------------- one request


def _value(value: Any) -> Any:
    """An attribute value OpenTelemetry accepts (None: leave the attribute out)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if len(value) <= _TEXT_LIMIT else value[: _TEXT_LIMIT - 3] + "..."
    if isinstance(value, list | tuple):
        items = [v for v in value if isinstance(v, str | bool | int | float)]
        return [str(v) for v in items] if len({type(v) for v in items}) > 1 else items
    return str(value)


def _attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        plain = _value(value)
        if plain is not None:
            out[key if key.startswith("ragline.") else f"ragline.{key}"] = plain
    return out


class RequestTrace:
    """The root span of a request and the stage spans under it."""

    def __init__(self, tracer: otel.Tracer, span: Span) -> None:
        self._tracer, self.span = tracer, span
        self.trace_id = format(span.get_span_context().trace_id, "032x")
        self._ended = False
        self._lock = threading.Lock()

    def set(self, **attributes: Any) -> None:
        """Attributes of the root span (`ragline.<name>`; None values are left out)."""
        self.span.set_attributes(_attributes(attributes))

    def stage(self, name: str, start_ns: int, end_ns: int, *, parent: Span | None = None,
              extra: Mapping[str, Any] | None = None, **attributes: Any) -> Span:
        """A finished child span over [start_ns, end_ns] (ns since the epoch), under `parent`
        (default: the root); `extra` holds attributes whose names are not identifiers."""
        context = otel.set_span_in_context(parent or self.span)
        span = self._tracer.start_span(name, context=context, start_time=start_ns,
                                       attributes=_attributes({**attributes, **(extra or {})}))
        span.end(end_time=max(start_ns, end_ns))
        return span

    def fail(self, status: int, code: str) -> None:
        """Mark the request failed: its HTTP status and error code, never the message."""
        self.set(http_status=status, error=code)
        self.span.set_status(Status(StatusCode.ERROR, code))

    def end(self) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
        self.span.end()


# ---------------------------------------------------------------- the reranker's calls


_reranks = threading.local()


class TimedReranker:
    """The configured reranker, with each call's start and end recorded for this thread's
    trace (`drain_reranks`). Put around a real reranker only: `NoReranker` stays as it is, so
    a search without one records no rerank stage."""

    def __init__(self, inner: Reranker) -> None:
        self.inner = inner
        self.name, self.depth = inner.name, inner.depth

    def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        started = time.time_ns()
        try:
            return self.inner.rerank(query, hits)
        finally:
            calls: list[tuple[int, int, str, int]] = _reranks.__dict__.setdefault("calls", [])
            calls.append((started, time.time_ns(), self.name, len(hits)))


def timed(reranker: Reranker) -> Reranker:
    return reranker if isinstance(reranker, NoReranker | TimedReranker) else \
        TimedReranker(reranker)


def drain_reranks() -> list[tuple[int, int, str, int]]:
    """The rerank calls this thread made since the last drain: (start, end, name, hits)."""
    calls: list[tuple[int, int, str, int]] = _reranks.__dict__.pop("calls", [])
    return calls


# ---------------------------------------------------------------- spans of an answer


def _ns(seconds: float | None) -> int:
    return round((seconds or 0.0) * 1e9)


def record_search(trace: RequestTrace, hits: Sequence[Hit], started: int, ended: int,
                  **attributes: Any) -> None:
    """The `retrieve` span of a search (and its `rerank` calls)."""
    retrieve = trace.stage("retrieve", started, ended, hits=len(hits),
                           doc_ids=[h.chunk.doc_id for h in hits[:10]], **attributes)
    _reranks_under(trace, retrieve)
    trace.set(hits=len(hits))


def _reranks_under(trace: RequestTrace, parent: Span) -> None:
    for start, end, name, count in drain_reranks():
        trace.stage("rerank", start, end, parent=parent, reranker=name, hits=count)


def record_answer(trace: RequestTrace, answer: Answer, ended: int) -> None:
    """Stage spans of an answer, placed from its timings, and the answer on the root span:
    rewrite and retrieve forward from the start, generate and verify back from the end (what
    lies between them, building the prompt, takes microseconds)."""
    timings, usage = answer.timings, answer.usage
    start = ended - _ns(timings.get("total_s"))
    cursor = start
    if "rewrite_s" in timings:
        trace.stage("rewrite", cursor, cursor + _ns(timings["rewrite_s"]),
                    standalone_question=usage.get("standalone_question"))
        cursor += _ns(timings["rewrite_s"])
    if "retrieve_s" in timings:
        gate = usage.get("retrieval") or {}
        retrieve = trace.stage(
            "retrieve", cursor, cursor + _ns(timings["retrieve_s"]),
            hits=len(answer.sources), doc_ids=[s.get("doc_id") for s in answer.sources],
            relevance=gate.get("relevance"), threshold=gate.get("threshold"),
            answerable=gate.get("answerable"))
        _reranks_under(trace, retrieve)
    cursor = ended
    verify_s, generate_s = timings.get("verify_s"), timings.get("generate_s",
                                                                  timings.get("extract_s"))
    if verify_s is not None:
        _verify_span(trace, answer, ended - _ns(verify_s), ended)
        cursor -= _ns(verify_s)
    if generate_s is not None:
        tokens = usage.get("tokens") or {}
        trace.stage("generate", cursor - _ns(generate_s), cursor,
                    generation=usage.get("generation") or "extractive",
                    provider=usage.get("provider"), model=usage.get("model"),
                    served_model=usage.get("served_model"), prompt=usage.get("prompt"),
                    input_tokens=tokens.get("input_tokens"),
                    output_tokens=tokens.get("output_tokens"), cost_usd=usage.get("cost_usd"),
                    attempts=usage.get("attempts"), cached=usage.get("cached"),
                    ttft_s=timings.get("ttft_s"), call_id=usage.get("call_id"),
                    claims=len(answer.checks) if verify_s is None else None)
    flagged = sum(c.flagged for c in answer.checks)
    tokens = usage.get("tokens") or {}
    trace.set(answer=answer.text, abstained=answer.abstained,
              abstain_reason=answer.abstain_reason, claims=len(answer.checks),
              claims_flagged=flagged, cited=[c.doc_id for c in answer.citations],
              cost_usd=usage.get("cost_usd"), input_tokens=tokens.get("input_tokens"),
              output_tokens=tokens.get("output_tokens"), model=usage.get("model"),
              fallback=usage.get("fallback"), notes=list(usage.get("notes") or []),
              total_s=timings.get("total_s"))


def _verify_span(trace: RequestTrace, answer: Answer, start: int, end: int) -> None:
    verdicts = Counter(c.verdict.value for c in answer.checks)
    trace.stage("verify", start, end, claims=len(answer.checks),
                claims_flagged=sum(c.flagged for c in answer.checks),
                extra={f"verdict.{name}": count for name, count in sorted(verdicts.items())})


def record_verify(trace: RequestTrace, report: Mapping[str, Any], started: int, ended: int,
                  verifier: str) -> None:
    """The `verify` span of `POST .../verify` (any system's answer checked)."""
    claims = report.get("checks") or []
    verdicts = Counter(str(c.get("verdict")) for c in claims if isinstance(c, Mapping))
    trace.stage("verify", started, ended, verifier=verifier, claims=len(claims),
                claims_flagged=report.get("flagged"),
                extra={f"verdict.{name}": count for name, count in sorted(verdicts.items())})
    trace.set(claims=len(claims), claims_flagged=report.get("flagged"), ok=report.get("ok"))
