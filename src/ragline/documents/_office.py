"""Text, headings and metadata from PDF (pypdfium2) and DOCX (python-docx) files."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docx
import pypdfium2 as pdfium
from docx.opc.exceptions import OpcError
from docx.table import Table
from docx.text.paragraph import Paragraph
from lxml import etree

from ragline.documents._parsed import Parsed, unreadable
from ragline.errors import CorruptDocument, DocumentError
from ragline.types import Heading

# --- PDF ---------------------------------------------------------------------------------------

_PDF_NEWLINES = re.compile(r"\r\n?")


def parse_pdf(path: Path, rel: str) -> Parsed:
    """Pages joined by a blank line; `page_starts` gives each page's offset for citations."""
    pdf = _open_pdf(path, rel)
    try:
        pages = [_page_text(pdf, index) for index in range(len(pdf))]
        meta = pdf.get_metadata_dict(skip_empty=True)
    except pdfium.PdfiumError as exc:
        raise CorruptDocument(
            rel,
            f"could not extract the PDF's text (pdfium: {exc}); "
            "re-save or repair it (e.g. qpdf) and ingest again",
        ) from exc
    finally:
        pdf.close()
    pages, removed = strip_running_lines(pages)
    starts, offset = [], 0
    for text in pages:
        starts.append(offset)
        offset += len(text) + 2
    text = "\n\n".join(pages)
    if not text or text.isspace():
        raise DocumentError(
            rel,
            "needs_ocr",
            f"no text: needs OCR (none of its {len(pages)} page(s) has a text layer; probably "
            "scanned images); make a searchable copy with `ocrmypdf IN.pdf OUT.pdf` (Debian: "
            "apt install ocrmypdf) and ingest that",
        )
    extra: dict[str, Any] = {"page_starts": starts, "page_count": len(pages)}
    if removed:
        extra["running_lines_removed"] = removed
    if meta.get("Author"):
        extra["author"] = meta["Author"]
    return Parsed(text=text, title=meta.get("Title") or None, extra=extra)


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


def strip_running_lines(pages: list[str]) -> tuple[list[str], int]:
    """Pages without their running heads and feet, and how many lines were removed.

    A running line is one of the first or last RUNNING_EDGE_LINES lines of a page whose text,
    numbers aside ("Page 3 of 120", "NIKE, INC. 2019 FORM 10-K 47"), recurs at a page edge on at
    least half the pages (and on RUNNING_MIN_PAGES or more). Left in, it joins every chunk of the
    document: the same words in every embedding and every BM25 row, and a claim cut across it.
    """
    if len(pages) < RUNNING_MIN_PAGES:
        return pages, 0
    split = [page.split("\n") for page in pages]
    counts: dict[str, int] = {}
    for lines in split:
        edges = {_line_key(lines[i]) for i in _edge(len(lines)) if lines[i].strip()}
        for key in edges:
            counts[key] = counts.get(key, 0) + 1
    needed = max(RUNNING_MIN_PAGES, (len(pages) + 1) // 2)
    running = {key for key, n in counts.items() if n >= needed}
    if not running:
        return pages, 0
    out, removed = [], 0
    for lines in split:
        edge = _edge(len(lines))
        kept = [x for i, x in enumerate(lines) if not (i in edge and _line_key(x) in running)]
        removed += len(lines) - len(kept)
        out.append("\n".join(kept).strip())
    return out, removed


def _edge(n: int) -> set[int]:
    """Positions of a page's edge lines: at most RUNNING_EDGE_LINES at each end and never more
    than a third of the page's lines there (the body of a short page is not its edge)."""
    width = min(RUNNING_EDGE_LINES, n // 3)
    return set(range(width)) | set(range(n - width, n)) if width else set()


def _page_text(pdf: pdfium.PdfDocument, index: int) -> str:
    page = pdf[index]
    try:
        textpage = page.get_textpage()
        try:
            raw = textpage.get_text_bounded()
        finally:
            textpage.close()
    finally:
        page.close()
    return _PDF_NEWLINES.sub("\n", raw).replace("\x0c", "").replace("\x00", "").strip()


# --- DOCX --------------------------------------------------------------------------------------

_DOCX_HEADING = re.compile(r"^heading ([1-9])$", re.IGNORECASE)
_DOCX_ERRORS = (zipfile.BadZipFile, OpcError, KeyError, ValueError, etree.XMLSyntaxError)


def parse_docx(path: Path, rel: str) -> Parsed:
    """Paragraphs and table rows in body order; Heading N / Title styles become headings."""
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
    offset = 0
    for text, level in blocks:
        if level is not None:
            headings.append(Heading(start=offset, level=level, title=text))
        parts.append(text)
        offset += len(text) + 2
    styled_title = next((text for text, level in blocks if level == 0), None)
    extra = {"author": author} if author else {}
    return Parsed(
        text="\n\n".join(parts),
        title=core_title or styled_title,
        headings=tuple(Heading(h.start, max(h.level, 1), h.title) for h in headings),
        extra=extra,
    )


def _docx_blocks(items: Iterator[Paragraph | Table]) -> Iterator[tuple[str, int | None]]:
    """(text, heading level) per non-empty block in body order; level 0 marks a Title paragraph."""
    for item in items:
        if isinstance(item, Paragraph):
            text = item.text.strip()
            if text:
                yield text, _docx_heading_level(item)
        else:
            rows = [_docx_row_text(row.cells) for row in item.rows]
            table_text = "\n".join(row for row in rows if row)
            if table_text:
                yield table_text, None


def _docx_heading_level(paragraph: Paragraph) -> int | None:
    name = paragraph.style.name if paragraph.style is not None else None
    if not name:
        return None
    if name.lower() == "title":
        return 0
    match = _DOCX_HEADING.match(name)
    return int(match.group(1)) if match else None


def _docx_row_text(cells: Any) -> str:
    texts: list[str] = []
    previous = None
    for cell in cells:
        if cell._tc is previous:  # a merged cell repeats once per grid column it spans
            continue
        previous = cell._tc
        texts.append(" ".join(cell.text.split()))
    return " | ".join(text for text in texts if text)
