"""Check each cited claim against the text of the sources it cites, before any LLM judge.

Per claim: (a) the quote, if given, is found verbatim or fuzzily in a cited source, with its span;
(b) every number, date and name of the claim occurs in the cited text; (c) support: a
`SupportScorer` (`answer/support.py`) scores the claim against the cited sources, by default the
trained cross-encoder verifier (probability of entailment, max over sentence-aligned chunks).
(a) and (b) are deterministic extra evidence: a mismatch makes a claim unsupported whatever the
score. An optional LLM judge runs only when configured, and only on claims that pass (a) and (b).
A claim that fails against its cited sources but passes against another retrieved source is
MISATTRIBUTED.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import Stemmer
from rapidfuzz import fuzz

from ragline.answer.claims import (
    STOPWORDS,
    date_in,
    extract_dates,
    extract_names,
    extract_numbers,
    initialisms,
    name_in,
    split_sentences,
    words,
)
from ragline.answer.support import Support, SupportScorer, default_scorer
from ragline.answer.types import (
    Answer,
    CitedSentence,
    ClaimCheck,
    ClaimVerdict,
    JudgeLabel,
    JudgeVerdict,
)
from ragline.embed.base import Embedder, EmbedKind, Vectors
from ragline.errors import ConfigError

Judge = Callable[[str, str], JudgeVerdict]


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Decision thresholds of verification besides the support scorer's own threshold.

    - `quote`: a quote matching a cited source less than this (rapidfuzz partial ratio, 0-1) is
      treated as not found;
    - `checks`: apply the deterministic number, date and name checks (a mismatch makes the
      claim unsupported whatever its support score).
    """

    quote: float = 0.8
    checks: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.quote <= 1.0:
            raise ConfigError(f"Thresholds.quote must be between 0 and 1, got {self.quote}")


DEFAULT_THRESHOLDS = Thresholds()


class MemoEmbedder:
    """An Embedder that remembers every vector it computed, so repeated texts embed once."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_id: str = inner.model_id
        self.dim: int = inner.dim
        self.max_tokens: int = inner.max_tokens
        self._memo: dict[tuple[str, str], Vectors] = {}

    def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        missing = list(dict.fromkeys(t for t in texts if (kind, t) not in self._memo))
        if missing:
            vectors = self.inner.embed(missing, kind=kind)
            for text, vector in zip(missing, vectors, strict=True):
                self._memo[(kind, text)] = vector
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._memo[(kind, t)] for t in texts]).astype(np.float32)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)


# ---------------------------------------------------------------- lexical support

_STEMMER = Stemmer.Stemmer("english")


@lru_cache(maxsize=65536)
def content_stems(text: str) -> frozenset[str]:
    """Stemmed content words (stopwords dropped) of a text."""
    return frozenset(_STEMMER.stemWords([w for w in words(text) if w not in STOPWORDS]))


def coverage(claim: str, source: str) -> float:
    """The share of the claim's content words that occur in the source (1.0 for an empty claim)."""
    wanted = content_stems(claim)
    if not wanted:
        return 1.0
    return len(wanted & content_stems(source)) / len(wanted)


@lru_cache(maxsize=16384)
def source_sentences(text: str) -> tuple[str, ...]:
    return tuple(s.text for s in split_sentences(text)) or (text,)


# ---------------------------------------------------------------- the three checks


@dataclass(frozen=True, slots=True)
class QuoteMatch:
    score: float
    start: int
    end: int


def match_quote(quote: str, source: str) -> QuoteMatch:
    """Find `quote` in `source`: verbatim, then ignoring case and spacing, then fuzzily."""
    at = source.find(quote)
    if at >= 0:
        return QuoteMatch(1.0, at, at + len(quote))
    parts = [re.escape(p) for p in re.findall(r"\w+", quote)]
    if parts:
        loose = re.search(r"\W+".join(parts), source, re.IGNORECASE)
        if loose:
            return QuoteMatch(1.0, loose.start(), loose.end())
    lowered = source.lower() if len(source.lower()) == len(source) else source
    aligned = fuzz.partial_ratio_alignment(quote.lower(), lowered)
    if aligned is None:
        return QuoteMatch(0.0, 0, 0)
    return QuoteMatch(aligned.score / 100.0, aligned.dest_start, aligned.dest_end)


def consistency_mismatches(claim: str, source: str) -> list[str]:
    """Numbers, dates and names of the claim that the source does not contain."""
    dates = extract_dates(claim)
    source_dates = [m.value for m in extract_dates(source)]
    source_numbers = {_bare(m.value) for m in extract_numbers(source)}
    source_numbers |= {d.split("-")[0] for d in source_dates}
    source_list = words(source)
    source_words = frozenset(source_list)
    acronyms = initialisms(source_list)
    problems = [
        f"date {d.raw!r} not in source" for d in dates if not date_in(d.value, source_dates)
    ]
    skip = tuple((d.start, d.end) for d in dates)
    problems += [
        f"number {n.raw!r} not in source"
        for n in extract_numbers(claim, skip=skip)
        if _bare(n.value) not in source_numbers
    ]
    problems += [
        f"name {n.raw!r} not in source"
        for n in extract_names(claim)
        if not name_in(n.value, source_words, acronyms)
    ]
    return list(dict.fromkeys(problems))


