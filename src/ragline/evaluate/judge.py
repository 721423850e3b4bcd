"""LLM-as-judge of answer correctness against gold answers, and how far to trust the judge.

The judge renders the versioned `judge_correctness` prompt, asks a configurable `LLM`, and parses
the verdict strictly. Every judgement keeps the prompt id and the judge's RAW output, so a verdict
can be audited later. An output that cannot be parsed is recorded as UNMEASURED: it is never
counted as incorrect (0) or as NaN, it is left out of the judge's mean, and the number of
unmeasured verdicts is reported beside the mean.

Reliability is measured, not assumed: `judge_reliability` gives the judge's accuracy and Cohen's
kappa (scikit-learn's `cohen_kappa_score`) against gold labels, and `self_agreement` gives how
often the judge repeats its own majority verdict when asked the same thing several times.
"""

from __future__ import annotations

import enum
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ragline.answer.prompts import PromptTemplate, load_prompt
from ragline.errors import ConfigError
from ragline.llm import LLM, Completion, Message, Role, StructuredOutputError

JUDGE_PROMPT = "judge_correctness"
JUDGE_PURPOSE = "judge"
_FENCE = re.compile(r"^```(?:json)?\s*\n?(?P<body>.*?)\n?```$", re.DOTALL)


class CorrectnessLabel(enum.StrEnum):
    CORRECT = "correct"
    INCORRECT = "incorrect"
    UNMEASURED = "unmeasured"  # the judge's output could not be parsed: never a verdict


class JudgeMode(enum.StrEnum):
    """How the verdict is obtained from the judge model."""

    STRUCTURED = "structured"  # the provider's native schema mode (json_schema, tool, grammar)
    TEXT = "text"  # a plain completion, parsed strictly (for servers without a schema mode)


