"""A damaged index: derived files are checked and rebuilt, a damaged database is a clear error,
and `ragline doctor` checks and salvages it without losing a readable document."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ragline import Index
from ragline.embed.base import Embedder
from ragline.errors import IndexDamaged
from ragline.store.doctor import PROBLEM, REPAIRED, diagnose
from tests.test_cli import ragline
from tests.test_index import write_corpus


@pytest.fixture()
def built(tmp_path: Path, embedder: Embedder) -> tuple[Index, Path]:
    corpus = write_corpus(tmp_path / "corpus")
    index = Index(tmp_path / "index", embedder=embedder)
    index.ingest(corpus)
    index.close()
    return index, corpus


def _current(index: Index) -> Path:
    (folder,) = (index.path / "derived").glob("g*")
    return folder


def _garble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))


DAMAGE: dict[str, Callable[[Path], None]] = {
    "deleted vectors": lambda f: (f / "vectors.npy").unlink(),
    "truncated vectors": lambda f: os.truncate(f / "vectors.npy", 100),
    "garbled bm25 (same size)": lambda f: _garble(next((f / "bm25").glob("data*.npy"))),
    "garbage info.json": lambda f: (f / "info.json").write_text("{not json"),
    "rows swapped for another array": lambda f: (f / "rowids.npy").write_bytes(b"\x93NUMPY"),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_damaged_search_files_are_rebuilt_with_a_note(
    built: tuple[Index, Path], embedder: Embedder, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    index, _ = built
    DAMAGE[damage](_current(index))
    with caplog.at_level(logging.WARNING, logger="ragline"):
        hits = Index(index.path, embedder=embedder).search("risotto", mode="bm25")
    assert hits[0].chunk.doc_id == "corpus/notes/cooking.txt"
    assert any("damaged" in r.getMessage() and "rebuilding" in r.getMessage()
               for r in caplog.records), damage
    assert diagnose(index.path).healthy


def test_reingest_repairs_damaged_search_files(built: tuple[Index, Path], embedder: Embedder) -> None:
    index, corpus = built
    os.truncate(_current(index) / "vectors.npy", 100)
    report = diagnose(index.path)
    assert not report.healthy
    assert [f.check for f in report.findings if f.status == PROBLEM] == ["search files"]
    summary = Index(index.path, embedder=embedder).ingest(corpus)
    assert summary.unchanged == 4
    assert diagnose(index.path).healthy


def _damage_database(index: Index) -> None:
    db = index.path / "ragline.sqlite"
    size = db.stat().st_size
    with db.open("r+b") as handle:  # garbage over pages in the middle, the header intact
        handle.seek(size // 2 // 4096 * 4096)
        handle.write(os.urandom(3 * 4096))


def test_damaged_database_is_an_error_naming_doctor(
    built: tuple[Index, Path], embedder: Embedder
) -> None:
    index, corpus = built
    _damage_database(index)
    with pytest.raises(IndexDamaged, match="ragline doctor --repair"):
        Index(index.path, embedder=embedder).ingest(corpus)
    with pytest.raises(IndexDamaged):
        Index(index.path, embedder=embedder).stats()


def test_doctor_repair_salvages_and_reingest_restores_everything(
    built: tuple[Index, Path], embedder: Embedder
) -> None:
    index, corpus = built
    before = {h.chunk.doc_id for h in Index(index.path, embedder=embedder).search("the", k=50)}
    _damage_database(index)
    assert diagnose(index.path).findings[0].status == PROBLEM
    repaired = diagnose(index.path, repair=True)
    assert repaired.findings[0].status == REPAIRED
    assert list(index.path.glob("ragline.sqlite.damaged-*")), "the damaged file is kept"
    assert diagnose(index.path).healthy
    again = Index(index.path, embedder=embedder)
    again.ingest(corpus)
    assert again.stats()["documents"] == 4
    assert {h.chunk.doc_id for h in again.search("the", k=50)} == before


def test_cli_never_exits_zero_on_a_damaged_database(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    index = tmp_path / "ix"
    ragline("ingest", str(corpus), "--index", str(index), "--json")
    _damage_database(Index(index))
    result = ragline("ingest", str(corpus), "--index", str(index), check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "is damaged" in result.stderr and "ragline doctor" in result.stderr
    check = ragline("doctor", "--index", str(index), "--json", check=False)
    assert check.returncode == 1 and not json.loads(check.stdout)["healthy"]
    assert ragline("doctor", "--repair", "--index", str(index)).returncode == 0
    assert ragline("doctor", "--index", str(index)).returncode == 0
