"""Readable text from HTML: boilerplate dropped, blocks on their own lines, headings recorded."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser, LexborNode

from ragline.documents._tables import GridCell, Table, is_data_table, render, table_from_grid
from ragline.types import Heading

# Never content: code, styling, and page furniture (navigation, banners, forms).
DROPPED_TAGS = (
    "script",
    "style",
    "noscript",
    "template",
    "svg",
    "nav",
    "aside",
    "form",
    "iframe",
    "head",
    "object",
    "embed",
    "canvas",
    "button",
    "select",
)
# Page banners and footers are furniture, but an <article>'s own <header> holds its title.
PAGE_FURNITURE_TAGS = ("header", "footer")
PARAGRAPH_TAGS = frozenset(
    {
        "p",
        "pre",
        "blockquote",
        "section",
        "article",
        "main",
        "table",
        "ul",
        "ol",
        "dl",
        "figure",
        "figcaption",
        "hr",
        "address",
        "details",
        "summary",
        "fieldset",
        "body",
    }
)
LINE_TAGS = frozenset({"div", "li", "tr", "br", "dt", "dd", "caption", "thead", "tbody", "tfoot"})
CELL_TAGS = frozenset({"td", "th"})
HEADING_LEVELS = {f"h{n}": n for n in range(1, 7)}

_WHITESPACE = re.compile(r"\s+")
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.+-]+)""", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class HtmlText:
    text: str
    headings: tuple[Heading, ...]
    title: str | None
    tables: tuple[tuple[int, int], ...] = ()  # (start, end) of each data table in `text`


def declared_charset(data: bytes) -> str | None:
    """The encoding named by a BOM or a `<meta charset>` in the first 4 KB, if any."""
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    match = _CHARSET.search(data, 0, 4096)
    return match.group(1).decode("ascii").lower() if match else None


def extract_html(html: str) -> HtmlText:
    """Text of the page's content with block elements on separate lines."""
    tree = LexborHTMLParser(html)
    title = _page_title(tree)
    tree.strip_tags(list(DROPPED_TAGS))
    for node in tree.css(",".join(PAGE_FURNITURE_TAGS)):
        if not _inside_content(node):
            node.decompose()
    root = tree.body or tree.root
    builder = _TextBuilder()
    if root is not None:
        _walk(root, builder)
    text, headings = builder.finish()
    h1 = next((h.title for h in headings if h.level == 1), None)
    return HtmlText(text=text, headings=headings, title=title or h1, tables=tuple(builder.tables))


def _page_title(tree: LexborHTMLParser) -> str | None:
    node = tree.css_first("title")
    if node is None:
        return None
    title = _WHITESPACE.sub(" ", node.text()).strip()
    return title or None


def _inside_content(node: LexborNode) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.tag in ("article", "main"):
            return True
        parent = parent.parent
    return False


def _walk(root: LexborNode, out: _TextBuilder) -> None:
    """Depth-first over the tree without recursion (deeply nested pages must not overflow)."""
    stack: list[tuple[LexborNode, bool]] = [(root, True)]
    while stack:
        node, entering = stack.pop()
        tag = node.tag or ""
        if not entering:
            _leave(tag, out)
            continue
        if tag == "-text":
            out.add_text(node.text_content or "")
            continue
        if not node.is_element_node:
            continue  # comments, doctype
        if tag == "table" and (table := data_table(node)) is not None:
            out.add_table(table)
            continue
        _enter(tag, out)
        stack.append((node, False))
        children: list[LexborNode] = []
        child = node.first_child
        while child is not None:
            children.append(child)
            child = child.next
        stack.extend((c, True) for c in reversed(children))


def _children(node: LexborNode) -> list[LexborNode]:
    children: list[LexborNode] = []
    child = node.first_child
    while child is not None:
        if child.is_element_node:
            children.append(child)
        child = child.next
    return children


def data_table(node: LexborNode) -> Table | None:
    """The `<table>` as a `Table` when it holds data; None for a layout table (one cell per
    row, paragraphs, a table nested in a cell), whose text stays prose."""
    rows: list[list[GridCell]] = []
    marked = 0  # leading rows that the markup says are headers (<thead>, all <th>)
    pending: dict[int, tuple[int, GridCell]] = {}  # column -> (rows left, cell) of a rowspan
    caption = None
    for part in _children(node):
        if part.tag == "caption":
            caption = _WHITESPACE.sub(" ", part.text(separator=" ")).strip() or None
            continue
        trs = [part] if part.tag == "tr" else [r for r in _children(part) if r.tag == "tr"]
        for tr in trs:
            cells = [c for c in _children(tr) if c.tag in CELL_TAGS]
            if any(c.css_first("table") is not None for c in cells):
                return None
            if marked == len(rows) and cells and (
                part.tag == "thead" or all(c.tag == "th" for c in cells)
            ):
                marked += 1
            rows.append(_grid_row(cells, pending))
    if not rows:
        return None
    table = table_from_grid(rows, header_rows=marked or None, caption=caption)
    return table if table is not None and is_data_table(table) else None


