from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import tracemalloc
import zipfile
from pathlib import Path

import docx
import pypdfium2 as pdfium
import pytest

from ragline.documents import (
    SUPPORTED_SUFFIXES,
    content_hash,
    iter_files,
    load_file,
    load_file_report,
)
from ragline.errors import (
    ConfigError,
    CorruptDocument,
    DocumentError,
    FileTooLarge,
    UnsupportedFileType,
)
from ragline.types import DocType, Document, Heading
from tests.pdfs import make_pdf


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def load_one(path: Path, **kwargs: object) -> Document:
    documents = load_file(path, root=path.parent, **kwargs)  # type: ignore[arg-type]
    assert len(documents) == 1
    return documents[0]


def heading_at(doc: Document, heading: Heading) -> str:
    """The text of the line a heading points at."""
    return doc.text[heading.start :].split("\n", 1)[0]


# --- building PDFs by hand ---------------------------------------------------------------------


def make_encrypted_pdf() -> bytes:
    """A PDF whose standard security handler rejects the empty user password."""
    encrypt = (
        b"99 0 obj\n<< /Filter /Standard /V 1 /R 2 /O <"
        + b"11" * 32
        + b"> /U <"
        + b"22" * 32
        + b"> /P -4 >>\nendobj\n"
    )
    plain = make_pdf(["secret text"])
    xref = plain.index(b"xref")
    ident = b"<00112233445566778899aabbccddeeff>"
    return (
        plain[:xref]
        + encrypt
        + plain[xref:].replace(
            b" >>\nstartxref", b" /Encrypt 99 0 R /ID [" + ident + b" " + ident + b"] >>\nstartxref"
        )
    )


# --- iter_files --------------------------------------------------------------------------------


def test_iter_files_walks_sorted_and_skips_hidden_and_pycache(tmp_path: Path) -> None:
    for name in [
        "b.txt",
        "a.md",
        "sub/c.txt",
        ".hidden.txt",
        ".git/config",
        "__pycache__/x.pyc",
        "sub/.secret/d.txt",
        "sub/z/e.html",
    ]:
        write(tmp_path / name, "x")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_files(tmp_path)]
    assert found == ["a.md", "b.txt", "sub/c.txt", "sub/z/e.html"]


def test_an_index_inside_the_ingested_folder_is_passed_over(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name in ["notes.md", "ix/ragline.sqlite", "ix/derived/vectors.npy", "ix/write.lock",
                 "pg-ix/derived/bm25.bin", "pg-ix/write.lock", "derived/kept.txt"]:
        write(tmp_path / name, "x")
    with caplog.at_level(logging.WARNING, logger="ragline"):
        found = [p.relative_to(tmp_path).as_posix() for p in iter_files(tmp_path)]
    assert found == ["notes.md", "derived/kept.txt"]
    assert "is a ragline index" in caplog.text


def test_iter_files_on_empty_folder_yields_nothing(tmp_path: Path) -> None:
    assert list(iter_files(tmp_path)) == []


def test_iter_files_on_a_file_yields_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "one.txt", "hello")
    assert list(iter_files(path)) == [path]


def test_iter_files_yields_files_over_the_limit_so_load_file_can_report_them(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "big.txt", "x" * 100)
    assert list(iter_files(tmp_path, max_file_bytes=10)) == [path]
    with pytest.raises(FileTooLarge):
        load_file(path, root=tmp_path, max_file_bytes=10)


def test_iter_files_on_missing_path_raises_document_error(tmp_path: Path) -> None:
    with pytest.raises(DocumentError) as info:
        list(iter_files(tmp_path / "nope"))
    assert info.value.reason == "missing"


def test_iter_files_rejects_a_non_positive_limit(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_file_bytes"):
        list(iter_files(tmp_path, max_file_bytes=0))


# --- common behaviour --------------------------------------------------------------------------


def test_supported_suffixes_cover_every_format() -> None:
    assert set(SUPPORTED_SUFFIXES) == {
        ".txt",
        ".md",
        ".markdown",
        ".html",
        ".htm",
        ".pdf",
        ".docx",
        ".jsonl",
    }


def test_txt_document_has_relative_id_hash_title_and_metadata(tmp_path: Path) -> None:
    path = write(tmp_path / "notes" / "day one.txt", "Hello world.\n")
    [doc] = load_file(path, root=tmp_path)
    assert doc.id == "notes/day one.txt"
    assert doc.text == "Hello world.\n"
    assert doc.doc_type is DocType.TXT
    assert doc.content_hash == hashlib.sha256(b"Hello world.\n").hexdigest()
    assert doc.title == "day one"
    assert doc.source_path == str(path)
    assert doc.modified == path.stat().st_mtime
    assert doc.metadata == {"path": "notes/day one.txt", "type": "txt", "size": 13}


def test_root_defaults_to_the_files_folder(tmp_path: Path) -> None:
    path = write(tmp_path / "a" / "b.txt", "text")
    assert load_file(path)[0].id == "b.txt"


def test_file_outside_root_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path / "a" / "b.txt", "text")
    with pytest.raises(ConfigError, match="not inside"):
        load_file(path, root=tmp_path / "elsewhere")


