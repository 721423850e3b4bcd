"""The metadata signal: after fusion, the hits of filings whose metadata agree with what the
query names are lifted and those whose metadata contradict it are lowered.

A query names fiscal years, form types and companies ("Nike's fiscal 2019 annual report";
`documents._filing.query_facts`); a filing's document records `fiscal_year`, `form_type` and
`company` at ingest (`documents._filing.filing_metadata`). For each hit among the candidates,

    score' = score + w * span * (agree - contradict)

where `agree` and `contradict` count the facts (year, form, company) that the query names and
the hit's document records, matching or not; `span` is the candidates' score range (max - min),
so `w` (`[search] metadata_boost`, 0: off) reads as on min-max normalised scores whatever the
fusion. A company counts as named when the query names the company of some candidate filing;
then the other companies' filings contradict it. Documents without filing metadata are never
touched, and a corpus without filings (no document with a `form_type`) is ranked exactly as
without the signal: nothing more is retrieved or read. The candidates are the fused top
`depth` (`[search] depth`), so a filing of the right year can climb into the top k.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ragline.documents._filing import FILING_FORMS, QueryFacts, company_words, query_facts
from ragline.retrieve.base import Ranking
from ragline.store.base import Store

STAGE = "metadata"  # the stage name hits record the re-scored rank and score under


@dataclass(frozen=True, slots=True)
class FilingFacts:
    """What a document's metadata says of the filing it is (None: not stated)."""

    form_type: str | None = None
    fiscal_year: int | None = None
    company: tuple[str, ...] = ()  # the company's name words (`company_words`)

    @classmethod
    def of(cls, metadata: Mapping[str, Any]) -> FilingFacts:
        form, year, company = (metadata.get(key) for key in ("form_type", "fiscal_year",
                                                             "company"))
        return cls(
            form_type=str(form).upper() if form else None,
            fiscal_year=int(year) if isinstance(year, int | str) and str(year).isdigit() else None,
            company=company_words(company) if isinstance(company, str) else (),
        )


def agreement(query: QueryFacts, doc: FilingFacts, named: set[tuple[str, ...]]) -> int:
    """agree - contradict over the facts both the query (`named`: the companies it names) and
    the document state."""
    score = 0
    if query.years and doc.fiscal_year is not None:
        score += 1 if doc.fiscal_year in query.years else -1
    if query.forms and doc.form_type is not None:
        score += 1 if doc.form_type in query.forms else -1
    if named and doc.company:
        score += 1 if doc.company in named else -1
    return score


class DocumentFacts:
    """Filing facts of an index's documents, read from the store once per store generation
    (an `Index` keeps one, so repeated searches read each filing's metadata once): which chunk
    rows belong to filings, and of which document, then each filing's facts when first met."""

    def __init__(self) -> None:
        self._key: tuple[str, int] | None = None
        self._doc_of: dict[int, str] = {}  # filing chunk row id -> doc id
        self._facts: dict[str, FilingFacts] = {}

    def _refresh(self, store: Store) -> None:
        key = (store.store_id, store.generation)
        if key == self._key:
            return
        rows = store.rowids_matching({"form_type": list(FILING_FORMS)}, None)
        doc_of = store.doc_ids_by_rowid() if rows else {}
        self._key, self._facts = key, {}
        self._doc_of = {row: doc_of[row] for row in rows if row in doc_of}

    def has_filings(self, store: Store) -> bool:
        self._refresh(store)
        return bool(self._doc_of)

    def by_row(self, store: Store, rowids: list[int]) -> dict[int, FilingFacts]:
        """The filing facts of each of `rowids` that belongs to a filing."""
        self._refresh(store)
        doc_of = {row: self._doc_of[row] for row in rowids if row in self._doc_of}
        for doc_id in set(doc_of.values()) - self._facts.keys():
            doc = store.get_document(doc_id)
            self._facts[doc_id] = FilingFacts.of(doc.metadata if doc is not None else {})
        return {row: self._facts[doc_id] for row, doc_id in doc_of.items()}


@dataclass(frozen=True, slots=True)
class MetadataSignal:
    """The signal for one query: `apply` re-scores a ranking's candidates."""

    query: QueryFacts
    weight: float
    facts: DocumentFacts

    def apply(self, ranking: Ranking, store: Store, k: int) -> Ranking:
        """`ranking` re-scored and cut to `k`, the new order as its final stage (`STAGE`);
        cut to `k` unchanged when no candidate's document agrees or disagrees."""
        rows, scores = ranking.final
        facts = self.facts.by_row(store, rows.tolist())
        named = {f.company for f in facts.values() if self.query.mentions(f.company)}
        votes = np.array([agreement(self.query, facts[r], named) if r in facts else 0
                          for r in rows.tolist()], dtype=np.float64)
        if not votes.any():
            return Ranking({**ranking.stages, ranking.name: (rows[:k], scores[:k])},
                           ranking.name)
        span = float(scores.max() - scores.min()) or 1.0
        boosted = scores + self.weight * span * votes
        order = np.lexsort((rows, -boosted))[:k]
        return Ranking({**ranking.stages, STAGE: (rows[order], boosted[order])}, STAGE)


def metadata_signal(query: str, weight: float, store: Store,
                    facts: DocumentFacts | None = None) -> MetadataSignal | None:
    """The signal for `query`, or None when it cannot change anything: `weight` 0, or no
    filing in the index."""
    if weight <= 0:
        return None
    facts = facts if facts is not None else DocumentFacts()
    if not facts.has_filings(store):
        return None
    return MetadataSignal(query_facts(query), weight, facts)