def _bare(value: str) -> str:
    return value.removesuffix("%").lstrip("+")


# ---------------------------------------------------------------- one claim


@dataclass(frozen=True, slots=True)
class _SourceResult:
    passes: bool
    support: Support
    mismatches: list[str]
    quote: QuoteMatch | None
    quote_source: int | None


def _check_sources(
    claim: str,
    texts: Mapping[int, str],
    quote: str | None,
    scorer: SupportScorer,
    thresholds: Thresholds,
) -> _SourceResult:
    joined = "\n\n".join(texts.values())
    mismatches = consistency_mismatches(claim, joined) if thresholds.checks else []
    support = scorer.support(claim, list(texts.values()))
    best_quote: QuoteMatch | None = None
    quote_source: int | None = None
    if quote:
        for number, text in texts.items():
            found = match_quote(quote, text)
            if best_quote is None or found.score > best_quote.score:
                best_quote, quote_source = found, number
        if best_quote is not None and best_quote.score < thresholds.quote:
            mismatches = [
                *mismatches,
                f"quote not found in the cited source (best match {best_quote.score:.0%})",
            ]
            quote_source = None  # a failed match is not evidence: no span is reported for it
    passes = not mismatches and support.score >= scorer.threshold
    return _SourceResult(passes, support, mismatches, best_quote, quote_source)


def verify_claim(
    sentence: str,
    cited_texts: Mapping[int, str],
    *,
    other_texts: Mapping[int, str] | None = None,
    scorer: SupportScorer | None = None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    cited: Sequence[int] | None = None,
    quote: str | None = None,
    judge: Judge | None = None,
) -> ClaimCheck:
    """Verify one sentence against the sources it cites.

    `cited_texts` maps each cited source number to its text; `cited` lists the numbers the claim
    named (default: the keys of `cited_texts`); a named number with no text is INVALID_SOURCE.
    `other_texts` are the other retrieved sources, used to detect misattribution. `scorer`
    defaults to the trained verifier.
    """
    scorer = scorer or default_scorer()
    numbers = list(cited) if cited is not None else list(cited_texts)
    valid = {n: cited_texts[n] for n in numbers if n in cited_texts}
    others = {n: t for n, t in (other_texts or {}).items() if n not in valid}
    invalid = [n for n in numbers if n not in cited_texts]
    if not numbers:
        return _uncited(sentence, others, quote, scorer, thresholds)
    if not valid:
        return ClaimCheck(
            sentence=sentence,
            cited=numbers,
            verdict=ClaimVerdict.INVALID_SOURCE,
            reason=f"cites source {_fmt(invalid)}, which does not exist",
        )
    result = _check_sources(sentence, valid, quote, scorer, thresholds)
    verdict, reason, judged = _decide(sentence, valid, result, scorer, judge)
    supported_by: list[int] = []
    if verdict.is_problem:
        supported_by = _supporters(sentence, others, quote, scorer, thresholds)
        if supported_by:
            verdict = ClaimVerdict.MISATTRIBUTED
            reason = f"not supported by {_fmt(list(valid))} but by {_fmt(supported_by)}"
    if invalid:
        verdict = ClaimVerdict.INVALID_SOURCE
        reason = f"cites source {_fmt(invalid)}, which does not exist; " + reason
    return _check(sentence, numbers, verdict, result, reason, supported_by, judged)


def _decide(
    sentence: str,
    valid: Mapping[int, str],
    result: _SourceResult,
    scorer: SupportScorer,
    judge: Judge | None,
) -> tuple[ClaimVerdict, str, JudgeVerdict | None]:
    if result.mismatches:
        return ClaimVerdict.UNSUPPORTED, "; ".join(result.mismatches), None
    judged = judge(sentence, "\n\n".join(valid.values())) if judge is not None else None
    if judged is not None and judged.label is not JudgeLabel.UNMEASURED:
        verdict = {
            JudgeLabel.SUPPORTED: ClaimVerdict.SUPPORTED,
            JudgeLabel.PARTIAL: ClaimVerdict.PARTIALLY_SUPPORTED,
            JudgeLabel.UNSUPPORTED: ClaimVerdict.UNSUPPORTED,
        }[judged.label]
        return (
            verdict,
            f"judge: {judged.label.value}" + (f" ({judged.reason})" if judged.reason else ""),
            judged,
        )
    score = result.support.score
    note = " (judge verdict unmeasured)" if judged is not None else ""
    if score < scorer.threshold:
        return (
            ClaimVerdict.UNSUPPORTED,
            f"support {score:.2f} < {scorer.threshold:.2f}" + note,
            judged,
        )
    return ClaimVerdict.SUPPORTED, f"support {score:.2f}" + note, judged


