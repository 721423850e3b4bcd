"""Split text into sentences and pull out the facts a claim can get wrong: numbers, dates, names.

Pure functions, no models. Offsets always point into the text that was passed in, so an
extractive answer can cite an exact span.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from ragline.documents._tables import is_table_line

# Abbreviations after which a full stop does not end a sentence (compared casefolded, no dot).
_ABBREVIATIONS = (
    "e.g i.e etc al mr mrs ms dr prof sr jr st vs cf fig figs no nos vol approx ca est dept "
    "inc ltd co corp jan feb mar apr jun jul aug sep sept oct nov dec gen gov sen rep rev mt ft "
    "op eq ref refs pp u.s u.k u.n a.m p.m ph.d"
)
ABBREVIATIONS = frozenset(_ABBREVIATIONS.split())
# Abbreviations that may also end a sentence: a following capital letter is a boundary.
_MAY_END = frozenset({"etc", "inc", "ltd", "co", "corp", "u.s", "u.k", "a.m", "p.m"})

_MARKER = re.compile(r"\[(\d+(?:\s*[,;\u2013-]\s*\d+)*)\]")
_MARKERS_RUN = re.compile(r"(?:\s*\[\d+(?:\s*[,;\u2013-]\s*\d+)*\])+")
_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*")
_WORD_BEFORE = re.compile(r"([A-Za-z][A-Za-z.]*)$")


@dataclass(frozen=True, slots=True)
class Sentence:
    """A sentence: `text` has citation markers removed; `start`/`end` bound the raw span."""

    text: str
    start: int
    end: int
    citations: tuple[int, ...] = ()


def parse_markers(text: str) -> tuple[int, ...]:
    """Source numbers named by markers like [1], [2, 3], [1-3], in order, without repeats."""
    numbers: list[int] = []
    for match in _MARKER.finditer(text):
        for part in re.split(r"\s*[,;]\s*", match.group(1)):
            bounds = re.split(r"\s*[\u2013-]\s*", part)
            first, last = int(bounds[0]), int(bounds[-1])
            span = range(first, last + 1) if last >= first and last - first < 50 else [first, last]
            numbers.extend(n for n in span if n not in numbers)
    return tuple(numbers)


def strip_markers(text: str) -> str:
    """Remove citation markers and tidy the spaces they leave behind."""
    cleaned = _MARKER.sub("", text)
    cleaned = re.sub(r"\s+([.,;:!?])", r"\1", cleaned)
    return re.sub(r"\s{2,}", " ", cleaned).strip()


def _is_abbreviation(text: str, dot: int) -> bool:
    match = _WORD_BEFORE.search(text, 0, dot)
    if match is None:
        return False
    word = match.group(1).casefold().rstrip(".")
    if len(word) == 1 and word.isalpha():
        return True  # an initial: "J. K. Rowling"
    return word in ABBREVIATIONS or re.fullmatch(r"(?:[a-z]\.)+[a-z]", word) is not None


def _boundary_after(text: str, end: int) -> bool:
    """True when the text after a terminal punctuation run starts a new sentence."""
    if end >= len(text):
        return True
    if not text[end].isspace():
        return False
    rest = text[end:].lstrip()
    return not rest or not rest[0].islower()


def _sentence_ends(text: str) -> list[int]:
    ends: list[int] = []
    for match in _END.finditer(text):
        end = match.end()
        markers = _MARKERS_RUN.match(text, end)
        if markers:
            end = markers.end()
        if not _boundary_after(text, end):
            continue
        punct = match.group(0).rstrip("\"'\u201d\u2019)]")
        if punct == "." and _is_abbreviation(text, match.start()):
            nxt = text[end:].lstrip()[:1]
            if not (_abbrev_may_end(text, match.start()) and nxt.isupper()):
                continue
        ends.append(end)
    return ends


def _abbrev_may_end(text: str, dot: int) -> bool:
    match = _WORD_BEFORE.search(text, 0, dot)
    return match is not None and match.group(1).casefold().rstrip(".") in _MAY_END


def split_sentences(text: str) -> list[Sentence]:
    """Split into sentences, keeping offsets; markers stay with the sentence they follow.

    Handles decimals (3.5), abbreviations (e.g., Dr.), initials, and blank-line breaks. A
    rendered table line ("Total current assets | 2019: 16,525 | 2018: 15,134", see
    `documents/_tables.py`) is one sentence, whole: a row carries its headers, and a claim made
    of half a row, or of a row run into the next, says nothing checkable.
    """
    sentences: list[Sentence] = []
    for block_start, block in _blocks(text):
        for start, end, table_line in _segments(block):
            if table_line:
                _append(sentences, block, start, end, block_start)
                continue
            segment = block[start:end]
            at = 0
            for stop in [*_sentence_ends(segment), len(segment)]:
                _append(sentences, block, start + at, start + stop, block_start)
                at = stop
    return sentences


def _segments(block: str) -> list[tuple[int, int, bool]]:
    """The block as runs of prose lines and single table lines: (start, end, is a table line)."""
    segments: list[tuple[int, int, bool]] = []
    start = 0
    for line in block.splitlines(keepends=True):
        end = start + len(line)
        table = is_table_line(line.strip())
        if table or not segments or segments[-1][2]:
            segments.append((start, end, table))
        else:
            segments[-1] = (segments[-1][0], end, False)
        start = end
    return segments or [(0, len(block), False)]


def _blocks(text: str) -> list[tuple[int, str]]:
    blocks: list[tuple[int, str]] = []
    start = 0
    for match in re.finditer(r"\n\s*\n", text):
        blocks.append((start, text[start : match.start()]))
        start = match.end()
    blocks.append((start, text[start:]))
    return blocks


def _append(out: list[Sentence], block: str, start: int, end: int, offset: int) -> None:
    raw = block[start:end]
    stripped = raw.strip()
    if not stripped or not strip_markers(stripped):
        if stripped and out:  # a lone marker run, e.g. "[3]" after a blank line: attach it
            last = out[-1]
            out[-1] = Sentence(last.text, last.start, last.end, last.citations + parse_markers(raw))
        return
    lead = len(raw) - len(raw.lstrip())
    s = offset + start + lead
    out.append(Sentence(strip_markers(stripped), s, s + len(stripped), parse_markers(stripped)))


# ---------------------------------------------------------------- normalisation


def normalize(text: str) -> str:
    """Casefold, NFKC, drop accents, turn punctuation into spaces, collapse whitespace."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    text = re.sub(r"[^\w\s]|_", " ", text)
    return " ".join(text.split())


