"""Derived search structures (BM25 index, exact vector matrix), rebuilt from SQLite when stale.

They live in `<index>/derived/g<generation>/`. A folder is built under a temporary name and
renamed into place, so a reader sees a complete index or none; a process that finds no folder
for the current generation rebuilds it (under a lock, so two searches never build it twice).
`info.json` records the size and CRC-32 of every file in the folder; a folder whose files do not
match (deleted, truncated, garbled) is rebuilt from SQLite with a warning on the `ragline` logger,
never loaded.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from filelock import FileLock

from ragline.store.base import Store
from ragline.store.keyword import BM25Config, BM25Index, Scores

BLAS_THREADS_ENV = "RAGLINE_BLAS_THREADS"


@functools.cache
def _blas_libraries() -> tuple[Any, ...]:
    """The loaded BLAS libraries (threadpoolctl), found once per process."""
    from threadpoolctl import ThreadpoolController

    return tuple(ThreadpoolController().select(user_api="blas").lib_controllers)


@contextmanager
def blas_threads(n: int | None = None) -> Iterator[None]:
    """BLAS limited to `n` threads (default: $RAGLINE_BLAS_THREADS, else 1) for the block.

    A matrix-vector product over a few thousand rows is done before BLAS's threads wake up; on
    a busy machine OpenBLAS's spinning threads made the 5,183 x 384 scan of SciFact take 5-20 ms
    instead of 0.3 ms and slowed the next onnxruntime call. 0 leaves BLAS as it is. The limit is
    set straight on each library (two C calls), not through threadpoolctl's context manager,
    which costs ~0.3 ms per search.
    """
    if n is None:
        n = int(os.environ.get(BLAS_THREADS_ENV) or 1)
    libraries = _blas_libraries() if n > 0 else ()
    before = [lib.get_num_threads() for lib in libraries]
    for lib in libraries:
        lib.set_num_threads(n)
    try:
        yield
    finally:
        for lib, count in zip(libraries, before, strict=True):
            lib.set_num_threads(count)


@dataclass(frozen=True, slots=True)
class VectorIndex:
    """Exact inner-product search over L2-normalised vectors (cosine similarity)."""

    matrix: npt.NDArray[np.float32]

    def scores(self, query_vector: npt.NDArray[np.float32]) -> Scores:
        if self.matrix.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        with blas_threads():
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


log = logging.getLogger("ragline")
INFO_VERSION = 2  # 2: info.json lists every file with its size and CRC-32


class DerivedDamaged(Exception):
    """A derived folder's files do not match its info.json (internal: the folder is rebuilt)."""


def _folder(index_dir: Path, generation: int) -> Path:
    return index_dir / "derived" / f"g{generation}"


def load_or_build(store: Store, index_dir: Path, *, dim: int, bm25: BM25Config) -> DerivedIndex:
    """The derived index for the store's current generation, kept in `index_dir`/derived and
    built from the store if missing, stale or damaged."""
    generation = store.generation
    folder = _folder(index_dir, generation)
    try:
        if _is_current(folder, bm25, dim, store.store_id):
            return _load(folder, generation)
    except DerivedDamaged:
        pass  # said and repaired under the lock, where a concurrent rebuild is visible
    generation = ensure_built(store, index_dir, dim=dim, bm25=bm25)
    return _load(_folder(index_dir, generation), generation)


def ensure_built(store: Store, index_dir: Path, *, dim: int, bm25: BM25Config) -> int:
    """Check the derived files of the store's current generation (sizes and checksums) and
    build them if missing, stale or damaged, without loading them; returns the generation.

    What an ingest ends with: its peak memory is the build's, not the build's plus a loaded
    index it does not search."""
    source = store.store_id
    (index_dir / "derived").mkdir(parents=True, exist_ok=True)
    with FileLock(str(index_dir / "derived" / "build.lock"), timeout=600):
        with store.chunk_snapshot(dim) as (generation, rowids, blocks, texts):
            folder = _folder(index_dir, generation)
            try:
                if _is_current(folder, bm25, dim, source):
                    _verify_files(folder, _read_info(folder) or {})
                    _remove_stale(index_dir, keep=generation)
                    return generation
            except DerivedDamaged as exc:
                log.warning("the search files in %s are damaged (%s); rebuilding them from the "
                            "index database", folder, exc)
            _build(folder, rowids, blocks, texts, dim=dim, bm25=bm25, source=source)
        _remove_stale(index_dir, keep=generation)
        return generation


def check(folder: Path) -> str | None:
    """Why the derived folder cannot be used (missing, damaged, old format), or None if sound."""
    try:
        info = _read_info(folder)
        if info is None:
            return "missing"
        if info.get("version") != INFO_VERSION:
            return "built by an older ragline"
        _verify_files(folder, info)
    except DerivedDamaged as exc:
        return f"damaged: {exc}"
    return None


