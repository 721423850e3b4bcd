"""Ingest progress on stderr: a live bar on a terminal, one plain line every few seconds
otherwise (a log file, CI, `--json` piped somewhere). Imported only by `ragline ingest`."""

from __future__ import annotations

import time
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

LINE_EVERY_S = 5.0


def printable(name: str) -> str:
    """A file name or id on one line: control characters (a newline in a name) escaped."""
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


class _Counts:
    """What every display shows: files done, documents, chunks chunked and embedded."""

    def __init__(self) -> None:
        self.total_files: int | None = None
        self.files = self.documents = self.chunked = self.embedded = 0
        self.started = time.monotonic()

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        files = f"{self.files}/{self.total_files}" if self.total_files is not None else self.files
        rate = self.embedded / elapsed if elapsed > 0 else 0.0
        return (f"ingest: {files} files, {self.documents:,} documents, "
                f"{self.embedded:,}/{self.chunked:,} chunks embedded ({rate:,.1f} chunks/s), "
                f"{elapsed:,.0f}s")


class _EmbeddedColumn(ProgressColumn):
    def __init__(self, counts: _Counts) -> None:
        super().__init__()
        self.counts = counts

    def render(self, task: Task) -> Text:
        c = self.counts
        elapsed = task.elapsed or 0.0
        rate = c.embedded / elapsed if elapsed > 0 else 0.0
        return Text(f"{c.embedded:,}/{c.chunked:,} chunks embedded · {rate:,.1f} chunks/s",
                    style="cyan")


class BarProgress:
    """A rich progress bar (files) with the embedding count and rate beside it."""

    def __init__(self, console: Console) -> None:
        self.counts = _Counts()
        self.live = True  # failures are printed as they happen, not again in the summary
        self._progress = Progress(
            TextColumn("[bold]ingest"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
            _EmbeddedColumn(self.counts), TimeElapsedColumn(), console=console, transient=False)
        self._task = self._progress.add_task("ingest", total=None)

    def __enter__(self) -> BarProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)

    def start(self, total_files: int) -> None:
        self.counts.total_files = total_files
        self._progress.update(self._task, total=total_files)

    def chunked(self, chunks: int) -> None:
        self.counts.chunked += chunks
        self._progress.refresh()

    def advance(self, files: int, documents: int, chunks: int) -> None:
        c = self.counts
        c.files, c.documents, c.embedded = c.files + files, c.documents + documents, \
            c.embedded + chunks
        self._progress.update(self._task, advance=files)

    def failure(self, path: str, reason: str, message: str) -> None:
        self._progress.console.print(
            Text.assemble(("skipped ", "yellow"), f"{printable(path)}: {message}"),
            highlight=False)


class LineProgress:
    """One plain line on `stream` every LINE_EVERY_S seconds, and one at the end; failures are
    left to the summary."""

    def __init__(self, stream: TextIO, every: float = LINE_EVERY_S) -> None:
        self.counts = _Counts()
        self.live = False
        self._stream, self._every = stream, every
        self._last = time.monotonic()
        self._written: tuple[int, ...] = ()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.counts.files or self.counts.documents:
            self._write()

    def start(self, total_files: int) -> None:
        self.counts.total_files = total_files

    def chunked(self, chunks: int) -> None:
        self.counts.chunked += chunks

    def advance(self, files: int, documents: int, chunks: int) -> None:
        c = self.counts
        c.files, c.documents, c.embedded = c.files + files, c.documents + documents, \
            c.embedded + chunks
        if time.monotonic() - self._last >= self._every:
            self._write()

    def failure(self, path: str, reason: str, message: str) -> None:
        pass

    def _write(self) -> None:
        self._last = time.monotonic()
        c = self.counts
        state = (c.files, c.documents, c.embedded, c.chunked)
        if state == self._written:  # nothing new since the last line: the closing one repeats it
            return
        self._written = state
        self._stream.write(c.line() + "\n")
        self._stream.flush()


class NoProgress(LineProgress):
    def _write(self) -> None:
        pass