def words(text: str) -> list[str]:
    return normalize(text).split()


_STOPWORDS = (
    "a an the and or but of to in on at by for with from as is are was were be been being it its "
    "this that these those he she they them his her their there here which who whom whose what "
    "when where why how not no nor so than then too very can could would should will shall may "
    "might must do does did has have had having i you we us our your my me also into over under "
    "after before about against between during through until while up down out off again further "
    "once only own same such both each few more most other some any all just"
)
STOPWORDS = frozenset(_STOPWORDS.split())


# ---------------------------------------------------------------- numbers

_NUMBER = re.compile(
    r"(?<![\w.])[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s?%|\s?per\s?cent)?(?![\w])"
    r"|(?<![\w.])\.\d+"
)
_NUMBER_WORDS = {
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}  # "one" is left out (far more often a pronoun than a count), and so are magnitudes
# such as "million": "2.1 million" is checked through its digits
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Mention:
    """A number, date or name found in text: as written, its normal form, and where."""

    raw: str
    value: str
    start: int
    end: int


def canonical_number(raw: str) -> str:
    """'1,200.50' -> '1200.5', '12 %' -> '12%', a minus sign -> '-'."""
    percent = "%" if ("%" in raw or "cent" in raw) else ""
    digits = re.sub(r"\s?(%|per\s?cent)$", "", raw.strip()).replace(",", "").replace("\u2212", "-")
    try:
        value = Decimal(digits).normalize()
    except InvalidOperation:
        return raw
    text = format(value, "f")
    return text + percent


def extract_numbers(text: str, *, skip: tuple[tuple[int, int], ...] = ()) -> list[Mention]:
    """Numbers (thousands separators, decimals, percentages, number words) outside `skip` spans."""
    found: list[Mention] = []
    for match in _NUMBER.finditer(text):
        if not _inside(match.start(), match.end(), skip):
            value = canonical_number(match.group(0))
            found.append(Mention(match.group(0), value, match.start(), match.end()))
    for match in _NUMBER_WORD.finditer(text):
        if not _inside(match.start(), match.end(), skip):
            value = str(_NUMBER_WORDS[match.group(1).casefold()])
            found.append(Mention(match.group(0), value, match.start(), match.end()))
    return sorted(found, key=lambda m: m.start)


def _inside(start: int, end: int, spans: tuple[tuple[int, int], ...]) -> bool:
    return any(s <= start and end <= e for s, e in spans)


# ---------------------------------------------------------------- dates

MONTHS = {
    "january": 1,
    "february": 2,
    "march": 3,
    "april": 4,
    "may": 5,
    "june": 6,
    "july": 7,
    "august": 8,
    "september": 9,
    "october": 10,
    "november": 11,
    "december": 12,
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "sept": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
}
_MONTH = r"(?P<month>" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")\.?"
_DATE_PATTERNS = (
    re.compile(r"\b(?P<year>\d{4})-(?P<mnum>\d{1,2})-(?P<day>\d{1,2})\b"),
    re.compile(r"\b" + _MONTH + r"\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<year>\d{4})\b", re.I),
    re.compile(
        r"\b(?P<day>\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTH + r",?\s+(?P<year>\d{4})\b",
        re.I,
    ),
    re.compile(r"\b" + _MONTH + r",?\s+(?P<year>\d{4})\b", re.I),
    re.compile(r"(?<![\w.,])(?P<year>1[0-9]{3}|20[0-9]{2})(?:s)?(?![\w.]\d|,\d)"),
)