def _grid_row(cells: list[LexborNode], pending: dict[int, tuple[int, GridCell]]) -> list[GridCell]:
    """One row's cells with the cells of earlier rows' rowspans slotted in (left empty)."""
    row: list[GridCell] = []
    column = 0
    queue = list(cells)
    while queue or any(c >= column for c in pending):
        if column in pending:
            left, cell = pending.pop(column)
            if left > 1:
                pending[column] = (left - 1, cell)
            row.append(GridCell("", cell.colspan))
            column += cell.colspan
            continue
        if not queue:
            column += 1
            continue
        node = queue.pop(0)
        cell = GridCell(node.text(separator=" "), _span(node, "colspan"))
        rowspan = _span(node, "rowspan")
        if rowspan > 1:
            pending[column] = (rowspan - 1, cell)
        row.append(cell)
        column += cell.colspan
    return row


def _span(node: LexborNode, name: str) -> int:
    value = (node.attributes.get(name) or "1").strip()
    return min(int(value), 1000) if value.isdigit() and int(value) > 0 else 1


def _enter(tag: str, out: _TextBuilder) -> None:
    if tag in HEADING_LEVELS:
        out.start_heading(HEADING_LEVELS[tag])
    elif tag in PARAGRAPH_TAGS:
        out.paragraph_break()
    elif tag in LINE_TAGS:
        out.line_break()
    elif tag in CELL_TAGS:
        out.cell_break()
    if tag == "pre":
        out.pre_depth += 1


def _leave(tag: str, out: _TextBuilder) -> None:
    if tag in HEADING_LEVELS:
        out.end_heading()
    elif tag in PARAGRAPH_TAGS:
        out.paragraph_break()
    elif tag in LINE_TAGS and tag != "br":
        out.line_break()
    if tag == "pre":
        out.pre_depth -= 1


_SEPARATOR_RANK = {"": 0, " | ": 1, "\n": 2, "\n\n": 3}


class _TextBuilder:
    """Appends text pieces, collapsing whitespace and turning block boundaries into newlines."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.pending = ""  # separator owed before the next text: "", " | ", "\n" or "\n\n"
        self.at_line_start = True
        self.pre_depth = 0
        self.headings: list[Heading] = []
        self.tables: list[tuple[int, int]] = []
        self._heading_level: int | None = None
        self._heading_first_part: int | None = None

    def add_text(self, raw: str) -> None:
        if self.pre_depth:
            text = raw
        else:
            text = _WHITESPACE.sub(" ", raw)
            if self.at_line_start or self.pending:
                text = text.lstrip(" ")
        if not text:
            return
        if self.pending and self.length:
            self._append(self.pending)
        self.pending = ""
        if self._heading_level is not None and self._heading_first_part is None:
            self._heading_first_part = len(self.parts)
        self._append(text)
        self.at_line_start = text.endswith("\n")

    def add_table(self, table: Table) -> None:
        """The table rendered as a block of its own; its span is recorded."""
        text = render(table).text
        self.paragraph_break()
        if self.pending and self.length:
            self._append(self.pending)
        self.pending = ""
        start = self.length
        self._append(text)
        self.tables.append((start, self.length))
        self.paragraph_break()

    def _append(self, text: str) -> None:
        self.parts.append(text)
        self.length += len(text)

    def _break(self, separator: str) -> None:
        self._trim_trailing_space()
        if _SEPARATOR_RANK[separator] > _SEPARATOR_RANK[self.pending]:
            self.pending = separator
        self.at_line_start = True

    def paragraph_break(self) -> None:
        self._break("\n\n")

    def line_break(self) -> None:
        self._break("\n")

    def cell_break(self) -> None:
        if not self.at_line_start:
            self._break(" | ")

    def _trim_trailing_space(self) -> None:
        if self.parts and not self.pre_depth and self.parts[-1].endswith(" "):
            last = self.parts[-1]
            self.parts[-1] = last.rstrip(" ")
            self.length -= len(last) - len(self.parts[-1])

    def start_heading(self, level: int) -> None:
        self.paragraph_break()
        self._heading_level = level
        self._heading_first_part = None

    def end_heading(self) -> None:
        self._trim_trailing_space()
        level, first = self._heading_level, self._heading_first_part
        self._heading_level = self._heading_first_part = None
        if level is not None and first is not None:
            title = "".join(self.parts[first:])
            start = self.length - len(title)
            self.headings.append(Heading(start=start, level=level, title=" ".join(title.split())))
        self.paragraph_break()

    def finish(self) -> tuple[str, tuple[Heading, ...]]:
        self._trim_trailing_space()
        return "".join(self.parts), tuple(self.headings)
