"""The `ragline` command: the root group, the index commands (ingest, search, stats, doctor)
and `bench`; the other groups live beside it in this package and mount on first use."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.core
from rich.markup import escape
from rich.text import Text

from ragline.cli._common import (
    DEFAULT_INDEX,
    ConfigOption,
    IndexOption,
    JsonOption,
    config_from,
    console,
    err_console,
    fail,
)
from ragline.errors import RaglineError
from ragline.types import FusionMethod, Hit, RetrievalMode

if TYPE_CHECKING:  # the heavy parts load inside the command that needs them
    from ragline.index import Index
    from ragline.ingest import IngestSummary



def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"ragline {version('ragline')}")
        raise typer.Exit()


class _Group(typer.core.TyperGroup):
    """Turns a RaglineError into its message and exit code 2, instead of a traceback; mounts the
    commands of LAZY_COMMANDS on first use (the help listing shows their one-line help without
    importing them)."""

    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        names = list(super().list_commands(ctx))
        return names + [n for n in LAZY_COMMANDS if n not in names]

    def get_command(self, ctx: Any, name: str) -> Any:
        command = super().get_command(ctx, name)
        if command is not None or name not in LAZY_COMMANDS:
            return command
        if self._listing:  # `ragline --help`: a stand-in with the one-line help is enough
            import click

            return click.Command(name, help=LAZY_COMMANDS[name][3])
        command = load_lazy_command(name)
        self.add_command(command, name)
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def invoke(self, ctx: Any) -> Any:
        import sqlite3

        _show_notes()
        try:
            return super().invoke(ctx)
        except RaglineError as exc:
            fail(str(exc))
        except sqlite3.DatabaseError as exc:  # a ragline database other than an index's
            from ragline.store.sqlite import is_damage

            if not is_damage(exc):
                raise
            fail(f"a ragline database is damaged ({exc}); `ragline doctor --index DIR` checks "
                 "an index, and a damaged cache in $RAGLINE_HOME can be deleted")


class _NoteHandler(logging.Handler):
    """Warnings of the `ragline` logger (a rebuilt file, a skipped row) as `note:` lines."""

    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(Text.assemble(("note: ", "yellow"), record.getMessage()),
                          soft_wrap=True, highlight=False)


def _show_notes() -> None:
    logger = logging.getLogger("ragline")
    if not any(isinstance(h, _NoteHandler) for h in logger.handlers):
        logger.addHandler(_NoteHandler(logging.WARNING))
        logger.propagate = False


app = typer.Typer(rich_markup_mode=None,
    cls=_Group,
    name="ragline",
    help="Retrieval-augmented generation with verified citations, and evaluation you can trust.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Retrieval-augmented generation with verified citations, and evaluation you can trust."""


bench_app = typer.Typer(rich_markup_mode=None, help="Benchmarks: speed and quality on real datasets.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

# -- ingest -----------------------------------------------------------------------------------


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest.")],
    index: IndexOption = DEFAULT_INDEX,
    config: ConfigOption = None,
    prune: Annotated[bool, typer.Option(help="Remove documents whose files were deleted.")] = False,
    max_file_size: Annotated[
        int | None, typer.Option(help="Skip files larger than this many bytes.")
    ] = None,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for another ingest's lock (0: fail at once).")
    ] = 0.0,
    follow_symlinks: Annotated[bool, typer.Option(
        help="Follow symbolic links to files and folders (by default they are passed over, "
             "so nothing outside the given folders is read).")] = False,
    decode_errors: Annotated[str | None, typer.Option(
        help="Text that is not valid UTF-8: strict (fail the file) or replace (U+FFFD).")] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress on stderr (the summary is still printed).")] = False,
    json_output: JsonOption = False,
) -> None:
    """Ingest documents (txt, md, html, pdf, docx, jsonl) into an index; re-runs are incremental.

    Progress goes to stderr: a bar on a terminal, else one line every few seconds."""
    from ragline.cli.progress import BarProgress, LineProgress, NoProgress
    from ragline.index import Index

    cfg = config_from(config)
    overrides: dict[str, Any] = {"max_file_bytes": max_file_size, "decode_errors": decode_errors}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        cfg = (cfg or Index(index).config).merged(overrides)
    idx = Index(index, cfg)
    shown = (NoProgress(sys.stderr) if quiet else BarProgress(err_console)
             if sys.stderr.isatty() else LineProgress(sys.stderr))
    with shown:
        summary = idx.ingest(paths, prune=prune, lock_timeout=wait, progress=shown,
                             follow_symlinks=follow_symlinks)
    if json_output:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        _print_summary(summary, idx, failures_listed=shown.live)
    if summary.failed and not (summary.added or summary.updated or summary.unchanged):
        raise typer.Exit(1)