def test_unsupported_suffix_raises_unsupported_file_type(tmp_path: Path) -> None:
    path = write(tmp_path / "image.png", b"\x89PNG")
    with pytest.raises(UnsupportedFileType) as info:
        load_file(path, root=tmp_path)
    assert info.value.reason == "unsupported"
    assert "'.png'" in str(info.value)


def test_folder_named_like_a_text_file_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / "x.txt").mkdir()
    with pytest.raises(DocumentError) as info:
        load_file(tmp_path / "x.txt", root=tmp_path)
    assert info.value.reason == "unreadable"


def test_permission_error_becomes_unreadable_with_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "locked.txt", "secret")

    def deny(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", deny)
    with pytest.raises(DocumentError) as info:
        load_file(path, root=tmp_path)
    assert info.value.reason == "unreadable"
    assert "Permission denied" in str(info.value)
    assert isinstance(info.value.__cause__, PermissionError)


def test_missing_file_raises_missing(tmp_path: Path) -> None:
    with pytest.raises(DocumentError) as info:
        load_file(tmp_path / "gone.txt", root=tmp_path)
    assert info.value.reason == "missing"


def test_file_over_the_limit_is_rejected_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "big.md", "x" * 2000)

    def must_not_read(self: Path) -> bytes:
        raise AssertionError("read a file that was over the limit")

    monkeypatch.setattr(Path, "read_bytes", must_not_read)
    with pytest.raises(FileTooLarge) as info:
        load_file(path, root=tmp_path, max_file_bytes=1000)
    assert info.value.reason == "too_large"
    assert "2,000 bytes" in str(info.value)


