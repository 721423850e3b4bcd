"""The README's Python example, run by tests/test_docs_examples.py."""

from __future__ import annotations

import sys

from ragline import Index


def main(docs: str = "docs/", index_dir: str = ".ragline") -> None:
    index = Index(index_dir)
    summary = index.ingest([docs])
    print(summary.added, summary.updated, summary.unchanged, summary.failed)

    for hit in index.search("how are citations checked", mode="hybrid", k=5):
        doc = index.get_document(hit.chunk.doc_id)
        assert doc is not None and doc.text[hit.chunk.start : hit.chunk.end] == hit.chunk.text
        print(hit.rank, hit.chunk.doc_id, hit.score, hit.bm25_rank, hit.dense_rank)


if __name__ == "__main__":
    main(*sys.argv[1:3])
