"""What a format parser hands back to the loader, and the shared unreadable-file error."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ragline.errors import DocumentError
from ragline.types import Heading


@dataclass(frozen=True, slots=True)
class Parsed:
    """One document's text, its title if the file names one, headings and extra metadata."""

    text: str
    title: str | None = None
    headings: tuple[Heading, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


def unreadable(rel: str, exc: OSError) -> DocumentError:
    detail = exc.strerror or type(exc).__name__
    return DocumentError(rel, "unreadable", f"cannot read the file ({detail}); check permissions")
