"""Rule-based hard examples for the verifier, made from the training split only.

The first model trained on the plain pairs scored "Alcohol is reimbursable." almost as high as
"Alcohol is not reimbursable." against a policy saying the latter, and a claim copied verbatim
from a five-sentence source only ~0.5: it had learned topic overlap, and premises of one
sentence. These rules add what the public pairs have too little of:

* `negate`: a supported claim with its negation flipped (insert or drop "not" after the first
  auxiliary verb, "never"/"no longer" dropped) is not supported;
* `swap_names`: a supported claim with two of its names exchanged ("Dev Patel owns the payments
  system" when Maria Lopez does) is not supported;
* `change_count`: a count word changed ("one approval" for "two approvals") is not supported
  (digits are left to the deterministic number check);
* `verbatim`: a sentence of the evidence, as the claim, is supported;
* `in_context`: a one-sentence premise placed among sentences of other premises keeps its label,
  so the model learns to find the sentence that decides among ones that do not.

Never applied to the dev split or to any evaluation data.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from ragline.train.cross_encoder import Pair

AUXILIARIES = ("is", "are", "was", "were", "can", "could", "will", "would", "has", "have",
               "had", "does", "do", "did", "should", "must", "may", "might")
_AUX = re.compile(r"\b(" + "|".join(AUXILIARIES) + r")\b(\s+not\b|n't\b)?", re.IGNORECASE)
_NEVER = re.compile(r"\b(never|no longer)\s+", re.IGNORECASE)
COUNTS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_COUNT = re.compile(r"\b(" + "|".join(COUNTS) + r")\b", re.IGNORECASE)
_NT = re.compile(r"\b(is|are|was|were|does|do|did|has|have|had|could|would|should|must)n't\b",
                 re.IGNORECASE)


def negate(claim: str) -> str | None:
    """The claim with its negation flipped, or None when no rule applies."""
    contracted = _NT.search(claim)
    if contracted:
        return claim[:contracted.start()] + contracted.group(1) + claim[contracted.end():]
    never = _NEVER.search(claim)
    if never:
        return claim[:never.start()] + claim[never.end():]
    match = _AUX.search(claim)
    if match is None:
        return None
    if match.group(2):  # "is not" / "isn't" -> "is"
        return claim[:match.start()] + match.group(1) + claim[match.end():]
    return claim[:match.end()] + " not" + claim[match.end():]


def swap_names(claim: str) -> str | None:
    """The claim with its first two distinct names exchanged (names as the checks find them)."""
    from ragline.answer.claims import extract_names

    distinct = list({m.value: m for m in reversed(extract_names(claim))}.values())[::-1]
    if len(distinct) < 2:
        return None
    a, b = sorted(distinct[:2], key=lambda m: m.start)
    return claim[:a.start] + b.raw + claim[a.end:b.start] + a.raw + claim[b.end:]


def change_count(claim: str, rng: random.Random) -> str | None:
    match = _COUNT.search(claim)
    if match is None:
        return None
    word = match.group(1).lower()
    other = rng.choice([c for c in COUNTS if c != word])
    if match.group(1)[0].isupper():
        other = other.capitalize()
    return claim[:match.start()] + other + claim[match.end():]


def _sentences(text: str) -> list[str]:
    from ragline.answer.claims import split_sentences

    return [s.text for s in split_sentences(text) if len(s.text.split()) >= 4]


def augment(pairs: Sequence[Pair], seed: int, *, context_share: float = 0.3,
            verbatim_share: float = 0.08) -> list[Pair]:
    """The training pairs with hard examples added (and some short premises put in context)."""
    rng = random.Random(seed)
    short = [p.a for p in pairs if len(p.a.split()) <= 40]
    out: list[Pair] = []
    for pair in pairs:
        if short and len(pair.a.split()) <= 40 and rng.random() < context_share:
            others = rng.sample(short, k=min(len(short), rng.randint(2, 4)))
            parts = [*[o for o in others if o != pair.a], pair.a]
            rng.shuffle(parts)
            pair = Pair(" ".join(parts), pair.b, pair.label)
        out.append(pair)
        if pair.label == 1.0:
            for rule in (negate, swap_names):
                changed = rule(pair.b)
                if changed and changed != pair.b and rng.random() < 0.5:
                    out.append(Pair(pair.a, changed, 0.0))
            counted = change_count(pair.b, rng)
            if counted:
                out.append(Pair(pair.a, counted, 0.0))
        if rng.random() < verbatim_share:
            sentences = _sentences(pair.a)
            if len(sentences) > 1:
                out.append(Pair(pair.a, rng.choice(sentences), 1.0))
    return out
