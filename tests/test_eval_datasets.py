from __future__ import annotations

import io
import json
import logging
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragline.cli.runs import datasets_app
from ragline.errors import DatasetError
from ragline.evaluate.datasets import (
    RetrievalDataset,
    context_doc_id,
    fetch_beir,
    load_beir,
    load_hotpotqa,
    load_qa_jsonl,
)
from ragline.types import DocType
from tests.conftest import SHARED_DATASETS

CORPUS = [
    {"_id": "d1", "title": "Aspirin", "text": "Aspirin reduces fever."},
    {"_id": "d2", "title": "", "text": "Untitled text."},
    {"_id": "d3", "title": "Cats", "text": "Cats sleep a lot."},
]
QUERIES = [
    {"_id": "q1", "text": "does aspirin reduce fever"},
    {"_id": "q2", "text": "how much do cats sleep"},
    {"_id": "q3", "text": "train only query"},
]


def _jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _beir(root: Path, test_rows: str = "q1\td1\t1\nq2\td3\t2\n") -> Path:
    (root / "qrels").mkdir(parents=True)
    _jsonl(root / "corpus.jsonl", list(CORPUS))
    _jsonl(root / "queries.jsonl", list(QUERIES))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + test_rows)
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq3\td2\t1\n")
    return root


def test_load_beir_reads_split_queries_and_qrels(tmp_path: Path) -> None:
    ds = load_beir(_beir(tmp_path / "toy"))
    assert ds.name == "toy"
    assert ds.queries == {"q1": "does aspirin reduce fever", "q2": "how much do cats sleep"}
    assert ds.qrels == {"q1": {"d1": 1}, "q2": {"d3": 2}}
    assert ds.warnings == ()
    assert isinstance(ds, RetrievalDataset)


def test_load_beir_other_split(tmp_path: Path) -> None:
    ds = load_beir(_beir(tmp_path / "toy"), split="train")
    assert list(ds.queries) == ["q3"]


def test_beir_documents_join_title_and_text(tmp_path: Path) -> None:
    docs = {d.id: d for d in load_beir(_beir(tmp_path / "toy")).iter_documents()}
    assert docs["d1"].text == "Aspirin\n\nAspirin reduces fever."
    assert docs["d1"].title == "Aspirin"
    assert docs["d2"].text == "Untitled text."
    assert docs["d1"].doc_type is DocType.JSONL
    assert len(docs["d1"].content_hash) == 64


def test_beir_hash_changes_with_content(tmp_path: Path) -> None:
    one = load_beir(_beir(tmp_path / "a")).hash
    two = load_beir(_beir(tmp_path / "b", "q1\td1\t1\n")).hash
    assert one != two
    assert one == load_beir(tmp_path / "a").hash


