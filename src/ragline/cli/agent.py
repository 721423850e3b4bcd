"""`ragline agent run|show|resume|list`: the tool-using agent over an index, with durable runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ragline.cli._common import JsonOption, fail
from ragline.errors import RaglineError
from ragline.llm.types import ProviderName

if TYPE_CHECKING:
    from ragline.agent.loop import Agent, AgentResult
    from ragline.agent.state import AgentStore

agent_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                        help="Tool-using agents: run a task, show, resume and list durable runs.")

DEFAULT_TOOLS = "search,read,calculator"

StoreConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c", help="TOML configuration: its [store] says where runs are kept "
    '(backend = "postgres": on that server), its [llm] the model. Give the same one to '
    "run, show, resume and list.")]


def _store(config: Path | None) -> AgentStore:
    """The run store of `--config`'s [store] section ($RAGLINE_HOME/agent.sqlite without one)."""
    from ragline.agent.state import AgentStore
    from ragline.cli._common import config_from

    settings = config_from(config)
    return AgentStore.from_settings(settings.store if settings else None)


def _build(settings: dict[str, Any], max_steps: int, store: AgentStore,
           config: Path | None) -> Agent:
    """An Agent from the settings stored with a run (so `resume` rebuilds the same one)."""
    from ragline.agent.loop import Agent, Budget
    from ragline.agent.tools import SpanRegistry, builtin_tools
    from ragline.llm.config import build_llm, llm_settings

    llm = build_llm(llm_settings(config, provider=settings.get("provider"),
                                 model=settings.get("model"), base_url=settings.get("base_url")))
    index = None
    if settings.get("index"):
        from ragline.index import Index

        index = Index(Path(settings["index"]))
    registry = SpanRegistry()
    tools = builtin_tools(settings["tool_names"], index=index, registry=registry,
                          allowed_hosts=settings.get("allow_host", []))
    return Agent(llm, tools, store=store, registry=registry, budget=Budget(max_steps=max_steps),
                 config={"cli": settings})


def _print(result: AgentResult, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n")
        return
    typer.echo(result.answer if result.answer is not None else f"(no answer: {result.detail})")
    _echo_verdicts([s.to_dict() for s in result.citations],
                   [c.model_dump(mode="json") for c in result.checks])
    typer.echo(f"run {result.run_id}: {result.stop_reason.value} after {result.steps} step(s), "
               f"{result.tool_calls} tool call(s), errors {result.tool_errors or 0}", err=True)


def _echo_verdicts(citations: list[dict[str, Any]], checks: list[dict[str, Any]]) -> None:
    """Each cited span (document and offsets) and each sentence's verdict, as `ask` prints them."""
    for c in citations:
        typer.echo(f"  [{c['source']}] {c['doc_id']} {c['start']}-{c['end']}")
    for check in checks:
        cited = ",".join(str(n) for n in check.get("cited", [])) or "-"
        typer.echo(f"  {check['verdict']:<12} [{cited}] {check['sentence'][:120]}"
                   + (f"  ({check['reason']})" if check.get("reason") else ""))


@agent_app.command("run")
def run_command(
    task: Annotated[str, typer.Argument(help="The task for the agent.")],
    index: Annotated[Path | None, typer.Option("--index", "-i", help="Index folder.")] = None,
    tools: Annotated[str, typer.Option(help="Comma-separated built-in tools: search, read, "
                                            "calculator, python, http_get.")] = DEFAULT_TOOLS,
    allow_host: Annotated[list[str] | None, typer.Option(
        "--allow-host", help="A host http_get may fetch from (repeatable).")] = None,
    max_steps: Annotated[int, typer.Option(min=1, help="Most model calls.")] = 20,
    provider: Annotated[ProviderName | None, typer.Option(help="Which provider.")] = None,
    model: Annotated[str | None, typer.Option(help="Model name (default per provider).")] = None,
    base_url: Annotated[str | None, typer.Option(help="Server URL (openai-compatible).")] = None,
    config: StoreConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Run a task with tools until the model answers or a budget ends it."""
    names = [t.strip() for t in tools.split(",") if t.strip()]
    if "search" not in names and "read" not in names:
        index = None
    if allow_host and "http_get" not in names:
        names.append("http_get")
    settings = {"tool_names": names, "index": str(index) if index else None,
                "allow_host": allow_host or [], "provider": provider.value if provider else None,
                "model": model, "base_url": base_url, "max_steps": max_steps}
    try:
        with _store(config) as store:
            _print(_build(settings, max_steps, store, config).run(task), json_output)
    except RaglineError as exc:
        fail(str(exc))


@agent_app.command("resume")
def resume_command(
    run_id: Annotated[str, typer.Argument(help="The run id (see `ragline agent list`).")],
    config: StoreConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Continue a run from its last completed step; side-effect calls are never re-run."""
    try:
        with _store(config) as store:
            settings = store.load(run_id).config["cli"]
            agent = _build(settings, settings.get("max_steps", 20), store, config)
            _print(agent.resume(run_id), json_output)
    except (RaglineError, KeyError) as exc:
        fail(f"cannot resume {run_id}: {exc}")


@agent_app.command("show")
def show_command(
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    config: StoreConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show a run: its status, stop reason, messages and tool calls."""
    try:
        with _store(config) as store:
            record = store.load(run_id)
    except RaglineError as exc:
        fail(str(exc))
    if json_output:
        sys.stdout.write(json.dumps(record.to_dict(), indent=2, ensure_ascii=False) + "\n")
        return
    typer.echo(f"run {record.run_id}  {record.status.value}  stop: {record.stop_reason}")
    typer.echo(f"task: {record.task}")
    calls = {(c.step, c.idx): c for c in record.calls}
    for step, message in record.messages:
        text = message.content.replace("\n", " ")[:200]
        typer.echo(f"[{step}] {message.role.value}: {text}")
        for i, call in enumerate(message.tool_calls):
            row = calls.get((step, i))
            status = f"{row.status.value}/{row.outcome}" if row else "not run"
            typer.echo(f"      -> {call.name}({json.dumps(call.arguments)}) {status}")
    if record.answer is not None:
        typer.echo(f"answer: {record.answer}")
        _echo_verdicts(record.citations, record.checks)


@agent_app.command("list")
def list_command(config: StoreConfigOption = None, json_output: JsonOption = False) -> None:
    """The recorded runs, newest first."""
    try:
        with _store(config) as store:
            runs = store.list_runs()
    except RaglineError as exc:
        fail(str(exc))
    if json_output:
        sys.stdout.write(json.dumps(runs, indent=2) + "\n")
        return
    for r in runs:
        typer.echo(f"{r['run_id']}  {r['status']:<8}  {r['stop_reason'] or '-':<13}  "
                   f"{r['steps']:>3} steps  {r['task'][:60]}")
