"""`ragline verify ANSWER.json [--index DIR] [--json]`: check any system's cited answer against an index.

Exit status: 0 when every claim is SUPPORTED or PARTIALLY_SUPPORTED; 1 when any claim is
UNSUPPORTED, MISATTRIBUTED, INVALID_SOURCE or NO_CITATION (a grounded answer cites every
sentence); 2 when the answer file or the index cannot be read.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer
from rapidfuzz import fuzz
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ragline.answer.claims import normalize, split_sentences
from ragline.answer.support import ScorerKind, SupportScorer, build_scorer
from ragline.answer.types import (
    CitedSentence,
    ClaimCheck,
    InvalidAnswerInput,
    VerifyInput,
    parse_verify_input,
)
from ragline.answer.verify import DEFAULT_THRESHOLDS, Thresholds, verify_answer
from ragline.errors import RaglineError
from ragline.types import Chunk, Document, page_label


class SourceLookup(Protocol):
    """What verification needs from an index: chunks and documents by id."""

    def get_chunk(self, chunk_id: str) -> Chunk | None: ...

    def get_document(self, doc_id: str) -> Document | None: ...


def number_sources(
    inp: VerifyInput, index: SourceLookup
) -> tuple[list[CitedSentence], dict[int, str], dict[int, str]]:
    """Give each distinct cited chunk/document a number [1]..[n] in order of first citation.

    Returns the cited sentences, the text of each source found, and a label per number
    ("chunk:ID" or "doc:ID"). An id the index lacks gets a number but no text (INVALID_SOURCE).
    """
    numbers: dict[str, int] = {}
    texts: dict[int, str] = {}
    labels: dict[int, str] = {}
    by_sentence: dict[str, tuple[list[int], str | None]] = {}
    for citation in inp.citations:
        key = f"chunk:{citation.chunk_id}" if citation.chunk_id else f"doc:{citation.doc_id}"
        if key not in numbers:
            number = numbers[key] = len(numbers) + 1
            text, pages = _source_text(index, citation.chunk_id, citation.doc_id)
            labels[number] = f"{key} {page_label(pages)}".rstrip()
            if text is not None:
                texts[number] = text
        cited, quote = by_sentence.setdefault(citation.sentence, ([], citation.quote))
        cited.append(numbers[key])
        if quote is None and citation.quote:
            by_sentence[citation.sentence] = (cited, citation.quote)
    sentences = [CitedSentence(text=s, sources=c, quote=q) for s, (c, q) in by_sentence.items()]
    return sentences, texts, labels


def _source_text(index: SourceLookup, chunk_id: str | None, doc_id: str | None
                 ) -> tuple[str | None, tuple[int, ...]]:
    """The cited text and the pages it is on (() for a whole document or an unpaged one)."""
    if chunk_id:
        chunk = index.get_chunk(chunk_id)
        return (None, ()) if chunk is None else (chunk.text, chunk.pages)
    document = index.get_document(doc_id or "")
    return (None, ()) if document is None else (document.text, ())


def uncited_sentences(answer: str, cited: list[CitedSentence]) -> list[CitedSentence]:
    """Sentences of the answer text that no citation covers (fuzzy, after normalisation)."""
    covered = [normalize(s.text) for s in cited]
    out = []
    for sentence in split_sentences(answer):
        key = normalize(sentence.text)
        if key and not any(fuzz.ratio(key, c) >= 90 or key in c for c in covered):
            out.append(CitedSentence(text=sentence.text, sources=[]))
    return out


def verify_input(
    inp: VerifyInput,
    index: SourceLookup,
    scorer: SupportScorer | None = None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> tuple[list[ClaimCheck], dict[int, str]]:
    """Verify every claim of an answer against the index; also returns the source labels."""
    sentences, texts, labels = number_sources(inp, index)
    sentences += uncited_sentences(inp.answer, sentences)
    checks = verify_answer(sentences, texts, scorer=scorer, thresholds=thresholds)
    checks = [_relabel(c, labels) for c in checks]
    return checks, labels


def _relabel(check: ClaimCheck, labels: dict[int, str]) -> ClaimCheck:
    """Reasons say "[4]" for the verifier's own source numbers, which the user never gave:
    name the chunk or document instead."""
    reason = re.sub(r"\[(\d+)\]", lambda m: labels.get(int(m.group(1)), m.group(0)),
                    check.reason)
    return check if reason == check.reason else check.model_copy(update={"reason": reason})


def _open_index(path: Path, config: Path | None = None) -> SourceLookup:
    from ragline.cli.answer import open_index

    return open_index(path, config)  # type: ignore[no-any-return]


def verify_command(
    answer_json: Annotated[
        Path, typer.Argument(help="Answer file: {question, answer, citations}.")
    ],
    index: Annotated[Path, typer.Option("--index", help="Index folder.")] = Path(".ragline"),
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="TOML configuration file (its [store] for an index on PostgreSQL).")
    ] = None,
    verifier: Annotated[ScorerKind, typer.Option(
        help="Support scorer: the trained model (default), or the old cosine heuristic or "
        "word overlap, for comparison.")] = ScorerKind.MODEL,
    no_checks: Annotated[bool, typer.Option(
        "--no-checks", help="Skip the number, date and name checks.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check each cited claim of an answer against the index and print a verdict per claim."""
    console = Console(stderr=True)
    try:
        inp = parse_verify_input(_read(answer_json))
        scorer = build_scorer(verifier)
        checks, labels = verify_input(inp, _open_index(index, config), scorer,
                                      Thresholds(checks=not no_checks))
    except (InvalidAnswerInput, RaglineError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from exc
    if json_output:
        print(json.dumps(report(inp, checks, labels, scorer.name), indent=2))
    else:
        print_checks(checks, labels)
    if any(c.flagged for c in checks):
        raise typer.Exit(1)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidAnswerInput(f"cannot read answer file {path}: {exc.strerror}") from exc


def report(inp: VerifyInput, checks: list[ClaimCheck], labels: dict[int, str],
           verifier: str | None = None) -> dict[str, Any]:
    flagged = sum(c.flagged for c in checks)
    return {
        "question": inp.question,
        "ok": flagged == 0,
        "flagged": flagged,
        "verifier": verifier,
        "sources": {str(n): label for n, label in labels.items()},
        "checks": [c.model_dump(mode="json") for c in checks],
    }


def print_checks(checks: list[ClaimCheck], labels: dict[int, str]) -> None:
    table = Table(title="Citation verification")
    for column in ("sentence", "cited", "verdict", "score", "reason"):
        table.add_column(column)
    for check in checks:
        style = "red" if check.flagged else "green"
        cited = ", ".join(labels.get(n, f"[{n}]") for n in check.cited) or "-"
        table.add_row(
            check.sentence,
            cited,
            f"[{style}]{check.verdict.value}[/{style}]",
            f"{check.support_score:.2f}",
            check.reason,
        )
    console = Console()
    console.print(table)
    flagged = sum(c.flagged for c in checks)
    console.print(f"{len(checks)} claims, {flagged} flagged")
