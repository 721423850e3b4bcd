"""The `ragline` command: a thin front door over the Python API."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from ragline.config import RaglineConfig, load_config
from ragline.errors import RaglineError
from ragline.index import DEFAULT_INDEX, Index
from ragline.ingest import IngestSummary
from ragline.types import FusionMethod, Hit, RetrievalMode


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"ragline {version('ragline')}")
        raise typer.Exit()


class _Group(typer.core.TyperGroup):
    """Turns a RaglineError into its message and exit code 2, instead of a traceback."""

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


app = typer.Typer(
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


bench_app = typer.Typer(help="Benchmarks: speed and quality on real datasets.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

console = Console()
err_console = Console(stderr=True)

IndexOption = Annotated[Path, typer.Option("--index", "-i", help="Index folder.")]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML configuration file.", exists=False)
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)
    raise typer.Exit(code)


def _config(path: Path | None) -> RaglineConfig | None:
    return load_config(path) if path is not None else None


# -- ingest -----------------------------------------------------------------------------------


class _RateColumn(ProgressColumn):
    def __init__(self, field: str, unit: str) -> None:
        super().__init__()
        self.field, self.unit = field, unit

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        count = task.fields.get(self.field, 0)
        rate = count / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:,.1f} {self.unit}/s", style="cyan")


class _RichIngestProgress:
    def __init__(self, progress: Progress, *, live: bool) -> None:
        self._progress = progress
        self.live = live  # failures are printed as they happen (and not again in the summary)
        self._task = progress.add_task("ingest", total=None, documents=0, chunks=0)
        self._documents = 0
        self._chunks = 0

    def start(self, total_files: int) -> None:
        self._progress.update(self._task, total=total_files)

    def advance(self, files: int, documents: int, chunks: int) -> None:
        self._documents += documents
        self._chunks += chunks
        self._progress.update(self._task, advance=files, documents=self._documents,
                              chunks=self._chunks)

    def failure(self, path: str, reason: str, message: str) -> None:
        if self.live:
            self._progress.console.print(
                Text.assemble(("skipped ", "yellow"), f"{printable(path)}: {message}"))


def _ingest_progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]ingest"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
        _RateColumn("documents", "docs"), _RateColumn("chunks", "chunks"), TimeElapsedColumn(),
        console=err_console, disable=not enabled, transient=False,
    )


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
    json_output: JsonOption = False,
) -> None:
    """Ingest documents (txt, md, html, pdf, docx, jsonl) into an index; re-runs are incremental."""
    cfg = _config(config)
    overrides: dict[str, Any] = {"max_file_bytes": max_file_size, "decode_errors": decode_errors}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        cfg = (cfg or Index(index).config).merged(overrides)
    idx = Index(index, cfg)
    show = not json_output and sys.stderr.isatty()
    with _ingest_progress(show) as progress:
        shown = _RichIngestProgress(progress, live=show)
        summary = idx.ingest(paths, prune=prune, lock_timeout=wait, progress=shown,
                             follow_symlinks=follow_symlinks)
    if json_output:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        _print_summary(summary, idx, failures_listed=shown.live)
    if summary.failed and not (summary.added or summary.updated or summary.unchanged):
        raise typer.Exit(1)


def printable(name: str) -> str:
    """A file name or id on one line: control characters (a newline in a name) escaped."""
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


def _print_summary(summary: IngestSummary, idx: Index, *, failures_listed: bool) -> None:
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
    json_output: JsonOption = False,
) -> None:
    """Search the index by keyword (BM25), meaning (dense) or both (hybrid)."""
    idx = Index(index, _config(config))
    hits = idx.search(query, mode=mode, k=k, fusion=fusion, alpha=alpha, rrf_k=rrf_k,
                      depth=depth, where=_parse_where(where or []), path_prefix=path_prefix)
    if json_output:
        typer.echo(json.dumps({"query": query, "hits": [h.to_dict() for h in hits]}, indent=2))
        return
    _print_hits(hits)


def _print_hits(hits: list[Hit]) -> None:
    if not hits:
        console.print("no results")
        return
    for hit in hits:
        ranks = f"bm25 #{hit.bm25_rank or '-'} · dense #{hit.dense_rank or '-'}"
        heading = " > ".join(hit.chunk.heading_path)
        console.print(
            f"[bold]{hit.rank:>2}.[/] [cyan]{escape(printable(hit.chunk.doc_id))}[/] "
            f"[dim]chars {hit.chunk.start}-{hit.chunk.end} · score {hit.score:.4f} · {ranks}[/]",
            highlight=False,
        )
        if heading:
            console.print(f"    [magenta]{heading}[/]", highlight=False)
        snippet = " ".join(hit.chunk.text.split())
        console.print(f"    {snippet[:240]}{'…' if len(snippet) > 240 else ''}", highlight=False)


@app.command()
def stats(index: IndexOption = DEFAULT_INDEX, json_output: JsonOption = False) -> None:
    """Show what an index holds."""
    data = Index(index).stats()
    if json_output:
        typer.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        console.print(f"{key:>14}: {value}")


@app.command()
def doctor(
    index: IndexOption = DEFAULT_INDEX,
    repair: Annotated[bool, typer.Option(
        help="Rebuild damaged search files, salvage a damaged database (the damaged file is "
             "kept), clear stale records.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Check an index (SQLite integrity, vectors, search files, failures, lock); exit 1 if broken."""
    from ragline.store.doctor import PROBLEM, REPAIRED, diagnose

    report = diagnose(index, repair=repair)
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

    result = run_retrieval_benchmark(beir, split=split, index_dir=index, config=_config(config),
                                     cold_ingest=cold_ingest,
                                     progress_console=None if json_output else err_console)
    if json_output:
        typer.echo(json.dumps(result, indent=2))
    else:
        render_benchmark(result, console)


def _mount_optional() -> None:
    """Sub-commands that live beside their own stage of the package."""
    mounts: list[tuple[str, str, str, str]] = [
        ("ragline.evaluate.commands", "runs_app", "typer", "runs"),
        ("ragline.evaluate.commands", "datasets_app", "typer", "datasets"),
        ("ragline.evaluate.cli", "eval_app", "typer", "eval"),
        ("ragline.evaluate.cli", "tune_app", "typer", "tune"),
        ("ragline.answer.commands", "verify_command", "command", "verify"),
        ("ragline.llm.models", "models_app", "typer", "models"),
        ("ragline.answer.cli", "ask_command", "command", "ask"),
        ("ragline.answer.cli", "chat_command", "command", "chat"),
        ("ragline.llm.commands", "llm_command", "command", "llm"),
        ("ragline.llm.commands", "ledger_app", "typer", "ledger"),
        ("ragline.train.cli", "train_app", "typer", "train"),
    ]
    import importlib

    from ragline.evaluate.answers_cli import eval_answers
    from ragline.evaluate.cli import eval_app
    from ragline.evaluate.verifier_cli import eval_verifier

    if not any(c.name == "answers" for c in eval_app.registered_commands):
        eval_app.command("answers")(eval_answers)
        eval_app.command("verifier")(eval_verifier)
    for module_name, attr, kind, name in mounts:
        module = importlib.import_module(module_name)
        target: Any = getattr(module, attr)
        if kind == "command":
            app.command(name)(target)
        else:
            app.add_typer(target, name=name)


def main() -> None:
    _mount_optional()
    app()


if __name__ == "__main__":
    main()
