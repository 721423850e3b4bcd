"""A test set of cited answers over real documents, with planted errors, for calibrating and
measuring citation verification.

Each answer cites the paragraphs of one HotpotQA question (its two supporting paragraphs plus
distractors) as sources [1]..[n]. Correct claims are real sentences of those paragraphs, verbatim
or lightly paraphrased, citing their true source. Planted errors: a fabricated citation (a
sentence from another question's paragraph, citing a source that does not contain it), a wrong
number, a wrong year, a swapped entity name, two claims with their sources swapped, and a
citation to a source number that does not exist.

Questions are split by a hash of their id into a CALIBRATION and an EVALUATION half; evaluation
answers that share a paragraph title with any calibration question are dropped, so the halves
share no source paragraph. Everything is deterministic for a given seed.
"""

from __future__ import annotations

import enum
import hashlib
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ragline.answer.claims import extract_dates, extract_names, extract_numbers, split_sentences
from ragline.answer.types import CitedSentence
from ragline.errors import DatasetError


class Split(enum.StrEnum):
    CALIBRATION = "calibration"
    EVALUATION = "evaluation"


class PlantedError(enum.StrEnum):
    NONE = "correct"
    FABRICATED_CITATION = "fabricated_citation"
    WRONG_NUMBER = "wrong_number"
    WRONG_DATE = "wrong_date"
    SWAPPED_ENTITY = "swapped_entity"
    SWAPPED_SOURCES = "swapped_sources"
    NONEXISTENT_SOURCE = "nonexistent_source"


@dataclass(frozen=True, slots=True)
class PlantedClaim:
    sentence: CitedSentence
    error: PlantedError
    variant: str  # "verbatim" or "paraphrase"


@dataclass(frozen=True, slots=True)
class PlantedAnswer:
    id: str
    split: Split
    question: str
    sources: tuple[str, ...]  # source [i] is sources[i - 1]
    claims: tuple[PlantedClaim, ...]

    def source_map(self) -> dict[int, str]:
        return {i + 1: text for i, text in enumerate(self.sources)}


@dataclass(frozen=True, slots=True)
class _Question:
    id: str
    question: str
    titles: tuple[str, ...]
    paragraphs: tuple[str, ...]
    supporting: tuple[bool, ...]


def split_of(question_id: str) -> Split:
    """CALIBRATION or EVALUATION, from a hash of the id (stable across runs and machines)."""
    digest = hashlib.sha256(question_id.encode()).digest()
    return Split.CALIBRATION if digest[0] % 2 == 0 else Split.EVALUATION


