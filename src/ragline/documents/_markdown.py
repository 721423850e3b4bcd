"""Find Markdown headings (ATX and setext) outside fenced code blocks, with exact offsets."""

from __future__ import annotations

import re

from ragline.types import Heading

# One scan over the text for the only lines that matter: fences, ATX headings, setext underlines.
# Up to three spaces of indent, as CommonMark allows; four or more is an indented code block.
_LINE = re.compile(
    r"^ {0,3}(?:"
    r"(?P<fence>`{3,}|~{3,})[^\n]*"
    r"|(?P<atx>#{1,6})(?:[ \t]+(?P<title>[^\n]*?))?[ \t]*"
    r"|(?P<setext>=+|-+)[ \t]*"
    r")\r?$",
    re.MULTILINE,
)
_CLOSING_HASHES = re.compile(r"(?:^|[ \t]+)#+$")
# A line that cannot be a setext title: blank, a list item, a quote, a fence, an ATX heading.
_NOT_SETEXT_TITLE = re.compile(r"^(?:\s*$| {0,3}(?:[-*+>#]|\d+[.)]|`{3}|~{3}|<)|\s{4})")


def markdown_headings(text: str) -> tuple[Heading, ...]:
    """Every ATX heading (and setext heading) of `text` outside fenced code blocks, in order."""
    headings: list[Heading] = []
    fence: str | None = None
    for match in _LINE.finditer(text):
        marker = match.group("fence")
        if marker is not None:
            fence = _next_fence_state(fence, marker, match.group(0))
        elif fence is not None:
            continue
        elif match.group("atx") is not None:
            heading = _atx_heading(match)
            if heading is not None:
                headings.append(heading)
        else:
            heading = _setext_heading(text, match)
            if heading is not None:
                headings.append(heading)
    return tuple(headings)


def _next_fence_state(fence: str | None, marker: str, line: str) -> str | None:
    if fence is None:
        if marker[0] == "`" and "`" in line.strip()[len(marker) :]:
            return None  # a backtick fence's info string may not contain backticks
        return marker
    # A closing fence uses the same character, is at least as long and has no info string.
    if marker[0] == fence[0] and len(marker) >= len(fence) and line.strip() == marker:
        return None
    return fence


def _atx_heading(match: re.Match[str]) -> Heading | None:
    title = _CLOSING_HASHES.sub("", match.group("title") or "").strip()
    if not title:
        return None
    return Heading(start=match.start(), level=len(match.group("atx")), title=title)


def _setext_heading(text: str, underline: re.Match[str]) -> Heading | None:
    """A setext heading is a one-line paragraph (blank line or start before it) over `===`/`---`."""
    line_start = underline.start()
    if line_start == 0:
        return None
    title_start = text.rfind("\n", 0, line_start - 1) + 1
    title_line = text[title_start : line_start - 1]
    if _NOT_SETEXT_TITLE.match(title_line):
        return None
    if title_start > 0:
        before_start = text.rfind("\n", 0, title_start - 1) + 1
        if text[before_start : title_start - 1].strip():
            return None  # part of a longer paragraph: too ambiguous to call a heading
    level = 1 if underline.group("setext")[0] == "=" else 2
    return Heading(start=title_start, level=level, title=title_line.strip())


def first_h1(headings: tuple[Heading, ...]) -> str | None:
    """The title of the first level-1 heading, if any."""
    return next((h.title for h in headings if h.level == 1), None)
