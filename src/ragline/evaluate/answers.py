"""Answer evaluation: run an answerer over a question set, score every sample, judge it, and
gather accuracy, citation quality, supported claims, abstention, cost and latency per question,
and consistency over repeated samples.

The scores and their exact definitions are in `ragline.evaluate.answer_scores`. Two more here:

- correct on an unanswerable question (no gold answer, or `"unanswerable": true` on its line)
  means the system abstained; `accuracy_unanswerable` is the share of those.
- with `repeats` N > 1: per question, `agreement` is the share of samples whose normalised answer
  equals the majority one (an abstention is one answer, "<abstained>"); `pass^N` is 1 when all N
  samples are correct, `pass@N` when at least one is; a question is flaky when some samples are
  correct and some are not.

Per-question values go to the run registry as metrics where higher is better, so `ragline runs
compare` applies the same paired statistics as to retrieval runs. A value that is undefined for a
question is absent, never 0.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from ragline.answer.claims import strip_markers
from ragline.answer.types import Answer
from ragline.errors import DatasetError
from ragline.evaluate.answer_scores import (
    attributed_claims,
    citation_scores,
    cited_doc_ids,
    exact_match,
    is_correct,
    majority_agreement,
    prediction_text,
    supported_claims,
    token_f1,
    token_recall,
)
from ragline.evaluate.datasets import QADataset
from ragline.evaluate.judge import (
    CorrectnessJudge,
    CorrectnessJudgement,
    judge_mean,
    judge_reliability,
    self_agreement,
)
from ragline.evaluate.metrics import latency_summary
from ragline.index import Index
from ragline.llm import LLM
from ragline.llm.ledger import CACHE_HIT, CallRecord, Ledger

Say = Callable[[str], None]

# --- questions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelledAnswer:
    """A dataset's `label` field: a candidate answer and whether a person judged it correct.

    A question line may carry `"label": {"answer": "...", "correct": true}`. The judge grades the
    labelled answer too, which measures its reliability against human labels.
    """

    answer: str
    correct: bool


@dataclass(frozen=True, slots=True)
class AnswerItem:
    """A question to answer: gold answers, gold passages, whether it is unanswerable, a label."""

    id: str
    question: str
    answers: tuple[str, ...]
    relevant: tuple[str, ...]
    unanswerable: bool = False
    label: LabelledAnswer | None = None

    def __post_init__(self) -> None:
        if not self.answers:  # no gold answer: nothing to get right but abstaining
            object.__setattr__(self, "unanswerable", True)


def _extras(path: Path) -> dict[str, dict[str, Any]]:
    extras: dict[str, dict[str, Any]] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            extra = {k: record[k] for k in ("unanswerable", "label") if k in record}
            if extra:
                extras[str(record.get("id"))] = extra | {"_line": lineno}
    return extras


def _label(raw: Any, where: str) -> LabelledAnswer:
    if not (isinstance(raw, dict) and isinstance(raw.get("answer"), str)
            and isinstance(raw.get("correct"), bool)):
        raise DatasetError(
            f"{where}: 'label' must be {{\"answer\": str, \"correct\": bool}}, got {raw!r}"
        )
    return LabelledAnswer(raw["answer"], raw["correct"])


def answer_items(dataset: QADataset, limit: int | None = None) -> list[AnswerItem]:
    """The questions of a QA dataset, with `unanswerable` and `label` read from its lines.

    A question is unanswerable when it has no gold answer or its line says `"unanswerable": true`.
    """
    extras = _extras(dataset.path)
    items = []
    for item in dataset.items[:limit]:
        extra = extras.get(item.id, {})
        where = f"{dataset.path}:{extra.get('_line', '?')}"
        label = _label(extra["label"], where) if "label" in extra else None
        unanswerable = bool(extra.get("unanswerable"))
        items.append(AnswerItem(item.id, item.question, item.answers, item.relevant,
                                unanswerable, label))
    return items


# --- the ledger of one run ------------------------------------------------------------------


class RecordingLedger(Ledger):
    """The user's ledger, plus an in-memory copy of the rows written since the last `take()`,
    so each question's cost, tokens and cache hits come from the ledger rows of its own calls."""

    def __init__(self, path: Any = None) -> None:
        super().__init__(path)
        self._pending: list[CallRecord] = []

    def record(self, record: CallRecord) -> None:
        super().record(record)
        self._pending.append(record)

    def take(self) -> list[CallRecord]:
        rows, self._pending = self._pending, []
        return rows


