"""Tables on PDF pages, found with pdfplumber's layout: ruled grids by its line finder, and
whitespace-aligned statements (what EDGAR filings print) by columns of right-aligned numbers.

Only pages whose pypdfium2 text looks tabular (`looks_tabular`) come here: pdfminer's layout
analysis costs tens of milliseconds a page, pypdfium2's text a fraction of one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ragline.documents._tables import (
    GridCell,
    Table,
    cell_text,
    is_body_value,
    is_number,
    table_from_grid,
)

TABULAR_MIN_LINES = 3  # lines ending in numbers that make a page worth a table search
CELL_GAP_EM = 0.8  # a gap this wide (in font sizes) between words separates two cells
MAX_SECTION_LINES = 3  # label-only lines ("Current assets:") allowed between value rows
MAX_HEADER_LINES = 3
MAX_CAPTION_LINES = 2
MAX_HEADER_CELL_CHARS = 40
MAX_CAPTION_CHARS = 90

_LEADER = re.compile(r"[.\u2026_\u00b7]{3,}")  # dot leaders between a label and its numbers
_CURRENCY = frozenset({"$", "\u20ac", "\u00a3", "\u00a5"})
_SIMPLE_INT = re.compile(r"\d{1,3}")


def looks_tabular(text: str) -> bool:
    """Whether a page's plain text has TABULAR_MIN_LINES lines that end like table rows: two
    numbers or more, or one printed as an amount ("4,466", "(92)", "$39.1", "7%")."""
    count = 0
    for line in text.split("\n"):
        tokens = [t for t in line.split() if t not in _CURRENCY]
        numbers = 0
        for token in reversed(tokens):
            if not is_number(token):
                break
            numbers += 1
        if numbers >= 2 or (numbers == 1 and len(tokens) > 1 and _amount(tokens[-1])):
            count += 1
            if count >= TABULAR_MIN_LINES:
                return True
    return False


def _amount(token: str) -> bool:
    return is_body_value(token) and _SIMPLE_INT.fullmatch(token) is None


# --- page layout -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Cell:
    x0: float
    x1: float
    text: str


@dataclass(slots=True)
class _Line:
    top: float
    bottom: float
    size: float
    cells: list[_Cell] = field(default_factory=list)

    @property
    def x0(self) -> float:
        return self.cells[0].x0

    @property
    def x1(self) -> float:
        return self.cells[-1].x1

    @property
    def text(self) -> str:
        return " ".join(cell.text for cell in self.cells)

    def values(self) -> list[_Cell]:
        """The cells after the first that are numbers (a row's values)."""
        return [cell for cell in self.cells[1:] if is_number(cell.text)]

    def is_value_row(self) -> bool:
        """A label (or none) followed by values, at least one of them data, not a year."""
        values = self.values()
        if not values or not any(is_body_value(cell.text) for cell in values):
            return False
        first_is_value = is_number(self.cells[0].text)
        return len(values) == len(self.cells) - 1 or not first_is_value


@dataclass(frozen=True, slots=True)
class PageTable:
    """A table found on a page, its box (x0, top, x1, bottom in pdfplumber's coordinates:
    points from the top left of the page as displayed) and whether it has a header of its own."""

    table: Table
    bbox: tuple[float, float, float, float]
    headed: bool


def page_lines(words: Sequence[dict[str, Any]]) -> list[_Line]:
    """Words grouped into lines (top to bottom) and, within a line, into cells at wide gaps."""
    lines: list[_Line] = []
    rows: list[list[dict[str, Any]]] = []
    for word in sorted(words, key=lambda w: (float(w["top"]), float(w["x0"]))):
        size = float(word.get("size") or (word["bottom"] - word["top"]))
        if rows and abs(float(word["top"]) - float(rows[-1][0]["top"])) <= max(2.0, 0.3 * size):
            rows[-1].append(word)
        else:
            rows.append([word])
    for row in rows:
        row.sort(key=lambda w: float(w["x0"]))
        size = max(float(w.get("size") or (w["bottom"] - w["top"])) for w in row)
        line = _Line(min(float(w["top"]) for w in row), max(float(w["bottom"]) for w in row), size)
        gap = CELL_GAP_EM * size
        for word in row:
            text = str(word["text"])
            if _LEADER.fullmatch(text):
                line.cells.append(_Cell(float(word["x0"]), float(word["x0"]), ""))
                continue
            last = line.cells[-1] if line.cells else None
            if last is not None and last.text and float(word["x0"]) - last.x1 < gap:
                last.text, last.x1 = f"{last.text} {text}", float(word["x1"])
            else:
                line.cells.append(_Cell(float(word["x0"]), float(word["x1"]), text))
        line.cells = _glued([c for c in line.cells if c.text])
        if line.cells:
            lines.append(line)
    return lines


def _glued(cells: list[_Cell]) -> list[_Cell]:
    """A "$" set apart joins the number after it; a lone ")" or "%" the number before it."""
    out: list[_Cell] = []
    for cell in cells:
        joins = out and (
            (out[-1].text in _CURRENCY and is_number(cell.text))
            or (cell.text in (")", "%") and is_number(out[-1].text + cell.text))
        )
        if joins:
            out[-1] = _Cell(out[-1].x0, cell.x1, out[-1].text + cell.text)
        else:
            out.append(cell)
    return out


# --- whitespace-aligned tables -------------------------------------------------------------------


@dataclass(slots=True)
class _Columns:
    """Value columns of a table: each one's left and right edge, in x order."""

    spans: list[tuple[float, float]]
    tolerance: float

    @property
    def left(self) -> float:
        return self.spans[0][0]

    def of(self, cell: _Cell) -> int:
        """The column a value cell belongs to: the one it ends in, else the one it overlaps
        most, else the nearest."""
        for index, (_, right) in enumerate(self.spans):
            if abs(cell.x1 - right) <= self.tolerance:
                return index
        overlaps = [min(cell.x1, r) - max(cell.x0, left) for left, r in self.spans]
        best = max(range(len(overlaps)), key=lambda i: overlaps[i])
        if overlaps[best] > 0:
            return best
        middle = (cell.x0 + cell.x1) / 2
        return min(range(len(self.spans)), key=lambda i: abs(sum(self.spans[i]) / 2 - middle))

    def zones(self, cell: _Cell) -> list[int]:
        """The columns a header cell stands over: zones split halfway between columns."""
        bounds = [self.left - 4 * self.tolerance]
        for (_, right), (left, _) in zip(self.spans, self.spans[1:], strict=False):
            bounds.append((right + left) / 2)
        bounds.append(float("inf"))
        hit = [i for i in range(len(self.spans)) if cell.x0 < bounds[i + 1] and cell.x1 > bounds[i]]
        return hit or [self.of(cell)]


def _columns(rows: list[_Line]) -> _Columns:
    """Value columns from where the rows' values end (statements right-align numbers)."""
    size = max(line.size for line in rows)
    tolerance = 0.5 * size
    cells = sorted((c for line in rows for c in line.values()), key=lambda c: c.x1)
    groups: list[list[_Cell]] = []
    for cell in cells:
        if groups and cell.x1 - groups[-1][-1].x1 <= tolerance:
            groups[-1].append(cell)
        else:
            groups.append([cell])
    spans = [(min(c.x0 for c in g), max(c.x1 for c in g)) for g in groups]
    merged: list[tuple[float, float]] = []
    for left, right in spans:  # a cell reaching into the column before it: one column
        if merged and left < merged[-1][1] - tolerance:
            merged[-1] = (min(left, merged[-1][0]), max(right, merged[-1][1]))
        else:
            merged.append((left, right))
    return _Columns(merged, tolerance)


def whitespace_tables(lines: list[_Line]) -> list[tuple[int, int, PageTable]]:
    """(first line, last line, table) for each whitespace-aligned table among `lines`."""
    found: list[tuple[int, int, PageTable]] = []
    index = 0
    while index < len(lines):
        if not lines[index].is_value_row():
            index += 1
            continue
        last = _run_end(lines, index)
        rows = [line for line in lines[index : last + 1] if line.is_value_row()]
        one_column = len({round(c.x1) for line in rows for c in line.values()}) <= 1
        if len(rows) < 2 or (one_column and len(rows) < TABULAR_MIN_LINES):
            index = last + 1
            continue
        columns = _columns(rows)
        first, header, caption = _above(lines, index, columns, min(line.x0 for line in rows))
        table = _build(lines[first : last + 1], header, caption, columns)
        block = lines[first - len(header) - len(caption) : last + 1]
        bbox = (min(line.x0 for line in block), block[0].top,
                max(line.x1 for line in block), block[-1].bottom)
        found.append((first - len(header) - len(caption), last,
                      PageTable(table, bbox, headed=bool(header))))
        index = last + 1
    return found


def _run_end(lines: list[_Line], start: int) -> int:
    """The last value row of the run of value rows from `start` (label-only lines between)."""
    last = start
    value_left = min(c.x0 for c in lines[start].values())
    for index in range(start + 1, len(lines)):
        line, above = lines[index], lines[index - 1]
        if line.top - above.bottom > 2.5 * line.size:
            break
        if line.is_value_row():
            last = index
            value_left = min(value_left, *(c.x0 for c in line.values()))
        elif not (_label_only(line, value_left) and index - last <= MAX_SECTION_LINES):
            break
    return last


def _label_only(line: _Line, value_left: float) -> bool:
    return len(line.cells) == 1 and line.x1 < value_left and len(line.text) <= 120


def _above(
    lines: list[_Line], first_row: int, columns: _Columns, label_x: float
) -> tuple[int, list[_Line], list[_Line]]:
    """Above a table's first value row: its section lines (the body starts at the returned
    index), then its header lines, then caption lines (each list top to bottom)."""
    first = first_row
    while (first > 0 and first_row - first < MAX_SECTION_LINES
           and _label_only(lines[first - 1], columns.left)
           and abs(lines[first - 1].x0 - label_x) <= 3 * lines[first - 1].size
           and _close(lines[first - 1], lines[first])):
        first -= 1
    header: list[_Line] = []
    at = first
    while at > 0 and len(header) < MAX_HEADER_LINES and _close(lines[at - 1], lines[at]):
        if not _is_header_line(lines[at - 1], columns, label_x):
            break
        at -= 1
        header.insert(0, lines[at])
    if not header:  # a table continued from the page before: no header, no caption
        return first, header, []
    caption: list[_Line] = []
    while (at > 0 and len(caption) < MAX_CAPTION_LINES and _close(lines[at - 1], lines[at])
           and len(lines[at - 1].cells) == 1 and len(lines[at - 1].text) <= MAX_CAPTION_CHARS
           and not lines[at - 1].text.endswith(".")):
        at -= 1
        caption.insert(0, lines[at])
    return first, header, caption


def _close(upper: _Line, lower: _Line) -> bool:
    return lower.top - upper.bottom <= 1.5 * lower.size


def _is_header_line(line: _Line, columns: _Columns, label_x: float) -> bool:
    """A stub at the labels' x ("(In millions)") and short cells over the value columns."""
    stubs = [c for c in line.cells if c.x1 < columns.left - columns.tolerance]
    over = [c for c in line.cells if c not in stubs]
    if len(stubs) > 1 or not over:
        return False
    if stubs and abs(stubs[0].x0 - label_x) > 3 * line.size:
        return False
    return all(c.x0 >= columns.left - 4 * columns.tolerance and not is_body_value(c.text)
               and len(c.text) <= MAX_HEADER_CELL_CHARS for c in over)


def _build(body: list[_Line], header: list[_Line], caption: list[_Line],
           columns: _Columns) -> Table:
    width = len(columns.spans) + 1
    head_rows: list[tuple[str, ...]] = []
    for number, line in enumerate(header):
        row = [""] * width
        over = [c for c in line.cells if c.x1 >= columns.left - columns.tolerance]
        for cell in line.cells:
            if cell not in over:
                row[0] = cell_text(cell.text)
        spans_all = len(over) == 1 and number < len(header) - 1 and width > 2
        for cell in over:
            for column in range(width - 1) if spans_all else columns.zones(cell):
                row[column + 1] = " ".join(x for x in (row[column + 1], cell_text(cell.text)) if x)
        head_rows.append(tuple(row))
    body_rows: list[tuple[str, ...]] = []
    pending_label = ""
    for line in body:
        row = [""] * width
        labels = [c for c in line.cells
                  if c.x0 < columns.left - columns.tolerance and not is_number(c.text)]
        for cell in line.cells:
            if cell not in labels:
                column = columns.of(cell) + 1
                row[column] = " ".join(x for x in (row[column], cell.text) if x)
        label = cell_text(" ".join(c.text for c in labels))
        if not line.is_value_row() and label:
            if pending_label:
                body_rows.append((pending_label, *[""] * (width - 1)))
            pending_label = label
            continue
        if pending_label and label[:1].islower():  # a label wrapped onto this row's line
            label = f"{pending_label} {label}"
        elif pending_label:
            body_rows.append((pending_label, *[""] * (width - 1)))
        pending_label = ""
        row[0] = label
        body_rows.append(tuple(row))
    if pending_label:
        body_rows.append((pending_label, *[""] * (width - 1)))
    title = " ".join(cell_text(line.text) for line in caption) or None
    return Table(tuple(head_rows), tuple(body_rows), title)


# --- ruled tables ----------------------------------------------------------------------------------

_LINE_SETTINGS = {"vertical_strategy": "lines", "horizontal_strategy": "lines"}


def ruled_tables(page: Any) -> list[PageTable]:
    """Tables drawn as grids of lines, by pdfplumber's line finder."""
    found = []
    for candidate in page.find_tables(_LINE_SETTINGS):
        rows = candidate.extract()
        if len(rows) < 2 or max(len(row) for row in rows) < 2:
            continue
        grid = []
        for row in rows:
            cells: list[GridCell] = []
            for text in row:
                if text is None and cells:  # a merged cell: the one before spans on
                    cells[-1] = GridCell(cells[-1].text, cells[-1].colspan + 1)
                else:
                    cells.append(GridCell(text or ""))
            grid.append(cells)
        table = table_from_grid(grid)
        if table is not None:
            x0, top, x1, bottom = (float(v) for v in candidate.bbox)
            found.append(PageTable(table, (x0, top, x1, bottom), headed=bool(table.header)))
    return found


def _with_caption(table: PageTable, lines: list[_Line]) -> PageTable:
    """A ruled table with the short line(s) printed just above its grid as its caption."""
    x0, top, x1, bottom = table.bbox
    above = [line for line in lines if line.bottom <= top]
    caption: list[_Line] = []
    while (above and len(caption) < MAX_CAPTION_LINES and len(above[-1].cells) == 1
           and (caption[0].top if caption else top) - above[-1].bottom <= 1.5 * above[-1].size
           and len(above[-1].text) <= MAX_CAPTION_CHARS and not above[-1].text.endswith(".")):
        caption.insert(0, above.pop())
    if not caption or table.table.caption:
        return table
    title = " ".join(cell_text(line.text) for line in caption)
    body = table.table
    return PageTable(Table(body.header, body.body, title),
                     (min(x0, caption[0].x0), caption[0].top, max(x1, caption[0].x1), bottom),
                     table.headed)


# --- a page's text with its tables -----------------------------------------------------------------

Prose = Callable[[tuple[float, float, float, float]], str]
"""The page's own text inside a box (x0, top, x1, bottom), in reading order."""


@dataclass(frozen=True, slots=True)
class PagePart:
    """A piece of a page's text: prose, or a table."""

    text: str = ""
    table: PageTable | None = None


def page_parts(page: Any, prose: Prose | None = None) -> list[PagePart] | None:
    """The page as prose and tables in reading order (top to bottom), or None when it has no
    table. `prose` reads the text between tables (default: pdfplumber's words, line by line)."""
    ruled = ruled_tables(page)
    words = page.extract_words(extra_attrs=["size"])
    words = [w for w in words if not any(_inside(w, t.bbox) for t in ruled)]
    lines = page_lines(words)
    ruled = [_with_caption(table, lines) for table in ruled]
    lines = [line for line in lines if not any(_line_inside(line, t.bbox) for t in ruled)]
    tables = ruled + [table for _, _, table in whitespace_tables(lines)]
    if not tables:
        return None
    tables.sort(key=lambda t: t.bbox[1])
    if prose is None:
        prose = _words_prose(lines)
    width, height = float(page.width), float(page.height)
    parts: list[PagePart] = []
    top = 0.0
    for table in tables:
        x0, t_top, x1, bottom = table.bbox
        parts.append(PagePart(prose((0.0, top, width, t_top))))
        parts.append(PagePart(table=table))
        parts.append(PagePart(prose((0.0, t_top, x0, bottom))))
        parts.append(PagePart(prose((x1, t_top, width, bottom))))
        top = max(top, bottom)
    parts.append(PagePart(prose((0.0, top, width, height))))
    return [part for part in parts if part.table is not None or part.text.strip()]


def _inside(word: dict[str, Any], bbox: Sequence[float]) -> bool:
    x0, top, x1, bottom = bbox
    middle_x = (float(word["x0"]) + float(word["x1"])) / 2
    middle_y = (float(word["top"]) + float(word["bottom"])) / 2
    return x0 <= middle_x <= x1 and top <= middle_y <= bottom


def _line_inside(line: _Line, bbox: Sequence[float]) -> bool:
    middle = (line.top + line.bottom) / 2
    return bbox[1] <= middle <= bbox[3] and bbox[0] <= line.x0 and line.x1 <= bbox[2] + 1


def _words_prose(lines: list[_Line]) -> Prose:
    def prose(box: tuple[float, float, float, float]) -> str:
        x0, top, x1, bottom = box
        kept = []
        for line in lines:
            middle = (line.top + line.bottom) / 2
            if top <= middle < bottom:
                cells = [c.text for c in line.cells if x0 <= (c.x0 + c.x1) / 2 < x1]
                if cells:
                    kept.append(" ".join(cells))
        return "\n".join(kept)

    return prose
