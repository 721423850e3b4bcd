"""Text, headings and metadata from PDF (pypdfium2) and DOCX (python-docx) files."""

from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Container, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docx
import pypdfium2 as pdfium
from docx.opc.exceptions import OpcError
from docx.oxml.ns import qn
from docx.table import Table as DocxTable
from docx.text.paragraph import Paragraph
from lxml import etree

from ragline.documents._parsed import Parsed, unreadable
from ragline.documents._pdf_tables import PagePart, Prose, looks_tabular, page_parts
from ragline.documents._tables import (
    GridCell,
    Table,
    cell_text,
    is_data_table,
    render,
    render_lines,
    table_from_grid,
)
from ragline.errors import CorruptDocument, DocumentError
from ragline.types import Heading

logger = logging.getLogger(__name__)

# --- PDF ---------------------------------------------------------------------------------------

_PDF_NEWLINES = re.compile(r"\r\n?")
TABLE_PAGES_PER_OPEN = 256


def parse_pdf(path: Path, rel: str) -> Parsed:
    """Pages joined by a blank line; `page_starts` gives each page's offset for citations and
    `tables` the (start, end) of each table, rendered by `_tables` in place of its run of
    numbers and labels."""
    pdf = _open_pdf(path, rel)
    try:
        pages = [_page_text(pdf, index) for index in range(len(pdf))]
        meta = pdf.get_metadata_dict(skip_empty=True)
        wanted = [i for i, (text, rotation) in enumerate(pages) if rotation or looks_tabular(text)]
        laid_out, skipped = _table_pages(path, pdf, wanted, [rotation for _, rotation in pages])
    except pdfium.PdfiumError as exc:
        raise CorruptDocument(
            rel,
            f"could not extract the PDF's text (pdfium: {exc}); "
            "re-save or repair it (e.g. qpdf) and ingest again",
        ) from exc
    finally:
        pdf.close()
    text, starts, spans, removed = _join_pages([text for text, _ in pages], laid_out)
    if not text or text.isspace():
        raise DocumentError(
            rel,
            "needs_ocr",
            f"no text: needs OCR (none of its {len(pages)} page(s) has a text layer; probably "
            "scanned images); make a searchable copy with `ocrmypdf IN.pdf OUT.pdf` (Debian: "
            "apt install ocrmypdf) and ingest that",
        )
    extra: dict[str, Any] = {"page_starts": starts, "page_count": len(pages)}
    if spans:
        extra["tables"] = spans
    if skipped:
        extra["table_pages_skipped"] = skipped
    if removed:
        extra["running_lines_removed"] = removed
    if meta.get("Author"):
        extra["author"] = meta["Author"]
    return Parsed(text=text, title=meta.get("Title") or None, extra=extra)


def _join_pages(
    texts: list[str], laid_out: dict[int, list[PagePart]]
) -> tuple[str, list[int], list[list[int]], int]:
    """The document's text (pages without running lines, laid-out pages with their tables
    rendered), each page's start, each table's [start, end) and how many lines were dropped."""
    running = running_line_keys(texts)
    starts: list[int] = []
    spans: list[list[int]] = []
    out: list[str] = []
    offset, removed = 0, 0
    previous: Table | None = None  # the last table of the page before, for a continued table
    for index, text in enumerate(texts):
        parts = laid_out.get(index)
        page_spans: list[tuple[int, int]] = []
        if parts is None:
            lines, dropped = _strip_lines(text.split("\n"), running)
            page, previous = "\n".join(lines).strip(), None
        else:
            page, page_spans, previous, dropped = _table_page(parts, running, previous)
        starts.append(offset)
        spans.extend([offset + a, offset + b] for a, b in page_spans)
        out.append(page)
        offset += len(page) + 2
        removed += dropped
    return "\n\n".join(out), starts, spans, removed


