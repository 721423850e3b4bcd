"""PDFs built by hand, byte by byte, for the loader tests and the PDF ingest benchmark."""

from __future__ import annotations

from dataclasses import dataclass, field


def _escape(line: str) -> bytes:
    text = line.encode("latin-1", "replace")
    return text.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def make_pdf(pages: list[str], *, title: str | None = None, trailer_extra: bytes = b"",
             font_size: int = 12, leading: int = 14, top: int = 720) -> bytes:
    """A minimal valid PDF: one Helvetica text line per input line, xref offsets exact."""
    bodies: list[bytes] = [b"", b"", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for text in pages:
        ops = (
            b"BT /F1 %d Tf 72 %d Td %d TL " % (font_size, top, leading)
            + b" ".join(b"(" + _escape(line) + b") Tj T*" for line in text.split("\n"))
            + b" ET"
        )
        bodies.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(ops), ops))
        bodies.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (len(bodies))
        )
        kids.append(len(bodies))
    bodies[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    bodies[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids),
        len(kids),
    )
    trailer = b"<< /Size %d /Root 1 0 R" % (len(bodies) + 2)
    if title is not None:
        bodies.append(b"<< /Title (" + title.encode("latin-1") + b") >>")
        trailer += b" /Info %d 0 R" % len(bodies)
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(bodies, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(bodies) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n" + trailer + trailer_extra + b" >>\nstartxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


# --- positioned text, for tables -----------------------------------------------------------------

# Helvetica's advance widths (1/1000 em) for ASCII 32..126, from its AFM: right-aligned numbers
# need them to line up as a typesetter would have set them.
_HELVETICA = (
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667,
    611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500,
    222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
)


def text_width(text: str, font_size: float) -> float:
    """The width in points of `text` set in Helvetica at `font_size`."""
    units = sum(_HELVETICA[ord(c) - 32] if 32 <= ord(c) < 127 else 556 for c in text)
    return units * font_size / 1000


@dataclass
class LayoutPage:
    """One page: text runs at (x, y) (baseline start, points, origin bottom left of the page as
    displayed) and ruling lines (x0, y0, x1, y1). `rotate=90` writes a portrait page with
    /Rotate 90 whose content is drawn sideways, so that it displays as this landscape layout."""

    texts: list[tuple[float, float, str]] = field(default_factory=list)
    lines: list[tuple[float, float, float, float]] = field(default_factory=list)
    rotate: int = 0
    font_size: float = 9


def make_layout_pdf(pages: list[LayoutPage]) -> bytes:
    """A valid PDF of text placed at given positions (like a filing printed from EDGAR HTML)."""
    bodies: list[bytes] = [b"", b"", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for page in pages:
        ops = _layout_ops(page)
        bodies.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(ops), ops))
        rotate = b" /Rotate %d" % page.rotate if page.rotate else b""
        bodies.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]%s "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (rotate, len(bodies))
        )
        kids.append(len(bodies))
    bodies[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    bodies[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids),
        len(kids),
    )
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(bodies, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(bodies) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(bodies) + 1,
        xref,
    )
    return bytes(out)


def _layout_ops(page: LayoutPage) -> bytes:
    def place(x: float, y: float) -> tuple[float, float]:
        # /Rotate 90 turns the page clockwise for display: displayed (x, y) is user (612 - y, x).
        return (612 - y, x) if page.rotate == 90 else (x, y)

    matrix = b"0 1 -1 0" if page.rotate == 90 else b"1 0 0 1"
    ops = [b"0.5 w"]
    for x0, y0, x1, y1 in page.lines:
        (a, b), (c, d) = place(x0, y0), place(x1, y1)
        ops.append(b"%.2f %.2f m %.2f %.2f l S" % (a, b, c, d))
    for x, y, text in page.texts:
        ux, uy = place(x, y)
        ops.append(
            b"BT /F1 %.1f Tf %s %.2f %.2f Tm (%s) Tj ET"
            % (page.font_size, matrix, ux, uy, _escape(text))
        )
    return b"\n".join(ops)


@dataclass
class Statement:
    """A financial statement as printed: title lines, header rows (cells per value column, a
    cell of None spans on from the left), body rows (label, values; "$" printed apart)."""

    title: list[str]
    header: list[list[str | None]]
    rows: list[tuple[str, list[str]]]
    stub: str = ""  # the header of the label column, on the last header row: "(In millions)"


