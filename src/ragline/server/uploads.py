"""Uploaded files: a safe name, a type ingest can read, a size limit, and an atomic save.

A client's file name is only a suggestion: the folder part is dropped (`../../etc/x.md` is
`x.md`), characters other than letters, digits, `.`, `-`, `_` and spaces become `_`, and a
leading dot is removed (ingest passes over hidden files), so a file is always written inside
the collection's upload folder. The type is judged by the suffix ingest would use and by the
first bytes: a `.pdf` that is not a PDF, a `.docx` that is not a ZIP, or a text type that
reads as binary is refused before it is stored (415, with the reason).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ragline.documents.loaders import SUPPORTED_SUFFIXES
from ragline.server.errors import ApiError

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")
_SNIFF = 8192
_MAGIC = {".pdf": (b"%PDF-", "a PDF starts with %PDF-"),
          ".docx": (b"PK\x03\x04", "a DOCX file is a ZIP archive (it starts with PK)")}
_CONTROL = bytes([*range(0, 9), 11, *range(14, 27), *range(28, 32), 127])


def safe_name(raw: str | None) -> str:
    """A file name that stays inside the upload folder, whatever the client sent."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name).strip(" .")
    name = re.sub(r"_{2,}", "_", name)[:200]
    return name or "upload"


def supported() -> str:
    return ", ".join(sorted(SUPPORTED_SUFFIXES))


def check_suffix(name: str) -> None:
    suffix = Path(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        what = f"files of type {suffix!r}" if suffix else "a file without a suffix"
        raise ApiError(415, "unsupported_type",
                       f"{name}: ragline cannot ingest {what}; supported: {supported()}")


def check_content(name: str, head: bytes) -> None:
    """Refuse content that does not match its suffix (415)."""
    suffix = Path(name).suffix.lower()
    if suffix in _MAGIC:
        magic, rule = _MAGIC[suffix]
        if not head.startswith(magic):
            raise ApiError(415, "unsupported_type",
                           f"{name}: the content is not a {suffix[1:].upper()} file ({rule})")
        return
    sample = head[:_SNIFF]
    controls = len(sample) - len(sample.translate(None, _CONTROL))
    if b"\x00" in sample or (sample and controls / len(sample) > 0.10):
        raise ApiError(415, "unsupported_type",
                       f"{name}: the content looks binary, not {suffix[1:]} text")


@dataclass
class PendingFile:
    """An upload written to a temporary file in the upload folder, not yet in place."""

    name: str
    original: str | None
    temp: Path
    size: int

    def commit(self, folder: Path) -> Path:
        target = folder / self.name
        os.replace(self.temp, target)
        return target

    def discard(self) -> None:
        self.temp.unlink(missing_ok=True)


def temp_file(folder: Path) -> tuple[int, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix=".upload-", dir=folder)  # hidden: ingest skips it
    return fd, Path(path)


def too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"the upload is over the limit of {limit:,} bytes "
                    "(`ragline serve --max-upload-bytes` raises it)")