def _table_pages(
    path: Path, pdf: pdfium.PdfDocument, wanted: list[int], rotations: list[int]
) -> tuple[dict[int, list[PagePart]], list[int]]:
    """The pages among `wanted` that hold tables, as prose and tables, and the 1-based numbers
    of pages pdfplumber could not lay out (their text stays pypdfium2's).

    pdfplumber reads only those pages, one at a time, and is reopened every
    TABLE_PAGES_PER_OPEN pages: pdfminer caches every object it has parsed, so one open over
    a 5,000-page filing would grow with the pages read.
    """
    laid_out: dict[int, list[PagePart]] = {}
    skipped: list[int] = []
    for first in range(0, len(wanted), TABLE_PAGES_PER_OPEN):
        batch = wanted[first : first + TABLE_PAGES_PER_OPEN]
        _lay_out(path, pdf, batch, rotations, laid_out, skipped)
    return laid_out, skipped


def _lay_out(path: Path, pdf: pdfium.PdfDocument, batch: list[int], rotations: list[int],
             laid_out: dict[int, list[PagePart]], skipped: list[int]) -> None:
    import pdfplumber
    from pdfminer.psexceptions import PSException
    from pdfplumber.utils.exceptions import PdfminerException

    with pdfplumber.open(path, pages=[index + 1 for index in batch]) as document:
        for page in document.pages:
            index = page.page_number - 1
            try:
                prose = None if rotations[index] else _pdfium_prose(pdf, index, page)
                parts = page_parts(page, prose)
            except (PSException, PdfminerException, ValueError, KeyError, TypeError) as exc:
                logger.warning("%s: page %d: tables not read (%s: %s); its plain text is kept",
                               path.name, index + 1, type(exc).__name__, exc)
                skipped.append(index + 1)
                parts = None
            finally:
                page.close()
            if parts is not None:
                laid_out[index] = parts


def _pdfium_prose(pdf: pdfium.PdfDocument, index: int, layout: Any) -> Prose:
    """pypdfium2's text inside a box given in pdfplumber's coordinates (from the top left)."""
    height = float(layout.height)
    bottom_edge = float(layout.mediabox[1]) if layout.mediabox else 0.0

    def prose(box: tuple[float, float, float, float]) -> str:
        x0, top, x1, bottom = box
        if bottom - top < 1 or x1 - x0 < 1:
            return ""
        page = pdf[index]
        try:
            textpage = page.get_textpage()
            try:
                raw = textpage.get_text_bounded(
                    left=x0, bottom=height - bottom + bottom_edge, right=x1,
                    top=height - top + bottom_edge,
                )
            finally:
                textpage.close()
        finally:
            page.close()
        return _clean(raw)

    return prose


def _table_page(
    parts: list[PagePart], running: set[str], previous: Table | None
) -> tuple[str, list[tuple[int, int]], Table | None, int]:
    """A laid-out page's text, its tables' spans in it, its last table, and how many running
    lines were dropped. A table with no header of its own that opens the page continues the
    page before's last table, when as wide: it gets that table's header and caption."""
    lines: list[str] = []
    owners: list[int | None] = []  # the number of the table each line belongs to
    tables: list[Table] = []
    for part in parts:
        if part.table is None:
            for line in part.text.split("\n"):
                lines.append(line)
                owners.append(None)
            continue
        table = part.table.table
        opens_page = not any(line.strip() for line in lines)
        if (not part.table.headed and opens_page and previous is not None
                and previous.width == table.width):
            table = Table(previous.header, table.body, previous.caption)
        tables.append(table)
        for line in render_lines(table)[0]:
            lines.append(line)
            owners.append(len(tables) - 1)
    keep = {i for i, owner in enumerate(owners) if owner is not None}
    drop = _running_edges(lines, running, keep)
    kept = [(line, owner) for i, (line, owner) in enumerate(zip(lines, owners, strict=True))
            if i not in drop and (owner is not None or line.strip())]
    text, spans = _join_page(kept)
    return text, spans, (tables[-1] if tables else None), len(drop)


def _join_page(lines: list[tuple[str, int | None]]) -> tuple[str, list[tuple[int, int]]]:
    """(line, table number or None) joined by newlines, a blank line before and after each
    table; the (start, end) of each table in the text."""
    out: list[str] = []
    spans: list[tuple[int, int]] = []
    length = 0
    previous: int | None = None
    for line, owner in lines:
        if out:
            separator = "\n" if owner == previous else "\n\n"
            out.append(separator)
            length += len(separator)
        if owner is not None and (owner != previous or not spans):
            spans.append((length, length))
        out.append(line)
        length += len(line)
        if owner is not None:
            spans[-1] = (spans[-1][0], length)
        previous = owner
    return "".join(out), spans