@dataclass(frozen=True, slots=True)
class CallCost:
    """The ledger rows of one step: logical calls, cache hits, tokens, cost (None = unpriced)."""

    calls: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0

    @classmethod
    def of(cls, rows: Sequence[CallRecord]) -> CallCost:
        costs = [r.cost_usd for r in rows]
        return cls(
            calls=len({r.call_id for r in rows}),
            cache_hits=sum(r.outcome == CACHE_HIT for r in rows),
            input_tokens=sum(r.usage.input_tokens for r in rows if r.outcome != CACHE_HIT),
            output_tokens=sum(r.usage.output_tokens for r in rows if r.outcome != CACHE_HIT),
            cost_usd=None if any(c is None for c in costs) else sum(c or 0.0 for c in costs),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "cache_hits": self.cache_hits,
                "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cost_usd": self.cost_usd}


# --- per sample and per question --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SampleScore:
    """One answer to one question, scored."""

    text: str
    abstained: bool
    em: float | None  # None on unanswerable questions: there is no gold answer to match
    f1: float | None
    correct: bool
    cited: tuple[str, ...]
    citation: tuple[float, float] | None
    claims: tuple[int, int]
    latency_s: float
    cost: CallCost
    judge: CorrectnessJudgement | None = None
    attributed: int = 0  # claims the verifier attributed to a source (the model cited none)
    fallback: bool = False  # the pipeline answered extractively instead of with the model
    recall: float | None = None  # token recall of the gold answer (None when unanswerable)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text, "abstained": self.abstained, "EM": self.em, "F1": self.f1,
            "token_recall": self.recall,
            "correct": self.correct, "cited": list(self.cited),
            "citation_precision": self.citation[0] if self.citation else None,
            "citation_recall": self.citation[1] if self.citation else None,
            "claims_supported": self.claims[0], "claims": self.claims[1],
            "claims_attributed": self.attributed, "fallback": self.fallback,
            "latency_s": self.latency_s, **self.cost.to_dict(),
            "judge": self.judge.to_dict() if self.judge else None,
        }


def score_sample(item: AnswerItem, answer: Answer, latency_s: float, cost: CallCost) -> SampleScore:
    """Every reference-based score of one answer (no judge)."""
    prediction = prediction_text(answer)
    cited = cited_doc_ids(answer)
    correct = answer.abstained if item.unanswerable else is_correct(prediction, item.answers)
    return SampleScore(
        text=answer.text,
        abstained=answer.abstained,
        em=None if item.unanswerable else exact_match(prediction, item.answers),
        f1=None if item.unanswerable else token_f1(prediction, item.answers),
        recall=None if item.unanswerable else token_recall(prediction, item.answers),
        correct=correct,
        cited=tuple(sorted(cited)),
        citation=citation_scores(cited, frozenset(item.relevant)),
        claims=supported_claims(answer.checks),
        attributed=attributed_claims(answer.checks),
        fallback=answer.usage.get("fallback") is not None,
        latency_s=latency_s,
        cost=cost,
    )


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


@dataclass(frozen=True, slots=True)
class QuestionResult:
    """All samples of one question, the judge's repeated verdicts and its verdict on the label."""

    item: AnswerItem
    samples: tuple[SampleScore, ...]
    judge_repeats: tuple[CorrectnessJudgement, ...] = ()
    label_judgement: CorrectnessJudgement | None = None

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def flaky(self) -> bool:
        right = sum(s.correct for s in self.samples)
        return 0 < right < self.n

    def metrics(self, *, extractive: bool = False) -> dict[str, float]:
        """Per-question values for the run registry: means over samples, all higher-is-better.

        A value that is undefined for this question (no gold passages, no claims, no measured
        judge verdict) is absent rather than 0.
        """
        s = self.samples
        out: dict[str, float] = {"correct": _avg([float(x.correct) for x in s])}
        if not self.item.unanswerable:
            if not extractive:
                out["EM"] = _avg([x.em or 0.0 for x in s])
            out["F1"] = _avg([x.f1 or 0.0 for x in s])
            out["token_recall"] = _avg([x.recall or 0.0 for x in s])
        cites = [x.citation for x in s if x.citation is not None]
        if cites:
            out["citation_precision"] = _avg([c[0] for c in cites])
            out["citation_recall"] = _avg([c[1] for c in cites])
        rates = [x.claims[0] / x.claims[1] for x in s if x.claims[1]]
        if rates:
            out["supported_claims"] = _avg(rates)
        judged = [x.judge.correct for x in s if x.judge is not None and x.judge.measured]
        if judged:
            out["judge_correct"] = _avg([float(bool(c)) for c in judged])
        if self.n > 1:
            out.update(self._repeat_metrics())
        return out

    def _repeat_metrics(self) -> dict[str, float]:
        right = [x.correct for x in self.samples]
        _, agree = majority_agreement([prediction_text_of(x) for x in self.samples])
        out = {"agreement": agree, f"pass^{self.n}": float(all(right)),
               f"pass@{self.n}": float(any(right))}
        judge_agree = self_agreement(self.judge_repeats)
        if judge_agree is not None:
            out["judge_self_agreement"] = judge_agree
        return out

    @property
    def latency_s(self) -> float:
        return _avg([x.latency_s for x in self.samples])

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.item.id, "question": self.item.question, "gold": list(self.item.answers),
            "relevant": list(self.item.relevant), "unanswerable": self.item.unanswerable,
            "metrics": self.metrics(), "flaky": self.flaky,
            "samples": [x.to_dict() for x in self.samples],
            "judge_repeats": [j.to_dict() for j in self.judge_repeats],
            "label_judgement": self.label_judgement.to_dict() if self.label_judgement else None,
        }


