"""Load files into `Document`s: text, Markdown, HTML, PDF, DOCX and JSONL records.

Every failure a user can cause is a typed `DocumentError` whose message says what to do next;
library exceptions are wrapped and kept as `__cause__`.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
import os
import stat as stat_module
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from ragline.documents._filing import filing_metadata
from ragline.documents._markdown import first_h1, markdown_headings
from ragline.documents._parsed import Parsed, unreadable
from ragline.errors import (
    ConfigError,
    DocumentError,
    FileTooLarge,
    UnsupportedFileType,
)
from ragline.types import DocType, Document

logger = logging.getLogger(__name__)

DEFAULT_MAX_FILE_BYTES = 50 * 2**20
SUPPORTED_SUFFIXES: Mapping[str, DocType] = MappingProxyType(
    {
        ".txt": DocType.TXT,
        ".md": DocType.MARKDOWN,
        ".markdown": DocType.MARKDOWN,
        ".html": DocType.HTML,
        ".htm": DocType.HTML,
        ".pdf": DocType.PDF,
        ".docx": DocType.DOCX,
        ".jsonl": DocType.JSONL,
    }
)
DecodeErrors = Literal["strict", "replace"]


BINARY_SNIFF_BYTES = 8192
MAX_CONTROL_FRACTION = 0.10
# Control bytes that never occur in text; tab, newlines, form feed and escape (ANSI colours) do.
_CONTROL_BYTES = bytes([*range(0, 9), 11, *range(14, 27), *range(28, 32), 127])
_HASH_SLICE = 1 << 20
_SCALAR = (str, int, float, bool, type(None))


@dataclass(frozen=True, slots=True)
class LoadResult:
    """The documents of one file, and the records that were skipped and why."""

    documents: list[Document] = field(default_factory=list)
    problems: list[DocumentError] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _FileInfo:
    path: Path
    rel: str
    doc_type: DocType
    size: int
    modified: float


def iter_files(
    root: Path, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, follow_symlinks: bool = False
) -> Iterator[Path]:
    """Regular files under `root` in sorted order, skipping hidden names and `__pycache__`.

    A file path yields itself. Files over `max_file_bytes` are still yielded, so that
    `load_file` rejects them with `FileTooLarge` and the user learns what was skipped.
    Symbolic links (to files or folders) are not followed unless `follow_symlinks`, so an ingest
    never leaves the tree it was given; the links it passed over are named in one warning on the
    `ragline` logger. Followed folder links are walked once each (a link cycle ends).
    """
    _check_limit(max_file_bytes)
    if root.is_file():
        yield root
        return
    if not root.is_dir():
        raise DocumentError(str(root), "missing", "no such file or folder; check the path")
    links: list[str] = []
    walked: set[Path] = {root.resolve()}
    for dirpath, dirnames, filenames in os.walk(root, onerror=_warn_unlistable,
                                                followlinks=follow_symlinks):
        kept = []
        for name in sorted(dirnames):
            path = Path(dirpath) / name
            if _skipped_name(name):
                continue
            if _is_index(path):
                logger.warning("not ingesting %s: it is a ragline index (an index kept inside "
                               "the folder it indexes is passed over)", path)
                continue
            if path.is_symlink():
                target = path.resolve()
                if not follow_symlinks:
                    links.append(str(path))
                    continue
                if target in walked:
                    continue
                walked.add(target)
            kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            candidate = Path(dirpath) / name
            if _skipped_name(name):
                continue
            if candidate.is_symlink() and not follow_symlinks:
                links.append(str(candidate))
            elif candidate.is_file():
                yield candidate
    if links:
        shown = ", ".join(links[:5]) + (f" and {len(links) - 5} more" if len(links) > 5 else "")
        logger.warning("not following %d symbolic link(s) under %s (%s); pass --follow-symlinks "
                     "to ingest what they point to", len(links), root, shown)


def load_file(
    path: Path,
    *,
    root: Path | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    decode_errors: DecodeErrors = "strict",
) -> list[Document]:
    """The documents in one file (one per record for .jsonl; bad records are logged and skipped).

    `root` is the ingested folder that ids are relative to (default: the file's folder).
    Raises a `DocumentError` subclass when the file as a whole cannot be loaded.
    """
    result = load_file_report(
        path, root=root, max_file_bytes=max_file_bytes, decode_errors=decode_errors
    )
    if result.problems:
        logger.warning(
            "%s: skipped %d bad record(s); first: %s",
            path,
            len(result.problems),
            result.problems[0],
        )
    return result.documents


def load_file_report(
    path: Path,
    *,
    root: Path | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    decode_errors: DecodeErrors = "strict",
) -> LoadResult:
    """Like `load_file`, but returns the skipped records as `problems` instead of logging them."""
    _check_limit(max_file_bytes)
    if decode_errors not in ("strict", "replace"):
        raise ConfigError(f"decode_errors must be 'strict' or 'replace', not {decode_errors!r}")
    info = _file_info(path, root, max_file_bytes)
    if info.doc_type is DocType.JSONL:
        return _load_jsonl(info, decode_errors)
    parsed = _parse(info, decode_errors)
    if not parsed.text or parsed.text.isspace():
        raise DocumentError(info.rel, "empty", "the file has no text; nothing to index")
    return LoadResult(documents=[_document(info, parsed)])


def content_hash(text: str) -> str:
    """sha256 hex digest of the UTF-8 text, encoded a slice at a time to bound memory."""
    digest = hashlib.sha256()
    for offset in range(0, len(text), _HASH_SLICE):
        digest.update(text[offset : offset + _HASH_SLICE].encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


# --- checks before reading -------------------------------------------------------------------


def _check_limit(max_file_bytes: int) -> None:
    if (
        isinstance(max_file_bytes, bool)
        or not isinstance(max_file_bytes, int)
        or max_file_bytes < 1
    ):
        raise ConfigError(f"max_file_bytes must be a positive integer, not {max_file_bytes!r}")


def _skipped_name(name: str) -> bool:
    return name.startswith(".") or name == "__pycache__"


def _is_index(folder: Path) -> bool:
    """A ragline index folder: its database, or the search files and writer lock of one whose
    database is on a server."""
    return (folder / "ragline.sqlite").is_file() or (
        (folder / "derived").is_dir() and (folder / "write.lock").exists())


def _warn_unlistable(error: OSError) -> None:
    logger.warning("cannot list folder %s (%s); its files were not loaded", error.filename, error)


def _file_info(path: Path, root: Path | None, max_file_bytes: int) -> _FileInfo:
    rel = _relative_id(path, root)
    doc_type = SUPPORTED_SUFFIXES.get(path.suffix.lower())
    if doc_type is None:
        raise UnsupportedFileType(rel, path.suffix)
    try:
        stat = path.stat()
    except FileNotFoundError as exc:
        raise DocumentError(rel, "missing", "no such file; check the path") from exc
    except OSError as exc:
        raise unreadable(rel, exc) from exc
    if not stat_module.S_ISREG(stat.st_mode):
        raise DocumentError(rel, "unreadable", "not a regular file (a folder or device?)")
    if stat.st_size > max_file_bytes:
        raise FileTooLarge(rel, stat.st_size, max_file_bytes)
    return _FileInfo(path, rel, doc_type, stat.st_size, stat.st_mtime)


def _relative_id(path: Path, root: Path | None) -> str:
    if root is None or root == path or root.is_file():
        root = path.parent
    try:
        return path.relative_to(root).as_posix()
    except ValueError as exc:
        raise ConfigError(
            f"{path} is not inside {root}; pass the folder the file was found in as root"
        ) from exc


def _read_bytes(info: _FileInfo) -> bytes:
    try:
        return info.path.read_bytes()
    except OSError as exc:
        raise unreadable(info.rel, exc) from exc


# --- building documents ----------------------------------------------------------------------


def _document(info: _FileInfo, parsed: Parsed, *, doc_id: str | None = None) -> Document:
    metadata: dict[str, Any] = {}
    if info.doc_type is not DocType.JSONL:  # a corpus record is not a filing's cover page
        metadata.update(filing_metadata(parsed.text, info.path.name))
    metadata.update(parsed.extra)
    metadata.update(path=info.rel, type=info.doc_type.value, size=metadata.get("size", info.size))
    return Document(
        id=doc_id or info.rel,
        text=parsed.text,
        doc_type=info.doc_type,
        content_hash=content_hash(parsed.text),
        title=parsed.title or info.path.stem,
        source_path=str(info.path),
        modified=info.modified,
        headings=parsed.headings,
        metadata=metadata,
    )


def _parse(info: _FileInfo, decode_errors: DecodeErrors) -> Parsed:
    if info.doc_type is DocType.TXT:
        return Parsed(text=_read_text(info, decode_errors))
    if info.doc_type is DocType.MARKDOWN:
        return _parse_markdown(info, decode_errors)
    if info.doc_type is DocType.HTML:
        return _parse_html(info, decode_errors)
    if info.doc_type is DocType.PDF:
        from ragline.documents._office import parse_pdf  # the parsers load on first use

        return parse_pdf(info.path, info.rel)
    from ragline.documents._office import parse_docx

    return parse_docx(info.path, info.rel)


# --- plain text and Markdown -----------------------------------------------------------------


def _read_text(info: _FileInfo, decode_errors: DecodeErrors, encoding: str | None = None) -> str:
    """Read and decode in one go; the bytes are dropped as soon as the text exists."""
    data = _read_bytes(info)
    return _decode(data, info.rel, decode_errors, encoding)


def _decode(data: bytes, rel: str, errors: DecodeErrors, encoding: str | None) -> str:
    body: bytes | memoryview = data
    skipped = 0
    if encoding is None and data.startswith(codecs.BOM_UTF8):
        body, skipped = memoryview(data)[len(codecs.BOM_UTF8) :], len(codecs.BOM_UTF8)
    if encoding is None and data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    if encoding not in ("utf-16",) and _looks_binary(data[:BINARY_SNIFF_BYTES]):
        raise DocumentError(
            rel,
            "binary",
            "looks like a binary file (NUL or control bytes), not text; "
            "remove it from the folder or give it the right extension",
        )
    codec = encoding or "utf-8"
    try:
        return str(body, codec, errors)
    except UnicodeDecodeError as exc:
        offset = exc.start + skipped
        raise DocumentError(
            rel,
            "encoding",
            f"not valid {codec} at byte offset {offset} "
            f"({bytes(data[offset : offset + 4])!r}); convert the file to UTF-8, "
            "or ingest with --decode-errors replace (config key decode_errors) to load it with "
            "U+FFFD in place of the bad bytes",
        ) from exc
    except LookupError as exc:
        raise DocumentError(
            rel,
            "encoding",
            f"declares an unknown character set {codec!r}; "
            "fix its <meta charset> or convert the file to UTF-8",
        ) from exc


def _looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    if not head:
        return False
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    return controls / len(head) > MAX_CONTROL_FRACTION


def _parse_markdown(info: _FileInfo, decode_errors: DecodeErrors) -> Parsed:
    text = _read_text(info, decode_errors)
    headings = markdown_headings(text)
    return Parsed(text=text, title=first_h1(headings), headings=headings)


# --- HTML --------------------------------------------------------------------------------------


def _parse_html(info: _FileInfo, decode_errors: DecodeErrors) -> Parsed:
    data = _read_bytes(info)
    from ragline.documents._html import declared_charset, extract_html

    charset = declared_charset(data)
    encoding = None if charset in (None, "utf-8-sig") else charset
    html = _decode(data, info.rel, decode_errors, encoding)
    del data
    page = extract_html(html)
    return Parsed(
        text=page.text,
        title=page.title,
        headings=page.headings,
        extra={"charset": charset or "utf-8",
               **({"tables": [list(span) for span in page.tables]} if page.tables else {})},
    )


# --- JSONL -------------------------------------------------------------------------------------


def _load_jsonl(info: _FileInfo, decode_errors: DecodeErrors) -> LoadResult:
    """One document per record; a bad record never sinks the file."""
    result = LoadResult()
    for item in _iter_jsonl(info, decode_errors):
        if isinstance(item, DocumentError):
            result.problems.append(item)
        else:
            result.documents.append(item)
    return result


def _iter_jsonl(info: _FileInfo, decode_errors: DecodeErrors) -> Iterator[Document | DocumentError]:
    """The records of a JSONL file read a line at a time: memory holds one line, not the file."""
    seen: set[str] = set()
    any_record = False
    try:
        with info.path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                any_record = True
                try:
                    yield _jsonl_record(info, line, number, decode_errors, seen)
                except DocumentError as problem:
                    yield problem
    except OSError as exc:
        raise unreadable(info.rel, exc) from exc
    if not any_record:
        raise DocumentError(info.rel, "empty", "the file has no records; nothing to index")


def stream_file(
    path: Path,
    *,
    root: Path | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    decode_errors: DecodeErrors = "strict",
) -> Iterator[Document | DocumentError]:
    """Like `load_file_report`, one item at a time: the documents of the file and, in place of
    each record that could not be read, its DocumentError. A JSONL file is streamed; an error
    about the whole file is raised."""
    _check_limit(max_file_bytes)
    if decode_errors not in ("strict", "replace"):
        raise ConfigError(f"decode_errors must be 'strict' or 'replace', not {decode_errors!r}")
    info = _file_info(path, root, max_file_bytes)
    if info.doc_type is DocType.JSONL:
        yield from _iter_jsonl(info, decode_errors)
        return
    yield from load_file_report(path, root=root, max_file_bytes=max_file_bytes,
                                decode_errors=decode_errors).documents


def _jsonl_record(
    info: _FileInfo, line: bytes, number: int, decode_errors: DecodeErrors, seen: set[str]
) -> Document:
    where = f"{info.rel}:{number}"
    if number == 1 and line.startswith(codecs.BOM_UTF8):
        line = line[len(codecs.BOM_UTF8) :]
    try:
        record = json.loads(line.decode("utf-8", decode_errors))
    except UnicodeDecodeError as exc:
        raise DocumentError(
            where,
            "encoding",
            f"line {number} is not valid UTF-8 at byte "
            f"{exc.start} of the line; convert the file to UTF-8",
        ) from exc
    except json.JSONDecodeError as exc:
        raise DocumentError(
            where,
            "invalid_json",
            f"line {number} is not valid JSON "
            f"({exc.msg} at column {exc.colno}); fix or remove the line",
        ) from exc
    if not isinstance(record, dict):
        raise DocumentError(where, "invalid_record", f"line {number} is not a JSON object")
    doc_id = _record_id(record)
    if doc_id is None:
        raise DocumentError(where, "missing_id", f"record on line {number} has no '_id' or 'id'")
    text, title = record.get("text"), record.get("title")
    if not isinstance(text, str):
        raise DocumentError(where, "missing_text", f"record {doc_id!r} has no 'text' string")
    title = title.strip() if isinstance(title, str) else ""
    full = f"{title}\n\n{text}" if title else text
    if not full.strip():
        raise DocumentError(where, "empty", f"record {doc_id!r} has empty text")
    if doc_id in seen:
        raise DocumentError(
            where,
            "duplicate_id",
            f"record id {doc_id!r} appeared earlier; ids must be unique within a corpus",
        )
    seen.add(doc_id)
    extra = {
        key: value
        for key, value in record.items()
        if key not in ("_id", "id", "text", "title") and isinstance(value, _SCALAR)
    }
    extra.update(line=number, size=len(line))
    return _document(info, Parsed(text=full, title=title or doc_id, extra=extra), doc_id=doc_id)


def _record_id(record: dict[str, Any]) -> str | None:
    for key in ("_id", "id"):
        value = record.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, (str, int)) and str(value).strip():
            return str(value)
    return None
