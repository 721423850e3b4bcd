"""What a financial filing says about itself on its cover: form type, fiscal year, company.

Stored in the document metadata at ingest, so they work as filters (`--where form_type=10-K
--where fiscal_year=2019`) like any other metadata field: "the 2019 10-K" is then one filter,
not a hope that the ranking keeps other years' filings of the same company out of the top 10.
Only what the cover page (or the file name) states is recorded; nothing is guessed.

The same facts read off a *query* ("Nike's 2019 10-K", "fiscal 2020 revenue", "the quarterly
report") are `QueryFacts`: the search's metadata signal (`retrieve/metadata.py`) boosts the hits
of filings that agree with them and demotes those that contradict them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The forms `filing_metadata` records ("FORM 10-K", "Form 10-Q", "FORM 8-K" on SEC cover pages;
# 20-F and 40-F for foreign issuers): a document with one of them is a filing.
FILING_FORMS = ("10-K", "10-Q", "8-K", "20-F", "40-F", "6-K", "S-1")
_FORM = re.compile(r"\bform\s+(" + "|".join(map(re.escape, FILING_FORMS)) + r")\b(?:/a)?",
                   re.IGNORECASE)
_FORM_IN_NAME = re.compile(r"(?<![a-z0-9])(10-?k|10-?q|8-?k|20-?f)(?![a-z0-9])", re.IGNORECASE)
_FISCAL = re.compile(
    r"(?:fiscal\s+year|quarterly\s+period|year)\s+ended\s+"
    r"(?:[A-Z][a-z]+\.?\s+\d{1,2},?\s+)?((?:19|20)\d{2})", re.IGNORECASE)
_YEAR_IN_NAME = re.compile(r"(?<!\d)((?:19|20)\d{2})(?!\d)")
_REGISTRANT = re.compile(r"^(.{2,80}?)\s*\n\s*\(exact name of registrant", re.IGNORECASE | re.MULTILINE)
COVER_CHARS = 6000  # the cover page and a little more


def filing_metadata(text: str, filename: str) -> dict[str, str | int]:
    """`form_type`, `fiscal_year` and `company` where the cover (or file name) states them."""
    cover = text[:COVER_CHARS]
    out: dict[str, str | int] = {}
    form = _FORM.search(cover)
    named = _FORM_IN_NAME.search(filename)
    if form:
        out["form_type"] = form.group(1).upper()
    elif named:
        out["form_type"] = _form(named.group(1))
    if "form_type" not in out:
        return out  # not a filing: the year and company rules below are filing rules
    year = _FISCAL.search(cover) or _YEAR_IN_NAME.search(filename)
    if year:
        out["fiscal_year"] = int(year.group(1))
    registrant = _REGISTRANT.search(cover)
    if registrant:
        out["company"] = " ".join(registrant.group(1).split())
    return out


# --- what a query says about the filing it wants ------------------------------------------------

# "2019", "FY2019", "FY 2019", "FY19", "fiscal 2019", "fiscal year 2019"; not a digit run inside
# a larger number ("12019", "2019.5", "$2,019").
_QUERY_YEAR = re.compile(
    r"(?<![\w.,$])(?:(?:fy|fiscal(?:\s+year)?)\s*'?)?((?:19|20)\d{2})(?![\w]|[.,]\d)"
    r"|(?<![\w.,$])fy\s*'?(\d{2})(?![\w]|[.,]\d)", re.IGNORECASE)
_QUERY_REPORT = re.compile(r"\b(annual|quarterly)\s+(?:report|filing)s?\b", re.IGNORECASE)
# An annual report is a 10-K, or the 20-F / 40-F of a foreign issuer; a quarterly one a 10-Q.
_REPORT_FORMS = {"annual": frozenset({"10-K", "20-F", "40-F"}), "quarterly": frozenset({"10-Q"})}
# Words a company's name may carry or drop ("NIKE, Inc." is "Nike" in a question).
_LEGAL_WORDS = frozenset({
    "inc", "incorporated", "corp", "corporation", "co", "company", "ltd", "limited", "plc",
    "llc", "lp", "llp", "sa", "ag", "nv", "se", "the", "holdings", "group", "and"})
# First words shared by many company names: alone they name none of them.
_GENERIC_LEADS = frozenset({
    "general", "american", "united", "first", "national", "international", "global", "new",
    "north", "south", "east", "west", "northern", "southern", "eastern", "western", "great",
    "royal", "standard", "pacific", "atlantic", "capital", "bank", "central", "union",
    "universal", "advanced", "applied", "community", "citizens", "federal", "home", "us"})
_WORD = re.compile(r"[a-z0-9]+(?:&[a-z0-9]+)?")


def _form(raw: str) -> str:
    """"10k", "10-K", "10-q" -> "10-K", "10-Q" (as `filing_metadata` records them)."""
    raw = raw.upper().replace("-", "")
    return f"{raw[:-1]}-{raw[-1]}"


def _words(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(text.lower().replace("\u2019", "'").replace("'s", "")))


@dataclass(frozen=True, slots=True)
class QueryFacts:
    """The fiscal years and form types a query names, and its words without legal words (to
    find company names in)."""

    years: frozenset[int] = frozenset()
    forms: frozenset[str] = frozenset()
    words: tuple[str, ...] = ()

    def names_company(self, company: str) -> bool:
        """Whether the query names `company` (its name without legal words such as "Inc." or
        "Corporation", as consecutive words: "Nike" names "NIKE, Inc.")."""
        return self.mentions(company_words(company))

    def mentions(self, name: tuple[str, ...]) -> bool:
        """Whether the query names the company whose name words are `name`: all of them,
        consecutively, or the first alone ("Northwind" for "Northwind Traders") unless it is
        a generic word many names start with ("General", "American", "First", ...)."""
        n = len(name)
        if not name:
            return False
        if any(self.words[i:i + n] == name for i in range(len(self.words) - n + 1)):
            return True
        return n > 1 and len(name[0]) >= 3 and name[0] not in _GENERIC_LEADS \
            and name[0] in self.words


def company_words(company: str) -> tuple[str, ...]:
    """The words that identify a company's name: lowercased, legal words dropped."""
    return tuple(w for w in _words(company) if w not in _LEGAL_WORDS)


def query_facts(query: str) -> QueryFacts:
    """The fiscal years ("2019", "FY2019", "FY19", "fiscal 2019") and form types ("10-K",
    "annual report" -> 10-K/20-F/40-F, "quarterly report" -> 10-Q) that `query` names.

    A bare year counts: the signal only touches documents that carry filing metadata, so "2019
    people" in a corpus without filings changes nothing."""
    years = {int(m.group(1)) if m.group(1) else 2000 + int(m.group(2))
             for m in _QUERY_YEAR.finditer(query)}
    forms = {_form(m.group(1)) for m in _FORM_IN_NAME.finditer(query)}
    for m in _QUERY_REPORT.finditer(query):
        forms |= _REPORT_FORMS[m.group(1).lower()]
    return QueryFacts(frozenset(years), frozenset(forms), company_words(query))
