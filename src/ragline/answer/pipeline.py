"""`ask`: retrieve, gate on relevance, generate with numbered sources, verify every claim.

    answer = Index("docs-index").ask("How are chunks embedded?")

Two ways to generate, chosen per call (`GenerationMode`):

- STRUCTURED: the model returns `GeneratedAnswer` JSON (each sentence with its source numbers and
  an optional quote) through the LLM layer's structured output, which re-asks on invalid JSON.
  Used for GPT- and Claude-style models when the answer is not streamed.
- TEXT: the model writes plain sentences ending in [n] markers, streamed to the caller as it is
  generated; afterwards `split_sentences` recovers each sentence and its markers. Used whenever
  `stream` is given (a JSON stream is not readable), and for small local models: measured on
  SmolLM2-135M, JSON-grammar output loops (sources [1, 2, ..., 63]) until max_tokens and fails
  validation, while plain text stays readable. Generation stops early when the model starts
  repeating a sentence it already wrote (small models loop at temperature 0).

Either way every sentence is verified against the text of the sources it cites; a sentence with
no marker is NO_CITATION and a marker past the last source is INVALID_SOURCE, never a crash.

Fallbacks, each recorded in `answer.usage["notes"]`: the extractive answer when `extractive=True`,
when the default local model cannot start, or when structured output is still invalid after the
LLM layer's re-asks. A source sentence that reads as an instruction to the model ("ignore previous
instructions ...") is withheld from the prompt and from verification, so a model cannot obey it
and a claim echoing it cannot count as supported.
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field

from ragline.answer.abstention import relevance_gate, uncalibrated_note
from ragline.answer.claims import normalize, split_sentences
from ragline.answer.condense import condense_question
from ragline.answer.context import expand_context
from ragline.answer.extractive import extractive_answer
from ragline.answer.prompts import (
    PromptTemplate,
    answer_prompt,
    family_for_model,
    format_sources,
    load_prompt,
    source_style,
)
from ragline.answer.support import SupportScorer
from ragline.answer.types import Answer, Citation, CitedSentence, ClaimCheck, GeneratedAnswer
from ragline.answer.verify import Judge, abstain_if_unsupported, attribute_uncited, verify_answer
from ragline.config import ContextMode
from ragline.errors import ConfigError, EmptyQuery, RaglineError
from ragline.llm import LLM, Completion, Message, Role, StreamEventKind, StructuredOutputError
from ragline.llm.models import LocalModelError
from ragline.llm.types import FinishReason
from ragline.types import Hit, RetrievalMode

if TYPE_CHECKING:
    from ragline.index import Index

ABSTAIN_TEXT = "I cannot answer this from the documents."
_TEXT_STOPS = ("\nQuestion:", "\nSources:", "\nAnswer:")
_MODEL_ABSTAINS = re.compile(r"^\W*i (?:cannot|can't|can not) answer\b", re.IGNORECASE)


class EmptyIndex(RaglineError):
    """The index holds no chunks, so there is nothing to answer from."""


class GenerationMode(enum.StrEnum):
    STRUCTURED = "structured"
    TEXT = "text"


# ---------------------------------------------------------------- prompt-injection guard

_INJECTION = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b[^.\n]{0,40}?"
    r"\b(?:previous|prior|above|earlier|preceding|all|any|your|the|system)\b[^.\n]{0,30}?"
    r"\b(?:instructions?|prompts?|rules|directions|guidelines)\b"
    r"|\byou are now\b|\bnew instructions?\s*:|\bfrom now on,? (?:you|reply|respond|answer)\b"
    r"|\b(?:reveal|print|repeat) (?:your|the) (?:system )?prompt\b",
    re.IGNORECASE,
)
WITHHELD = "[a sentence that reads as an instruction to the assistant was withheld]"


@dataclass(frozen=True, slots=True)
class GuardedSource:
    """A source as the model sees it (`prompt_text`) and as verification sees it (`check_text`:
    the original with withheld sentences blanked, same length, so offsets stay valid)."""

    prompt_text: str
    check_text: str
    withheld: tuple[str, ...] = ()


def guard_source(text: str) -> GuardedSource:
    """Withhold every sentence that reads as an instruction to the assistant."""
    spans = [(s.start, s.end) for s in split_sentences(text) if _INJECTION.search(text[s.start:s.end])]
    if not spans:
        return GuardedSource(text, text)
    prompt, check, last = [], [], 0
    for start, end in spans:
        prompt += [text[last:start], WITHHELD]
        check += [text[last:start], " " * (end - start)]
        last = end
    prompt.append(text[last:])
    check.append(text[last:])
    return GuardedSource("".join(prompt), "".join(check), tuple(text[s:e] for s, e in spans))


# ---------------------------------------------------------------- structured output schema


class _BoundedSentence(BaseModel):
    text: str = Field(max_length=400)
    sources: list[Annotated[int, Field(ge=0)]] = Field(max_length=4)
    quote: str | None = Field(default=None, max_length=300)


class _BoundedAnswer(BaseModel):
    """GeneratedAnswer with length bounds, so a JSON grammar cannot loop a small model forever."""

    sentences: list[_BoundedSentence] = Field(max_length=6)
    abstained: bool = False


def _response_model(family: str) -> type[BaseModel]:
    # Hosted APIs' strict JSON modes reject some length keywords; local grammars need them.
    return _BoundedAnswer if family == "small" else GeneratedAnswer


# ---------------------------------------------------------------- the pipeline


@dataclass
class _Run:
    """What one `ask` call has found out so far (timings, usage, notes)."""

    question: str
    scorer: SupportScorer | None = None  # the verifier's support scorer (default: trained model)
    started: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def lap(self, name: str, since: float) -> float:
        now = time.perf_counter()
        self.timings[name] = round(now - since, 4)
        return now

    def finish(self, answer: Answer) -> Answer:
        self.timings["total_s"] = round(time.perf_counter() - self.started, 4)
        usage = {**answer.usage, **self.usage, "notes": [*self.notes]}
        return answer.model_copy(update={"timings": {**answer.timings, **self.timings},
                                         "usage": usage})


def ask(
    index: Index,
    question: str,
    *,
    llm: LLM | None = None,
    mode: RetrievalMode | str | None = None,
    k: int = 5,
    strict: bool = False,
    extractive: bool = False,
    stream: Callable[[str], None] | None = None,
    history: Sequence[tuple[str, str]] | None = None,
    min_relevance: float | None = None,
    temperature: float = 0.0,
    max_tokens: int = 400,
    generation: GenerationMode | str | None = None,
    judge: Judge | None = None,
    verifier: SupportScorer | None = None,
    context: ContextMode | str | None = None,
) -> Answer:
    """Answer `question` from `index` with cited sentences, each verified against its source.

    `llm` defaults to the local model (started for this call, stopped after it). `history`
    (user, assistant) turns rewrite a follow-up into a standalone question before retrieval.
    `min_relevance` overrides the calibrated abstention threshold. `strict` turns an answer with
    any flagged claim into an abstention. `verifier` scores support (default: the trained
    verifier model). `context` widens each source the model reads to its page(s) or heading
    section (default: `[answer] context`; `answer/context.py`); extractive answers quote chunks.
    See the module docstring for `generation` and the fallbacks.
    """
    if not question or not question.strip():
        raise EmptyQuery("the question is empty: ask something about your documents")
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    widen = _context_mode(index, context)
    run = _Run(question, scorer=verifier)
    _require_chunks(index)
    owned = None
    if llm is None and not extractive:
        llm, owned = _default_llm(run)
    try:
        answer = _answer(index, question, run, llm, mode, k, extractive, stream, history,
                         min_relevance, temperature, max_tokens, generation, judge, widen)
    finally:
        if owned is not None:
            owned.close()
    if strict:
        answer = abstain_if_unsupported(answer)
    return run.finish(answer)


def _require_chunks(index: Index) -> None:
    if index.count_chunks() == 0:
        raise EmptyIndex(
            f"the index at {index.path} is empty; run `ragline ingest DOCS --index {index.path}` "
            "to add documents, then ask again"
        )


def _default_llm(run: _Run) -> tuple[LLM | None, LLM | None]:
    try:
        llm = LLM("local")
    except LocalModelError as exc:
        run.notes.append(f"no local model available ({exc}); answered extractively")
        return None, None
    return llm, llm


def _answer(
    index: Index,
    question: str,
    run: _Run,
    llm: LLM | None,
    mode: RetrievalMode | str | None,
    k: int,
    extractive: bool,
    stream: Callable[[str], None] | None,
    history: Sequence[tuple[str, str]] | None,
    min_relevance: float | None,
    temperature: float,
    max_tokens: int,
    generation: GenerationMode | str | None,
    judge: Judge | None,
    context: ContextMode,
) -> Answer:
    search_for = _standalone(question, history, llm, run)
    lap = time.perf_counter()
    hits = index.search(search_for, mode=mode, k=k)
    gate = relevance_gate(search_for, hits, index, min_relevance=min_relevance,
                          scorer=run.scorer)
    lap = run.lap("retrieve_s", lap)
    run.usage["retrieval"] = gate.to_dict()
    if gate.threshold is None:
        run.notes.append(uncalibrated_note(index.embedder.model_id))
    if not gate.passes:
        return _abstention(question, hits, gate.reason())
    if extractive or llm is None:
        if not extractive:
            run.usage["fallback"] = "extractive"
        return _extractive(question, search_for, hits, index)
    try:
        return _generate(question, search_for, _widened(hits, index, context), index, llm, run,
                         stream, temperature, max_tokens, _mode_for(llm, generation, stream),
                         judge)
    except LocalModelError as exc:
        run.notes.append(f"the local model could not start ({exc}); answered extractively")
    except StructuredOutputError as exc:
        run.notes.append(f"the model's JSON stayed invalid after re-asks ({exc.detail[:160]}); "
                         "answered extractively instead")
    run.usage["fallback"] = "extractive"
    return _extractive(question, search_for, hits, index)


def _context_mode(index: Index, context: ContextMode | str | None) -> ContextMode:
    if context is None:
        return index.config.answer.context
    try:
        return ContextMode(context)
    except ValueError:
        raise ConfigError(f"context must be one of {', '.join(m.value for m in ContextMode)}, "
                          f"got {context!r}") from None


def _widened(hits: list[Hit], index: Index, context: ContextMode) -> list[Hit]:
    """The sources a model reads: the hits, or their pages / sections (`[answer] context`)."""
    return expand_context(hits, index.get_document, context,
                          index.config.answer.context_tokens, index.embedder.count_tokens)


def _extractive(question: str, search_for: str, hits: Sequence[Hit], index: Index) -> Answer:
    answer = extractive_answer(search_for, hits, index.embedder)
    return answer.model_copy(update={"question": question, "sources": _sources(hits)})


def _standalone(
    question: str, history: Sequence[tuple[str, str]] | None, llm: LLM | None, run: _Run
) -> str:
    if not history:
        return question
    started = time.perf_counter()
    standalone = condense_question(question, history, llm)
    run.lap("rewrite_s", started)
    run.usage["standalone_question"] = standalone
    return standalone


def _mode_for(
    llm: LLM, generation: GenerationMode | str | None, stream: Callable[[str], None] | None
) -> GenerationMode:
    if generation is not None:
        chosen = GenerationMode(generation)
        if chosen is GenerationMode.STRUCTURED and stream is not None:
            raise ConfigError("structured (JSON) generation cannot be streamed readably: "
                              "use generation='text' with stream, or drop stream")
        return chosen
    if stream is not None or family_for_model(llm.provider_name, llm.model) == "small":
        return GenerationMode.TEXT
    return GenerationMode.STRUCTURED


def _abstention(question: str, hits: Sequence[Hit], reason: str) -> Answer:
    return Answer(question=question, text=ABSTAIN_TEXT, abstained=True, abstain_reason=reason,
                  sources=_sources(hits))


def _sources(hits: Sequence[Hit]) -> list[dict[str, Any]]:
    return [{"number": n, **hit.to_dict()} for n, hit in enumerate(hits, 1)]


# ---------------------------------------------------------------- generation


@dataclass(frozen=True, slots=True)
class _Generated:
    sentences: list[CitedSentence]
    text: str
    abstained: bool
    completion: Completion | None
    ttft: float | None


def _generate(
    question: str,
    search_for: str,
    hits: Sequence[Hit],
    index: Index,
    llm: LLM,
    run: _Run,
    stream: Callable[[str], None] | None,
    temperature: float,
    max_tokens: int,
    mode: GenerationMode,
    judge: Judge | None,
) -> Answer:
    guarded = [guard_source(h.chunk.text) for h in hits]
    for number, g in enumerate(guarded, 1):
        if g.withheld:
            run.notes.append(f"source [{number}] contains text that reads as an instruction to "
                             f"the assistant (possible prompt injection); withheld: "
                             f"{g.withheld[0][:80]!r}")
    family = family_for_model(llm.provider_name, llm.model)
    prompt = load_prompt("answer_text") if mode is GenerationMode.TEXT else answer_prompt(
        llm.provider_name, llm.model)
    prompted = [replace(h, chunk=replace(h.chunk, text=g.prompt_text))
                for h, g in zip(hits, guarded, strict=True)]
    messages = _messages(prompt, format_sources(prompted, source_style(family)), search_for)
    run.usage.update({"provider": llm.provider_name, "model": llm.model, "prompt": prompt.id,
                      "generation": mode.value})
    lap = time.perf_counter()
    options = {"temperature": temperature, "max_tokens": max_tokens, "purpose": "answer"}
    if mode is GenerationMode.TEXT:
        # Small models continue the prompt's few-shot format with a new "Question:" of their own.
        options["stop"] = _TEXT_STOPS
        generated = _generate_text(llm, messages, stream, options, run)
    else:
        generated = _generate_structured(llm, messages, family, options)
    lap = run.lap("generate_s", lap)
    if generated.ttft is not None:
        run.timings["ttft_s"] = round(generated.ttft, 4)
    _record_usage(run, generated.completion)
    if generated.abstained or not generated.sentences:
        reason = "the model found no answer in the sources" if generated.abstained else \
            "the model returned no answer"
        return _abstention(question, hits, reason)
    sentences = _dedupe(generated.sentences, run)
    sources = {n: g.check_text for n, g in enumerate(guarded, 1)}
    checks = verify_answer(sentences, sources, scorer=run.scorer, judge=judge)
    sentences, checks = attribute_uncited(sentences, checks, sources, scorer=run.scorer)
    run.lap("verify_s", lap)
    text = generated.text if mode is GenerationMode.TEXT else _with_markers(sentences)
    return Answer(question=question, text=text, sentences=sentences,
                  citations=_citations(hits, checks), checks=checks, sources=_sources(hits))


def _messages(prompt: PromptTemplate, sources: str, question: str) -> list[Message]:
    return [Message(Role(m["role"]), m["content"])
            for m in prompt.messages(sources=sources, question=question)]


def _generate_structured(
    llm: LLM, messages: list[Message], family: str, options: dict[str, Any]
) -> _Generated:
    completion = llm.complete(messages, response_model=_response_model(family), **options)
    parsed = GeneratedAnswer.model_validate(completion.parsed.model_dump())
    return _Generated(list(parsed.sentences), completion.text, parsed.abstained, completion,
                      completion.time_to_first_token_s)


def _generate_text(
    llm: LLM,
    messages: list[Message],
    stream: Callable[[str], None] | None,
    options: dict[str, Any],
    run: _Run,
) -> _Generated:
    """Stream plain text to `stream`, holding back a sentence while it may be a repeat; stop the
    model at the first repeated sentence (it would loop until max_tokens)."""
    started = time.perf_counter()
    ttft: float | None = None
    text, shown, completion = "", 0, None
    events = llm.stream(messages, **options)
    try:
        for event in events:
            if event.kind is StreamEventKind.DONE:
                completion = event.completion
            elif event.kind is StreamEventKind.TEXT and event.text:
                ttft = ttft if ttft is not None else time.perf_counter() - started
                text += event.text
                cut, safe = _repetition(text, final=False)
                if cut is not None:
                    run.notes.append("generation stopped early: the model began repeating "
                                     "itself")
                    text = text[:cut]
                    break
                shown = _emit(stream, text, shown, safe)
    finally:  # also when `stream` raised (its reader went away): the model stops generating
        _close(events)
    cut, _ = _repetition(text, final=True)
    text = text[:cut] if cut is not None else text
    _emit(stream, text.rstrip(), shown, len(text.rstrip()))
    text = text.strip()
    if completion is not None and completion.finish_reason is FinishReason.LENGTH:
        finished = _finished_part(text)
        if finished != text:
            run.notes.append(f"the answer reached max_tokens mid-sentence; its unfinished last "
                             f"sentence was left out of the answer: {text[len(finished):]!r}")
            text = finished
    abstained = bool(_MODEL_ABSTAINS.match(text))
    sentences = [] if abstained else [
        CitedSentence(text=s.text, sources=list(s.citations)) for s in split_sentences(text)]
    return _Generated(sentences, text, abstained, completion, ttft)


_SENTENCE_END = re.compile(r"""[.!?]["')\]]*(?:\s*\[\d+(?:\s*,\s*\d+)*\])*\s*$""")