def _read_info(folder: Path) -> dict[str, object] | None:
    try:
        text = (folder / "info.json").read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DerivedDamaged(f"info.json unreadable ({exc.strerror})") from exc
    try:
        info = json.loads(text)
    except ValueError as exc:
        raise DerivedDamaged("info.json is not valid JSON") from exc
    if not isinstance(info, dict):
        raise DerivedDamaged("info.json is not a JSON object")
    return info


def _is_current(folder: Path, bm25: BM25Config, dim: int, source: str) -> bool:
    """True if the folder holds an index of these settings, built from this database (its
    files are checked on load). A folder from before store ids is rebuilt once."""
    info = _read_info(folder)
    if info is None or info.get("version") != INFO_VERSION:
        return False  # absent, or from before checksums: rebuilt quietly, nothing is wrong
    return bool(info.get("bm25") == asdict(bm25) and info.get("dim") == dim
                and info.get("store") == source)


def _crc32(path: Path) -> str:
    value = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            value = zlib.crc32(block, value)
    return f"{value:08x}"


def _manifest(folder: Path) -> dict[str, list[object]]:
    return {
        f.relative_to(folder).as_posix(): [f.stat().st_size, _crc32(f)]
        for f in sorted(folder.rglob("*")) if f.is_file() and f.name != "info.json"
    }


def _verify_files(folder: Path, info: dict[str, object]) -> None:
    expected = info.get("files")
    if not isinstance(expected, dict) or not expected:
        raise DerivedDamaged("info.json lists no files")
    for name, entry in expected.items():
        path = folder / name
        if not isinstance(entry, list) or len(entry) != 2:
            raise DerivedDamaged(f"info.json entry for {name} is malformed")
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise DerivedDamaged(f"{name} is missing") from None
        if size != entry[0]:
            raise DerivedDamaged(f"{name} is {size:,} bytes, expected {entry[0]:,}")
        if _crc32(path) != entry[1]:
            raise DerivedDamaged(f"{name} does not match its checksum")


def _build(
    folder: Path,
    rowids: npt.NDArray[np.int64],
    blocks: Iterable[npt.NDArray[np.float32]],
    texts: Iterable[str],
    *,
    dim: int,
    bm25: BM25Config,
    source: str,
) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=folder.parent))
    try:
        np.save(tmp / "rowids.npy", rowids)
        _save_blocks(tmp / "vectors.npy", blocks, rows=len(rowids), dim=dim)
        if len(rowids):
            BM25Index.build(texts, bm25).save(tmp / "bm25")
        (tmp / "info.json").write_text(json.dumps({
            "version": INFO_VERSION, "rows": len(rowids), "dim": dim, "bm25": asdict(bm25),
            "store": source, "files": _manifest(tmp),
        }))
        if folder.exists():  # a half-built or other-settings folder of this generation
            stale = folder.with_name(f".stale-{folder.name}-{os.getpid()}")
            os.replace(folder, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _save_blocks(path: Path, blocks: Iterable[npt.NDArray[np.float32]], *, rows: int,
                 dim: int) -> None:
    """Write an [rows, dim] float32 .npy file block by block (never the whole matrix in RAM)."""
    written = 0
    with path.open("wb") as out:
        np.lib.format.write_array_header_1_0(
            out, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                  "fortran_order": False, "shape": (rows, dim)})
        for block in blocks:
            out.write(np.ascontiguousarray(block, dtype=np.float32).tobytes())
            written += len(block)
    if written != rows:  # the snapshot changed under us: a bug, never a silent short file
        raise RuntimeError(f"the snapshot gave {written} embeddings for {rows} rows")


def _load(folder: Path, generation: int) -> DerivedIndex:
    """Load a folder whose files match its info.json; DerivedDamaged if they do not."""
    info = _read_info(folder)
    if info is None:
        raise DerivedDamaged("info.json is missing")
    _verify_files(folder, info)
    try:
        rowids = np.load(folder / "rowids.npy", allow_pickle=False)
        # In RAM: a memory-mapped matmul is several times slower.
        matrix = np.load(folder / "vectors.npy", allow_pickle=False)
        bm25 = BM25Index.load(folder / "bm25") if (folder / "bm25").exists() else None
    except (OSError, ValueError, EOFError, KeyError) as exc:  # sound checksums, unreadable data
        raise DerivedDamaged(f"unreadable ({exc})") from exc
    rows = info.get("rows")
    if rowids.shape != (rows,) or matrix.shape != (rows, info.get("dim")):
        raise DerivedDamaged(f"holds {rowids.shape[0]} rows, info.json says {rows}")
    return DerivedIndex(generation, rowids, bm25, VectorIndex(np.asarray(matrix)))


def _remove_stale(index_dir: Path, *, keep: int) -> None:
    """Remove generations older than the previous one: a search that just picked the previous
    generation may still be loading it."""
    for old in (index_dir / "derived").glob("g*"):
        number = old.name[1:]
        if old.is_dir() and number.isdigit() and int(number) < keep - 1:
            shutil.rmtree(old, ignore_errors=True)