def statement_texts(
    statement: Statement,
    *,
    top: float,
    left: float = 72,
    rights: tuple[float, ...] = (430, 520),
    leading: float = 12,
    font_size: float = 9,
    dollar_gap: float = 52,
) -> tuple[list[tuple[float, float, str]], float]:
    """The text runs of `statement` laid out whitespace-aligned (labels at `left`, each value
    column right-aligned at its `rights` x, a "$" in front of the column when the value has
    one), and the y below the last row."""
    texts: list[tuple[float, float, str]] = []
    y = top
    for line in statement.title:
        texts.append((306 - text_width(line, font_size) / 2, y, line))
        y -= leading
    for number, header in enumerate(statement.header):
        if number == len(statement.header) - 1 and statement.stub:
            texts.append((left, y, statement.stub))
        for column, cell in enumerate(header):
            if cell is None:
                continue
            span = column + 1
            while span < len(header) and header[span] is None:
                span += 1
            if span - column == 1:
                texts.append((rights[column] - text_width(cell, font_size), y, cell))
            else:  # centred over the columns it spans
                middle = (rights[column] - dollar_gap + rights[span - 1]) / 2
                texts.append((middle - text_width(cell, font_size) / 2, y, cell))
        y -= leading
    for label, values in statement.rows:
        texts.append((left, y, label))
        for right, value in zip(rights, values, strict=False):
            if value.startswith("$"):
                texts.append((right - dollar_gap, y, "$"))
                value = value[1:].strip()
            texts.append((right - text_width(value, font_size), y, value))
        y -= leading
    return texts, y


def grid_lines(
    top: float, bottom: float, xs: tuple[float, ...], rows: int
) -> list[tuple[float, float, float, float]]:
    """Ruling lines of a grid: `rows` equal rows between `top` and `bottom`, columns at `xs`."""
    step = (top - bottom) / rows
    lines = [(xs[0], top - i * step, xs[-1], top - i * step) for i in range(rows + 1)]
    lines += [(x, bottom, x, top) for x in xs]
    return lines


# --- filing-like table pages: the cases of tests/test_tables.py and benchmarks/pdf_tables.py ---

PROSE = (
    "The following table presents our consolidated balance sheets as of the dates shown. "
    "Amounts are in millions of dollars except per share data, and reflect the adoption of "
    "new accounting standards during the fiscal year."
)

BALANCE_SHEET = Statement(
    title=["NIKE, INC.", "CONSOLIDATED BALANCE SHEETS"],
    header=[["May 31,", None], ["2019", "2018"]],
    stub="(In millions)",
    rows=[
        ("ASSETS", []),
        ("Current assets:", []),
        ("Cash and equivalents", ["$4,466", "$4,249"]),
        ("Short-term investments", ["197", "996"]),
        ("Accounts receivable, net", ["4,272", "3,498"]),
        ("Inventories", ["5,622", "5,261"]),
        ("Prepaid expenses and other current assets", ["1,968", "1,130"]),
        ("Total current assets", ["16,525", "15,134"]),
        ("Property, plant and equipment, net", ["4,744", "4,454"]),
        ("Identifiable intangible assets, net", ["283", "285"]),
        ("Goodwill", ["154", "154"]),
        ("Deferred income taxes and other assets", ["2,011", "2,509"]),
        ("TOTAL ASSETS", ["$23,717", "$22,536"]),
    ],
)

LIABILITIES = Statement(
    title=["CONSOLIDATED BALANCE SHEETS (continued)"],
    header=[["May 31,", None], ["2019", "2018"]],
    stub="(In millions)",
    rows=[
        ("LIABILITIES AND SHAREHOLDERS' EQUITY", []),
        ("Current liabilities:", []),
        ("Current portion of long-term debt", ["$6", "$6"]),
        ("Notes payable", ["9", "336"]),
        ("Accounts payable", ["2,612", "2,279"]),
        ("Accrued liabilities", ["5,010", "3,269"]),
        ("Income taxes payable", ["229", "150"]),
        ("Total current liabilities", ["7,866", "6,040"]),
        ("Long-term debt", ["3,464", "3,468"]),
        ("Deferred income taxes and other liabilities", ["3,347", "3,216"]),
        ("Redeemable preferred stock", ["-", "-"]),
        ("Capital in excess of stated value", ["7,163", "6,384"]),
        ("Accumulated other comprehensive income (loss)", ["231", "(92)"]),
        ("Retained earnings (deficit)", ["(1,643)", "3,517"]),
        ("Total shareholders' equity", ["9,040", "9,812"]),
        ("TOTAL LIABILITIES AND SHAREHOLDERS' EQUITY", ["$23,717", "$22,536"]),
    ],
)