def _finished_part(text: str) -> str:
    """`text` up to the end of its last finished sentence (a model cut off at max_tokens leaves
    a fragment such as "...revenue of $39.1 millio", which is no claim to check)."""
    sentences = split_sentences(text)
    while sentences and not _SENTENCE_END.search(text[sentences[-1].start:sentences[-1].end]):
        sentences.pop()
    return text[: sentences[-1].end].rstrip() if sentences else ""


def _emit(stream: Callable[[str], None] | None, text: str, shown: int, upto: int) -> int:
    """Send text[shown:upto] to the caller; returns how much of the text has been shown."""
    if stream is not None and upto > shown:
        stream(text[shown:upto])
    return max(shown, upto)


def _close(events: Iterator[Any]) -> None:
    closer = getattr(events, "close", None)
    if closer is not None:
        closer()


def _repetition(text: str, *, final: bool) -> tuple[int | None, int]:
    """(where to cut the text, or None; how far it is safe to show).

    The cut is the end of the sentence before the first complete sentence that repeats an
    earlier one. While streaming, the last sentence may still be growing: it is held back while
    it reads as the start of an earlier sentence."""
    sentences = split_sentences(text)
    complete = sentences if final else sentences[:-1]
    seen: list[str] = []
    for i, sentence in enumerate(complete):
        key = normalize(sentence.text)
        if key in seen:
            return (sentences[i - 1].end if i else 0), 0
        seen.append(key)
    if final or not sentences:
        return None, len(text)
    growing = normalize(sentences[-1].text)
    if any(earlier.startswith(growing) for earlier in seen):
        return None, sentences[-1].start
    return None, len(text)