def _print_summary(summary: IngestSummary, idx: Index, *, failures_listed: bool) -> None:
    from rich.table import Table

    from ragline.cli.progress import printable

    table = Table(title=f"ingest into {idx.path}", show_header=False)
    for label in ("added", "updated", "unchanged", "removed", "failed"):
        table.add_row(label, str(getattr(summary, label)))
    table.add_row("chunks embedded", str(summary.chunks_embedded))
    table.add_row("documents/s", f"{summary.documents_per_second:,.1f}")
    stages = ", ".join(f"{k} {v:.2f}s" for k, v in summary.seconds.items() if k != "total")
    table.add_row("time", f"{summary.total_seconds:.2f}s ({stages})")
    console.print(table)
    if failures_listed:
        return
    for failure in summary.failures[:20]:
        console.print(Text.assemble(("  " + failure.reason, "red"),
                                    f" {printable(failure.path)}: {failure.message}"))
    if len(summary.failures) > 20:
        console.print(f"  ... and {len(summary.failures) - 20} more (use --json for all)")


# -- search -----------------------------------------------------------------------------------


def _parse_where(items: list[str]) -> dict[str, str | Sequence[str]]:
    """KEY=VALUE filters; the same key given twice matches either value (type=pdf OR type=md),
    different keys must all match."""
    where: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--where expects KEY=VALUE (e.g. type=pdf), got {item!r}")
        where.setdefault(key.strip(), []).append(value.strip())
    return {k: v[0] if len(v) == 1 else v for k, v in where.items()}


