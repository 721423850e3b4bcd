"""The keyword index: BM25 from the bm25s engine, with English stopwords and Snowball stemming.

Derived from SQLite and rebuilt when stale; never the source of truth. Parameters default to
Lucene's (k1=1.2, b=0.75), chosen before any measurement, not tuned on a test set.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import bm25s
import numpy as np
import numpy.typing as npt
import Stemmer

from ragline.errors import ConfigError

Scores = npt.NDArray[np.float32]
BUILD_BATCH = 10_000  # texts tokenised at a time when building


@dataclass(frozen=True, slots=True)
class BM25Config:
    k1: float = 1.2
    b: float = 0.75
    stopwords: str = "en"
    stemmer: str = "english"

    def __post_init__(self) -> None:
        if self.k1 <= 0 or not 0 <= self.b <= 1:
            raise ConfigError(f"bm25: need k1 > 0 and 0 <= b <= 1 (got k1={self.k1}, b={self.b})")
        if self.stemmer and self.stemmer not in Stemmer.algorithms():
            raise ConfigError(
                f"bm25.stemmer {self.stemmer!r} is unknown; valid: {', '.join(Stemmer.algorithms())}"
            )


class BM25Index:
    """Scores every indexed row against a query; row i is the i-th text given to `build`."""

    def __init__(self, retriever: bm25s.BM25, config: BM25Config) -> None:
        self._retriever = retriever
        self._config = config
        self._stemmer = Stemmer.Stemmer(config.stemmer) if config.stemmer else None
        self._size = int(retriever.scores["num_docs"])

    @classmethod
    def build(cls, texts: Iterable[str], config: BM25Config, *,
              batch: int = BUILD_BATCH) -> BM25Index:
        """Index `texts` (any iterable: they are read `batch` at a time, never all held).

        Each batch is tokenised by bm25s as before and its term ids mapped into one vocabulary;
        a document's ids are kept as an int32 array, not a list of Python ints (36 bytes a
        token). The scores are those of tokenising everything at once (tested).
        """
        stemmer = Stemmer.Stemmer(config.stemmer) if config.stemmer else None
        vocab: dict[str, int] = {}
        ids: list[npt.NDArray[np.int32]] = []
        stream = iter(texts)
        while part := list(itertools.islice(stream, batch)):
            tokens = bm25s.tokenize(
                part, stopwords=config.stopwords or None, stemmer=stemmer,
                return_ids=True, show_progress=False,
            )
            remap = np.zeros(max(tokens.vocab.values(), default=-1) + 1, dtype=np.int32)
            for word, local in tokens.vocab.items():
                remap[local] = vocab.setdefault(word, len(vocab))
            ids.extend(remap[np.asarray(doc, dtype=np.int64)] for doc in tokens.ids)
        retriever = bm25s.BM25(k1=config.k1, b=config.b, method="lucene")
        retriever.index((ids, vocab), show_progress=False)
        return cls(retriever, config)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._retriever.save(str(folder), show_progress=False)
        (folder / "ragline_bm25.json").write_text(json.dumps(asdict(self._config)))

    @classmethod
    def load(cls, folder: Path) -> BM25Index:
        config = BM25Config(**json.loads((folder / "ragline_bm25.json").read_text()))
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        retriever = bm25s.BM25.load(str(folder), mmap=True, show_progress=False)
        return cls(retriever, config)

    def query_tokens(self, query: str) -> list[str]:
        """The query's terms after lowercasing, stopword removal and stemming."""
        tokenized = bm25s.tokenize(
            [query], stopwords=self._config.stopwords or None, stemmer=self._stemmer,
            return_ids=False, show_progress=False,
        )
        return list(tokenized[0])

    @property
    def num_docs(self) -> int:
        return self._size

    def document_frequencies(self, tokens: Sequence[str]) -> list[int]:
        """How many rows contain each (already tokenised) term; 0 for a term never indexed.

        Read off the precomputed score matrix: a column holds one entry per row with the term.
        """
        vocab = self._retriever.vocab_dict
        indptr = self._retriever.scores["indptr"]
        out = []
        for token in tokens:
            at = vocab.get(token)
            out.append(0 if at is None else int(indptr[at + 1] - indptr[at]))
        return out

    def scores(self, query: str) -> Scores:
        """BM25 score of every row (0 where no query term matches)."""
        ids = self._retriever.get_tokens_ids(self.query_tokens(query))
        if not ids or self._size == 0:
            return np.zeros(self._size, dtype=np.float32)
        return np.asarray(self._retriever.get_scores_from_ids(ids), dtype=np.float32)