def _dedupe(sentences: list[CitedSentence], run: _Run) -> list[CitedSentence]:
    seen: set[str] = set()
    out = []
    for sentence in sentences:
        key = normalize(sentence.text)
        if key and key not in seen:
            seen.add(key)
            out.append(sentence)
    if len(out) < len(sentences):
        run.notes.append(f"{len(sentences) - len(out)} repeated sentence(s) dropped")
    return out


def _with_markers(sentences: Sequence[CitedSentence]) -> str:
    return " ".join(
        s.text + "".join(f" [{n}]" for n in s.sources) for s in sentences
    )


def _record_usage(run: _Run, completion: Completion | None) -> None:
    if completion is None:
        run.usage["tokens"] = None  # a stream stopped early reports no usage
        return
    run.usage.update({"tokens": completion.usage.to_dict(), "cost_usd": completion.cost_usd,
                      "attempts": completion.attempts, "cached": completion.cached,
                      "served_model": completion.model, "call_id": completion.call_id})


def _citations(hits: Sequence[Hit], checks: Sequence[ClaimCheck]) -> list[Citation]:
    """One citation per valid source number cited, with the matched quote's document span."""
    quotes: dict[int, tuple[int, int]] = {}
    cited: list[int] = []
    for check in checks:
        cited += [n for n in check.cited if 1 <= n <= len(hits) and n not in cited]
        if check.quote_source is not None and check.quote_span is not None:
            quotes.setdefault(check.quote_source, check.quote_span)
    out = []
    for number in cited:
        chunk = hits[number - 1].chunk
        span = quotes.get(number)
        out.append(Citation(
            number=number, chunk_id=chunk.id, doc_id=chunk.doc_id, start=chunk.start,
            end=chunk.end, quote_start=chunk.start + span[0] if span else None,
            quote_end=chunk.start + span[1] if span else None,
        ))
    return out