@pytest.mark.parametrize("missing", ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"])
def test_missing_file_is_named_with_the_expected_layout(tmp_path: Path, missing: str) -> None:
    root = _beir(tmp_path / "toy")
    (root / missing).unlink()
    with pytest.raises(DatasetError, match=missing.replace("/", ".")) as info:
        load_beir(root)
    assert "corpus.jsonl, queries.jsonl and qrels/<split>.tsv" in str(info.value)


def test_missing_split_lists_the_splits_present(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="splits present: test, train"):
        load_beir(_beir(tmp_path / "toy"), split="dev")


def test_qrels_with_unknown_ids_warn_with_counts_and_are_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = "q1\td1\t1\nq1\tnope\t1\nq9\td1\t1\nq9\td3\t1\n"
    with caplog.at_level(logging.WARNING):
        ds = load_beir(_beir(tmp_path / "toy", rows))
    assert ds.qrels == {"q1": {"d1": 1}}
    assert list(ds.queries) == ["q1"]
    assert any("2 judgements of 1 query ids" in w for w in ds.warnings)
    assert any("1 judgements naming document ids" in w for w in ds.warnings)
    assert "skipped" in caplog.text


def test_malformed_json_line_is_reported_with_line_number(tmp_path: Path) -> None:
    root = _beir(tmp_path / "toy")
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\n{broken\n')
    with pytest.raises(DatasetError, match=r"queries.jsonl:2"):
        load_beir(root)


def _hotpot_line(qid: str, supporting: tuple[str, str], distractor: str) -> dict[str, object]:
    contexts = [{"title": t, "text": f"About {t}.", "is_supporting": True} for t in supporting]
    contexts.append({"title": distractor, "text": f"About {distractor}.", "is_supporting": False})
    return {"id": qid, "question": f"question {qid}?", "answers": ["yes"], "contexts": contexts}


def test_qa_jsonl_with_inline_passages_pools_and_deduplicates(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    _jsonl(path, [_hotpot_line("a", ("X", "Y"), "Z"), _hotpot_line("b", ("Y", "W"), "X")])
    ds = load_qa_jsonl(path)
    assert len(ds.documents) == 4  # X, Y, Z, W: shared paragraphs appear once
    assert ds.qrels["a"] == {context_doc_id("X", "About X."): 1, context_doc_id("Y", "About Y."): 1}
    assert ds.queries == {"a": "question a?", "b": "question b?"}
    assert ds.answers()["a"] == ("yes",)
    assert isinstance(ds, RetrievalDataset)


def test_context_doc_ids_are_stable_slugs() -> None:
    doc_id = context_doc_id("Kiss and Tell (1945 film)", "text")
    assert doc_id.startswith("kiss-and-tell-1945-film-")
    assert doc_id == context_doc_id("Kiss and Tell (1945 film)", "text")
    assert doc_id != context_doc_id("Kiss and Tell (1945 film)", "other text")


def test_qa_jsonl_with_relevant_ids_and_a_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    _jsonl(corpus, list(CORPUS))
    path = tmp_path / "qa.jsonl"
    _jsonl(
        path,
        [
            {"id": "1", "question": "fever?", "answers": ["aspirin"], "relevant": ["d1", "ghost"]},
            {"id": "2", "question": "no judgements", "answers": []},
        ],
    )
    ds = load_qa_jsonl(path, corpus=corpus)
    assert ds.qrels == {"1": {"d1": 1}}
    assert ds.warnings and "1 judgements naming document ids" in ds.warnings[0]
    assert {d.id for d in ds.iter_documents()} == {"d1", "d2", "d3"}


def test_qa_jsonl_without_passages_refuses_to_list_documents(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    _jsonl(path, [{"id": "1", "question": "q", "answers": ["a"], "relevant": ["d1"]}])
    ds = load_qa_jsonl(path)
    assert ds.qrels == {"1": {"d1": 1}}
    with pytest.raises(DatasetError, match=r"corpus\.jsonl"):
        ds.iter_documents()


def test_load_hotpotqa_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"qa\.jsonl is missing"):
        load_hotpotqa(tmp_path)


@pytest.mark.skipif(not (SHARED_DATASETS / "hotpotqa-dev500").is_dir(), reason="no shared data")
def test_shared_hotpotqa_has_two_supporting_paragraphs_per_question() -> None:
    ds = load_hotpotqa(SHARED_DATASETS / "hotpotqa-dev500")
    assert len(ds.queries) == 500
    assert all(len(docs) == 2 for docs in ds.qrels.values())
    assert 4500 < len(ds.documents) <= 4931
    doc_ids = {d.id for d in ds.iter_documents()}
    assert all(d in doc_ids for docs in ds.qrels.values() for d in docs)


@pytest.mark.skipif(not (SHARED_DATASETS / "scifact").is_dir(), reason="no shared data")
def test_shared_scifact_test_split_loads_without_warnings() -> None:
    ds = load_beir(SHARED_DATASETS / "scifact", split="test")
    assert len(ds.queries) == 300
    assert sum(len(d) for d in ds.qrels.values()) == 339
    assert ds.warnings == ()


# --- fetch_beir against a local HTTP server ------------------------------------------------


def _zip_bytes(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buf.getvalue()


def _toy_zip(name: str = "toy") -> bytes:
    corpus = "".join(json.dumps(r) + "\n" for r in CORPUS)
    queries = "".join(json.dumps(r) + "\n" for r in QUERIES)
    return _zip_bytes(
        {
            f"{name}/corpus.jsonl": corpus,
            f"{name}/queries.jsonl": queries,
            f"{name}/qrels/test.tsv": "query-id\tcorpus-id\tscore\nq1\td1\t1\n",
        }
    )


class _Server:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.range_headers: list[str | None] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = server.files.get(self.path)
                rng = self.headers.get("Range")
                server.range_headers.append(rng)
                if body is None:
                    self.send_error(404)
                    return
                start = int(rng.split("=")[1].rstrip("-")) if rng else 0
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    srv.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def test_fetch_beir_downloads_unpacks_and_loads(tmp_path: Path, server: _Server) -> None:
    server.files["/toy.zip"] = _toy_zip()
    root = fetch_beir("toy", tmp_path / "data", base_url=server.url)
    assert root == tmp_path / "data" / "toy"
    assert load_beir(root).qrels == {"q1": {"d1": 1}}
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["toy"]


def test_fetch_beir_resumes_a_partial_download(tmp_path: Path, server: _Server) -> None:
    payload = _toy_zip()
    server.files["/toy.zip"] = payload
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "toy.zip.part").write_bytes(payload[:100])
    fetch_beir("toy", dest, base_url=server.url)
    assert server.range_headers == ["bytes=100-"]
    assert (dest / "toy" / "corpus.jsonl").is_file()


def test_fetch_beir_existing_dataset_is_not_downloaded_again(
    tmp_path: Path, server: _Server
) -> None:
    server.files["/toy.zip"] = _toy_zip()
    fetch_beir("toy", tmp_path, base_url=server.url)
    fetch_beir("toy", tmp_path, base_url=server.url)
    assert len(server.range_headers) == 1


def test_fetch_beir_http_error_names_the_url(tmp_path: Path, server: _Server) -> None:
    with pytest.raises(DatasetError, match=r"missing\.zip failed with HTTP 404"):
        fetch_beir("missing", tmp_path, base_url=server.url)


def test_fetch_beir_rejects_path_traversal(tmp_path: Path, server: _Server) -> None:
    server.files["/evil.zip"] = _zip_bytes({"evil/corpus.jsonl": "", "../../escape.txt": "x"})
    with pytest.raises(DatasetError, match="unsafe"):
        fetch_beir("evil", tmp_path / "data", base_url=server.url)
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "data" / "evil").exists()


def test_fetch_beir_rejects_a_zip_without_the_layout(tmp_path: Path, server: _Server) -> None:
    server.files["/bad.zip"] = _zip_bytes({"bad/readme.txt": "hi"})
    with pytest.raises(DatasetError, match=r"lacks corpus\.jsonl, queries\.jsonl, qrels"):
        fetch_beir("bad", tmp_path, base_url=server.url)


def test_fetch_beir_rejects_names_with_slashes(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="invalid dataset name"):
        fetch_beir("../etc", tmp_path)


def test_datasets_fetch_command(tmp_path: Path, server: _Server) -> None:
    server.files["/toy.zip"] = _toy_zip()
    result = CliRunner().invoke(
        datasets_app,
        ["fetch", "beir", "toy", "--dest", str(tmp_path), "--base-url", server.url],
    )
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "toy") in result.output
