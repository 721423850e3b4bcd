"""Tables in PDF, HTML and DOCX kept as tables: rendered a row a line with its headers, their
spans recorded, chunked a whole row at a time, and quoted whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docx
import pytest

from ragline.answer.claims import split_sentences
from ragline.answer.extractive import is_prose
from ragline.documents import ChunkingConfig, chunk_document, load_file
from ragline.documents._html import extract_html
from ragline.documents._pdf_tables import looks_tabular
from ragline.documents._tables import (
    GridCell,
    Table,
    is_data_table,
    is_table_row,
    render,
    render_lines,
    table_from_grid,
)
from ragline.types import DocType, Document
from tests.pdfs import (
    BALANCE_SHEET,
    LayoutPage,
    make_layout_pdf,
    make_pdf,
    statement_texts,
    table_cases,
)

CASES = {case.name: case for case in table_cases()}
ROW_2019 = "Total current assets | 2019: 16,525 | 2018: 15,134"


def words(texts: list[str]) -> list[int]:
    return [len(text.split()) for text in texts]


def load_one(path: Path) -> Document:
    documents = load_file(path, root=path.parent)
    assert len(documents) == 1
    return documents[0]


def write_case(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(make_layout_pdf(CASES[name].pages))
    return path


def document(text: str, tables: object) -> Document:
    return Document(id="t", text=text, doc_type=DocType.PDF, content_hash="-",
                    metadata={"tables": tables})


def tables_of(doc: Document) -> list[str]:
    return [doc.text[start:end] for start, end in doc.metadata.get("tables", [])]


# --- the renderer --------------------------------------------------------------------------------

SHEET = Table(
    header=(("", "May 31,", "May 31,"), ("(In millions)", "2019", "2018")),
    body=(
        ("Current assets:", "", ""),
        ("Cash and equivalents", "$4,466", "$4,249"),
        ("Total current assets", "16,525", "15,134"),
        ("Retained earnings (deficit)", "(1,643)", "3,517"),
        ("Redeemable preferred stock", "\u2014", ""),
    ),
    caption="CONSOLIDATED BALANCE SHEETS",
)


def test_every_row_carries_its_column_headers_under_the_caption_and_header_line() -> None:
    assert render_lines(SHEET) == ([
        "CONSOLIDATED BALANCE SHEETS",
        "(In millions) | May 31, 2019 | May 31, 2018",
        "Current assets:",
        "Cash and equivalents | 2019: $4,466 | 2018: $4,249",
        ROW_2019,
        "Retained earnings (deficit) | 2019: (1,643) | 2018: 3,517",
        "Redeemable preferred stock | 2019: \u2014",
    ], 2)


def test_rendered_line_spans_point_at_each_line() -> None:
    rendered = render(SHEET)
    lines = [rendered.text[a:b] for a, b in rendered.lines]
    assert lines == rendered.text.split("\n")
    assert lines[rendered.body] == "Current assets:"


def test_a_single_value_column_keeps_its_whole_header() -> None:
    table = Table(header=(("(In millions)", "Year ended 2019"),), body=(("Revenues", "$39,117"),))
    assert render_lines(table)[0] == ["(In millions) | Year ended 2019",
                                      "Revenues | Year ended 2019: $39,117"]


def test_a_table_without_header_renders_its_cells() -> None:
    assert render_lines(Table(header=(), body=(("a", "1", "2"),)))[0] == ["a | 1 | 2"]


def test_grid_joins_dollar_and_parenthesis_cells_and_drops_spacer_columns() -> None:
    rows = [
        [GridCell(""), GridCell("May 31,", colspan=7)],
        [GridCell("(In millions)"), GridCell("2019", colspan=3), GridCell(""),
         GridCell("2018", colspan=3)],
        [GridCell("Accumulated other comprehensive income (loss)"), GridCell("$"),
         GridCell("231"), GridCell(""), GridCell(""), GridCell("$"), GridCell("(92"),
         GridCell(")")],
    ]
    table = table_from_grid(rows)
    assert table is not None
    assert table.header == (("", "May 31,", "May 31,"), ("(In millions)", "2019", "2018"))
    assert table.body == (("Accumulated other comprehensive income (loss)", "$231", "$(92)"),)


def test_grid_finds_header_rows_and_a_title_row_without_markup() -> None:
    rows = [
        [GridCell("SELECTED DATA", colspan=3)],
        [GridCell("Year ended"), GridCell("2019"), GridCell("2018")],
        [GridCell("Revenues"), GridCell("39,117"), GridCell("36,397")],
    ]
    table = table_from_grid(rows)
    assert table == Table(header=(("Year ended", "2019", "2018"),),
                          body=(("Revenues", "39,117", "36,397"),), caption="SELECTED DATA")


def test_layout_tables_are_not_data() -> None:
    one_column = table_from_grid([[GridCell("Welcome to our site")], [GridCell("News")]])
    assert one_column is not None and not is_data_table(one_column)
    paragraph = "word " * 80
    sidebar = table_from_grid([[GridCell("Menu"), GridCell(paragraph)]])
    assert sidebar is not None and not is_data_table(sidebar)


def test_table_row_is_recognised_but_a_header_line_is_not() -> None:
    assert is_table_row(ROW_2019)
    assert not is_table_row("(In millions) | May 31, 2019 | May 31, 2018")
    assert not is_table_row("Nike, Inc. reported $39.1 million.")


# --- PDF -----------------------------------------------------------------------------------------


def test_pdf_whitespace_statement_becomes_a_table_under_its_prose(tmp_path: Path) -> None:
    doc = load_one(write_case(tmp_path, "whitespace"))
    [table] = tables_of(doc)
    assert table.startswith("CONSOLIDATED BALANCE SHEETS\n(In millions) | May 31, 2019 | May 31,"
                            " 2018\nASSETS\nCurrent assets:\n")
    assert ROW_2019 in table.split("\n")
    assert "TOTAL ASSETS | 2019: $23,717 | 2018: $22,536" in table
    assert doc.text.startswith("The following table presents our consolidated balance sheets")
    start = doc.metadata["tables"][0][0]
    assert "fiscal year." in doc.text[:start]


def test_pdf_ruled_grid_becomes_a_table(tmp_path: Path) -> None:
    doc = load_one(write_case(tmp_path, "ruled"))
    [table] = tables_of(doc)
    assert table.split("\n")[:3] == [
        "STOCK OPTIONS",
        "(Shares in millions) | Shares | Weighted average exercise price",
        "Options outstanding May 31, 2018 | Shares: 90.6 | Weighted average exercise price: "
        "$37.98",
    ]
    assert "Exercised | Shares: (18.8) | Weighted average exercise price: 28.37" in table


def test_pdf_two_column_table(tmp_path: Path) -> None:
    [table] = tables_of(load_one(write_case(tmp_path, "two_column")))
    assert "Revenues | 2019: $39,117" in table.split("\n")
    assert "Diluted earnings per common share | 2019: 2.49" in table


def test_pdf_table_spanning_two_pages_carries_its_header_onto_the_second(tmp_path: Path) -> None:
    doc = load_one(write_case(tmp_path, "spanning"))
    spans = doc.metadata["tables"]
    assert len(spans) == 3
    second_page = doc.metadata["page_starts"][1]
    continued = doc.text[spans[2][0] : spans[2][1]]
    assert spans[2][0] >= second_page
    assert continued.split("\n")[:3] == [
        "CONSOLIDATED BALANCE SHEETS (continued)",
        "(In millions) | May 31, 2019 | May 31, 2018",
        "Long-term debt | 2019: 3,464 | 2018: 3,468",
    ]
    assert "Retained earnings (deficit) | 2019: (1,643) | 2018: 3,517" in continued


def test_pdf_rotated_page_reads_as_rows(tmp_path: Path) -> None:
    doc = load_one(write_case(tmp_path, "rotated"))
    [table] = tables_of(doc)
    assert ("Greater China | 2019: 6,208 | 2018: 5,134 | % Change: 21% | 2017: 4,237 | "
            "% Change: 21%") in table.split("\n")


def test_pdf_pages_without_tables_keep_pypdfium2_text(tmp_path: Path) -> None:
    prose = "A plain page of prose.\nIt mentions 2019 and 7% once."
    path = tmp_path / "plain.pdf"
    path.write_bytes(make_pdf([prose, prose]))
    doc = load_one(path)
    assert doc.text == f"{prose}\n\n{prose}"
    assert "tables" not in doc.metadata


def test_pdf_table_pages_keep_page_offsets_and_drop_running_heads(tmp_path: Path) -> None:
    pages = []
    for number in range(1, 4):
        texts, _ = statement_texts(BALANCE_SHEET, top=700)
        head = [(72, 760, "NIKE, INC. 2019 FORM 10-K"), (300, 40, str(number))]
        pages.append(LayoutPage(head + texts))
    path = tmp_path / "sheets.pdf"
    path.write_bytes(make_layout_pdf(pages))
    doc = load_one(path)
    assert "FORM 10-K" not in doc.text
    starts = doc.metadata["page_starts"]
    spans = doc.metadata["tables"]
    assert len(spans) == 3
    for start, (a, b) in zip(starts, spans, strict=True):
        assert a >= start and doc.text[a:b].startswith("CONSOLIDATED BALANCE SHEETS")
    chunks = chunk_document(doc, ChunkingConfig(chunk_tokens=60, overlap_tokens=10), words)
    assert {page for chunk in chunks for page in chunk.pages} == {1, 2, 3}


def test_looks_tabular_on_statements_but_not_on_prose() -> None:
    assert looks_tabular("Cash $ 4,466 $ 4,249\nInventories 5,622 5,261\nGoodwill 154 154")
    assert not looks_tabular("We grew 7% in 2019.\nSee page 12\nRevenue rose to 39\nin 2018")


# --- HTML ----------------------------------------------------------------------------------------

EDGAR = """<html><body>
<p style="font-weight:bold">NIKE, Inc. Consolidated Balance Sheets</p>
<table style="border-collapse:collapse">
<tr><td></td><td colspan="7" style="text-align:center">May 31,</td></tr>
<tr><td>(In millions)</td><td colspan="3">2019</td><td>&#160;</td><td colspan="3">2018</td></tr>
<tr><td>ASSETS</td><td></td><td></td><td></td><td></td><td></td><td></td><td></td></tr>
<tr><td>Current assets:</td></tr>
<tr><td>Cash and equivalents</td><td>$</td><td>4,466</td><td></td><td></td><td>$</td>
    <td>4,249</td><td></td></tr>
