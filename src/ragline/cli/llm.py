"""CLI commands of the LLM layer; the main CLI mounts them:

app.command("llm")(llm_command)
app.add_typer(ledger_app, name="ledger")
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ragline.errors import RaglineError
from ragline.llm.client import LLM
from ragline.llm.config import build_llm, llm_settings
from ragline.llm.ledger import Ledger, SummaryRow
from ragline.llm.types import Completion, Message, ProviderName, StreamEvent, StreamEventKind

ledger_app = typer.Typer(rich_markup_mode=None, help="The LLM cost ledger: every call and attempt.", no_args_is_help=True)


def _fail(message: str) -> None:
    Console(stderr=True).print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(2)


def completion_dict(completion: Completion) -> dict[str, Any]:
    """A JSON-ready view of a Completion."""
    out = asdict(completion)
    out["finish_reason"] = completion.finish_reason.value
    out["parsed"] = None
    return out


def _print_stream(llm: LLM, prompt: Any, as_json: bool, options: dict[str, Any]) -> None:
    event: StreamEvent | None = None
    for event in llm.stream(prompt, **options):
        if as_json:
            payload: dict[str, Any] = {"kind": event.kind.value}
            if event.kind is StreamEventKind.TEXT:
                payload["text"] = event.text
            if event.completion is not None:
                payload["completion"] = completion_dict(event.completion)
            sys.stdout.write(json.dumps(payload) + "\n")
        elif event.kind is StreamEventKind.TEXT:
            sys.stdout.write(event.text)
        sys.stdout.flush()
    if not as_json:
        sys.stdout.write("\n")


def llm_command(
    prompt: Annotated[str, typer.Argument(help="The prompt (one user message).")],
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="TOML configuration (its [llm] section).")] = None,
    provider: Annotated[ProviderName | None, typer.Option(
        help="Which provider (default: [llm] provider, else local).")] = None,
    timeout: Annotated[float | None, typer.Option(
        min=0.001, help="Seconds per attempt (default: [llm] timeout, 60).")] = None,
    base_url: Annotated[str | None, typer.Option(help="Server URL (openai-compatible).")] = None,
    model: Annotated[str | None, typer.Option(help="Model name (default per provider).")] = None,
    stream: Annotated[bool, typer.Option("--stream", help="Print tokens as they come.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Most tokens to generate.")] = None,
    system: Annotated[str | None, typer.Option(help="A system prompt.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Bypass the cache.")] = False,
) -> None:
    """Send one prompt to a model and print the reply (every call goes in the ledger)."""
    options: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens}
    options = {k: v for k, v in options.items() if v is not None}
    if no_cache:
        options["cache"] = False
    try:
        settings = llm_settings(config, provider=provider, model=model, base_url=base_url,
                                timeout=timeout)
        with build_llm(settings) as llm:
            messages = _messages(prompt, system)
            if stream:
                _print_stream(llm, messages, as_json, options)
                return
            completion = llm.complete(messages, **options)
    except RaglineError as exc:
        _fail(str(exc))
        return
    if as_json:
        sys.stdout.write(json.dumps(completion_dict(completion), indent=2) + "\n")
    else:
        sys.stdout.write(completion.text + "\n")


def _messages(prompt: str, system: str | None) -> str | list[Message]:
    return [Message.system(system), Message.user(prompt)] if system else prompt


def _parse_since(since: str | None) -> float | None:
    if since is None:
        return None
    try:
        return datetime.fromisoformat(since).timestamp()
    except ValueError:
        _fail(f"--since {since!r}: use an ISO date or time such as 2025-11-01 or 2025-11-01T09:00")
        return None


def summary_table(rows: list[SummaryRow]) -> Table:
    """The summary as a rich table (unpriced calls flagged: their cost is unknown, not 0)."""
    table = Table(title="LLM ledger")
    keys = list(rows[0].group) if rows else ["model", "purpose"]
    for key in keys:
        table.add_column(key)
    for column in (
        "calls",
        "attempts",
        "errors",
        "cache hits",
        "cost USD",
        "unpriced",
        "in tok",
        "out tok",
        "p50 s",
        "p95 s",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            *row.group.values(),
            str(row.calls),
            str(row.attempts),
            str(row.errors),
            str(row.cache_hits),
            f"{row.cost_usd:.4f}",
            str(row.unpriced),
            str(row.input_tokens),
            str(row.output_tokens),
            f"{row.latency_p50_s:.3f}",
            f"{row.latency_p95_s:.3f}",
        )
    return table


@ledger_app.command("summary")
def ledger_summary(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
    since: Annotated[str | None, typer.Option(help="Only calls since this ISO date/time.")] = None,
    by: Annotated[
        str, typer.Option(help="Group by (comma-separated): provider, model, purpose, outcome.")
    ] = "model,purpose",
) -> None:
    """Calls, attempts, cost and latency p50/p95 by model and purpose."""
    try:
        rows = Ledger().summarize(_parse_since(since), tuple(by.split(",")))
    except RaglineError as exc:
        _fail(str(exc))
        return
    if as_json:
        sys.stdout.write(json.dumps([r.to_dict() for r in rows], indent=2) + "\n")
    else:
        Console().print(summary_table(rows))