def prediction_text_of(sample: SampleScore) -> str:
    """The scored prediction of a sample ("" for an abstention)."""
    return "" if sample.abstained else strip_markers(sample.text)


def _avg(values: Sequence[float]) -> float:
    return sum(values) / len(values)


# --- running ----------------------------------------------------------------------------------


class Answerer(Protocol):
    """Answers one question; `sample` is the 0-based repeat (an answerer varies its seed by it)."""

    def __call__(self, question: str, *, sample: int) -> Answer: ...


@dataclass
class ExtractiveAnswerer:
    """`ragline ask --extractive`: the best-supported sentences of the top `k` chunks."""

    index: Index
    k: int = 5

    def __call__(self, question: str, *, sample: int) -> Answer:
        from ragline.answer.pipeline import ask

        return ask(self.index, question, extractive=True, k=self.k)


@dataclass
class GenerativeAnswerer:
    """`ragline ask` with an LLM. With `repeat=True` every call is a repeated sample: it is never
    served from (or written to) the response cache, and sample r runs with seed `seed + r`."""

    index: Index
    llm: LLM
    k: int = 5
    temperature: float = 0.0
    max_tokens: int = 400
    strict: bool = False
    seed: int = 0
    repeat: bool = False

    def __post_init__(self) -> None:
        self._defaults = self.llm.defaults

    def __call__(self, question: str, *, sample: int) -> Answer:
        from ragline.answer.pipeline import ask

        # The pipeline's own calls inherit these per-call defaults (seed, never-cache flag).
        self.llm.defaults = replace(self._defaults, seed=self.seed + sample, repeat=self.repeat)
        try:
            return ask(self.index, question, llm=self.llm, k=self.k, strict=self.strict,
                       temperature=self.temperature, max_tokens=self.max_tokens)
        finally:
            self.llm.defaults = self._defaults


@dataclass(frozen=True, slots=True)
class JudgeSettings:
    """The judge and how it runs: `repeats` verdicts on the first sample's answer, sampled at
    `temperature` (never from the cache), give its self-agreement; 1 = no self-agreement."""

    judge: CorrectnessJudge
    repeats: int = 1
    temperature: float = 0.7
    seed: int = 0


@dataclass
class AnswerRun:
    """Every question's results; `summary()` is the aggregate table."""

    name: str
    repeats: int
    questions: list[QuestionResult] = field(default_factory=list)
    extractive: bool = False  # quoted sentences: exact match is undefined, not 0

    def per_query(self) -> dict[str, dict[str, float]]:
        return {q.item.id: q.metrics(extractive=self.extractive) for q in self.questions}

    def latencies(self) -> dict[str, float]:
        return {q.item.id: q.latency_s for q in self.questions}

    def summary(self) -> dict[str, Any]:
        return summarize(self.questions, self.repeats, extractive=self.extractive)


def _answer_once(
    item: AnswerItem, answerer: Answerer, sample: int, ledger: RecordingLedger | None
) -> SampleScore:
    if ledger is not None:
        ledger.take()
    started = time.perf_counter()
    answer = answerer(item.question, sample=sample)
    latency = time.perf_counter() - started
    cost = CallCost.of(ledger.take()) if ledger is not None else CallCost()
    return score_sample(item, answer, latency, cost)


