"""Leakage between a training and a test query set: what a system tuned or trained on the first
has already seen of the second.

* **queries**: exact duplicates (after lower-casing and collapsing whitespace and punctuation),
  near duplicates (rapidfuzz `ratio` >= `near` between a test query and its closest training
  query), and test queries that share a word n-gram (default 5) with some training query, which
  is how a synthetic question copied from a test question shows;
* **relevant documents**: how many of the documents relevant to test queries are relevant to
  some training query too, and the *novel* test queries, none of whose relevant documents occur
  in training. A model trained on training qrels has seen the others' answers; `ragline eval
  retrieval --novel-against TRAIN` scores every configuration on the novel ones separately.

SciFact is the real case: its train and test splits share 181 of the 283 documents relevant to
test queries, and only 104 of the 300 test queries are novel.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from rapidfuzz import fuzz, process

_WORDS = re.compile(r"[^\W_]+")
NEAR_DUPLICATE = 90.0  # rapidfuzz ratio (0-100) at or above which two queries are near copies
NGRAM = 5


@dataclass(frozen=True, slots=True)
class QueryMatch:
    test_id: str
    train_id: str
    similarity: float  # rapidfuzz ratio, 0-100
    test: str
    train: str


@dataclass(slots=True)
class LeakageReport:
    train_queries: int
    test_queries: int
    exact_duplicates: list[QueryMatch] = field(default_factory=list)
    near_duplicates: list[QueryMatch] = field(default_factory=list)
    ngram_overlaps: list[str] = field(default_factory=list)  # test ids sharing an n-gram
    ngram: int = NGRAM
    test_relevant_docs: int | None = None  # None: a set without qrels
    shared_relevant_docs: int | None = None
    novel_test_queries: list[str] | None = None  # ids; relevant documents unseen in training

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["novel_test_query_count"] = (None if self.novel_test_queries is None
                                          else len(self.novel_test_queries))
        return data


def normalise(text: str) -> str:
    return " ".join(_WORDS.findall(text.lower()))


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = normalise(text).split()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def _relevant(qrels: Mapping[str, Mapping[str, int]]) -> dict[str, set[str]]:
    return {q: {d for d, grade in docs.items() if grade > 0} for q, docs in qrels.items()}


def scan(
    train: Mapping[str, str],
    test: Mapping[str, str],
    *,
    train_qrels: Mapping[str, Mapping[str, int]] | None = None,
    test_qrels: Mapping[str, Mapping[str, int]] | None = None,
    near: float = NEAR_DUPLICATE,
    ngram: int = NGRAM,
) -> LeakageReport:
    """Compare query sets `train` and `test` (id -> text) and, given both qrels, their
    relevant documents."""
    report = LeakageReport(len(train), len(test), ngram=ngram)
    train_ids, train_texts = list(train), [normalise(t) for t in train.values()]
    exact = {text: qid for qid, text in zip(train_ids, train_texts, strict=True)}
    train_grams: set[tuple[str, ...]] = set()
    for text in train.values():
        train_grams |= _ngrams(text, ngram)
    for qid, text in test.items():
        key = normalise(text)
        if key in exact:
            report.exact_duplicates.append(QueryMatch(qid, exact[key], 100.0, text,
                                                      train[exact[key]]))
        elif train_texts:
            best = process.extractOne(key, train_texts, scorer=fuzz.ratio, score_cutoff=near)
            if best is not None:
                _match, score, position = best
                report.near_duplicates.append(QueryMatch(qid, train_ids[position], float(score),
                                                         text, train[train_ids[position]]))
        if _ngrams(text, ngram) & train_grams:
            report.ngram_overlaps.append(qid)
    if train_qrels is not None and test_qrels is not None:
        seen = set().union(*_relevant(train_qrels).values()) if train_qrels else set()
        test_relevant = _relevant(test_qrels)
        wanted = set().union(*test_relevant.values()) if test_relevant else set()
        report.test_relevant_docs = len(wanted)
        report.shared_relevant_docs = len(wanted & seen)
        report.novel_test_queries = sorted(q for q, docs in test_relevant.items()
                                           if docs and not docs & seen)
    return report