def _open_pdf(path: Path, rel: str) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        code = exc.err_code
        if code == pdfium.raw.FPDF_ERR_PASSWORD:
            detail = "encrypted PDF: password required; decrypt it (e.g. qpdf --decrypt) first"
        elif code == pdfium.raw.FPDF_ERR_SECURITY:
            detail = "encrypted PDF with an unsupported security scheme; decrypt it first"
        elif code == pdfium.raw.FPDF_ERR_FILE:
            raise DocumentError(
                rel, "unreadable", "cannot open the file; check it exists and is readable"
            ) from exc
        else:
            detail = f"not a valid PDF (pdfium: {exc}); re-export or repair it and ingest again"
        raise CorruptDocument(rel, detail) from exc


_DIGITS = re.compile(r"\d+")
RUNNING_EDGE_LINES = 2  # lines at the top and at the bottom of a page that may be running heads
RUNNING_MIN_PAGES = 3


def _line_key(line: str) -> str:
    """A line as a running head or foot repeats: digits (page numbers) and spacing ignored."""
    return _DIGITS.sub("#", " ".join(line.split()).casefold())


def running_line_keys(pages: list[str]) -> set[str]:
    """The running heads and feet of a document, as `_line_key`s.

    A running line is one of the first or last RUNNING_EDGE_LINES lines of a page whose text,
    numbers aside ("Page 3 of 120", "NIKE, INC. 2019 FORM 10-K 47"), recurs at a page edge on at
    least half the pages (and on RUNNING_MIN_PAGES or more). Left in, it joins every chunk of the
    document: the same words in every embedding and every BM25 row, and a claim cut across it.
    """
    if len(pages) < RUNNING_MIN_PAGES:
        return set()
    counts: dict[str, int] = {}
    for page in pages:
        lines = page.split("\n")
        edges = {_line_key(lines[i]) for i in _edge(len(lines)) if lines[i].strip()}
        for key in edges:
            counts[key] = counts.get(key, 0) + 1
    needed = max(RUNNING_MIN_PAGES, (len(pages) + 1) // 2)
    return {key for key, n in counts.items() if n >= needed}


def strip_running_lines(pages: list[str]) -> tuple[list[str], int]:
    """Pages without their running heads and feet (`running_line_keys`), and how many lines
    were removed."""
    running = running_line_keys(pages)
    if not running:
        return pages, 0
    out, removed = [], 0
    for page in pages:
        lines, dropped = _strip_lines(page.split("\n"), running)
        out.append("\n".join(lines).strip())
        removed += dropped
    return out, removed


def _strip_lines(lines: list[str], running: set[str]) -> tuple[list[str], int]:
    """A page's lines without the running ones at its edges, and how many were dropped."""
    drop = _running_edges(lines, running)
    return [x for i, x in enumerate(lines) if i not in drop], len(drop)


def _running_edges(
    lines: list[str], running: set[str], keep: Container[int] = frozenset()
) -> set[int]:
    """The positions of a page's running lines (never those in `keep`: table lines)."""
    if not running:
        return set()
    return {i for i in _edge(len(lines)) if i not in keep and _line_key(lines[i]) in running}


def _edge(n: int) -> set[int]:
    """Positions of a page's edge lines: at most RUNNING_EDGE_LINES at each end and never more
    than a third of the page's lines there (the body of a short page is not its edge)."""
    width = min(RUNNING_EDGE_LINES, n // 3)
    return set(range(width)) | set(range(n - width, n)) if width else set()


def _page_text(pdf: pdfium.PdfDocument, index: int) -> tuple[str, int]:
    """A page's text by pypdfium2, and the page's rotation in degrees."""
    page = pdf[index]
    try:
        rotation = page.get_rotation()
        textpage = page.get_textpage()
        try:
            raw = textpage.get_text_bounded()
        finally:
            textpage.close()
    finally:
        page.close()
    return _clean(raw), rotation


def _clean(raw: str) -> str:
    return _PDF_NEWLINES.sub("\n", raw).replace("\x0c", "").replace("\x00", "").strip()


# --- DOCX --------------------------------------------------------------------------------------

_DOCX_HEADING = re.compile(r"^heading ([1-9])$", re.IGNORECASE)
_DOCX_ERRORS = (zipfile.BadZipFile, OpcError, KeyError, ValueError, etree.XMLSyntaxError)


def parse_docx(path: Path, rel: str) -> Parsed:
    """Paragraphs and tables in body order; Heading N / Title styles become headings, data
    tables are rendered by `_tables` (each row with its headers) and their spans recorded."""
    try:
        document = docx.Document(str(path))
        blocks = list(_docx_blocks(document.iter_inner_content()))
        core = document.core_properties
        core_title, author = core.title, core.author
    except OSError as exc:
        raise unreadable(rel, exc) from exc
    except _DOCX_ERRORS as exc:
        raise CorruptDocument(
            rel,
            f"not a valid .docx file ({type(exc).__name__}: {exc}); "
            "re-save it from Word or LibreOffice (without a password) and ingest again",
        ) from exc
    parts: list[str] = []
    headings: list[Heading] = []
    tables: list[list[int]] = []
    offset = 0
    for block in blocks:
        if block.level is not None:
            headings.append(Heading(start=offset, level=block.level, title=block.text))
        if block.table:
            tables.append([offset, offset + len(block.text)])
        parts.append(block.text)
        offset += len(block.text) + 2
    styled_title = next((b.text for b in blocks if b.level == 0), None)
    extra: dict[str, Any] = {"author": author} if author else {}
    if tables:
        extra["tables"] = tables
    return Parsed(
        text="\n\n".join(parts),
        title=core_title or styled_title,
        headings=tuple(Heading(h.start, max(h.level, 1), h.title) for h in headings),
        extra=extra,
    )


@dataclass(frozen=True, slots=True)
class _Block:
    text: str
    level: int | None = None  # a heading's level; 0 marks a Title paragraph
    table: bool = False


def _docx_blocks(items: Iterator[Paragraph | DocxTable]) -> Iterator[_Block]:
    """The non-empty blocks in body order."""
    for item in items:
        if isinstance(item, Paragraph):
            text = item.text.strip()
            if text:
                yield _Block(text, _docx_heading_level(item))
            continue
        table = _docx_table(item)
        if table is not None and is_data_table(table):
            yield _Block(render(table).text, table=True)
            continue
        # A layout table: its cells' text, one cell a line.
        lines = [cell_text(cell.text) for row in item.rows for cell in _distinct_cells(row.cells)]
        text = "\n".join(line for line in lines if line)
        if text:
            yield _Block(text)


def _docx_heading_level(paragraph: Paragraph) -> int | None:
    name = paragraph.style.name if paragraph.style is not None else None
    if not name:
        return None
    if name.lower() == "title":
        return 0
    match = _DOCX_HEADING.match(name)
    return int(match.group(1)) if match else None


def _docx_table(table: DocxTable) -> Table | None:
    """The table's cells as a grid (a merged cell spans its columns; the rows under a
    vertically merged cell leave it empty); rows marked "repeat as header row" are the header."""
    rows: list[list[GridCell]] = []
    above: list[Any] = []
    marked = 0
    for row in table.rows:
        cells = list(row.cells)
        grid: list[GridCell] = []
        for column, cell in enumerate(cells):
            if column and cell._tc is cells[column - 1]._tc:
                grid[-1] = GridCell(grid[-1].text, grid[-1].colspan + 1)
                continue
            below_merge = column < len(above) and above[column] is cell._tc
            grid.append(GridCell("" if below_merge else cell.text))
        above = [cell._tc for cell in cells]
        trpr = row._tr.trPr
        if marked == len(rows) and trpr is not None and trpr.find(qn("w:tblHeader")) is not None:
            marked += 1
        rows.append(grid)
    return table_from_grid(rows, header_rows=marked or None)


def _distinct_cells(cells: Any) -> list[Any]:
    """A row's cells once each (python-docx repeats a merged cell per grid column it spans)."""
    out: list[Any] = []
    for cell in cells:
        if not out or cell._tc is not out[-1]._tc:
            out.append(cell)
    return out