def _with_judge(item: AnswerItem, sample: SampleScore, judge: CorrectnessJudge) -> SampleScore:
    verdict = judge.judge(item.question, item.answers, prediction_text_of(sample) or sample.text)
    return SampleScore(**{**_fields(sample), "judge": verdict})


def _fields(sample: SampleScore) -> dict[str, Any]:
    return {name: getattr(sample, name) for name in SampleScore.__slots__}


def _judge_repeats(
    item: AnswerItem, first: SampleScore, settings: JudgeSettings
) -> tuple[CorrectnessJudgement, ...]:
    if settings.repeats < 2:
        return ()
    answer = prediction_text_of(first) or first.text
    return tuple(
        settings.judge.judge(item.question, item.answers, answer,
                             temperature=settings.temperature, seed=settings.seed + r,
                             repeat=True)
        for r in range(settings.repeats)
    )


def evaluate_question(
    item: AnswerItem,
    answerer: Answerer,
    *,
    repeats: int = 1,
    judge: JudgeSettings | None = None,
    ledger: RecordingLedger | None = None,
) -> QuestionResult:
    """Answer one question `repeats` times, score every sample, and judge it if asked.

    The judge grades each sample at temperature 0 (never unanswerable questions: there is no
    reference), repeats its verdict on the first sample for self-agreement, and grades the
    question's labelled answer when the dataset gives one.
    """
    samples = [_answer_once(item, answerer, r, ledger) for r in range(repeats)]
    if judge is None or item.unanswerable:
        return QuestionResult(item, tuple(samples))
    samples = [_with_judge(item, s, judge.judge) for s in samples]
    label = (judge.judge.judge(item.question, item.answers, item.label.answer)
             if item.label is not None else None)
    return QuestionResult(item, tuple(samples), _judge_repeats(item, samples[0], judge), label)