def test_large_text_file_under_the_limit_loads_without_extra_copies(tmp_path: Path) -> None:
    line = "All work and no play makes Jack a dull boy. " * 4 + "\n"
    path = tmp_path / "big.txt"
    size = 20 * 2**20
    with path.open("w", encoding="utf-8") as handle:
        handle.write(line * (size // len(line)))
    tracemalloc.start()
    try:
        [doc] = load_file(path, root=tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(doc.text) == path.stat().st_size
    assert doc.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    # The bytes and the decoded text may coexist for a moment; nothing more.
    assert peak < 2.2 * path.stat().st_size


def test_decode_errors_must_be_strict_or_replace(tmp_path: Path) -> None:
    path = write(tmp_path / "a.txt", "text")
    with pytest.raises(ConfigError, match="strict"):
        load_file(path, root=tmp_path, decode_errors="ignore")  # type: ignore[arg-type]


def test_content_hash_is_sha256_of_utf8_text() -> None:
    text = "naïve " * 300_000
    assert content_hash(text) == hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- plain text --------------------------------------------------------------------------------


def test_utf8_bom_is_stripped(tmp_path: Path) -> None:
    path = write(tmp_path / "bom.txt", b"\xef\xbb\xbfhello")
    assert load_one(path).text == "hello"


def test_utf16_text_with_bom_loads(tmp_path: Path) -> None:
    path = write(tmp_path / "wide.txt", "héllo wörld".encode("utf-16"))
    assert load_one(path).text == "héllo wörld"


def test_invalid_utf8_names_the_byte_offset(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.txt", b"hello\xffworld")
    with pytest.raises(DocumentError) as info:
        load_file(path, root=tmp_path)
    assert info.value.reason == "encoding"
    assert "byte offset 5" in str(info.value)
    assert "--decode-errors replace" in str(info.value)
    assert isinstance(info.value.__cause__, UnicodeDecodeError)


def test_invalid_utf8_offset_counts_the_bom(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.txt", b"\xef\xbb\xbfab\xc3")
    with pytest.raises(DocumentError, match="byte offset 5"):
        load_file(path, root=tmp_path)


def test_invalid_utf8_loads_with_replacement_when_asked(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.txt", b"hello\xffworld")
    assert load_one(path, decode_errors="replace").text == "hello\ufffdworld"


def test_binary_file_named_txt_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "photo.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(DocumentError) as info:
        load_file(path, root=tmp_path)
    assert info.value.reason == "binary"


def test_text_full_of_control_characters_is_binary(tmp_path: Path) -> None:
    rng = random.Random(0)
    noise = bytes(rng.choice([1, 2, 3, 4, 5, 6, 7, 65, 66, 67]) for _ in range(4000))
    with pytest.raises(DocumentError) as info:
        load_file(write(tmp_path / "noise.txt", noise), root=tmp_path)
    assert info.value.reason == "binary"


def test_text_with_tabs_form_feeds_and_ansi_colours_is_not_binary(tmp_path: Path) -> None:
    text = "\x1b[31mred\x1b[0m\tcol\fpage\r\n" * 50
    assert load_one(write(tmp_path / "log.txt", text)).text == text


@pytest.mark.parametrize("content", ["", "   \n\t\n  "])
def test_empty_or_blank_file_is_reported_empty(tmp_path: Path, content: str) -> None:
    with pytest.raises(DocumentError) as info:
        load_file(write(tmp_path / "blank.txt", content), root=tmp_path)
    assert info.value.reason == "empty"


# --- Markdown ----------------------------------------------------------------------------------

MARKDOWN = """\
# Guide

Intro.

## Install ##

```bash
# not a heading
## nor this
```

~~~
# still code
~~~

### From source
    # indented code, not a heading
#hashtag is not a heading

Setext Title
============

Sub Setext
----------
"""


def test_markdown_text_is_the_file_as_is(tmp_path: Path) -> None:
    doc = load_one(write(tmp_path / "guide.md", MARKDOWN))
    assert doc.text == MARKDOWN
    assert doc.doc_type is DocType.MARKDOWN


def test_markdown_headings_outside_code_fences_with_offsets(tmp_path: Path) -> None:
    doc = load_one(write(tmp_path / "guide.md", MARKDOWN))
    found = [(h.level, h.title, heading_at(doc, h)) for h in doc.headings]
    assert found == [
        (1, "Guide", "# Guide"),
        (2, "Install", "## Install ##"),
        (3, "From source", "### From source"),
        (1, "Setext Title", "Setext Title"),
        (2, "Sub Setext", "Sub Setext"),
    ]


def test_markdown_title_is_the_first_h1(tmp_path: Path) -> None:
    path = write(tmp_path / "doc.md", "## Intro\n\ntext\n\n# Real Title\n")
    assert load_one(path).title == "Real Title"


def test_markdown_without_h1_is_titled_by_stem(tmp_path: Path) -> None:
    assert load_one(write(tmp_path / "notes.markdown", "just text\n")).title == "notes"


def test_markdown_front_matter_dashes_are_not_headings(tmp_path: Path) -> None:
    path = write(tmp_path / "fm.md", "---\ntitle: x\n---\n\nBody\n")
    assert load_one(path).headings == ()


def test_unclosed_fence_hides_the_rest(tmp_path: Path) -> None:
    path = write(tmp_path / "open.md", "# Top\n```\n# inside\n")
    assert [h.title for h in load_one(path).headings] == ["Top"]


# --- HTML --------------------------------------------------------------------------------------

HTML = """<!doctype html>
<html><head><title>  Page
  Title </title><style>p { color: red }</style><script>var head = 1;</script></head>
<body>
<header>Site banner</header>
<nav><a href="/">Home</a> <a href="/x">Menu item</a></nav>
<article>
  <header><h1>Article   Head</h1></header>
  <p>First   para with <b>bold</b>
  text.</p>
  <script>var body = "script text";</script>
  <noscript>enable js</noscript>
  <h2>Section <i>two</i></h2>
  <ul><li>one</li><li>two</li></ul>
  <table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></table>
  <div><div></div><div></div><p></p></div>
  <p>Line<br>break</p>
  <form><input name="q"> Search box</form>
</article>
<aside>Related links</aside>
<footer>Copyright 2024</footer>
</body></html>
"""


def test_html_drops_scripts_navigation_and_page_furniture(tmp_path: Path) -> None:
    text = load_one(write(tmp_path / "page.html", HTML)).text
    for gone in [
        "var body",
        "var head",
        "color: red",
        "enable js",
        "Menu item",
        "Site banner",
        "Related links",
        "Copyright",
        "Search box",
    ]:
        assert gone not in text


def test_html_keeps_readable_text_with_blocks_on_their_own_lines(tmp_path: Path) -> None:
    text = load_one(write(tmp_path / "page.html", HTML)).text
    assert text == (
        "Article Head\n\nFirst para with bold text.\n\nSection two\n\none\ntwo\n\n"
        "a | b\n1 | b: 2\n\nLine\nbreak"  # a table row carries its column headers
    )
    assert "\n\n\n" not in text


def test_html_headings_are_recorded_with_offsets_into_the_text(tmp_path: Path) -> None:
    doc = load_one(write(tmp_path / "page.html", HTML))
    assert [(h.level, h.title, heading_at(doc, h)) for h in doc.headings] == [
        (1, "Article Head", "Article Head"),
        (2, "Section two", "Section two"),
    ]


def test_html_title_comes_from_title_tag_then_first_h1_then_stem(tmp_path: Path) -> None:
    assert load_one(write(tmp_path / "a.html", HTML)).title == "Page Title"
    no_title = "<html><body><h2>Sub</h2><h1>Main</h1><p>x</p></body></html>"
    assert load_one(write(tmp_path / "b.htm", no_title)).title == "Main"
    assert load_one(write(tmp_path / "c.html", "<p>plain</p>")).title == "c"


def test_html_pre_keeps_its_whitespace(tmp_path: Path) -> None:
    doc = load_one(write(tmp_path / "code.html", "<p>See:</p><pre>a  =  1\n  b</pre>"))
    assert doc.text == "See:\n\na  =  1\n  b"


def test_html_declared_charset_is_used(tmp_path: Path) -> None:
    html = '<html><head><meta charset="iso-8859-1"></head><body><p>caf\xe9</p></body></html>'
    doc = load_one(write(tmp_path / "latin.html", html.encode("latin-1")))
    assert doc.text == "café"
    assert doc.metadata["charset"] == "iso-8859-1"


def test_html_invalid_utf8_without_charset_is_an_encoding_error(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.html", b"<p>caf\xe9</p>")
    with pytest.raises(DocumentError) as info:
        load_file(path, root=tmp_path)
    assert info.value.reason == "encoding"
    assert "byte offset 6" in str(info.value)


def test_html_unknown_charset_is_an_encoding_error(tmp_path: Path) -> None:
    path = write(tmp_path / "odd.html", b'<meta charset="klingon-8"><p>x</p>')
    with pytest.raises(DocumentError, match="klingon-8") as info:
        load_file(path, root=tmp_path)
    assert info.value.reason == "encoding"


def test_deeply_nested_html_does_not_overflow_the_stack(tmp_path: Path) -> None:
    html = "<div>" * 5000 + "deep text" + "</div>" * 5000
    assert load_one(write(tmp_path / "deep.html", html)).text == "deep text"


def test_html_with_only_boilerplate_is_empty(tmp_path: Path) -> None:
    path = write(tmp_path / "nav.html", "<nav>Home</nav><script>x()</script>")
    with pytest.raises(DocumentError) as info:
        load_file(path, root=tmp_path)
    assert info.value.reason == "empty"


# --- PDF ---------------------------------------------------------------------------------------


def test_pdf_pages_are_joined_and_page_starts_recorded(tmp_path: Path) -> None:
    path = write(
        tmp_path / "two.pdf", make_pdf(["Page one text", "Second page here"], title="Spec")
    )
    doc = load_one(path)
    assert doc.doc_type is DocType.PDF
    assert doc.title == "Spec"
    starts = doc.metadata["page_starts"]
    assert starts[0] == 0
    assert doc.text[starts[0] : starts[1]].strip() == "Page one text"
    assert doc.text[starts[1] :] == "Second page here"
    assert doc.text == "Page one text\n\nSecond page here"
    assert doc.metadata["page_count"] == 2
    assert "\x0c" not in doc.text and "\r" not in doc.text


def test_pdf_without_metadata_title_is_titled_by_stem(tmp_path: Path) -> None:
    assert load_one(write(tmp_path / "report.pdf", make_pdf(["Body"]))).title == "report"


def test_random_bytes_named_pdf_is_corrupt(tmp_path: Path) -> None:
    noise = random.Random(1).randbytes(3000)
    with pytest.raises(CorruptDocument) as info:
        load_file(write(tmp_path / "noise.pdf", noise), root=tmp_path)
    assert "not a valid PDF" in str(info.value)
    assert isinstance(info.value.__cause__, pdfium.PdfiumError)


def test_truncated_pdf_is_corrupt(tmp_path: Path) -> None:
    whole = make_pdf(["Hello page one", "Page two"])
    path = write(tmp_path / "cut.pdf", whole[: len(whole) // 2])
    with pytest.raises(CorruptDocument) as info:
        load_file(path, root=tmp_path)
    assert info.value.reason == "corrupt"


def test_encrypted_pdf_asks_for_a_password(tmp_path: Path) -> None:
    with pytest.raises(CorruptDocument, match="password required"):
        load_file(write(tmp_path / "locked.pdf", make_encrypted_pdf()), root=tmp_path)


def test_pdf_without_text_suggests_ocr(tmp_path: Path) -> None:
    path = write(tmp_path / "scan.pdf", make_pdf([""]))
    with pytest.raises(DocumentError) as info:
        load_file(path, root=tmp_path)
    assert info.value.reason == "needs_ocr"
    assert "no text: needs OCR" in str(info.value) and "ocrmypdf" in str(info.value)


# --- DOCX --------------------------------------------------------------------------------------


def make_docx(path: Path, *, core_title: str | None = "Handbook") -> Path:
    document = docx.Document()
    if core_title is not None:
        document.core_properties.title = core_title
    document.core_properties.author = "Ada"
    document.add_paragraph("Styled Title", style="Title")
    document.add_heading("Overview", level=1)
    document.add_paragraph("First paragraph.")
    document.add_paragraph("")
    table = document.add_table(rows=2, cols=2)
    for r, row in enumerate([["name", "value"], ["alpha", "1"]]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.add_heading("Details", level=2)
    document.add_paragraph("Closing words.")
    document.save(str(path))
    return path


def test_docx_paragraphs_and_tables_in_body_order(tmp_path: Path) -> None:
    doc = load_one(make_docx(tmp_path / "hb.docx"))
    assert doc.text == (
        "Styled Title\n\nOverview\n\nFirst paragraph.\n\nname | value\nalpha | value: 1\n\n"
        "Details\n\nClosing words."
    )
    assert doc.doc_type is DocType.DOCX
    assert doc.metadata["author"] == "Ada"


def test_docx_headings_and_title_style_are_recorded(tmp_path: Path) -> None:
    doc = load_one(make_docx(tmp_path / "hb.docx"))
    assert [(h.level, h.title, heading_at(doc, h)) for h in doc.headings] == [
        (1, "Styled Title", "Styled Title"),
        (1, "Overview", "Overview"),
        (2, "Details", "Details"),
    ]


def test_docx_title_from_core_properties_then_title_style(tmp_path: Path) -> None:
    assert load_one(make_docx(tmp_path / "a.docx")).title == "Handbook"
    assert load_one(make_docx(tmp_path / "b.docx", core_title=None)).title == "Styled Title"


def test_random_bytes_named_docx_is_corrupt(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.docx", random.Random(2).randbytes(500))
    with pytest.raises(CorruptDocument) as info:
        load_file(path, root=tmp_path)
    assert "re-save" in str(info.value)
    assert info.value.__cause__ is not None


def test_zip_that_is_not_a_docx_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "fake.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "not word")
    with pytest.raises(CorruptDocument):
        load_file(path, root=tmp_path)


# --- JSONL -------------------------------------------------------------------------------------


def jsonl(*records: object) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def test_jsonl_beir_records_become_documents(tmp_path: Path) -> None:
    path = write(
        tmp_path / "corpus.jsonl",
        jsonl(
            {
                "_id": "d1",
                "title": "Aspirin",
                "text": "Reduces fever.",
                "year": 2001,
                "tags": ["x"],
                "meta": {"a": 1},
            },
            {"id": 7, "text": "No title here."},
        ),
    )
    first, second = load_file(path, root=tmp_path)
    assert first.id == "d1"
    assert first.text == "Aspirin\n\nReduces fever."
    assert first.title == "Aspirin"
    assert first.doc_type is DocType.JSONL
    assert first.content_hash == hashlib.sha256(first.text.encode()).hexdigest()
    assert first.metadata["year"] == 2001
    assert "tags" not in first.metadata and "meta" not in first.metadata
    assert first.metadata["path"] == "corpus.jsonl"
    assert first.metadata["type"] == "jsonl"
    assert first.metadata["line"] == 1
    assert second.id == "7"
    assert second.text == "No title here."


def test_jsonl_bad_records_are_reported_per_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.jsonl",
        jsonl(
            {"_id": "ok1", "text": "fine"},
            "{not json",
            {"title": "no id", "text": "x"},
            {"_id": "no-text", "title": "t"},
            [1, 2],
            {"_id": "ok1", "text": "duplicate"},
            {"_id": "ok2", "text": "also fine"},
        )
        + "\n   \n",
    )
    result = load_file_report(path, root=tmp_path)
    assert [d.id for d in result.documents] == ["ok1", "ok2"]
    assert [(p.reason, p.path) for p in result.problems] == [
        ("invalid_json", "c.jsonl:2"),
        ("missing_id", "c.jsonl:3"),
        ("missing_text", "c.jsonl:4"),
        ("invalid_record", "c.jsonl:5"),
        ("duplicate_id", "c.jsonl:6"),
    ]
    assert "line 2" in str(result.problems[0])


def test_load_file_skips_bad_records_with_a_counted_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "c.jsonl", jsonl({"_id": "a", "text": "x"}, "oops", "{]"))
    with caplog.at_level(logging.WARNING, logger="ragline.documents"):
        documents = load_file(path, root=tmp_path)
    assert [d.id for d in documents] == ["a"]
    assert "skipped 2 bad record(s)" in caplog.text


def test_jsonl_with_only_blank_lines_is_empty(tmp_path: Path) -> None:
    with pytest.raises(DocumentError) as info:
        load_file(write(tmp_path / "e.jsonl", "\n\n"), root=tmp_path)
    assert info.value.reason == "empty"


def test_jsonl_invalid_utf8_line_is_a_record_problem(tmp_path: Path) -> None:
    data = b'{"_id": "a", "text": "fine"}\n{"_id": "b", "text": "caf\xe9"}\n'
    result = load_file_report(write(tmp_path / "l.jsonl", data), root=tmp_path)
    assert [d.id for d in result.documents] == ["a"]
    assert result.problems[0].reason == "encoding"


def test_jsonl_is_read_line_by_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "s.jsonl", jsonl(*({"_id": str(i), "text": "t"} for i in range(50))))

    def must_not_read(self: Path) -> bytes:
        raise AssertionError("read the whole JSONL file at once")

    monkeypatch.setattr(Path, "read_bytes", must_not_read)
    monkeypatch.setattr(Path, "read_text", must_not_read)
    assert len(load_file(path, root=tmp_path)) == 50


def test_every_supported_type_loads_from_one_folder(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "plain")
    write(tmp_path / "b.md", "# B\n\nmark")
    write(tmp_path / "c.html", "<h1>C</h1><p>web</p>")
    write(tmp_path / "d.pdf", make_pdf(["paper"]))
    make_docx(tmp_path / "e.docx")
    write(tmp_path / "f.jsonl", jsonl({"_id": "r1", "text": "record"}))
    types = [
        doc.doc_type.value
        for path in iter_files(tmp_path)
        for doc in load_file(path, root=tmp_path)
    ]
    assert types == ["txt", "md", "html", "pdf", "docx", "jsonl"]
    assert os.listdir(tmp_path)  # nothing was deleted or moved


def test_running_heads_and_page_numbers_are_removed_from_pdf_pages(tmp_path: Path) -> None:
    pages = [f"ACME CORP 2019 FORM 10-K\nBody text of page {n} about topic {n}.\nPage {n} of 6"
             for n in range(1, 7)]
    pages[2] = "ACME CORP 2019 FORM 10-K\nA page that mentions ACME CORP 2019 FORM 10-K inline.\nPage 3 of 6"
    doc = load_one(write(tmp_path / "filing.pdf", make_pdf(pages)))
    assert "Page 1 of 6" not in doc.text and doc.text.count("ACME CORP 2019 FORM 10-K") == 1
    assert "Body text of page 4 about topic 4." in doc.text
    assert doc.metadata["running_lines_removed"] == 12
    starts = doc.metadata["page_starts"]
    assert doc.text[starts[3]:].startswith("Body text of page 4")


def test_a_short_pdf_keeps_every_line(tmp_path: Path) -> None:
    doc = load_one(write(tmp_path / "two.pdf", make_pdf(["Header\nOne", "Header\nTwo"])))
    assert doc.text.count("Header") == 2 and "running_lines_removed" not in doc.metadata