def _supporters(
    sentence: str,
    others: Mapping[int, str],
    quote: str | None,
    scorer: SupportScorer,
    thresholds: Thresholds,
) -> list[int]:
    scorer.prefetch([(text, sentence) for text in others.values()])
    return [
        n
        for n, text in others.items()
        if _check_sources(sentence, {n: text}, quote, scorer, thresholds).passes
    ]


def _uncited(
    sentence: str,
    others: Mapping[int, str],
    quote: str | None,
    scorer: SupportScorer,
    thresholds: Thresholds,
) -> ClaimCheck:
    supporters = _supporters(sentence, others, quote, scorer, thresholds)
    hint = f"; source {_fmt(supporters)} would support it" if supporters else ""
    return ClaimCheck(
        sentence=sentence,
        cited=[],
        verdict=ClaimVerdict.NO_CITATION,
        supported_by=supporters,
        reason="the sentence cites no source" + hint,
    )


def _check(
    sentence: str,
    numbers: list[int],
    verdict: ClaimVerdict,
    result: _SourceResult,
    reason: str,
    supported_by: list[int],
    judged: JudgeVerdict | None,
) -> ClaimCheck:
    quote = result.quote
    return ClaimCheck(
        sentence=sentence,
        cited=numbers,
        verdict=verdict,
        quote_match=quote.score if quote else None,
        quote_source=result.quote_source,
        quote_span=(quote.start, quote.end) if quote and result.quote_source is not None else None,
        support_score=round(result.support.score, 4),
        mismatches=result.mismatches,
        best_source_sentence=result.support.sentence,
        supported_by=supported_by,
        judge=judged,
        reason=reason,
    )


def _fmt(numbers: Sequence[int]) -> str:
    return ", ".join(f"[{n}]" for n in numbers)


# ---------------------------------------------------------------- whole answers


def attribute_uncited(
    sentences: Sequence[CitedSentence],
    checks: Sequence[ClaimCheck],
    sources: Mapping[int, str],
    *,
    scorer: SupportScorer | None = None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> tuple[list[CitedSentence], list[ClaimCheck]]:
    """Cite, for each sentence the model left uncited, the source the verifier found supporting it.

    Small models often answer from the sources without writing [n] markers. A sentence with no
    citation whose best supporting source passes the full check (quote, numbers, names,
    support) becomes ATTRIBUTED to that source; anything else keeps NO_CITATION.
    """
    scorer = scorer or default_scorer()
    out_sentences, out_checks = list(sentences), list(checks)
    for i, (sentence, check) in enumerate(zip(sentences, checks, strict=True)):
        if check.verdict is not ClaimVerdict.NO_CITATION or not check.supported_by:
            continue
        number = check.supported_by[0]
        cited = sentence.model_copy(update={"sources": [number]})
        recheck = verify_claim(cited.text, {number: sources[number]}, other_texts=sources,
                               scorer=scorer, thresholds=thresholds, cited=[number])
        if recheck.verdict is ClaimVerdict.SUPPORTED:
            out_sentences[i] = cited
            out_checks[i] = recheck.model_copy(update={
                "verdict": ClaimVerdict.ATTRIBUTED,
                "reason": f"the model cited no source; the verifier attributed it to [{number}]",
            })
    return out_sentences, out_checks


def verify_answer(
    sentences: Sequence[CitedSentence],
    sources: Mapping[int, str],
    *,
    scorer: SupportScorer | None = None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    judge: Judge | None = None,
) -> list[ClaimCheck]:
    """Verify every sentence of an answer; `sources` maps source numbers [1]..[n] to their text.

    Every (cited evidence, claim) pair is scored in one batch before the per-claim decisions.
    """
    scorer = scorer or default_scorer()
    scorer.prefetch([
        ("\n\n".join(sources[n] for n in s.sources if n in sources), s.text)
        for s in sentences if any(n in sources for n in s.sources)
    ] + [(text, s.text) for s in sentences if not s.sources for text in sources.values()])
    return [
        verify_claim(
            s.text,
            {n: sources[n] for n in s.sources if n in sources},
            other_texts=sources,
            scorer=scorer,
            thresholds=thresholds,
            cited=s.sources,
            quote=s.quote,
            judge=judge,
        )
        for s in sentences
    ]


def abstain_if_unsupported(answer: Answer) -> Answer:
    """`--strict`: an answer with any flagged claim becomes an abstention (checks are kept)."""
    flagged = [c for c in answer.checks if c.flagged]
    if not flagged or answer.abstained:
        return answer
    reason = f"{len(flagged)} claim(s) failed verification: " + "; ".join(
        f"{c.sentence[:60]!r} {c.verdict.value}" for c in flagged[:3]
    )
    return answer.model_copy(
        update={
            "abstained": True,
            "abstain_reason": reason,
            "text": "I cannot answer this reliably from the documents: " + reason,
        }
    )