class CorrectnessReply(BaseModel):
    """The judge's reply, exactly as the prompt asks for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    verdict: Literal["correct", "incorrect"]
    reason: str


@dataclass(frozen=True, slots=True)
class CorrectnessJudgement:
    """One verdict, with everything needed to audit it: prompt id, judge model and RAW output.

    `raw` is None only when no reply came back whole (an error), and `error` then says why.
    """

    label: CorrectnessLabel
    reason: str
    raw: str | None
    prompt_id: str
    judge_model: str
    error: str | None = None
    call_id: str = ""
    cost_usd: float | None = 0.0
    latency_s: float = 0.0

    @property
    def measured(self) -> bool:
        return self.label is not CorrectnessLabel.UNMEASURED

    @property
    def correct(self) -> bool | None:
        """True/False for a measured verdict, None for an unmeasured one."""
        return None if not self.measured else self.label is CorrectnessLabel.CORRECT

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label.value,
            "reason": self.reason,
            "raw": self.raw,
            "prompt_id": self.prompt_id,
            "judge_model": self.judge_model,
            "error": self.error,
            "call_id": self.call_id,
            "cost_usd": self.cost_usd,
            "latency_s": self.latency_s,
        }


def parse_correctness(text: str) -> tuple[CorrectnessLabel, str]:
    """Strictly parse `{"verdict": "correct"|"incorrect", "reason": "..."}`.

    The whole reply must be that one JSON object (a ```json fence around it is allowed); any other
    shape, an extra key or another verdict word gives UNMEASURED with the reason it failed.
    """
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced["body"].strip()
    try:
        reply = CorrectnessReply.model_validate(json.loads(body))
    except json.JSONDecodeError as exc:
        return CorrectnessLabel.UNMEASURED, f"not a JSON object ({exc.msg})"
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "(root)" for e in exc.errors())
        return CorrectnessLabel.UNMEASURED, f"reply does not match the schema at {fields}"
    return CorrectnessLabel(reply.verdict), reply.reason


def format_reference(answers: Sequence[str]) -> str:
    """The gold answers as the prompt's one reference: `A` or `A | B` (any of them is right)."""
    return " | ".join(a.strip() for a in answers if a.strip())


class CorrectnessJudge:
    """Grades an answer against the reference answers with an LLM. See the module docstring."""

    def __init__(
        self,
        llm: LLM,
        *,
        mode: JudgeMode = JudgeMode.STRUCTURED,
        prompt_version: int | None = None,
        max_tokens: int = 200,
        max_reasks: int = 1,
    ) -> None:
        if max_tokens < 16:
            raise ConfigError(f"judge max_tokens must be at least 16, got {max_tokens}")
        self.llm = llm
        self.mode = JudgeMode(mode)
        self.prompt: PromptTemplate = load_prompt(JUDGE_PROMPT, prompt_version)
        self.max_tokens = max_tokens
        self.max_reasks = max_reasks

    @property
    def model_id(self) -> str:
        return f"{self.llm.provider_name}:{self.llm.model}"

    def judge(
        self,
        question: str,
        references: Sequence[str],
        answer: str,
        *,
        temperature: float = 0.0,
        seed: int | None = None,
        repeat: bool = False,
    ) -> CorrectnessJudgement:
        """One verdict. `repeat=True` marks a repeated sample: never served from the cache."""
        reference = format_reference(references)
        if not reference:
            raise ConfigError(
                f"question {question[:60]!r} has no reference answer to judge against; "
                "leave unanswerable questions out of judging"
            )
        messages = self.prompt.messages(question=question, reference=reference, answer=answer)
        options: dict[str, Any] = {
            "temperature": temperature,
            "max_tokens": self.max_tokens,
            "purpose": JUDGE_PURPOSE,
            "repeat": repeat,
        }
        if seed is not None:
            options["seed"] = seed
        chat = [Message(Role(m["role"]), m["content"]) for m in messages]
        if self.mode is JudgeMode.STRUCTURED:
            return self._structured(chat, options)
        return self._text(chat, options)

    def _structured(
        self, messages: list[Message], options: dict[str, Any]
    ) -> CorrectnessJudgement:
        try:
            done = self.llm.complete(
                messages,
                response_model=CorrectnessReply,
                max_reasks=self.max_reasks,
                **options,
            )
        except StructuredOutputError as exc:
            return CorrectnessJudgement(
                CorrectnessLabel.UNMEASURED, "", None, self.prompt.id, self.model_id,
                error=exc.detail,
            )
        reply = CorrectnessReply.model_validate(done.parsed)  # validated by the layer already
        return self._judgement(done, CorrectnessLabel(reply.verdict), reply.reason)

    def _text(self, messages: list[Message], options: dict[str, Any]) -> CorrectnessJudgement:
        done = self.llm.complete(messages, **options)
        return self._judgement(done, *parse_correctness(done.text))

    def _judgement(
        self, done: Completion, label: CorrectnessLabel, reason: str
    ) -> CorrectnessJudgement:
        return CorrectnessJudgement(
            label,
            reason if label is not CorrectnessLabel.UNMEASURED else "",
            done.text,
            self.prompt.id,
            self.model_id,
            error=reason if label is CorrectnessLabel.UNMEASURED else None,
            call_id=done.call_id,
            cost_usd=done.cost_usd,
            latency_s=done.latency_s,
        )


# --- aggregates and reliability -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JudgeMean:
    """The judge's accuracy over measured verdicts; `unmeasured` were left out of `mean`."""

    mean: float | None
    measured: int
    unmeasured: int

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "measured": self.measured, "unmeasured": self.unmeasured}


def judge_mean(judgements: Sequence[CorrectnessJudgement]) -> JudgeMean:
    """Share of measured verdicts that say correct; None when nothing was measured."""
    measured = [j.correct for j in judgements if j.measured]
    mean = sum(bool(c) for c in measured) / len(measured) if measured else None
    return JudgeMean(mean, len(measured), len(judgements) - len(measured))


@dataclass(frozen=True, slots=True)
class JudgeReliability:
    """Agreement of the judge with gold labels over the pairs where the judge measured.

    `kappa` is None when undefined (no pairs, or both sides use a single class throughout).
    """

    source: str
    n: int
    unmeasured: int
    accuracy: float | None
    kappa: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "n": self.n,
            "unmeasured": self.unmeasured,
            "accuracy": self.accuracy,
            "kappa": self.kappa,
        }


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float | None:
    """Cohen's kappa of two binary raters (scikit-learn), None when it is undefined."""
    if len(a) != len(b):
        raise ValueError(f"kappa needs paired labels, got {len(a)} and {len(b)}")
    if not a or len(set(a) | set(b)) < 2:
        return None  # one class throughout: chance agreement is 1 and kappa is 0/0
    from sklearn.metrics import cohen_kappa_score

    value = float(cohen_kappa_score([int(x) for x in a], [int(x) for x in b]))
    return None if value != value else value  # NaN -> undefined


def judge_reliability(
    verdicts: Sequence[CorrectnessJudgement], gold: Sequence[bool], *, source: str
) -> JudgeReliability:
    """Accuracy and Cohen's kappa of the judge's verdicts against `gold` (pairwise)."""
    if len(verdicts) != len(gold):
        raise ValueError(f"need one gold label per verdict, got {len(gold)} for {len(verdicts)}")
    pairs = [(bool(v.correct), g) for v, g in zip(verdicts, gold, strict=True) if v.measured]
    if not pairs:
        return JudgeReliability(source, 0, len(verdicts), None, None)
    judged, truth = [p[0] for p in pairs], [p[1] for p in pairs]
    accuracy = sum(j == t for j, t in pairs) / len(pairs)
    return JudgeReliability(
        source, len(pairs), len(verdicts) - len(pairs), accuracy, cohen_kappa(judged, truth)
    )


def self_agreement(verdicts: Sequence[CorrectnessJudgement]) -> float | None:
    """Share of measured verdicts equal to the majority verdict (None with fewer than two)."""
    labels = [v.label for v in verdicts if v.measured]
    if len(labels) < 2:
        return None
    return Counter(labels).most_common(1)[0][1] / len(labels)
