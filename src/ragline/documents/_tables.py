"""Tables kept as tables: one model for PDF, HTML and DOCX tables and one rendering of it.

A table renders as its caption, one header line, and one line per body row in which every
value carries its column header:

    CONSOLIDATED BALANCE SHEETS
    (In millions) | May 31, 2019 | May 31, 2018
    Total current assets | 2019: 16,525 | 2018: 15,134

so a row read on its own (a chunk, a claim, an extractive quote) still says what its numbers
are. Cell text is kept as printed ("(1,643)", "$4,466", "-52%"); only whitespace is collapsed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CELL_SEPARATOR = " | "
MAX_HEADER_ROWS = 4
# A cell this long is a paragraph: the table around it lays out a page rather than data.
MAX_DATA_CELL_CHARS = 300

_SPACES = re.compile(r"\s+")
# A number as statements print it: "16,525", "(1,643)", "$4,466", "-52%", "2.49", "$ (12.5)".
_NUMBER = re.compile(r"[-+\u2212]?[($\u20ac\u00a3\u00a5]*\s*[-\u2212]?\d[\d,]*(?:\.\d+)?\s*[)%]*")
_NIL = frozenset({"-", "\u2013", "\u2014", "--", "\u2014\u2014", "n/a", "nm", "*"})
_YEAR = re.compile(r"(?:FY\s?)?(?:19|20)\d\d")
_CURRENCY = frozenset({"$", "\u20ac", "\u00a3", "\u00a5", "US$"})
_CLOSERS = frozenset({")", "%", ")%", "%)"})
_UNIT_NOTE = re.compile(r"\b(?:in|dollars|amounts|shares|units)\b.*\b(?:thousands|millions|"
                        r"billions|except)\b|^\(.*\)$", re.IGNORECASE)
# A rendered body row: a label, then at least one "header: value" cell.
_ROW_LINE = re.compile(r"^[^|\n]*(?: \| [^|\n]+)+$")


@dataclass(frozen=True, slots=True)
class Table:
    """Header rows and body rows of cell strings, all `width` wide; column 0 holds the row
    labels (its header cell, if any, is the stub: "(In millions)")."""

    header: tuple[tuple[str, ...], ...]
    body: tuple[tuple[str, ...], ...]
    caption: str | None = None

    @property
    def width(self) -> int:
        return max((len(row) for row in (*self.header, *self.body)), default=0)


@dataclass(frozen=True, slots=True)
class Rendered:
    """A table's text and the (start, end) of each of its lines in it; `body` is the index of
    the first body row's line (lines before it are the caption and the header line)."""

    text: str
    lines: tuple[tuple[int, int], ...]
    body: int


def cell_text(text: str) -> str:
    """A cell as one line: whitespace collapsed, and no stray cell separator inside it."""
    return _SPACES.sub(" ", text).strip().replace(CELL_SEPARATOR, " / ")


def is_number(text: str) -> bool:
    """A value cell as statements print them (a year counts: "2019"), or a dash for nil."""
    t = text.strip()
    return t.casefold() in _NIL or _NUMBER.fullmatch(t) is not None


def is_year(text: str) -> bool:
    return _YEAR.fullmatch(text.strip()) is not None


def is_body_value(text: str) -> bool:
    """A number that is data rather than a column header (years are headers)."""
    return is_number(text) and not is_year(text)


def is_table_line(line: str) -> bool:
    """Whether a line of text is a rendered table line (a row or a header line)."""
    return CELL_SEPARATOR in line and _ROW_LINE.match(line) is not None


def is_table_row(line: str) -> bool:
    """Whether a line is a rendered body row: a value that carries its header ("2019: 16,525")."""
    if not is_table_line(line):
        return False
    return any(": " in cell for cell in line.split(CELL_SEPARATOR)[1:])


# --- rendering ---------------------------------------------------------------------------------


