"""The index end to end: ingest (incremental, resumable, locked), derived indexes, search."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from ragline import Index
from ragline.config import RaglineConfig
from ragline.embed.base import Embedder
from ragline.errors import EmptyQuery, IndexLocked, IndexNotFound, IndexVersionError
from ragline.types import RetrievalMode

DOCS = {
    "guide/install.md": "# Install\n\nRun pip install ragline to install the package.\n\n"
    "## From source\n\nClone the repository and run make test.\n",
    "guide/search.md": "# Search\n\nHybrid search fuses BM25 keyword scores with dense vector "
    "similarity using reciprocal rank fusion.\n",
    "notes/cooking.txt": "A good risotto needs arborio rice, stock added slowly, and patience.\n",
    "notes/space.html": "<html><head><title>Mars</title><script>var x=1;</script></head><body>"
    "<nav>menu</nav><h1>Mars</h1><p>Mars is the fourth planet from the Sun.</p></body></html>",
}


def write_corpus(root: Path, docs: dict[str, str] = DOCS) -> Path:
    for rel, text in docs.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus")


@pytest.fixture()
def index(tmp_path: Path, embedder: Embedder) -> Index:
    return Index(tmp_path / "index", embedder=embedder)


def test_ingest_then_search_finds_the_relevant_document(index: Index, corpus: Path) -> None:
    summary = index.ingest(corpus)
    assert (summary.added, summary.failed) == (4, 0)
    for mode in RetrievalMode:
        hits = index.search("planet from the sun", mode=mode, k=3)
        assert hits[0].chunk.doc_id == "corpus/notes/space.html", mode


def test_hits_carry_offsets_into_the_document_text(index: Index, corpus: Path) -> None:
    index.ingest(corpus)
    for hit in index.search("reciprocal rank fusion", k=5):
        doc = index.get_document(hit.chunk.doc_id)
        assert doc is not None
        assert doc.text[hit.chunk.start : hit.chunk.end] == hit.chunk.text


def test_hybrid_hits_record_each_retrievers_rank(index: Index, corpus: Path) -> None:
    index.ingest(corpus)
    top = index.search("risotto rice", mode="hybrid", k=1)[0]
    assert top.chunk.doc_id == "corpus/notes/cooking.txt"
    assert top.bm25_rank == 1 and top.dense_rank is not None


def test_heading_path_is_kept_on_markdown_chunks(index: Index, corpus: Path) -> None:
    index.ingest(corpus)
    hit = index.search("clone the repository", mode="bm25", k=1)[0]
    assert hit.chunk.heading_path[-1] == "From source"


def test_reingest_skips_unchanged_files(index: Index, corpus: Path) -> None:
    index.ingest(corpus)
    again = index.ingest(corpus)
    assert (again.added, again.updated, again.unchanged, again.chunks_embedded) == (0, 0, 4, 0)


def test_changed_file_is_updated_and_old_text_is_gone(index: Index, corpus: Path) -> None:
    index.ingest(corpus)
    (corpus / "notes/cooking.txt").write_text("Sourdough bread needs a lively starter.\n")
    summary = index.ingest(corpus)
    assert (summary.updated, summary.unchanged) == (1, 3)
    assert index.search("risotto", mode="bm25") == []
    assert index.search("sourdough", mode="bm25")[0].chunk.doc_id == "corpus/notes/cooking.txt"


def test_prune_removes_deleted_files_only_when_asked(index: Index, corpus: Path) -> None:
    index.ingest(corpus)
    (corpus / "notes/cooking.txt").unlink()
    assert index.ingest(corpus).removed == 0
    assert index.search("risotto", mode="bm25")
    assert index.ingest(corpus, prune=True).removed == 1
    assert index.search("risotto", mode="bm25") == []
    assert index.stats()["documents"] == 3


def test_bad_files_are_reported_and_the_rest_is_ingested(index: Index, corpus: Path) -> None:
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.7 this is not really a pdf")
    (corpus / "binary.txt").write_bytes(b"\x00\x01\x02\x03" * 100)
    (corpus / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (corpus / "image.png").write_bytes(b"\x89PNG\r\n")
    summary = index.ingest(corpus)
    reasons = {Path(f.path).name: f.reason for f in summary.failures}
    assert summary.added == 4
    assert reasons["broken.pdf"] == "corrupt"
    assert reasons["binary.txt"] == "binary"
    assert reasons["latin1.txt"] == "encoding"
    assert summary.failed == len(summary.failures) >= 3


def test_file_over_the_size_limit_is_skipped_with_the_reason(
    tmp_path: Path, corpus: Path, embedder: Embedder
) -> None:
    (corpus / "big.txt").write_text("word " * 2000)
    config = RaglineConfig(max_file_bytes=5000)
    summary = Index(tmp_path / "ix", config, embedder=embedder).ingest(corpus)
    assert [f.reason for f in summary.failures] == ["too_large"]
    assert "over the limit" in summary.failures[0].message


def test_empty_folder_ingests_nothing_without_error(index: Index, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    summary = index.ingest(tmp_path / "empty")
    assert (summary.added, summary.failed) == (0, 0)
    assert index.search("anything") == []


def test_empty_query_is_refused_with_a_clear_error(index: Index, corpus: Path) -> None:
    index.ingest(corpus)
    with pytest.raises(EmptyQuery, match="empty"):
        index.search("   ")


def test_a_10000_character_query_still_searches(index: Index, corpus: Path) -> None:
    index.ingest(corpus)
    query = ("mars planet sun " * 700)[:10_000]
    for mode in RetrievalMode:
        assert index.search(query, mode=mode, k=2)[0].chunk.doc_id == "corpus/notes/space.html"


def test_searching_a_missing_index_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFound, match="ragline ingest"):
        Index(tmp_path / "nope").search("x")


def test_index_from_a_newer_schema_is_refused(index: Index, corpus: Path) -> None:
    index.ingest(corpus)
    index.close()
    with sqlite3.connect(index.path / "ragline.sqlite") as conn:
        conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(IndexVersionError, match="schema version 99"):
        Index(index.path).search("mars")


def test_a_second_writer_fails_fast_with_a_clear_message(index: Index, corpus: Path) -> None:
    index.ingest(corpus)
    with index._write_lock(0), pytest.raises(IndexLocked, match="another ingest"):
        Index(index.path, embedder=index.embedder).ingest(corpus)
    assert index.ingest(corpus).unchanged == 4


def test_missing_derived_index_is_rebuilt_from_sqlite(index: Index, corpus: Path) -> None:
    index.ingest(corpus)
    assert index.search("risotto", mode="bm25")
    index.close()
    for folder in (index.path / "derived").glob("g*"):
        for f in folder.rglob("*"):
            if f.is_file():
                f.unlink()
    reopened = Index(index.path, embedder=index.embedder)
    assert reopened.search("risotto", mode="bm25")[0].chunk.doc_id == "corpus/notes/cooking.txt"


def test_where_and_path_prefix_filter_results(index: Index, corpus: Path) -> None:
    index.ingest(corpus)
    html = index.search("planet", where={"type": "html"}, k=10)
    assert html and {h.chunk.doc_id for h in html} == {"corpus/notes/space.html"}
    guide = index.search("planet", path_prefix="corpus/guide/", k=10)
    assert guide and all(h.chunk.doc_id.startswith("corpus/guide/") for h in guide)


def test_ingest_documents_api_skips_unchanged_records(index: Index) -> None:
    from ragline.evaluate.datasets import _document

    docs = [_document(f"d{i}", f"title {i}", f"text number {i}", None) for i in range(5)]
    assert index.ingest_documents(docs).added == 5
    assert index.ingest_documents(docs).unchanged == 5


def test_jsonl_records_become_documents_with_their_ids(index: Index, tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    records = [{"_id": "a1", "title": "Aspirin", "text": "Aspirin reduces fever."},
               {"_id": "b2", "title": "Insulin", "text": "Insulin regulates blood sugar."}]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    index.ingest(path)
    assert index.search("blood sugar", k=1)[0].chunk.doc_id == "b2"


def test_a_document_id_claimed_by_another_file_is_refused_not_overwritten(
    index: Index, tmp_path: Path
) -> None:
    root = tmp_path / "records"
    root.mkdir()
    (root / "one.jsonl").write_text(json.dumps({"_id": "a", "text": "apples are red"}) + "\n")
    (root / "two.jsonl").write_text(json.dumps({"_id": "a", "text": "bananas are yellow"}) + "\n")
    summary = index.ingest(root)
    assert summary.added == 1
    assert [f.reason for f in summary.failures] == ["duplicate_id"]
    doc = index.get_document("a")
    assert doc is not None and doc.text == "apples are red"
    (root / "two.jsonl").unlink()
    assert index.ingest(root, prune=True).removed == 0
    assert index.get_document("a") is not None


def test_a_fixed_record_clears_its_recorded_failure(index: Index, tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"_id": "x", "text": "fine"}\n{not json\n')
    assert index.ingest(path).failed == 1
    assert index.stats()["failures"] == 1
    path.write_text('{"_id": "x", "text": "fine"}\n{"_id": "y", "text": "fixed"}\n')
    index.ingest(path)
    assert index.stats()["failures"] == 0


def test_a_file_that_is_not_an_index_gives_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "ix"
    folder.mkdir()
    (folder / "ragline.sqlite").write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(IndexVersionError, match="not a ragline index"):
        Index(folder).search("x")


def test_searching_or_ingesting_with_another_embedder_is_refused(
    index: Index, corpus: Path
) -> None:
    from ragline.embed.onnx import OnnxEmbedder
    from ragline.errors import ConfigError

    index.ingest(corpus)
    other = Index(index.path, embedder=OnnxEmbedder(threads=1, max_tokens=128))
    with pytest.raises(ConfigError, match="was embedded with"):
        other.search("planet")
    with pytest.raises(ConfigError, match="new --index folder"):
        other.ingest(corpus)


def test_symlinks_are_not_followed_unless_asked(
    tmp_path: Path, embedder: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    corpus = write_corpus(tmp_path / "corpus")
    outside = write_corpus(tmp_path / "outside", {"secret.txt": "The vault code is 1234.\n",
                                                  "dir/more.txt": "Another private note.\n"})
    (corpus / "link.txt").symlink_to(outside / "secret.txt")
    (corpus / "linked-dir").symlink_to(outside / "dir")
    (corpus / "loop").symlink_to(corpus)  # a cycle, harmless when followed
    index = Index(tmp_path / "index", embedder=embedder)
    with caplog.at_level(logging.WARNING, logger="ragline"):
        summary = index.ingest(corpus)
    assert (summary.added, summary.failed) == (4, 0)
    assert any("3 symbolic link(s)" in r.getMessage() and "--follow-symlinks" in r.getMessage()
               for r in caplog.records)
    followed = Index(tmp_path / "index2", embedder=embedder).ingest(corpus, follow_symlinks=True)
    assert followed.added == 6  # the two linked files once each; the loop is walked once


def test_failures_are_forgotten_when_pruned_and_vanished_files_say_so(
    index: Index, corpus: Path
) -> None:
    broken = corpus / "notes" / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 not really")
    index.ingest(corpus)
    assert index.stats()["failures"] == 1
    broken.unlink()
    index.ingest(corpus, prune=True)
    assert index.stats()["failures"] == 0

    from ragline.ingest import Ingestor

    ingestor = index._ingestor(None)
    ingestor._ingest_file(corpus / "notes" / "gone.txt", corpus.parent)
    assert [(f.reason, f.message) for f in ingestor.summary.failures] == [
        ("vanished", "deleted while the ingest ran")]
    assert isinstance(ingestor, Ingestor) and index.stats()["failures"] == 0


# --- pages -------------------------------------------------------------------------------------


def _paged_corpus(root: Path) -> Path:
    from tests.pdfs import make_pdf

    root.mkdir(parents=True, exist_ok=True)
    pages = [f"Page {n} of the annual report covers topic number {n}." for n in range(1, 6)]
    pages[3] = "Total current assets were 16,525 million dollars in fiscal 2019."
    (root / "report.pdf").write_bytes(make_pdf(pages, title="Annual report"))
    (root / "notes.md").write_text("# Notes\n\nNothing paged here about current assets.\n")
    return root


def test_hits_of_a_pdf_carry_their_1_based_pages(tmp_path: Path, embedder: Embedder) -> None:
    config = RaglineConfig.model_validate({"chunking": {"chunk_tokens": 16, "overlap_tokens": 0}})
    index = Index(tmp_path / "ix", config, embedder=embedder)
    index.ingest(_paged_corpus(tmp_path / "docs"))
    hits = index.search("total current assets fiscal 2019", k=10)
    top = hits[0]
    assert top.chunk.doc_id.endswith("report.pdf") and top.chunk.page == 4
    assert top.to_dict()["page"] == 4 and top.to_dict()["pages"] == [4]
    document = index.get_document(top.chunk.doc_id)
    assert document is not None
    starts = document.metadata["page_starts"]
    for hit in hits:
        if hit.chunk.doc_id.endswith("notes.md"):
            assert hit.chunk.pages == () and hit.to_dict()["page"] is None
            continue
        first, last = hit.chunk.pages[0], hit.chunk.pages[-1]
        assert starts[first - 1] <= hit.chunk.start  # the chunk starts on its first page
        assert last == len(starts) or hit.chunk.end <= starts[last]  # and ends on its last


def test_an_index_from_before_pages_is_migrated_and_backfilled(
    tmp_path: Path, embedder: Embedder
) -> None:
    index = Index(tmp_path / "ix", embedder=embedder)
    index.ingest(_paged_corpus(tmp_path / "docs"))
    expected = {h.chunk.id: h.chunk.pages for h in index.search("annual report", k=20)}
    index.close()
    with sqlite3.connect(tmp_path / "ix" / "ragline.sqlite") as conn:  # as version 1 wrote it
        conn.execute("ALTER TABLE chunks DROP COLUMN pages")
        conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    reopened = Index(tmp_path / "ix", embedder=embedder)
    got = {h.chunk.id: h.chunk.pages for h in reopened.search("annual report", k=20)}
    assert got == expected and any(got.values())
    with sqlite3.connect(tmp_path / "ix" / "ragline.sqlite") as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("2",)


def test_bm25_built_in_batches_scores_exactly_as_built_at_once() -> None:
    import numpy as np

    from ragline.store.keyword import BM25Config, BM25Index

    texts = [f"Document {i} about {'protein folding' if i % 3 else 'vitamin D and bones'} "
             f"with term{i % 7} and rare{i}" for i in range(250)] + [""]
    once = BM25Index.build(texts, BM25Config(), batch=10_000)
    batched = BM25Index.build(iter(texts), BM25Config(), batch=16)  # a stream, 16 at a time
    for query in ("vitamin bones", "protein term3", "rare17", "nothing matches"):
        np.testing.assert_array_equal(batched.scores(query), once.scores(query))
    assert batched.document_frequencies(["term3"]) == once.document_frequencies(["term3"])


def test_run_knobs_are_not_stored_with_the_index(
    tmp_path: Path, embedder: Embedder, corpus: Path
) -> None:
    config = RaglineConfig.model_validate(
        {"embedder": {"threads": 1, "batch_size": 4}, "search": {"alpha": 0.7}})
    with Index(tmp_path / "index", config, embedder=embedder) as index:
        index.ingest(corpus)
    stored = json.loads(sqlite3.connect(tmp_path / "index" / "ragline.sqlite").execute(
        "SELECT value FROM meta WHERE key = 'config'").fetchone()[0])
    assert "threads" not in stored["embedder"] and "batch_size" not in stored["embedder"]
    reopened = Index(tmp_path / "index", embedder=embedder).config
    assert reopened.search.alpha == 0.7  # what shapes results is kept
    assert reopened.embedder.threads is None  # what shapes speed follows the machine


def test_an_index_that_stored_run_knobs_before_is_read_without_them() -> None:
    old = RaglineConfig.model_validate({"embedder": {"threads": 1, "batch_size": 4}})
    config = RaglineConfig.from_stored(json.loads(old.model_dump_json()))
    assert (config.embedder.threads, config.embedder.batch_size) == (None, 32)


def test_search_files_of_a_replaced_database_are_not_reused(
    tmp_path: Path, embedder: Embedder
) -> None:
    first = write_corpus(tmp_path / "a", {"one.md": "Mars is the fourth planet from the Sun."})
    second = write_corpus(tmp_path / "b", {"one.md": "Risotto needs arborio rice and stock."})
    with Index(tmp_path / "index", embedder=embedder) as index:
        index.ingest(first)
        assert "Mars" in index.search("planet", k=1)[0].chunk.text
    (tmp_path / "index" / "ragline.sqlite").unlink()  # derived/g1 stays behind
    with Index(tmp_path / "index", embedder=embedder) as index:
        index.ingest(second)  # a new database, at the same generation
        assert "Risotto" in index.search("rice", k=1)[0].chunk.text
