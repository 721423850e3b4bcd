"""Data of the answer stage: the LLM's structured output, citations, verdicts, the final answer.

Pydantic v2 models, because answers are structured LLM output that must be validated, and because
`ragline verify` reads answers written by any system.
"""

from __future__ import annotations

import enum
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ragline.errors import RaglineError


class InvalidAnswerInput(RaglineError):
    """An answer JSON (for `ragline verify`) is malformed; the message names the field."""


class CitedSentence(BaseModel):
    """One sentence of a generated answer with the source numbers (1-based) it relies on."""

    model_config = ConfigDict(frozen=True)

    text: str
    sources: list[int] = Field(default_factory=list)
    quote: str | None = None


class GeneratedAnswer(BaseModel):
    """What the LLM must return: cited sentences, or `abstained=True` when the sources do not say."""

    model_config = ConfigDict(frozen=True)

    sentences: list[CitedSentence]
    abstained: bool = False


class Citation(BaseModel):
    """Source `number` of an answer: the chunk's span in its document, and the quoted span if any.

    `start`/`end` and `quote_start`/`quote_end` are character offsets into `Document.text`.
    """

    model_config = ConfigDict(frozen=True)

    number: int
    chunk_id: str
    doc_id: str
    start: int
    end: int
    quote_start: int | None = None
    quote_end: int | None = None


class ClaimVerdict(enum.StrEnum):
    SUPPORTED = "supported"
    PARTIALLY_SUPPORTED = "partially_supported"
    UNSUPPORTED = "unsupported"
    MISATTRIBUTED = "misattributed"
    NO_CITATION = "no_citation"
    INVALID_SOURCE = "invalid_source"
    # The model cited nothing, but the verifier found a source that supports the sentence and
    # cites it instead. Shown as such: the citation is the verifier's, not the model's.
    ATTRIBUTED = "attributed"

    @property
    def is_problem(self) -> bool:
        """True for verdicts that flag the claim (PARTIALLY_SUPPORTED is a warning, not a flag)."""
        return self not in (ClaimVerdict.SUPPORTED, ClaimVerdict.PARTIALLY_SUPPORTED,
                            ClaimVerdict.ATTRIBUTED)


class JudgeLabel(enum.StrEnum):
    SUPPORTED = "supported"
    PARTIAL = "partial"
    UNSUPPORTED = "unsupported"
    UNMEASURED = "unmeasured"  # the judge's output could not be parsed: never counted as a verdict


class JudgeVerdict(BaseModel):
    """What an LLM judge says about one claim against one source text."""

    model_config = ConfigDict(frozen=True)

    label: JudgeLabel
    reason: str = ""
    raw: str | None = None


class ClaimCheck(BaseModel):
    """The verification of one sentence against the sources it cites.

    `quote_span` is the matched quote's (start, end) in the text of source `quote_source`;
    `support_score` is the best combined semantic + lexical score over the cited sentences.
    """

    model_config = ConfigDict(frozen=True)

    sentence: str
    cited: list[int]
    verdict: ClaimVerdict
    quote_match: float | None = None
    quote_source: int | None = None
    quote_span: tuple[int, int] | None = None
    support_score: float = 0.0
    mismatches: list[str] = Field(default_factory=list)
    best_source_sentence: str | None = None
    supported_by: list[int] = Field(default_factory=list)
    judge: JudgeVerdict | None = None
    reason: str = ""

    @property
    def flagged(self) -> bool:
        return self.verdict.is_problem


class Answer(BaseModel):
    """A complete answer: text, cited sentences, citations with spans, verification, provenance."""

    question: str
    text: str
    sentences: list[CitedSentence] = Field(default_factory=list)
    citations: list[Citation] = Field(default_factory=list)
    checks: list[ClaimCheck] = Field(default_factory=list)
    abstained: bool = False
    abstain_reason: str | None = None
    sources: list[dict[str, Any]] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    usage: dict[str, Any] = Field(default_factory=dict)

    def to_json(self, *, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent)


class VerifyCitation(BaseModel):
    """One claim of an answer to verify: the sentence and the chunk (or document) it cites."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sentence: str = Field(min_length=1)
    chunk_id: str | None = None
    doc_id: str | None = None
    quote: str | None = None

    @model_validator(mode="after")
    def _needs_a_source(self) -> VerifyCitation:
        if not self.chunk_id and not self.doc_id:
            raise ValueError("needs chunk_id or doc_id")
        return self


class VerifyInput(BaseModel):
    """The input of `ragline verify`: `{question, answer, citations: [{sentence, chunk_id|doc_id, quote?}]}`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    question: str
    answer: str
    citations: list[VerifyCitation]


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def parse_verify_input(data: str | bytes | dict[str, Any]) -> VerifyInput:
    """Validate an answer JSON; raise `InvalidAnswerInput` naming each offending field.

    Two shapes are read: `{question, answer, citations}` (any system's answer), and the
    `Answer` JSON that `ragline ask --json` prints (`{question, text, sentences, sources}`).
    """
    if not isinstance(data, dict):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise InvalidAnswerInput(
                f"answer JSON is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                "expected {question, answer, citations: [{sentence, chunk_id or doc_id, quote?}]}"
            ) from exc
    if isinstance(data, dict) and "answer" not in data and "sentences" in data and "text" in data:
        data = _from_ask_json(data)
    try:
        return VerifyInput.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_location(tuple(err['loc']))}: {_message(err)}" for err in exc.errors()
        )
        raise InvalidAnswerInput(
            f"answer JSON is malformed: {problems}. Expected "
            "{question, answer, citations: [{sentence, chunk_id or doc_id, quote?}]}"
        ) from exc


def _from_ask_json(data: dict[str, Any]) -> dict[str, Any]:
    """`ragline ask --json` output as verify input: each sentence's source numbers become the
    chunk ids the answer's `sources` list for them. An abstention has nothing to verify."""
    if data.get("abstained"):
        return {"question": data.get("question", ""), "answer": "", "citations": []}
    by_number: dict[int, dict[str, Any]] = {}
    for entry in [*data.get("citations", []), *data.get("sources", [])]:
        if isinstance(entry, dict) and "number" in entry:
            by_number.setdefault(int(entry["number"]), entry)
    citations = []
    for i, sentence in enumerate(data.get("sentences") or []):
        if not isinstance(sentence, dict):
            raise InvalidAnswerInput(f"answer JSON is malformed: sentences[{i}] is not an object")
        for number in sentence.get("sources") or []:
            source = by_number.get(int(number))
            if source is None:
                raise InvalidAnswerInput(
                    f"answer JSON is malformed: sentences[{i}] cites [{number}], which its "
                    "sources do not list")
            citations.append({"sentence": sentence.get("text", ""),
                              "chunk_id": source.get("chunk_id"), "doc_id": source.get("doc_id"),
                              "quote": sentence.get("quote")})
    return {"question": data.get("question", ""), "answer": data.get("text", ""),
            "citations": citations}


def _message(err: Any) -> str:
    if err["type"] == "missing":
        return "field required"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")