def column_labels(table: Table) -> tuple[str, list[str], list[str]]:
    """The stub, each value column's full header ("May 31, 2019") and the short header a row
    repeats ("2019"): header rows the same over every value column go in the header line only."""
    width = table.width
    rows = [(*row, *("",) * (width - len(row))) for row in table.header]
    stub = " ".join(_distinct(row[0] for row in rows))
    common = {
        index
        for index, row in enumerate(rows)
        if width > 2 and row[1] and all(cell == row[1] for cell in row[2:])
    }
    full, short = [], []
    for column in range(1, width):
        full.append(" ".join(_distinct(row[column] for row in rows)))
        kept = (row[column] for index, row in enumerate(rows) if index not in common)
        short.append(" ".join(_distinct(kept)) or full[-1])
    return stub, full, short


def _distinct(cells: Iterable[str]) -> list[str]:
    """Non-empty cells without consecutive repeats (a cell spanning two header rows)."""
    out: list[str] = []
    for cell in cells:
        if cell and (not out or out[-1] != cell):
            out.append(cell)
    return out


def render_lines(table: Table) -> tuple[list[str], int]:
    """The lines of a table (caption, header line, one per body row) and where the body starts."""
    stub, full, short = column_labels(table)
    lines = [table.caption] if table.caption else []
    if any(full):
        lines.append(CELL_SEPARATOR.join(x for x in (stub, *full) if x))
    body = len(lines)
    for row in table.body:
        label, values = (row[0] if row else ""), row[1:]
        cells = [f"{name}: {value}" if name else value
                 for name, value in zip(short, values, strict=False) if value]
        line = CELL_SEPARATOR.join(x for x in (label, *cells) if x)
        if line:
            lines.append(line)
    return lines, body


def render(table: Table) -> Rendered:
    """The table's text (lines joined by newlines) and where each line sits in it."""
    lines, body = render_lines(table)
    spans, offset = [], 0
    for line in lines:
        spans.append((offset, offset + len(line)))
        offset += len(line) + 1
    return Rendered("\n".join(lines), tuple(spans), body)


# --- tables from cell grids (HTML, DOCX, ruled PDF tables) ---------------------------------------


@dataclass(frozen=True, slots=True)
class GridCell:
    """A cell as a markup table has it: its text and how many grid columns it spans."""

    text: str
    colspan: int = 1


_Expanded = list[list[tuple[str, int]]]  # per grid column: (text, id of the cell it comes from)


def table_from_grid(
    rows: Sequence[Sequence[GridCell]],
    *,
    header_rows: int | None = None,
    caption: str | None = None,
) -> Table | None:
    """A `Table` from rows of cells as markup lays them out (None when nothing is left).

    Spacer columns are dropped, a "$" in a cell of its own joins the number after it and a ")"
    or "%" the one before it (EDGAR's layout), header rows are found when the markup does not
    say (rows before the first row label whose values are years or text), and leading rows made
    of one cell spanning the whole table become the caption.
    """
    grid = [row for row in _expand(rows) if any(text for text, _ in row)]
    if not grid:
        return None
    titles: list[str] = []
    while len(grid) > 1 and len(grid[0]) > 1 and len({key for _, key in grid[0]}) == 1:
        titles.append(grid.pop(0)[0][0])
        header_rows = None if header_rows is None else max(0, header_rows - 1)
    count = _header_count(grid) if header_rows is None else min(header_rows, len(grid))
    header = [[cell_text(t) for t, _ in row] for row in grid[:count]]
    body = [_body_cells(row) for row in grid[count:]]
    for row in body:
        _glue_symbols(row)
    header, body = _drop_empty_columns(header, body, grid[:count])
    if not body or not any(any(row) for row in body):
        return None
    caption = " ".join(x for x in (caption, *titles) if x) or None
    return Table(tuple(map(tuple, header)), tuple(map(tuple, body)), caption)