def evaluate_answers(
    items: Sequence[AnswerItem],
    answerer: Answerer,
    *,
    name: str = "default",
    repeats: int = 1,
    judge: JudgeSettings | None = None,
    ledger: RecordingLedger | None = None,
    skip: frozenset[str] = frozenset(),
    on_question: Callable[[QuestionResult], None] | None = None,
    say: Say = lambda _m: None,
) -> AnswerRun:
    """Evaluate every item (except `skip`); `on_question` sees each result as it is done."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    run = AnswerRun(name, repeats, extractive=isinstance(answerer, ExtractiveAnswerer))
    todo = [i for i in items if i.id not in skip]
    for n, item in enumerate(todo, 1):
        result = evaluate_question(item, answerer, repeats=repeats, judge=judge, ledger=ledger)
        run.questions.append(result)
        if on_question is not None:
            on_question(result)
        if n % 10 == 0 or n == len(todo):
            say(f"[{name}] {n}/{len(todo)} questions")
    return run


# --- the summary --------------------------------------------------------------------------------


def _share(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def _citation_summary(samples: Sequence[SampleScore]) -> dict[str, Any]:
    scored = [s for s in samples if s.citation is not None]
    answered = [s for s in scored if not s.abstained]
    precision = [s.citation[0] for s in scored if s.citation]
    recall = [s.citation[1] for s in scored if s.citation]
    return {
        "citation_precision": _mean(precision), "citation_recall": _mean(recall),
        "citation_precision_answered": _mean([s.citation[0] for s in answered if s.citation]),
        "citation_recall_answered": _mean([s.citation[1] for s in answered if s.citation]),
        "citation_n": len(scored), "citation_n_answered": len(answered),
    }


def _judge_summary(questions: Sequence[QuestionResult]) -> dict[str, Any] | None:
    pairs = [(s.judge, s.correct) for q in questions for s in q.samples if s.judge is not None]
    if not pairs:
        return None
    verdicts = [p[0] for p in pairs]
    labelled = [(q.label_judgement, q.item.label.correct) for q in questions
                if q.label_judgement is not None and q.item.label is not None]
    agreements = [a for q in questions
                  if (a := self_agreement(q.judge_repeats)) is not None]
    first = verdicts[0]
    return {
        "prompt_id": first.prompt_id, "judge_model": first.judge_model,
        **judge_mean(verdicts).to_dict(),
        "reliability_vs_reference_rule": judge_reliability(
            verdicts, [p[1] for p in pairs], source="reference rule (EM or contains)").to_dict(),
        "reliability_vs_labels": judge_reliability(
            [p[0] for p in labelled], [p[1] for p in labelled], source="dataset labels"
        ).to_dict() if labelled else None,
        "self_agreement": _mean(agreements), "self_agreement_questions": len(agreements),
        "cost_usd": _sum_cost([v.cost_usd for v in verdicts]),
    }


def _sum_cost(costs: Sequence[float | None]) -> float | None:
    return None if any(c is None for c in costs) else sum(c or 0.0 for c in costs)


def _repeat_summary(questions: Sequence[QuestionResult], repeats: int) -> dict[str, Any]:
    metrics = [q.metrics() for q in questions]
    flaky = [q for q in questions if q.flaky]
    return {
        "repeats": repeats,
        "agreement": _mean([m["agreement"] for m in metrics]),
        f"pass^{repeats}": _mean([m[f"pass^{repeats}"] for m in metrics]),
        f"pass@{repeats}": _mean([m[f"pass@{repeats}"] for m in metrics]),
        "flaky": [{"id": q.item.id, "question": q.item.question,
                   "correct_samples": sum(s.correct for s in q.samples), "samples": q.n}
                  for q in flaky],
    }


def _latency_ms(seconds: Sequence[float]) -> dict[str, float]:
    if not seconds:
        return {"p50": 0.0, "p95": 0.0, "mean": 0.0}
    summary = latency_summary(seconds)
    return {"p50": summary.p50 * 1000, "p95": summary.p95 * 1000, "mean": summary.mean * 1000}


def summarize(questions: Sequence[QuestionResult], repeats: int, *,
              extractive: bool = False) -> dict[str, Any]:
    """The aggregate table of a run (see the module docstring for each definition). A measure
    that is undefined for the run is None ("n/a"): exact match for extractive answers (a quoted
    sentence never equals a short gold answer), a rate with nothing to count."""
    samples = [s for q in questions for s in q.samples]
    answerable = [q for q in questions if not q.item.unanswerable]
    unanswerable = [q for q in questions if q.item.unanswerable]
    claims = [s.claims for s in samples]
    latencies = [s.latency_s for s in samples]
    costs = [s.cost for s in samples]
    out: dict[str, Any] = {
        "questions": len(questions), "answerable": len(answerable),
        "unanswerable": len(unanswerable), "samples": len(samples),
        "EM": None if extractive else _mean([s.em or 0.0 for q in answerable for s in q.samples]),
        "F1": _mean([s.f1 or 0.0 for q in answerable for s in q.samples]),
        "token_recall": _mean([s.recall or 0.0 for q in answerable for s in q.samples]),
        "accuracy_answerable": _share([s.correct for q in answerable for s in q.samples]),
        "accuracy_unanswerable": _share([s.correct for q in unanswerable for s in q.samples]),
        "abstention_rate": _share([s.abstained for s in samples]),
        # Beside abstention on unanswerables, always: abstaining on everything scores 100% there.
        "false_abstention_rate": _share([s.abstained for q in answerable for s in q.samples]),
        **_citation_summary(samples),
        "supported_claim_rate": (sum(c[0] for c in claims) / sum(c[1] for c in claims)
                                 if sum(c[1] for c in claims) else None),
        "claims": sum(c[1] for c in claims),
        "attributed_claims": sum(s.attributed for s in samples),
        # Answers the pipeline made extractively because the model failed: not the model's own.
        "fallback_rate": _share([s.fallback for s in samples]),
        "latency_ms": _latency_ms(latencies),
        "cost": {"answer_usd": _sum_cost([c.cost_usd for c in costs]),
                 "answer_usd_per_question": _per(_sum_cost([c.cost_usd for c in costs]),
                                                 len(questions)),
                 "calls": sum(c.calls for c in costs),
                 "cache_hits": sum(c.cache_hits for c in costs),
                 "input_tokens": sum(c.input_tokens for c in costs),
                 "output_tokens": sum(c.output_tokens for c in costs)},
        "judge": _judge_summary(questions),
    }
    if repeats > 1:
        out["consistency"] = _repeat_summary(questions, repeats)
    return out


def _per(total: float | None, n: int) -> float | None:
    return None if total is None or n == 0 else total / n


def metric_means(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean of each metric over the questions where it is defined."""
    names = sorted({m for row in per_query.values() for m in row})
    return {m: _avg([row[m] for row in per_query.values() if m in row]) for m in names}
