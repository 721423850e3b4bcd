"""`ragline ask` and `ragline chat`: thin commands over `ragline.answer.pipeline.ask`.

The answer goes to stdout (streamed with --stream), then the sources with their spans and each
claim's verdict; --json prints `Answer.to_json()` only. Errors a user can fix exit with status 2.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ragline.answer.chat import ChatSession, run_chat
from ragline.answer.support import ScorerKind, build_scorer
from ragline.answer.types import Answer, ClaimCheck, ClaimVerdict
from ragline.config import ContextMode
from ragline.documents.chunking import page_starts, pages_of
from ragline.errors import IndexNotFound, RaglineError
from ragline.llm import LLM
from ragline.llm.config import LLMConfig, build_llm, llm_settings
from ragline.types import RetrievalMode, page_label

IndexOpt = Annotated[Path, typer.Option("--index", "-i", help="Index folder.")]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", help="TOML configuration ([llm], [search], ...).")]
ProviderOpt = Annotated[str | None, typer.Option(
    help="LLM provider: local, openai, anthropic or openai-compatible (default: [llm] provider, "
    "else local).")]
ModelOpt = Annotated[str | None, typer.Option(help="Model name (default: the provider's).")]
BaseUrlOpt = Annotated[str | None, typer.Option(help="Base URL of an OpenAI-compatible server.")]
TimeoutOpt = Annotated[float | None, typer.Option(
    min=0.001, help="Seconds per model attempt (default: [llm] timeout, 60).")]
KOpt = Annotated[int, typer.Option("--k", "-k", help="Sources given to the model.")]
ModeOpt = Annotated[RetrievalMode | None, typer.Option(help="bm25, dense or hybrid.")]
StrictOpt = Annotated[bool, typer.Option(help="Abstain when any claim fails verification.")]
ExtractiveOpt = Annotated[bool, typer.Option(help="Quote the best sentences; no generation.")]
MinRelOpt = Annotated[float | None, typer.Option(
    help="Abstain below this question-chunk cosine (default: the calibrated threshold).")]
MaxTokensOpt = Annotated[int, typer.Option(help="Most tokens the model may generate.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print Answer JSON on stdout.")]
ContextOpt = Annotated[ContextMode | None, typer.Option(
    help="What each source given to the model holds: the retrieved chunk, its page(s) or its "
    "heading section, trimmed to [answer] context_tokens (default: [answer] context, chunk).")]
VerifierOpt = Annotated[ScorerKind, typer.Option(
    help="Support scorer of the claim checks: the trained model (default), or cosine/overlap "
    "for comparison.")]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def open_index(path: Path, config: Path | None = None) -> Any:
    """The index at `path` (its database in the folder, or where `config`'s [store] says)."""
    from ragline.config import load_config
    from ragline.index import Index

    settings = load_config(config) if config is not None else None
    on_sqlite = settings is None or settings.store.backend == "sqlite"
    if on_sqlite and not (path / "ragline.sqlite").exists():
        raise IndexNotFound(
            f"no index at {path}; build one with `ragline ingest DOCS --index {path}` "
            "or pass --index DIR"
        )
    return Index(path, settings)


def _llm(settings: LLMConfig, extractive: bool) -> LLM | None:
    """None for extractive answers and for the default local model (the pipeline starts it and
    falls back to an extractive answer, with a note, when it cannot)."""
    if extractive or settings.is_default_local:
        return None
    return build_llm(settings)


def _fail(exc: RaglineError) -> typer.Exit:
    err.print(Text.assemble(("error: ", "bold red"), str(exc)))
    return typer.Exit(2)


def ask_command(
    question: Annotated[str, typer.Argument(help="The question to answer from the index.")],
    index: IndexOpt = Path(".ragline"),
    config: ConfigOpt = None,
    provider: ProviderOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    timeout: TimeoutOpt = None,
    k: KOpt = 5,
    mode: ModeOpt = None,
    stream: Annotated[bool, typer.Option(help="Print the answer as it is generated.")] = False,
    strict: StrictOpt = False,
    extractive: ExtractiveOpt = False,
    min_relevance: MinRelOpt = None,
    max_tokens: MaxTokensOpt = 400,
    verifier: VerifierOpt = ScorerKind.MODEL,
    context: ContextOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Answer a question from the index, with verified citations (or abstain)."""
    llm = None
    try:
        idx = open_index(index, config)
        settings = llm_settings(config, provider=provider, model=model, base_url=base_url,
                                timeout=timeout)
        llm = _llm(settings, extractive)
        streamed = _printer() if stream and not json_output else None
        scorer = None if verifier is ScorerKind.MODEL else build_scorer(verifier)
        answer = idx.ask(question, llm=llm, mode=mode, k=k, strict=strict, extractive=extractive,
                         stream=streamed, min_relevance=min_relevance, max_tokens=max_tokens,
                         verifier=scorer, context=context)
    except RaglineError as exc:
        raise _fail(exc) from exc
    finally:
        if llm is not None:
            llm.close()
    if json_output:
        typer.echo(answer.to_json())
        return
    print_answer(answer, idx, streamed=streamed is not None)


def chat_command(
    index: IndexOpt = Path(".ragline"),
    config: ConfigOpt = None,
    provider: ProviderOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    timeout: TimeoutOpt = None,
    k: KOpt = 5,
    mode: ModeOpt = None,
    strict: StrictOpt = False,
    extractive: ExtractiveOpt = False,
    min_relevance: MinRelOpt = None,
    max_tokens: MaxTokensOpt = 400,
) -> None:
    """Chat with the index: one question per line, follow-ups rewritten; /reset, /exit."""
    llm = None
    try:
        idx = open_index(index, config)
        settings = llm_settings(config, provider=provider, model=model, base_url=base_url,
                                timeout=timeout)
        llm = _llm(settings, extractive)
        if llm is None and not extractive:
            llm = build_llm(settings)  # one local server for the whole conversation
        options = {"mode": mode, "k": k, "strict": strict, "extractive": extractive,
                   "min_relevance": min_relevance, "max_tokens": max_tokens}
        session = ChatSession(idx, llm=llm, options=options)
        interactive = sys.stdin.isatty()
        run_chat(
            session, sys.stdin,
            on_answer=lambda a: print_answer(a, idx, streamed=interactive),
            stream=_printer() if interactive else None,
            prompt=(lambda: out.print("[bold]> [/]", end="")) if interactive else (lambda: None),
        )
    except RaglineError as exc:
        raise _fail(exc) from exc
    finally:
        if llm is not None:
            llm.close()


def _printer() -> Any:
    def write(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    return write


# ---------------------------------------------------------------- rendering


def print_answer(answer: Answer, index: Any, *, streamed: bool = False) -> None:
    """The answer (unless already streamed), its sources with spans, verdicts and notes."""
    if streamed and not answer.abstained:
        out.print()
    else:
        out.print(escape(answer.text))
    if answer.abstained and answer.abstain_reason:
        out.print(f"[yellow]abstained:[/] {escape(answer.abstain_reason)}")
    document = functools.cache(index.get_document)  # each cited document read once
    _print_sources(answer, document)
    _print_checks(answer, document)
    for note in answer.usage.get("notes", []):
        out.print(f"[dim]note: {escape(note)}[/]")
    timings = " · ".join(f"{k.removesuffix('_s')} {v:.2f}s" for k, v in answer.timings.items())
    out.print(f"[dim]{timings}[/]")


def _print_sources(answer: Answer, document: Callable[[str], Any]) -> None:
    cited = {c.number: c for c in answer.citations}
    if not answer.sources:
        return
    out.print("\n[bold]Sources[/]")
    for source in answer.sources:
        number = int(source["number"])
        mark = "*" if number in cited else " "
        heading = " > ".join(source.get("heading_path") or [])
        page = page_label(source.get("pages") or [])
        out.print(escape(f"{mark}[{number}] ") + f"[cyan]{escape(source['doc_id'])}[/] "
                  + (f"[bold]{page}[/] " if page else "")
                  + f"chars {source['start']}-{source['end']}"
                  + (f" [magenta]{escape(heading)}[/]" if heading else ""))
        quote = _quote(cited.get(number), document)
        if quote:
            out.print(escape(f"      \u201c{quote}"))


def _quote(citation: Any, document: Callable[[str], Any]) -> str:
    if citation is None or citation.quote_start is None or citation.quote_end is None:
        return ""
    doc = document(citation.doc_id)
    if doc is None:
        return ""
    text = " ".join(doc.text[citation.quote_start:citation.quote_end].split())
    more = "…" if len(text) > 200 else ""
    page = page_label(pages_of(page_starts(doc), citation.quote_start, citation.quote_end))
    where = f"{page}, " if page else ""
    return f"{text[:200]}{more}\u201d ({where}chars {citation.quote_start}-{citation.quote_end})"


def _claim_pages(check: ClaimCheck, sources: dict[int, dict[str, Any]],
                 document: Callable[[str], Any]) -> str:
    """The page of the quoted span when the verifier found one, else the one cited chunk's."""
    source = None if check.quote_source is None else sources.get(check.quote_source)
    if source is None or check.quote_span is None:
        only = sources.get(check.cited[0]) if len(check.cited) == 1 else None
        return page_label(only.get("pages") or []) if only else ""
    doc = document(str(source["doc_id"])) if source.get("pages") else None
    if doc is None:
        return ""
    start = int(source["start"])
    return page_label(pages_of(page_starts(doc), start + check.quote_span[0],
                               start + check.quote_span[1]))


def _print_checks(answer: Answer, document: Callable[[str], Any]) -> None:
    if not answer.checks:
        return
    table = Table(title="Claims", show_lines=False)
    for column in ("claim", "cites", "verdict", "support", "reason"):
        table.add_column(column)
    sources = {int(s["number"]): s for s in answer.sources}
    for check in answer.checks:
        style = "red" if check.flagged else (
            "yellow" if check.verdict is ClaimVerdict.ATTRIBUTED else "green")
        cites = ", ".join(f"[{n}]" for n in check.cited) or "-"
        page = _claim_pages(check, sources, document) if check.cited else ""
        table.add_row(
            escape(" ".join(check.sentence.split())[:120]), escape(f"{cites} {page}".rstrip()),
            f"[{style}]{check.verdict.value}[/]", f"{check.support_score:.2f}",
            escape(check.reason[:100]),
        )
    out.print(table)
    flagged = sum(c.flagged for c in answer.checks)
    out.print(f"{len(answer.checks)} claim(s), {flagged} flagged")
