"""Form type, fiscal year and company read off a filing's cover, usable as search filters."""

from __future__ import annotations

from pathlib import Path

from ragline import Index
from ragline.documents._filing import filing_metadata
from ragline.embed.base import Embedder

COVER = """UNITED STATES SECURITIES AND EXCHANGE COMMISSION
Washington, D.C. 20549
FORM 10-K
ANNUAL REPORT PURSUANT TO SECTION 13 OR 15(d) OF THE SECURITIES EXCHANGE ACT OF 1934
For the fiscal year ended May 31, 2019
NIKE, Inc.
(Exact name of registrant as specified in its charter)
"""


def test_the_cover_page_gives_form_year_and_company() -> None:
    assert filing_metadata(COVER, "report.pdf") == {
        "form_type": "10-K", "fiscal_year": 2019, "company": "NIKE, Inc."}


def test_the_file_name_fills_in_what_the_cover_does_not_say() -> None:
    assert filing_metadata("Quarterly results and outlook.", "ACME_2021_10Q.pdf") == {
        "form_type": "10-Q", "fiscal_year": 2021}


def test_an_ordinary_document_gets_nothing() -> None:
    assert filing_metadata("Meeting notes from the year ended badly in 2019.", "notes.md") == {}


def test_filters_pick_one_year_of_a_companys_filings(tmp_path: Path, embedder: Embedder) -> None:
    docs = tmp_path / "filings"
    docs.mkdir()
    for year in (2018, 2019, 2020):
        (docs / f"nike-{year}.txt").write_text(
            COVER.replace("2019", str(year))
            + f"\nTotal current assets were {year - 2000},525 million dollars.\n")
    index = Index(tmp_path / "ix", embedder=embedder)
    index.ingest(docs)
    hits = index.search("total current assets", k=5,
                        where={"form_type": "10-K", "fiscal_year": "2019"})
    assert [h.chunk.doc_id for h in hits] == ["filings/nike-2019.txt"]