@app.command("search")
def search_command(
    query: Annotated[str, typer.Argument(help="What to search for.")],
    index: IndexOption = DEFAULT_INDEX,
    config: ConfigOption = None,
    mode: Annotated[RetrievalMode | None, typer.Option(help="bm25, dense or hybrid.")] = None,
    k: Annotated[int | None, typer.Option("-k", help="Number of results.")] = None,
    fusion: Annotated[FusionMethod | None, typer.Option(help="Hybrid fusion: rrf or minmax.")] = None,
    alpha: Annotated[float | None, typer.Option(help="Dense weight for minmax fusion.")] = None,
    rrf_k: Annotated[int | None, typer.Option(help="RRF constant k.")] = None,
    depth: Annotated[int | None, typer.Option(help="Candidates per retriever.")] = None,
    where: Annotated[
        list[str] | None, typer.Option(help="Metadata filter KEY=VALUE (repeatable).")
    ] = None,
    path_prefix: Annotated[str | None, typer.Option(help="Only documents under this path.")] = None,
    metadata_boost: Annotated[float | None, typer.Option(
        min=0, help="Weight of a filing's fiscal year, form and company named in the query "
                    "(0: off).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Search the index by keyword (BM25), meaning (dense) or both (hybrid)."""
    from ragline.index import Index

    idx = Index(index, config_from(config))
    hits = idx.search(query, mode=mode, k=k, fusion=fusion, alpha=alpha, rrf_k=rrf_k,
                      depth=depth, where=_parse_where(where or []), path_prefix=path_prefix,
                      metadata_boost=metadata_boost)
    if json_output:
        typer.echo(json.dumps({"query": query, "hits": [h.to_dict() for h in hits]}, indent=2))
        return
    _print_hits(hits)


def _print_hits(hits: list[Hit]) -> None:
    from ragline.cli.progress import printable
    from ragline.types import page_label

    if not hits:
        console.print("no results")
        return
    for hit in hits:
        ranks = " · ".join(f"{name} #{stage.rank}" for name, stage in hit.stages.items()
                           if name != "hybrid") or "-"
        heading = " > ".join(hit.chunk.heading_path)
        page = page_label(hit.chunk.pages)
        console.print(
            f"[bold]{hit.rank:>2}.[/] [cyan]{escape(printable(hit.chunk.doc_id))}[/] "
            + (f"[bold]{page}[/] " if page else "")
            + f"[dim]chars {hit.chunk.start}-{hit.chunk.end} · score {hit.score:.4f} · {ranks}[/]",
            highlight=False,
        )
        if heading:
            console.print(f"    [magenta]{heading}[/]", highlight=False)
        snippet = " ".join(hit.chunk.text.split())
        console.print(f"    {snippet[:240]}{'…' if len(snippet) > 240 else ''}", highlight=False)


@app.command()
def stats(index: IndexOption = DEFAULT_INDEX, json_output: JsonOption = False) -> None:
    """Show what an index holds."""
    from ragline.index import Index

    data = Index(index).stats()
    if json_output:
        typer.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        console.print(f"{key:>14}: {value}")


@app.command()
def doctor(
    index: IndexOption = DEFAULT_INDEX,
    config: ConfigOption = None,
    repair: Annotated[bool, typer.Option(
        help="Rebuild damaged search files, salvage a damaged database (the damaged file is "
             "kept), clear stale records.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Check an index (database, HNSW index, vectors, search files, failures); exit 1 if broken.

    SQLite: PRAGMA integrity_check and a salvage with --repair. PostgreSQL (--config with its
    [store]): the server, the schema and the HNSW index."""
    from ragline.store.doctor import PROBLEM, REPAIRED, diagnose

    report = diagnose(index, repair=repair, config=config_from(config))
    if json_output:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        style = {PROBLEM: "bold red", REPAIRED: "yellow"}
        for f in report.findings:
            console.print(Text.assemble((f"{f.status:>8}", style.get(f.status, "green")),
                                        f"  {f.check}: {f.detail}"), soft_wrap=True)
            if f.fix:
                console.print(Text(f"          fix: {f.fix}", style="dim"), soft_wrap=True)
    if not report.healthy:
        raise typer.Exit(1)


# -- benchmarks -------------------------------------------------------------------------------


@bench_app.command("retrieval")
def bench_retrieval(
    beir: Annotated[Path, typer.Option(help="A BEIR dataset folder (corpus.jsonl, queries.jsonl, qrels/).")],
    split: Annotated[str, typer.Option(help="qrels split to evaluate.")] = "test",
    index: Annotated[Path | None, typer.Option(help="Index folder (default: a cache folder per dataset).")] = None,
    config: ConfigOption = None,
    cold_ingest: Annotated[bool, typer.Option(
        help="Also ingest into a fresh index with the embedding cache bypassed, and time the raw "
             "model on the same texts, to measure ingest overhead.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Ingest a BEIR dataset and report nDCG@10, Recall@100, MRR@10 and latency per search mode."""
    from ragline.evaluate.bench import render_benchmark, run_retrieval_benchmark

    result = run_retrieval_benchmark(beir, split=split, index_dir=index, config=config_from(config),
                                     cold_ingest=cold_ingest,
                                     progress_console=None if json_output else err_console)
    if json_output:
        typer.echo(json.dumps(result, indent=2))
    else:
        render_benchmark(result, console)


# Sub-commands that live beside their own stage of the package, imported only when run (or when
# their own --help is asked for): `ragline --help` and `ragline search` never import them.
# name: (module, attribute, "typer" app or "command" function, one-line help for the listing).
LAZY_COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "ask": ("ragline.cli.answer", "ask_command", "command",
            "Answer a question from the index, with verified citations (or abstain)."),
    "chat": ("ragline.cli.answer", "chat_command", "command",
             "Chat with the index: one question per line, follow-ups rewritten; /reset, /exit."),
    "verify": ("ragline.cli.verify", "verify_command", "command",
               "Check each cited claim of an answer against the index and print a verdict per "
               "claim."),
    "eval": ("ragline.cli.evaluate", "eval_app", "typer",
             "Evaluate retrieval, answers or the claim verifier; runs are recorded."),
    "tune": ("ragline.cli.evaluate", "tune_app", "typer",
             "Tune retrieval settings on a train split (never on test)."),
    "runs": ("ragline.cli.runs", "runs_app", "typer",
             "Recorded evaluation runs: list, show, compare."),
    "datasets": ("ragline.cli.runs", "datasets_app", "typer", "Evaluation datasets."),
    "llm": ("ragline.cli.llm", "llm_command", "command",
            "Send one prompt to a model and print the reply (every call goes in the ledger)."),
    "ledger": ("ragline.cli.llm", "ledger_app", "typer",
               "The LLM cost ledger: every call and attempt."),
    "models": ("ragline.cli.models", "models_app", "typer",
               "Download and list local GGUF models (no download ever happens implicitly)."),
    "adapt": ("ragline.cli.adapt", "adapt_app", "typer",
              "Adapt retrieval to your corpus without labels: synthetic queries, "
              "a trained reranker, before/after."),
    "train": ("ragline.cli.train", "train_app", "typer",
              "Train ragline's own models (needs: pip install 'ragline[train]')."),
    "serve": ("ragline.cli.serve", "serve_command", "command",
              "Serve collections over HTTP: search, ask with verified citations, "
              "OpenAI-compatible /v1."),
    "keys": ("ragline.cli.serve", "keys_app", "typer",
             "API keys of `ragline serve`: create, list, revoke."),
    "traces": ("ragline.cli.traces", "traces_app", "typer",
               "Request traces of `ragline serve`: list, show."),
    "experiments": ("ragline.cli.traces", "experiments_app", "typer",
                    "Online A/B experiments of `ragline serve`: create, list, stop, report."),
    "sandbox": ("ragline.cli.sandbox", "sandbox_app", "typer",
                "Run Python in the sandbox for model-written code (no network, read-only files, "
                "limits)."),
    "agent": ("ragline.cli.agent", "agent_app", "typer",
              "Tool-using agents: run a task, show, resume and list durable runs."),
}


def load_lazy_command(name: str) -> Any:
    """The click command of a lazily mounted sub-command (imports its module)."""
    import importlib

    module, attribute, kind, _ = LAZY_COMMANDS[name]
    target: Any = getattr(importlib.import_module(module), attribute)
    if name == "eval":
        from ragline.cli.eval_answers import eval_answers
        from ragline.cli.eval_verifier import eval_verifier

        if not any(c.name == "answers" for c in target.registered_commands):
            target.command("answers")(eval_answers)
            target.command("verifier")(eval_verifier)
    if kind == "command":
        single = typer.Typer(rich_markup_mode=None, add_completion=False)
        single.command(name)(target)
        return typer.main.get_command(single)
    target._add_completion = False  # completion belongs to the top-level command only
    command = typer.main.get_group(target)  # a group even with one sub-command (`tune retrieval`)
    command.name = name
    return command


def main() -> None:
    app()


if __name__ == "__main__":
    main()