SEGMENTS = Statement(
    title=["REVENUES BY SEGMENT"],
    header=[["Year Ended May 31,", None, None, None, None], ["2019", "2018", "% Change",
                                                             "2017", "% Change"]],
    stub="(Dollars in millions)",
    rows=[
        ("North America", ["$15,902", "$14,855", "7%", "$15,216", "-2%"]),
        ("Europe, Middle East & Africa", ["9,812", "9,242", "6%", "7,970", "16%"]),
        ("Greater China", ["6,208", "5,134", "21%", "4,237", "21%"]),
        ("Asia Pacific & Latin America", ["5,254", "5,166", "2%", "4,737", "9%"]),
        ("Global Brand Divisions", ["42", "88", "-52%", "73", "21%"]),
        ("TOTAL NIKE BRAND", ["$37,218", "$34,485", "8%", "$32,233", "7%"]),
    ],
)

OPTIONS = Statement(
    title=["STOCK OPTIONS"],
    header=[["Shares", "Weighted average exercise price"]],
    stub="(Shares in millions)",
    rows=[
        ("Options outstanding May 31, 2018", ["90.6", "$37.98"]),
        ("Exercised", ["(18.8)", "28.37"]),
        ("Forfeited", ["(2.4)", "56.13"]),
        ("Granted", ["14.1", "81.06"]),
        ("Options outstanding May 31, 2019", ["83.5", "$46.97"]),
    ],
)

SELECTED = Statement(
    title=["SELECTED FINANCIAL DATA"],
    header=[["2019"]],
    stub="(In millions, except per share data)",
    rows=[
        ("Revenues", ["$39,117"]),
        ("Gross profit", ["17,474"]),
        ("Net income", ["4,029"]),
        ("Diluted earnings per common share", ["2.49"]),
        ("Cash flow from operations", ["5,903"]),
    ],
)


@dataclass
class TableCase:
    """Pages of a PDF and the tables a reader sees on them (body rows: label, values)."""

    name: str
    pages: list[LayoutPage]
    tables: list[list[tuple[str, list[str]]]]


def _prose_lines(y: float, left: float = 72, width: int = 95) -> tuple[list[tuple[float, float,
                                                                                  str]], float]:
    import textwrap

    texts = []
    for line in textwrap.wrap(PROSE, width):
        texts.append((left, y, line))
        y -= 12
    return texts, y - 12


def _value_rows(statement: Statement) -> list[tuple[str, list[str]]]:
    return [(label, values) for label, values in statement.rows if values]


def table_cases() -> list[TableCase]:
    """Filing-like pages: a whitespace-aligned statement under prose, a ruled grid, a
    two-column table, a statement spanning two pages and a rotated (landscape) page."""
    cases = []
    prose, y = _prose_lines(740)
    texts, _ = statement_texts(BALANCE_SHEET, top=y)
    cases.append(TableCase("whitespace", [LayoutPage(prose + texts)],
                           [_value_rows(BALANCE_SHEET)]))

    xs = (72, 300, 400, 540)
    rows = len(OPTIONS.rows) + 1
    texts = [(306 - text_width("STOCK OPTIONS", 9) / 2, 700, "STOCK OPTIONS")]
    grid_top, step = 690, 16
    cells = [(OPTIONS.stub, OPTIONS.header[0]), *OPTIONS.rows]
    for index, (label, values) in enumerate(cells):
        base = grid_top - index * step - 11
        texts.append((xs[0] + 3, base, label))
        for right, value in zip(xs[2:], values, strict=False):
            texts.append((right - 3 - text_width(str(value), 9), base, str(value)))
    lines = grid_lines(grid_top, grid_top - rows * step, xs, rows)
    cases.append(TableCase("ruled", [LayoutPage(prose_before(texts, 760), lines)],
                           [_value_rows(OPTIONS)]))

    prose, y = _prose_lines(740)
    texts, _ = statement_texts(SELECTED, top=y, rights=(520,))
    cases.append(TableCase("two_column", [LayoutPage(prose + texts)], [_value_rows(SELECTED)]))

    first, _ = statement_texts(BALANCE_SHEET, top=740)
    head = Statement(LIABILITIES.title, LIABILITIES.header, LIABILITIES.rows[:8],
                     LIABILITIES.stub)
    more, _ = statement_texts(head, top=740 - 12 * 19)
    tail = Statement([], [], LIABILITIES.rows[8:])
    rest, _ = statement_texts(tail, top=740)
    cases.append(TableCase("spanning", [LayoutPage(first + more), LayoutPage(rest)],
                           [_value_rows(BALANCE_SHEET), _value_rows(LIABILITIES)]))

    texts, _ = statement_texts(SEGMENTS, top=560, rights=(400, 470, 540, 610, 680))
    cases.append(TableCase("rotated", [LayoutPage(texts, rotate=90)], [_value_rows(SEGMENTS)]))
    return cases


def prose_before(texts: list[tuple[float, float, str]], y: float) -> list[tuple[float, float, str]]:
    """`texts` with the prose paragraph set above them from `y` down."""
    prose, _ = _prose_lines(y)
    return prose + texts