<tr><td>Total current assets</td><td></td><td>16,525</td><td></td><td></td><td></td>
    <td>15,134</td><td></td></tr>
<tr><td>Accumulated other comprehensive income (loss)</td><td></td><td>231</td><td></td>
    <td></td><td></td><td>(92</td><td>)</td></tr>
</table>
<table><tr><td>This filing is laid out with a table. It has a paragraph of prose in one cell
and nothing else.</td></tr><tr><td>And a second paragraph here.</td></tr></table>
<p>Notes follow.</p>
</body></html>"""


def test_html_edgar_balance_sheet_becomes_a_table_with_its_two_header_rows() -> None:
    page = extract_html(EDGAR)
    [(start, end)] = page.tables
    assert page.text[start:end].split("\n") == [
        "(In millions) | May 31, 2019 | May 31, 2018",
        "ASSETS",
        "Current assets:",
        "Cash and equivalents | 2019: $4,466 | 2018: $4,249",
        ROW_2019,
        "Accumulated other comprehensive income (loss) | 2019: 231 | 2018: (92)",
    ]
    assert page.text.startswith("NIKE, Inc. Consolidated Balance Sheets\n\n(In millions)")


def test_an_html_file_records_its_tables_for_the_chunker(tmp_path: Path) -> None:
    path = tmp_path / "nike.html"
    path.write_text(EDGAR, encoding="utf-8")
    doc = load_one(path)
    [table] = tables_of(doc)
    assert table.startswith("(In millions) | May 31, 2019") and ROW_2019 in table.split("\n")
    chunks = chunk_document(doc, ChunkingConfig(chunk_tokens=12, overlap_tokens=0), words)
    rows = [c.text for c in chunks if ROW_2019 in c.text]
    assert rows and all(ROW_2019 in c.split("\n") for c in rows)  # never cut


def test_html_layout_table_stays_prose() -> None:
    page = extract_html(EDGAR)
    assert ("This filing is laid out with a table. It has a paragraph of prose in one cell and "
            "nothing else.\nAnd a second paragraph here.\n\nNotes follow.") in page.text
    assert len(page.tables) == 1


def test_html_th_header_and_rowspan() -> None:
    page = extract_html(
        "<table><thead><tr><th rowspan='2'>Segment</th><th colspan='2'>Revenues</th></tr>"
        "<tr><th>2019</th><th>2018</th></tr></thead>"
        "<tr><td>Greater China</td><td>6,208</td><td>5,134</td></tr></table>"
    )
    assert page.text.split("\n") == [
        "Segment | Revenues 2019 | Revenues 2018",
        "Greater China | 2019: 6,208 | 2018: 5,134",
    ]


# --- DOCX ----------------------------------------------------------------------------------------


def test_docx_table_is_rendered_with_headers_and_recorded(tmp_path: Path) -> None:
    document = docx.Document()
    document.add_paragraph("Results for the year.")
    table = document.add_table(rows=3, cols=3)
    for r, row in enumerate([["(In millions)", "2019", "2018"],
                             ["Revenues", "$39,117", "$36,397"],
                             ["Net income", "4,029", "1,933"]]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    layout = document.add_table(rows=1, cols=1)
    layout.cell(0, 0).text = "Signature block"
    path = tmp_path / "report.docx"
    document.save(str(path))
    doc = load_one(path)
    assert tables_of(doc) == ["(In millions) | 2019 | 2018\n"
                              "Revenues | 2019: $39,117 | 2018: $36,397\n"
                              "Net income | 2019: 4,029 | 2018: 1,933"]
    assert doc.text.endswith("\n\nSignature block")


def test_docx_merged_header_cell_spans_its_columns(tmp_path: Path) -> None:
    document = docx.Document()
    table = document.add_table(rows=3, cols=3)
    table.cell(0, 1).merge(table.cell(0, 2)).text = "Year ended May 31,"
    for r, row in enumerate([["(In millions)", "2019", "2018"], ["Revenues", "39,117", "36,397"]],
                            start=1):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    path = tmp_path / "merged.docx"
    document.save(str(path))
    assert tables_of(load_one(path)) == [
        "(In millions) | Year ended May 31, 2019 | Year ended May 31, 2018\n"
        "Revenues | 2019: 39,117 | 2018: 36,397"
    ]


# --- chunking ------------------------------------------------------------------------------------


def long_table_doc() -> Document:
    rows = tuple((f"Line item number {n}", f"{n},{n:03d}", f"({n}.5)") for n in range(1, 61))
    table = Table(header=(("(In millions)", "2019", "2018"),), body=rows, caption="BIG TABLE")
    before, after = "Some prose before the table. " * 20, "And prose after it. " * 20
    rendered = render(table).text
    text = f"{before.strip()}\n\n{rendered}\n\n{after.strip()}"
    start = len(before.strip()) + 2
    return document(text, [[start, start + len(rendered)]])


@pytest.mark.parametrize("size", [(40, 0), (40, 12), (120, 30)])
def test_chunks_never_split_a_table_row_and_start_at_a_row(size: tuple[int, int]) -> None:
    doc = long_table_doc()
    [(start, end)] = doc.metadata["tables"]
    lines = doc.text[start:end].split("\n")
    config = ChunkingConfig(chunk_tokens=size[0], overlap_tokens=size[1])
    chunks = chunk_document(doc, config, words)
    inside = [c for c in chunks if c.start < end and c.end > start]
    assert len(inside) > 1
    for chunk in chunks:
        assert chunk.text == doc.text[chunk.start : chunk.end]
        if chunk in inside:
            assert start <= chunk.start and chunk.end <= end  # never mixed with prose
            assert all(line in lines for line in chunk.text.split("\n"))
    assert inside[0].text.startswith("BIG TABLE\n(In millions) | 2019 | 2018\n")


def test_a_row_longer_than_a_chunk_is_the_only_row_ever_split() -> None:
    row = ("Very long label " * 30).strip()
    table = Table(header=(("", "2019"),), body=((row, "1,234"), ("Short", "5")))
    rendered = render(table).text
    doc = document(rendered, [[0, len(rendered)]])
    chunks = chunk_document(doc, ChunkingConfig(chunk_tokens=20, overlap_tokens=0), words)
    assert chunks[-1].text.endswith("Short | 2019: 5")
    assert all(c.text == rendered[c.start : c.end] for c in chunks)


def test_bad_table_metadata_is_ignored() -> None:
    doc = document("a b c", [[3, 1], "x", [0, 99]])
    assert [c.text for c in chunk_document(doc, ChunkingConfig(), words)] == ["a b c"]


# --- sentences and answers ----------------------------------------------------------------------


def test_a_table_row_is_one_sentence_and_never_cut() -> None:
    text = ("CONSOLIDATED BALANCE SHEETS\n(In millions) | May 31, 2019 | May 31, 2018\n"
            f"{ROW_2019}\nTOTAL ASSETS | 2019: $23,717 | 2018: $22,536\nNike, Inc. reported "
            "$39.1 million in revenue. Then it grew.")
    sentences = [s.text for s in split_sentences(text)]
    assert ROW_2019 in sentences
    assert "TOTAL ASSETS | 2019: $23,717 | 2018: $22,536" in sentences
    assert "Nike, Inc. reported $39.1 million in revenue." in sentences


def test_a_sentence_with_inc_and_amounts_stays_whole() -> None:
    sentences = split_sentences("Nike, Inc. reported $39.1 million, or 16,525 units, in 2019.")
    assert [s.text for s in sentences] == [
        "Nike, Inc. reported $39.1 million, or 16,525 units, in 2019."
    ]


def test_extractive_answers_may_quote_a_row_but_not_a_header_line() -> None:
    assert is_prose(ROW_2019)
    assert not is_prose("(In millions) | May 31, 2019 | May 31, 2018")


def test_search_finds_the_row_of_an_ingested_balance_sheet(tmp_path: Path, embedder: Any) -> None:
    from ragline.answer.extractive import extractive_answer
    from ragline.index import Index

    docs = tmp_path / "docs"
    docs.mkdir()
    write_case(docs, "spanning")
    (docs / "other.txt").write_text("The company opened new stores in Europe during the year.\n")
    index = Index(tmp_path / "ix", embedder=embedder)
    index.ingest(docs)
    hits = index.search("total current assets 2019", k=3)
    assert ROW_2019 in hits[0].chunk.text.split("\n")
    assert hits[0].chunk.pages == (1,)
    answer = extractive_answer("total current assets of Nike in FY2019", hits, embedder)
    assert answer.sentences[0].text == ROW_2019
