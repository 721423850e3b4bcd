"""Table extraction from filing-like PDF pages: correct cells, tables found and seconds per page,
for pypdfium2's text, pdfplumber (lines and text strategies), camelot (lattice and stream, when
installed) and ragline's PDF loader (pdfplumber's layout + `documents/_pdf_tables.py`).

    python benchmarks/pdf_tables.py [--repeat 3] [--json]

The pages are generated (`tests/pdfs.py: table_cases`), so anyone can rerun this offline: a
whitespace-aligned balance sheet under a paragraph (as EDGAR filings print, no rules), a ruled
grid, a two-column table, a statement spanning two pages, and a rotated (landscape) page. A
cell is correct when the row with that label holds that value in that position ("$" and ")"
printed apart count as part of their number); a table is found when 80% of its cells are.
camelot is not a ragline dependency: run the script with an interpreter that has it
(`pip install camelot-py`) to fill in its rows.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.pdfs import TableCase, make_layout_pdf, table_cases  # noqa: E402

Rows = list[list[str]]
Extractor = Callable[[Path], list[Rows]]
FOUND_SHARE = 0.8


def pypdfium2_text(path: Path) -> list[Rows]:
    """pypdfium2's text, each line cut into a label and the numbers that end it."""
    import pypdfium2 as pdfium

    from ragline.documents._tables import is_number

    pdf = pdfium.PdfDocument(path)
    tables = []
    for page in pdf:
        text = page.get_textpage().get_text_bounded()
        rows = []
        for line in text.splitlines():
            tokens = line.split()
            values: list[str] = []
            while tokens and (is_number(tokens[-1]) or tokens[-1] == "$"):
                values.insert(0, tokens.pop())
            if values:
                rows.append([" ".join(tokens), *values])
        tables.append(rows)
    pdf.close()
    return tables


def pdfplumber_strategy(strategy: str) -> Extractor:
    def extract(path: Path) -> list[Rows]:
        import pdfplumber

        settings = {"vertical_strategy": strategy, "horizontal_strategy": strategy}
        with pdfplumber.open(path) as pdf:
            return [[[c or "" for c in row] for row in table]
                    for page in pdf.pages for table in page.extract_tables(settings)]

    return extract


def camelot_flavor(flavor: str) -> Extractor:
    def extract(path: Path) -> list[Rows]:
        import camelot

        found = camelot.read_pdf(str(path), pages="all", flavor=flavor)
        return [table.df.values.tolist() for table in found]

    return extract


def ragline_loader(path: Path) -> list[Rows]:
    import pdfplumber

    from ragline.documents._pdf_tables import page_parts

    tables = []
    with pdfplumber.open(path) as pdf:
        for page in pdf.pages:
            for part in page_parts(page) or []:
                if part.table is not None:
                    tables.append([list(row) for row in part.table.table.body])
    return tables


# --- scoring -----------------------------------------------------------------------------------

_SPACE = re.compile(r"\s+")


def _norm(text: str) -> str:
    return _SPACE.sub(" ", text.replace("\u2019", "'")).strip().casefold()


def _value(text: str) -> str:
    return text.replace(" ", "")


def _row_cells(row: list[str]) -> list[str]:
    """A row's non-empty cells, a lone "$" joined to the next one, a lone ")" to the one before."""
    out: list[str] = []
    for cell in (_SPACE.sub(" ", str(c)).strip() for c in row):
        if not cell:
            continue
        if out and (out[-1] == "$" or cell in (")", "%")):
            out[-1] += cell
        else:
            out.append(cell)
    return out


def score(case: TableCase, found: list[Rows]) -> tuple[int, int, int]:
    """(correct cells, cells, tables found) of one case."""
    rows: dict[str, list[list[str]]] = {}
    for table in found:
        for row in table:
            cells = _row_cells(row)
            if cells:
                rows.setdefault(_norm(cells[0]), []).append(cells[1:])
    correct = total = tables = 0
    for table in case.tables:
        right = cells_in = 0
        for label, values in table:
            cells_in += 1 + len(values)
            candidates = rows.get(_norm(label), [])
            if not candidates:
                continue
            best = max(sum(_value(a) == _value(b) for a, b in zip(got, values, strict=False))
                       for got in candidates)
            right += 1 + best
        correct, total = correct + right, total + cells_in
        tables += right >= FOUND_SHARE * cells_in
    return correct, total, tables


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="timing runs (the best is kept)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    methods: dict[str, Extractor] = {
        "pypdfium2 text": pypdfium2_text,
        "pdfplumber lines": pdfplumber_strategy("lines"),
        "pdfplumber text": pdfplumber_strategy("text"),
        "camelot lattice": camelot_flavor("lattice"),
        "camelot stream": camelot_flavor("stream"),
        "ragline (pdfplumber layout)": ragline_loader,
    }
    cases = table_cases()
    results = []
    with tempfile.TemporaryDirectory(prefix="ragline-tables-") as tmp:
        paths = []
        for case in cases:
            paths.append(Path(tmp) / f"{case.name}.pdf")
            paths[-1].write_bytes(make_layout_pdf(case.pages))
        pages = sum(len(case.pages) for case in cases)
        for name, extract in methods.items():
            try:
                extract(paths[0])  # imports and first-use costs outside the timing
            except ImportError as exc:
                results.append({"method": name, "skipped": f"not installed ({exc.name})"})
                continue
            best = float("inf")
            for _ in range(max(1, args.repeat)):
                started = time.perf_counter()
                found = [extract(path) for path in paths]
                best = min(best, time.perf_counter() - started)
            per_case = {case.name: score(case, got) for case, got in zip(cases, found, strict=True)}
            correct = sum(c for c, _, _ in per_case.values())
            total = sum(t for _, t, _ in per_case.values())
            results.append({
                "method": name,
                "correct_cells": f"{correct}/{total}",
                "cell_share": round(correct / total, 3),
                "tables_found": f"{sum(f for _, _, f in per_case.values())}/"
                                f"{sum(len(c.tables) for c in cases)}",
                "seconds_per_page": round(best / pages, 4),
                "by_case": {k: f"{c}/{t}" for k, (c, t, _) in per_case.items()},
            })
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    names = [case.name for case in cases]
    print(f"{'method':<28} {'cells':>9} {'share':>6} {'tables':>7} {'s/page':>7}  "
          + "  ".join(f"{n:>10}" for n in names))
    for row in results:
        if "skipped" in row:
            print(f"{row['method']:<28} skipped: {row['skipped']}")
            continue
        by_case = row["by_case"]
        print(f"{row['method']:<28} {row['correct_cells']:>9} {row['cell_share']:>6} "
              f"{row['tables_found']:>7} {row['seconds_per_page']:>7}  "
              + "  ".join(f"{by_case[n]:>10}" for n in names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
