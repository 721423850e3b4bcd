"""The one resumable HTTP download ragline has (hub models, GGUF models, BEIR datasets).

A file streams into `<name>.part`; a rerun asks for the rest with a Range request, appends on
206 (after checking the server resumed at the right offset) and starts again on 200. A 416 to a
resumed request means the partial file is already whole (Content-Range `*/size` equal to it)
or is not a prefix of the file: then it is deleted and fetched again. Every received block is
written as it arrives, so an interruption loses nothing. A body shorter than Content-Length is
an error, never a complete file. Callers check the result (sha256, magic bytes), rename it into
place, and turn `DownloadFailed` into their own error with their own hint.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

Progress = Callable[[int, int | None], None]  # (bytes done, total or None), after each block


class DownloadFailed(Exception):
    """`status` is the HTTP status for a refused request, None for a transfer that broke."""

    def __init__(self, url: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.url, self.status = url, status


def resume_download(url: str, part: Path, *, client: httpx.Client,
                    progress: Progress | None = None) -> None:
    """Bring `part` up to the whole of `url`, resuming from what it already holds."""
    part.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.is_file() else 0
    # Byte ranges are offsets into the stored file, so ask for it unencoded.
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        with client.stream("GET", url, headers=headers) as response:
            if response.status_code == 416 and offset:
                if response.headers.get("content-range", "") == f"bytes */{offset}":
                    return  # already whole
                part.unlink()  # not a prefix of what the server holds: start again
                resume_download(url, part, client=client, progress=progress)
                return
            if response.status_code not in (200, 206):
                raise DownloadFailed(url, f"HTTP {response.status_code}",
                                     status=response.status_code)
            start = offset if response.status_code == 206 else 0
            if start and not response.headers.get("content-range", "").startswith(
                    f"bytes {start}-"):
                raise DownloadFailed(url, "the server resumed at another offset "
                                     f"({response.headers.get('content-range')!r})")
            length = response.headers.get("content-length", "")
            total = start + int(length) if length.isdigit() else None
            done = start
            with part.open("ab" if start else "wb") as handle:
                for block in response.iter_bytes():  # as it arrives: nothing buffered is lost
                    handle.write(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
    except httpx.HTTPError as exc:
        raise DownloadFailed(url, f"{type(exc).__name__}: {exc}") from exc
    if total is not None and done != total:
        raise DownloadFailed(url, f"the transfer ended at {done:,} of {total:,} bytes")
