from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes._http import FakeServer

pytest_plugins = ["tests.fakes.support"]

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"

# Session-scoped fixtures start before the per-test home below: they must not see the user's
# state either (an assembled generator there would replace the tests' SmolLM2, say).
os.environ["RAGLINE_HOME"] = tempfile.mkdtemp(prefix="ragline-test-home-")
# The embedder folds its model once per $RAGLINE_HOME (ragline.embed.onnx.folded_model); every
# test home shares this session's folded copy rather than folding again.
FOLDED = Path(os.environ["RAGLINE_HOME"]) / "cache" / "onnx-folded"
FOLDED.mkdir(parents=True)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own $RAGLINE_HOME, so no test reads or writes the user's state."""
    home = tmp_path_factory.mktemp("ragline_home")
    (home / "cache").mkdir()
    (home / "cache" / "onnx-folded").symlink_to(FOLDED, target_is_directory=True)
    monkeypatch.setenv("RAGLINE_HOME", str(home))
    yield home


@pytest.fixture(scope="session")
def embedder() -> object:
    """The real default embedding model (int8 MiniLM on onnxruntime), loaded once per session."""
    from ragline.embed.onnx import OnnxEmbedder

    return OnnxEmbedder(threads=1)


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The PostgreSQL server of `scripts/postgres.sh` (started if needed): a DSN without password."""
    dsn = os.environ.get("RAGLINE_TEST_PG_DSN")
    if dsn:
        return dsn
    import subprocess

    root = Path(__file__).resolve().parents[1]
    started = subprocess.run([str(root / "scripts" / "postgres.sh")], capture_output=True,
                             text=True, timeout=900)
    if started.returncode != 0:
        pytest.fail("scripts/postgres.sh could not start PostgreSQL (set RAGLINE_NO_POSTGRES=1 "
                    f"to deselect the postgres tests):\n{started.stderr[-2000:]}")
    os.environ.setdefault("RAGLINE_PG_PASSWORD", "ragline-test")
    return started.stdout.strip().splitlines()[-1]


@pytest.fixture
def runs() -> Iterator[list[FakeServer]]:
    """The scripted fake servers a test starts (append each): every one is stopped after it."""
    servers: list[FakeServer] = []
    yield servers
    for server in servers:
        server.stop()
