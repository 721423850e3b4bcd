"""Explicit model download from a Hugging Face-style hub, for users with internet access.

ragline never calls this on its own: not at import, not as a fallback when a packaged model is
missing. Files stream to `<name>.part`, resume with an HTTP Range request after an interruption,
are checked against an optional sha256, and are renamed into place atomically.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import httpx

from ragline._download import DownloadFailed, resume_download
from ragline.errors import EmbedderError


class ModelDownloadError(EmbedderError):
    """A model file could not be downloaded."""


class ChecksumMismatch(ModelDownloadError):
    """A downloaded file's sha256 differs from the expected one."""


def file_url(endpoint: str, repo_id: str, revision: str, filename: str) -> str:
    """The hub URL of one file of a repository at a revision."""
    return f"{endpoint.rstrip('/')}/{repo_id}/resolve/{revision}/{filename}"


def download_model(
    repo_id: str,
    files: Sequence[str],
    dest: Path,
    *,
    endpoint: str = "https://huggingface.co",
    revision: str = "main",
    sha256: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download `files` of `repo_id` into `dest` (keeping sub-folders) and return `dest`.

    Files already present (and matching `sha256`, when given) are not fetched again.
    """
    expected = sha256 or {}
    unknown = sorted(set(expected) - set(files))
    if unknown:
        raise ModelDownloadError(f"sha256 given for files not requested: {unknown}")
    dest.mkdir(parents=True, exist_ok=True)
    with httpx.Client(timeout=timeout, follow_redirects=True) as client:
        for name in files:
            target = dest / safe_relative(name)
            want = expected.get(name)
            if target.is_file() and (want is None or sha256_of(target) == want.lower()):
                continue
            url = file_url(endpoint, repo_id, revision, name)
            fetch_file(client, url, target, want)
    return dest


def safe_relative(name: str) -> Path:
    """`name` as a relative path inside the destination; rejects absolute paths and `..`."""
    parts = PurePosixPath(name).parts
    if not parts or PurePosixPath(name).is_absolute() or ".." in parts:
        raise ModelDownloadError(
            f"refusing file name {name!r}: it must be a relative path without '..'"
        )
    return Path(*parts)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def fetch_file(client: httpx.Client, url: str, target: Path, sha256: str | None) -> None:
    """Stream `url` into `target` via `target.part`, resuming a partial download if one exists."""
    part = target.with_name(target.name + ".part")
    try:
        resume_download(url, part, client=client)
    except DownloadFailed as exc:
        if exc.status is not None:
            raise ModelDownloadError(
                f"GET {url} returned HTTP {exc.status}; check the repository id, file name and "
                "revision (private repositories are not supported)") from None
        raise ModelDownloadError(
            f"download of {url} failed: {exc}; run the same call again to resume from "
            f"{part.stat().st_size if part.is_file() else 0} bytes") from exc
    verify_and_publish(part, target, url, sha256)


def verify_and_publish(part: Path, target: Path, url: str, sha256: str | None) -> None:
    """Check the finished `.part` file's sha256 (if expected) and rename it onto `target`."""
    if sha256 is not None:
        actual = sha256_of(part)
        if actual != sha256.lower():
            part.unlink()
            raise ChecksumMismatch(
                f"{url}: sha256 is {actual}, expected {sha256.lower()}; the partial file was "
                "deleted. Check the expected hash and revision, then download again"
            )
    os.replace(part, target)