def extract_dates(text: str) -> list[Mention]:
    """Dates as 'YYYY', 'YYYY-MM' or 'YYYY-MM-DD': ISO dates, 'March 3, 2021', '3 March 2021',
    'March 2021', and bare years 1000-2099."""
    found: list[Mention] = []
    taken: list[tuple[int, int]] = []
    for pattern in _DATE_PATTERNS:
        for match in pattern.finditer(text):
            if any(s < match.end() and match.start() < e for s, e in taken):
                continue
            found.append(Mention(match.group(0), _date_value(match), match.start(), match.end()))
            taken.append((match.start(), match.end()))
    return sorted(found, key=lambda m: m.start)


def _date_value(match: re.Match[str]) -> str:
    parts = match.groupdict()
    value = parts["year"]
    month = parts.get("mnum") or (
        str(MONTHS[parts["month"].casefold()]) if parts.get("month") else None
    )
    if month:
        value += f"-{int(month):02d}"
        if parts.get("day"):
            value += f"-{int(parts['day']):02d}"
    return value


def date_in(value: str, source_dates: list[str]) -> bool:
    """A claimed date is consistent when the source has it at the same or a finer precision."""
    return any(d == value or d.startswith(value + "-") for d in source_dates)


# ---------------------------------------------------------------- names

_CAP_WORD = r"(?:[A-Z][\w'\u2019.-]*[\w]|[A-Z])"
_NAME = re.compile(
    r"(?<![\w'\u2019.-])"
    + _CAP_WORD
    + r"(?:\s+(?:(?:of|de|da|del|der|van|von|la|le|du|the|and|&)\s+)?"
    + _CAP_WORD
    + r")*"
)
_STARTERS = (
    "however although though because since despite during in on at after before while "
    "according born known many some several"
)
_NAME_STARTERS = STOPWORDS | frozenset(_STARTERS.split())


def extract_names(text: str) -> list[Mention]:
    """Capitalised names and proper nouns ('Shirley Temple', 'United States'); a sentence's first
    word counts only when it is not a common word."""
    found: list[Mention] = []
    for match in _NAME.finditer(text):
        raw = match.group(0)
        start = match.start()
        tokens = raw.split()
        if _sentence_initial(text, start) and tokens[0].casefold() in _NAME_STARTERS:
            rest = raw[len(tokens[0]) :].lstrip()
            if not rest:
                continue
            start += len(raw) - len(rest)
            raw = rest
        raw = re.sub(r"(?:'s|\u2019s|')$", "", raw).rstrip(".")
        if _is_name(raw):
            found.append(Mention(raw, normalize(raw), start, start + len(raw)))
    return found


# Days, months, and acronyms of common nouns ("TV" for "television") are not names.
_COMMON = (
    "monday tuesday wednesday thursday friday saturday sunday "
    "tv dj ceo cd dvd pc am fm hq id ok mvp ufo"
)
_NOT_NAMES = frozenset(MONTHS) | frozenset(_COMMON.split())


def _is_name(raw: str) -> bool:
    key = raw.casefold().rstrip(".")
    if len(key) < 2 or key in ABBREVIATIONS or key in _NOT_NAMES:
        return False
    return not raw.isdigit()


def _sentence_initial(text: str, start: int) -> bool:
    before = text[:start].rstrip(" \"'(\u201c")
    return not before or before[-1] in ".!?:\n"


_CONNECTIVES = frozenset({"of", "the", "and", "for", "in", "at", "de", "&"})


def initialisms(source_words: list[str]) -> frozenset[str]:
    """Initials of every run of 2-6 consecutive words, connectives skipped ('national collegiate
    athletic association' -> 'ncaa'), so an acronym in a claim can match its expansion."""
    content = [w for w in source_words if w not in _CONNECTIVES]
    return frozenset(
        "".join(w[0] for w in content[i : i + n])
        for n in range(2, 7)
        for i in range(len(content) - n + 1)
    )


def name_in(
    value: str, source_words: frozenset[str], acronyms: frozenset[str] = frozenset()
) -> bool:
    """A name is consistent when every word of it (bar connectives) occurs in the source, or when
    it is one word that abbreviates a run of source words."""
    parts = [w for w in value.split() if w not in _CONNECTIVES]
    if all(w in source_words for w in parts):
        return True
    return len(parts) == 1 and parts[0] in acronyms
