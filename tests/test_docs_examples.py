"""Every example in the README and docs is a file the tests execute."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_runs_on_the_projects_docs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = runpy.run_path(str(ROOT / "docs_src" / "quickstart.py"))
    module["main"](str(ROOT / "docs"), str(tmp_path / "ix"))
    lines = capsys.readouterr().out.splitlines()
    added = int(lines[0].split()[0])
    assert added >= 1
    assert len(lines) >= 2  # at least one hit printed


def test_readme_quickstart_matches_the_example_file() -> None:
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / "docs_src" / "quickstart.py").read_text()
    for line in ("index = Index(\".ragline\")", "summary = index.ingest([\"docs/\"])"):
        assert line in readme
    assert "index.search(\"how are citations checked\", mode=\"hybrid\", k=5)" in example


@pytest.mark.integration
def test_llm_structured_example_returns_a_validated_object() -> None:
    module = runpy.run_path(str(ROOT / "docs_src" / "llm_structured.py"))
    city = module["main"]("local")
    assert city.name and city.country


def test_readme_configuration_example_is_a_valid_config() -> None:
    import re
    import tomllib

    from ragline.config import parse_config

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1]
    block = re.search(r"```toml\n(.*?)```", section, re.S)
    assert block is not None
    config = parse_config(tomllib.loads(block.group(1)))
    assert config.store.backend == "postgres" and config.store.schema_name == "ragline"
