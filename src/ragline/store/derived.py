"""Derived search structures (BM25 index, exact vector matrix), rebuilt from SQLite when stale.

They live in `<index>/derived/g<generation>/`. A folder is built under a temporary name and
renamed into place, so a reader sees a complete index or none; a process that finds no folder
for the current generation rebuilds it (under a lock, so two searches never build it twice).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from filelock import FileLock

from ragline.store.keyword import BM25Config, BM25Index, Scores
from ragline.store.sqlite import SQLiteStore


@dataclass(frozen=True, slots=True)
class VectorIndex:
    """Exact inner-product search over L2-normalised vectors (cosine similarity)."""

    matrix: npt.NDArray[np.float32]

    def scores(self, query_vector: npt.NDArray[np.float32]) -> Scores:
        if self.matrix.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        return np.asarray(self.matrix @ query_vector.astype(np.float32), dtype=np.float32)


@dataclass(frozen=True, slots=True)
class DerivedIndex:
    """Row i of both indexes is the chunk with SQLite rowid `rowids[i]`."""

    generation: int
    rowids: npt.NDArray[np.int64]
    bm25: BM25Index | None
    vectors: VectorIndex

    @property
    def size(self) -> int:
        return int(self.rowids.shape[0])


def _folder(index_dir: Path, generation: int) -> Path:
    return index_dir / "derived" / f"g{generation}"


def load_or_build(store: SQLiteStore, *, dim: int, bm25: BM25Config) -> DerivedIndex:
    """The derived index for the store's current generation, building it if missing or stale."""
    generation = store.generation
    folder = _folder(store.index_dir, generation)
    if _is_complete(folder, bm25):
        try:
            return _load(folder, generation)
        except FileNotFoundError:  # removed by a newer ingest's rebuild; take the locked path
            pass
    (store.index_dir / "derived").mkdir(parents=True, exist_ok=True)
    with FileLock(str(store.index_dir / "derived" / "build.lock"), timeout=600):
        generation, rowids, matrix, texts = store.chunk_snapshot(dim)
        folder = _folder(store.index_dir, generation)
        if not _is_complete(folder, bm25):
            _build(folder, rowids, matrix, texts, dim=dim, bm25=bm25)
        _remove_stale(store.index_dir, keep=generation)
        return _load(folder, generation)


def _is_complete(folder: Path, bm25: BM25Config) -> bool:
    info = folder / "info.json"
    if not info.exists():
        return False
    return bool(json.loads(info.read_text()).get("bm25") == asdict(bm25))


def _build(
    folder: Path,
    rowids: npt.NDArray[np.int64],
    matrix: npt.NDArray[np.float32],
    texts: list[str],
    *,
    dim: int,
    bm25: BM25Config,
) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=folder.parent))
    try:
        np.save(tmp / "rowids.npy", rowids)
        np.save(tmp / "vectors.npy", matrix)
        if texts:
            BM25Index.build(texts, bm25).save(tmp / "bm25")
        (tmp / "info.json").write_text(json.dumps({"rows": len(texts), "dim": dim,
                                                   "bm25": asdict(bm25)}))
        if folder.exists():  # a half-built or other-settings folder of this generation
            stale = folder.with_name(f".stale-{folder.name}-{os.getpid()}")
            os.replace(folder, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _load(folder: Path, generation: int) -> DerivedIndex:
    rowids = np.load(folder / "rowids.npy")
    matrix = np.load(folder / "vectors.npy")  # in RAM: a memory-mapped matmul is several times slower
    bm25 = BM25Index.load(folder / "bm25") if (folder / "bm25").exists() else None
    return DerivedIndex(generation, rowids, bm25, VectorIndex(np.asarray(matrix)))


def _remove_stale(index_dir: Path, *, keep: int) -> None:
    """Remove generations older than the previous one: a search that just picked the previous
    generation may still be loading it."""
    for old in (index_dir / "derived").glob("g*"):
        number = old.name[1:]
        if old.is_dir() and number.isdigit() and int(number) < keep - 1:
            shutil.rmtree(old, ignore_errors=True)
