"""What a financial filing says about itself on its cover: form type, fiscal year, company.

Stored in the document metadata at ingest, so they work as filters (`--where form_type=10-K
--where fiscal_year=2019`) like any other metadata field: "the 2019 10-K" is then one filter,
not a hope that the ranking keeps other years' filings of the same company out of the top 10.
Only what the cover page (or the file name) states is recorded; nothing is guessed.
"""

from __future__ import annotations

import re

# SEC cover pages: "FORM 10-K", "Form 10-Q", "FORM 8-K"; 20-F and 40-F for foreign issuers.
_FORM = re.compile(r"\bform\s+(10-k|10-q|8-k|20-f|40-f|6-k|s-1)\b(?:/a)?", re.IGNORECASE)
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
        raw = named.group(1).upper().replace("-", "")
        out["form_type"] = f"{raw[:-1]}-{raw[-1]}"
    if "form_type" not in out:
        return out  # not a filing: the year and company rules below are filing rules
    year = _FISCAL.search(cover) or _YEAR_IN_NAME.search(filename)
    if year:
        out["fiscal_year"] = int(year.group(1))
    registrant = _REGISTRANT.search(cover)
    if registrant:
        out["company"] = " ".join(registrant.group(1).split())
    return out