def load_hotpot(path: Path) -> list[_Question]:
    """Read HotpotQA `qa.jsonl` ({id, question, contexts: [{title, text, is_supporting}]})."""
    if not path.is_file():
        raise DatasetError(f"{path} not found; pass the HotpotQA qa.jsonl file")
    questions = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            contexts = row["contexts"]
            questions.append(
                _Question(
                    id=str(row["id"]),
                    question=str(row["question"]),
                    titles=tuple(str(c["title"]) for c in contexts),
                    paragraphs=tuple(str(c["text"]) for c in contexts),
                    supporting=tuple(bool(c["is_supporting"]) for c in contexts),
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DatasetError(f"{path}:{line_no}: not a HotpotQA record ({exc})") from exc
    return questions


# ---------------------------------------------------------------- paraphrases

SYNONYMS = {
    "film": "movie",
    "movie": "film",
    "began": "started",
    "started": "began",
    "founded": "established",
    "established": "founded",
    "largest": "biggest",
    "famous": "well-known",
    "located": "situated",
    "won": "received",
    "award": "prize",
    "company": "firm",
    "song": "track",
    "album": "record",
    "married": "wed",
    "died": "passed away",
    "written": "penned",
    "currently": "presently",
    "also": "additionally",
    "large": "big",
    "small": "little",
    "often": "frequently",
    "known": "recognised",
    "best": "finest",
    "worked": "served",
    "role": "part",
    "series": "show",
    "released": "issued",
    "produced": "made",
    "directed": "helmed",
    "located in": "based in",
    "football": "soccer",
    "team": "side",
    "television": "TV",
    "received": "got",
    "professional": "pro",
    "former": "ex-",
    "including": "such as",
    "several": "a number of",
    "popular": "well-liked",
    "named": "called",
    "became": "turned into",
    "town": "settlement",
}


def paraphrase(sentence: str, rng: random.Random) -> str | None:
    """A light paraphrase (drop a parenthesis or a relative clause, move a leading phrase to the
    end, swap synonyms), or None when no rewrite applies."""
    text = sentence
    text = re.sub(r"\s*\([^()]{1,120}\)", "", text, count=1)
    text = re.sub(r", (?:which|who|where) [^,]{3,80},", "", text, count=1)
    lead = re.match(r"^((?:In|On|During|After|Since|By|At) [^,]{2,40}), (\w)(.*?)([.!?])?$", text)
    if lead and rng.random() < 0.7:
        phrase = lead.group(1)
        text = f"{lead.group(2).upper()}{lead.group(3)} {phrase[0].lower()}{phrase[1:]}."
    swaps = [w for w in SYNONYMS if re.search(rf"\b{w}\b", text)]
    for word in rng.sample(swaps, k=min(3, len(swaps))):
        text = re.sub(rf"\b{word}\b", SYNONYMS[word], text, count=1)
    return text if text != sentence else None


# ---------------------------------------------------------------- error makers


def wrong_number(sentence: str, source: str, rng: random.Random) -> str | None:
    skip = tuple((d.start, d.end) for d in extract_dates(sentence))
    numbers = [n for n in extract_numbers(sentence, skip=skip) if n.raw[:1].isdigit()]
    if not numbers:
        return None
    target = rng.choice(numbers)
    present = {n.value for n in extract_numbers(source)}
    digits = target.raw.replace(",", "")
    match = re.match(r"\d+", digits)
    if match is None:
        return None
    for bump in rng.sample([1, 2, 3, 4, 5, 7, 10, 12], k=8):
        new = str(int(match.group(0)) + bump) + digits[match.end() :]
        if new.rstrip("%") not in present:
            return sentence[: target.start] + new + sentence[target.end :]
    return None


def wrong_date(sentence: str, source: str, rng: random.Random) -> str | None:
    dates = [d for d in extract_dates(sentence) if re.search(r"\d{4}", d.raw)]
    if not dates:
        return None
    target = rng.choice(dates)
    year = re.search(r"\d{4}", target.raw)
    if year is None:
        return None
    present = {d.value[:4] for d in extract_dates(source)} | {
        n.value for n in extract_numbers(source)
    }
    for shift in rng.sample([-11, -7, -5, -3, -2, 2, 3, 5, 7, 11], k=10):
        new_year = str(int(year.group(0)) + shift)
        if new_year not in present:
            raw = target.raw[: year.start()] + new_year + target.raw[year.end() :]
            return sentence[: target.start] + raw + sentence[target.end :]
    return None


def swapped_entity(
    sentence: str, source: str, names: Sequence[str], rng: random.Random
) -> str | None:
    candidates = extract_names(sentence)
    if not candidates:
        return None
    target = rng.choice(candidates)
    lowered = source.casefold()
    for _ in range(20):
        other = rng.choice(names)
        if other != target.raw and not any(w.casefold() in lowered for w in other.split()):
            return sentence[: target.start] + other + sentence[target.end :]
    return None


# ---------------------------------------------------------------- building answers


def _claimable(paragraph: str) -> list[str]:
    return [s.text for s in split_sentences(paragraph) if 6 <= len(s.text.split()) <= 60]


@dataclass(slots=True)
class _Builder:
    rng: random.Random
    names: list[str]
    foreign: list[str]  # sentences of other questions' paragraphs (same split)
    correct_per_answer: int

    def answer(self, q: _Question, split: Split, n_sources: int) -> PlantedAnswer | None:
        order = sorted(
            range(len(q.paragraphs)), key=lambda i: (not q.supporting[i], self.rng.random())
        )
        chosen = order[:n_sources]
        self.rng.shuffle(chosen)
        sources = tuple(q.paragraphs[i] for i in chosen)
        pool = [(n + 1, s) for n, p in enumerate(sources) for s in _claimable(p)]
        if len(pool) < self.correct_per_answer + 4:
            return None
        self.rng.shuffle(pool)
        claims = self._correct(pool[: self.correct_per_answer])
        claims += self._errors(pool[self.correct_per_answer :], sources)
        return PlantedAnswer(q.id, split, q.question, sources, tuple(claims))

    def _variant(self, text: str) -> tuple[str, str]:
        if self.rng.random() < 0.5:
            rewritten = paraphrase(text, self.rng)
            if rewritten:
                return rewritten, "paraphrase"
        return text, "verbatim"

    def _correct(self, picks: list[tuple[int, str]]) -> list[PlantedClaim]:
        claims = []
        for number, text in picks:
            claim, variant = self._variant(text)
            quote = text if self.rng.random() < 0.5 else None
            claims.append(
                PlantedClaim(
                    CitedSentence(text=claim, sources=[number], quote=quote),
                    PlantedError.NONE,
                    variant,
                )
            )
        return claims

    def _errors(self, rest: list[tuple[int, str]], sources: tuple[str, ...]) -> list[PlantedClaim]:
        claims: list[PlantedClaim] = []
        makers: list[tuple[PlantedError, Callable[[str, str], str | None]]] = [
            (PlantedError.WRONG_NUMBER, lambda s, src: wrong_number(s, src, self.rng)),
            (PlantedError.WRONG_DATE, lambda s, src: wrong_date(s, src, self.rng)),
            (
                PlantedError.SWAPPED_ENTITY,
                lambda s, src: swapped_entity(s, src, self.names, self.rng),
            ),
        ]
        used: set[str] = set()
        for error, make in makers:
            for number, text in rest:
                changed = None if text in used else make(text, sources[number - 1])
                if changed:
                    used.add(text)
                    claims.append(
                        PlantedClaim(
                            CitedSentence(text=changed, sources=[number]), error, "verbatim"
                        )
                    )
                    break
        free = [(n, t) for n, t in rest if t not in used]
        claims += self._swapped(free, len(sources))
        claims += self._fabricated(len(sources))
        if free:
            number, text = free[-1]
            bogus = len(sources) + self.rng.randint(1, 3)
            claims.append(
                PlantedClaim(
                    CitedSentence(text=text, sources=[bogus]),
                    PlantedError.NONEXISTENT_SOURCE,
                    "verbatim",
                )
            )
        return claims

    def _swapped(self, free: list[tuple[int, str]], n_sources: int) -> list[PlantedClaim]:
        first = free[0] if free else None
        second = next((p for p in free[1:] if first and p[0] != first[0]), None)
        if first is None or second is None:
            return []
        out = []
        for (_, text), (other, _) in ((first, second), (second, first)):
            claim, variant = self._variant(text)
            out.append(
                PlantedClaim(
                    CitedSentence(text=claim, sources=[other]),
                    PlantedError.SWAPPED_SOURCES,
                    variant,
                )
            )
        return out

    def _fabricated(self, n_sources: int) -> list[PlantedClaim]:
        text = self.rng.choice(self.foreign)
        claim, variant = self._variant(text)
        quote = text if self.rng.random() < 0.5 else None
        cited = self.rng.randint(1, n_sources)
        return [
            PlantedClaim(
                CitedSentence(text=claim, sources=[cited], quote=quote),
                PlantedError.FABRICATED_CITATION,
                variant,
            )
        ]


def build_planted_set(
    path: Path,
    *,
    seed: int = 13,
    answers_per_split: int = 20,
    sources_per_answer: int = 4,
    correct_per_answer: int = 6,
) -> list[PlantedAnswer]:
    """Build the planted-error answers for both splits from HotpotQA `qa.jsonl`."""
    questions = load_hotpot(path)
    by_split = {s: [q for q in questions if split_of(q.id) is s] for s in Split}
    calibration_titles = {t for q in by_split[Split.CALIBRATION] for t in q.titles}
    by_split[Split.EVALUATION] = [
        q for q in by_split[Split.EVALUATION] if not calibration_titles & set(q.titles)
    ]
    answers: list[PlantedAnswer] = []
    for split in Split:
        rng = random.Random(f"{seed}:{split.value}")
        chosen = rng.sample(by_split[split], k=min(len(by_split[split]), answers_per_split * 2))
        answers += _build_split(
            chosen, split, rng, answers_per_split, sources_per_answer, correct_per_answer
        )
    return answers


def _build_split(
    chosen: list[_Question],
    split: Split,
    rng: random.Random,
    wanted: int,
    n_sources: int,
    correct: int,
) -> list[PlantedAnswer]:
    donors = chosen[wanted:] or chosen
    foreign = [s for q in donors for p in q.paragraphs for s in _claimable(p)]
    names = sorted({m.raw for q in donors for p in q.paragraphs for m in extract_names(p)})
    builder = _Builder(rng, names, foreign, correct)
    out: list[PlantedAnswer] = []
    for q in chosen[:wanted]:
        built = builder.answer(q, split, n_sources)
        if built is not None:
            out.append(built)
    return out
