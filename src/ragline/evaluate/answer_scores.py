"""Answer scores, pure functions: SQuAD exact match and token F1, the "correct" rule, citation
precision and recall, supported claims, agreement over samples.

- exact match and token F1: a port of the official SQuAD v1.1 evaluation script
  (`evaluate-v1.1.py`, Rajpurkar et al. 2016: `normalize_answer`, `exact_match_score`,
  `f1_score`, max over the gold answers), with the yes/no rule of HotpotQA's
  `hotpot_evaluate_v1.py` (Yang et al. 2018): when the normalised prediction or gold answer is
  "yes", "no" or "noanswer", F1 is 0 unless both are equal.
- token recall: the share of the normalised gold answer's tokens (as a multiset) that the
  normalised prediction contains, max over the gold answers; yes/no gold answers follow the F1 rule.
  It is the long-form counterpart of "contains": a one-sentence gold answer almost never occurs
  verbatim in a generated paragraph, but its words do.
- correct: EM, or the normalised gold answer occurs as a run of whole tokens in the normalised
  prediction (DPR's "has answer" rule with SQuAD normalisation; a yes/no gold answer must be the
  prediction's first token), or token recall >= 0.8 (LONG_FORM_RECALL, fixed before any run: four
  of five gold words present).
- citation precision and recall: C = the document ids the answer cites, G = the question's gold
  passages. precision = |C & G| / |C|, recall = |C & G| / |G|. An answer (or abstention) that
  cites nothing scores 0 on both. Undefined (None) for a question without gold passages.
- supported claims: the share of verified claims whose verdict is SUPPORTED or
  PARTIALLY_SUPPORTED. Claims the model left uncited but the verifier ATTRIBUTED to a supporting
  source are counted apart (they are supported, but not by the model's own citation), and the
  verifier's attributions never count as the answer's citations.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from ragline.answer.claims import strip_markers
from ragline.answer.types import Answer, ClaimCheck, ClaimVerdict

YES_NO = frozenset({"yes", "no", "noanswer"})
SUPPORTED = frozenset({ClaimVerdict.SUPPORTED, ClaimVerdict.PARTIALLY_SUPPORTED})
ABSTAINED = "<abstained>"
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lowercase, drop punctuation, drop a/an/the, collapse spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _f1(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction), normalize_answer(gold)
    if (pred in YES_NO or ref in YES_NO) and pred != ref:
        return 0.0
    common = Counter(pred.split()) & Counter(ref.split())
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred.split()), same / len(ref.split())
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals some normalised gold answer (max over golds)."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in golds))


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """SQuAD token F1, max over the gold answers, with HotpotQA's yes/no rule."""
    return max((_f1(prediction, g) for g in golds), default=0.0)


LONG_FORM_RECALL = 0.8


def token_recall(prediction: str, golds: Sequence[str]) -> float:
    """Share of the gold answer's normalised tokens found in the prediction, max over golds."""
    words = normalize_answer(prediction).split()
    pred = Counter(words)
    best = 0.0
    for gold in golds:
        ref = normalize_answer(gold).split()
        if not ref:
            continue
        if ref[0] in YES_NO:  # as for "contains": the answer must open with it
            best = max(best, float(words[:1] == ref[:1]))
            continue
        best = max(best, sum((Counter(ref) & pred).values()) / len(ref))
    return best


def is_correct(prediction: str, golds: Sequence[str]) -> bool:
    """The "correct" rule of the module docstring: EM, contains, or token recall >= 0.8."""
    return (exact_match(prediction, golds) == 1.0 or contains_answer(prediction, golds)
            or token_recall(prediction, golds) >= LONG_FORM_RECALL)


def contains_answer(prediction: str, golds: Sequence[str]) -> bool:
    """Does the prediction state a gold answer? (see `correct` in the module docstring)"""
    pred = normalize_answer(prediction).split()
    for gold in golds:
        ref = normalize_answer(gold).split()
        if not ref:
            continue
        if ref[0] in YES_NO:
            if pred[:1] == ref[:1]:
                return True
            continue
        if any(pred[i : i + len(ref)] == ref for i in range(len(pred) - len(ref) + 1)):
            return True
    return False


def prediction_text(answer: Answer) -> str:
    """What is scored: the answer text without citation markers; "" for an abstention."""
    return "" if answer.abstained else strip_markers(answer.text)


def cited_doc_ids(answer: Answer) -> frozenset[str]:
    """Document ids of the sources the answer itself cites.

    A sentence the verifier ATTRIBUTED to a source (the model cited nothing there) does not count:
    citation precision and recall measure the system's own citations. An answer with neither
    checks nor sentences (from another system) counts all its citations.
    """
    if answer.checks:
        numbers = {n for c in answer.checks if c.verdict is not ClaimVerdict.ATTRIBUTED
                   for n in c.cited}
    elif answer.sentences:
        numbers = {n for s in answer.sentences for n in s.sources}
    else:
        return frozenset(c.doc_id for c in answer.citations)
    return frozenset(c.doc_id for c in answer.citations if c.number in numbers)


def citation_scores(cited: frozenset[str], gold: frozenset[str]) -> tuple[float, float] | None:
    """(precision, recall) of cited documents against gold passages; None without gold."""
    if not gold:
        return None
    if not cited:
        return 0.0, 0.0
    hits = len(cited & gold)
    return hits / len(cited), hits / len(gold)


def supported_claims(checks: Sequence[ClaimCheck]) -> tuple[int, int]:
    """(supported or partially supported claims, all verified claims). An ATTRIBUTED claim (the
    model cited nothing; the verifier found a supporting source) is not counted as supported."""
    return sum(c.verdict in SUPPORTED for c in checks), len(checks)


def attributed_claims(checks: Sequence[ClaimCheck]) -> int:
    """Claims the model left uncited that the verifier attributed to a supporting source."""
    return sum(c.verdict is ClaimVerdict.ATTRIBUTED for c in checks)


def majority_agreement(predictions: Sequence[str]) -> tuple[str, float]:
    """The majority normalised prediction and the share of samples that agree with it."""
    if not predictions:
        raise ValueError("agreement needs at least one sample")
    keys = [normalize_answer(p) if p else ABSTAINED for p in predictions]
    majority, count = Counter(keys).most_common(1)[0]
    return majority, count / len(keys)