def _expand(rows: Sequence[Sequence[GridCell]]) -> _Expanded:
    """Each row as one entry per grid column (a spanning cell repeated), all rows equally wide."""
    out: _Expanded = []
    key = 0
    for row in rows:
        expanded: list[tuple[str, int]] = []
        for cell in row:
            key += 1
            expanded.extend([(cell_text(cell.text), key)] * max(1, cell.colspan))
        out.append(expanded)
    width = max((len(row) for row in out), default=0)
    for padded in out:
        while len(padded) < width:
            key += 1
            padded.append(("", key))
    return out


def _body_cells(row: list[tuple[str, int]]) -> list[str]:
    """A body row's texts with a spanning cell's text in its first column only."""
    cells, previous = [], None
    for text, key in row:
        cells.append(text if key != previous else "")
        previous = key
    return cells


def _header_count(grid: _Expanded) -> int:
    count = 0
    for index, row in enumerate(grid[:MAX_HEADER_ROWS]):
        first = row[0][0]
        values = [t for t, _ in _origins(row[1:], row[0][1]) if t]
        if not values or any(is_body_value(v) for v in values):
            break
        generic_head = index == 0 and first and all(t for t, _ in row) and len(grid) > 1
        if not (not first or _UNIT_NOTE.search(first) or all(is_year(v) for v in values)
                or generic_head):
            break
        count += 1
    return count if count < len(grid) else 0


def _origins(row: list[tuple[str, int]], before: int) -> list[tuple[str, int]]:
    """The cells of a row once each (not the columns a spanning cell repeats into)."""
    out, previous = [], before
    for text, key in row:
        if key != previous:
            out.append((text, key))
        previous = key
    return out


def _glue_symbols(row: list[str]) -> None:
    """EDGAR prints "$" and ")" in cells of their own: join them to their number, in place."""
    for index, text in enumerate(row):
        if text in _CURRENCY:
            after = next((j for j in range(index + 1, len(row)) if row[j]), None)
            if after is not None and is_number(row[after]):
                row[after], row[index] = text + row[after], ""
        elif text in _CLOSERS:
            before = next((j for j in range(index - 1, 0, -1) if row[j]), None)
            if before is not None and is_number(row[before] + text):
                row[before], row[index] = row[before] + text, ""


def _drop_empty_columns(
    header: list[list[str]], body: list[list[str]], expanded: _Expanded
) -> tuple[list[list[str]], list[list[str]]]:
    """Keep the columns that hold body values; a header over a dropped column that no kept
    column shares (misaligned markup) moves to the nearest kept column without a header."""
    width = max((len(row) for row in (*header, *body)), default=0)
    keep = [column for column in range(width) if any(row[column] for row in body)]
    for number, row in enumerate(header):
        kept_keys = {expanded[number][column][1] for column in keep}
        for column in range(width):
            key = expanded[number][column][1]
            if column in keep or not row[column] or key in kept_keys:
                continue
            home = _nearest_free(keep, column, header)
            if home is not None:
                for other in header:
                    if not other[home]:
                        other[home] = other[column]
                kept_keys.add(key)
    header = [[row[c] for c in keep] for row in header]
    body = [[row[c] for c in keep] for row in body]
    return [row for row in header if any(row)], body


def _nearest_free(keep: list[int], column: int, header: list[list[str]]) -> int | None:
    candidates = sorted((c for c in keep if c > 0), key=lambda c: (abs(c - column), c < column))
    return next((c for c in candidates if not any(row[c] for row in header)), None)


def is_data_table(table: Table) -> bool:
    """Whether a table holds data (render it as a table) rather than lay out a page (keep its
    text as prose): two columns or more, no paragraph-sized cell, and numbers, a header row,
    or two rows of several short cells."""
    cells = [cell for row in (*table.header, *table.body) for cell in row]
    if table.width < 2 or any(len(cell) > MAX_DATA_CELL_CHARS for cell in cells):
        return False
    if any(is_body_value(cell) for row in table.body for cell in row[1:]):
        return True
    full_rows = sum(1 for row in table.body if sum(1 for cell in row if cell) >= 2)
    return (bool(table.header) and full_rows >= 1) or full_rows >= 2
