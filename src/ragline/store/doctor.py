"""`ragline doctor`: check an index folder and repair what can be repaired.

On PostgreSQL (`--config` with a postgres `[store]`): the server is reachable and the schema
current, the HNSW index is built (an interrupted first ingest leaves it to be built), then the
search files, failures and lock as below.

Checks, in order: SQLite's own `PRAGMA integrity_check`; every chunk's embedding has the index's
dimension; the derived search files of the current generation match their checksums; recorded
failures still name files that exist; the write lock's owner is alive.

Repairs (`repair=True`): derived files are rebuilt from SQLite; failures of vanished files and a
dead writer's lock note are cleared. A damaged SQLite file is *salvaged*: every row SQLite can
still read is copied into a fresh database, the damaged file is kept beside it
(`ragline.sqlite.damaged-<time>`), and a document survives only whole (all its chunks readable),
so the next `ragline ingest` of the same paths re-adds exactly the documents that were lost
(their embeddings come back from the embedding cache, not the model).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ragline.store import derived
from ragline.store.base import Store
from ragline.store.sqlite import DB_NAME, SQLiteStore

if TYPE_CHECKING:
    from ragline.config import RaglineConfig
    from ragline.store.postgres import PostgresStore

OK, PROBLEM, REPAIRED = "ok", "problem", "repaired"
_TABLES = ("meta", "documents", "chunks", "files", "failures")


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    status: str  # ok | problem | repaired
    detail: str
    fix: str = ""


@dataclass(slots=True)
class Report:
    index: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return all(f.status != PROBLEM for f in self.findings)

    def to_dict(self) -> dict[str, object]:
        return {"index": self.index, "healthy": self.healthy,
                "findings": [asdict(f) for f in self.findings]}


def diagnose(index_dir: Path, *, repair: bool = False,
             config: RaglineConfig | None = None) -> Report:
    """Check the index at `index_dir`; with `repair`, fix what can be fixed and say what was.
    With a `config` whose `[store]` is PostgreSQL, the database checked is that server's."""
    if config is not None and config.store.backend == "postgres":
        return _diagnose_postgres(index_dir, config, repair)
    report = Report(str(index_dir))
    db = index_dir / DB_NAME
    if not db.exists():
        report.findings.append(Finding("database", PROBLEM, f"no {DB_NAME} in {index_dir}",
                                       f"ragline ingest PATH --index {index_dir}"))
        return report
    problems = _integrity(db)
    if problems:
        if not repair:
            report.findings.append(Finding(
                "database", PROBLEM, "SQLite integrity check failed: " + "; ".join(problems[:3]),
                f"ragline doctor --repair --index {index_dir}"))
            return report
        report.findings.append(_salvage(index_dir))
    else:
        report.findings.append(Finding("database", OK, "SQLite integrity check passed"))
    store = SQLiteStore(index_dir)
    try:
        report.findings.append(_check_embeddings(store))
        report.findings.append(_check_derived(store, index_dir, repair, config))
        report.findings.append(_check_failures(store, index_dir, repair))
    finally:
        store.close()
    report.findings.append(_check_lock(index_dir, repair))
    return report


def _integrity(db: Path) -> list[str]:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    try:
        rows = conn.execute("PRAGMA integrity_check(20)").fetchall()
        problems = [str(r[0]) for r in rows]
        return [] if problems == ["ok"] else problems
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    finally:
        conn.close()


def _check_embeddings(store: SQLiteStore) -> Finding:
    conn = store._conn
    lengths = conn.execute(
        "SELECT length(embedding), count(*) FROM chunks GROUP BY 1 ORDER BY 2 DESC").fetchall()
    if len(lengths) <= 1:
        dims = f"{lengths[0][0] // 4}-dimensional" if lengths else "no"
        return Finding("embeddings", OK, f"{sum(n for _, n in lengths)} chunks, {dims} vectors")
    usual = lengths[0][0]
    odd = sum(n for size, n in lengths[1:])
    return Finding("embeddings", PROBLEM,
                   f"{odd} chunks have a vector of another size than the usual {usual // 4}",
                   "ingest into a new --index folder (the embedding cache makes it quick)")


def _diagnose_postgres(index_dir: Path, config: RaglineConfig, repair: bool) -> Report:
    """The server keeps its own files sound (WAL, page checksums): what is checked is that the
    index is reachable and current, its HNSW index built, its search files, failures, lock."""
    from ragline.errors import RaglineError
    from ragline.store.postgres import PostgresStore, describe_dsn

    settings = config.store
    where = f"{describe_dsn(settings.dsn or '')}, schema {settings.schema_name}"
    report = Report(f"{index_dir} ({where})")
    try:
        store = PostgresStore(settings.dsn or "", schema=settings.schema_name,
                              password_env=settings.password_env)
    except RaglineError as exc:
        report.findings.append(Finding("database", PROBLEM, str(exc),
                                       "fix the [store] settings or start the server, then "
                                       "run doctor again"))
        return report
    try:
        report.findings.append(Finding("database", OK, f"PostgreSQL reachable at {where}; "
                                       f"{store.count_chunks()} chunks of {store.dim} dimensions"))
        report.findings.append(_check_hnsw(store, repair))
        report.findings.append(_check_derived(store, index_dir, repair, config))
        report.findings.append(_check_failures(store, index_dir, repair))
    finally:
        store.close()
    report.findings.append(_check_lock(index_dir, repair))
    return report


def _check_hnsw(store: PostgresStore, repair: bool) -> Finding:
    if store._hnsw_indexes():
        return Finding("HNSW index", OK, "built")
    if repair:
        store.build_hnsw()
        return Finding("HNSW index", REPAIRED, "was missing (an interrupted first ingest); built")
    return Finding("HNSW index", PROBLEM,
                   "missing (an interrupted first ingest): native dense search scans every row",
                   "ragline doctor --repair (or the next ingest builds it)")


def _check_derived(store: Store, index_dir: Path, repair: bool,
                   config: RaglineConfig | None) -> Finding:
    folder = index_dir / "derived" / f"g{store.generation}"
    why = derived.check(folder)
    if why is None:
        return Finding("search files", OK, f"{folder.name} matches its checksums")
    if why == "missing" and not repair:
        native = config is not None and config.store.search == "native"
        return Finding("search files", OK, "not built: native search does not use them" if native
                       else "not built yet: the next search builds them")
    if not repair:
        return Finding("search files", PROBLEM, f"{folder.name} {why}",
                       f"ragline doctor --repair --index {index_dir} (or any search)")
    from ragline.index import Index  # the settings the index was built with, one way

    shutil.rmtree(folder, ignore_errors=True)
    with Index(index_dir, config) as index:
        index.build_search_files()
    return Finding("search files", REPAIRED, f"{folder.name} was {why}; rebuilt from SQLite")


def _check_failures(store: Store, index_dir: Path, repair: bool) -> Finding:
    failures = store.failures()
    gone = [path for path, _, _ in failures if not os.path.lexists(path.rsplit(":", 1)[0])
            and not os.path.lexists(path)]
    if not gone:
        return Finding("failures", OK, f"{len(failures)} recorded, all for existing files")
    if not repair:
        return Finding("failures", PROBLEM, f"{len(gone)} recorded failures name vanished files",
                       f"ragline doctor --repair --index {index_dir}")
    for path in gone:
        store.clear_failures(path)
    return Finding("failures", REPAIRED, f"cleared {len(gone)} failures of vanished files")


def _check_lock(index_dir: Path, repair: bool) -> Finding:
    from ragline.ingest import pid_alive

    owner = index_dir / "write.lock.owner"
    try:
        pid = int(json.loads(owner.read_text())["pid"])
    except FileNotFoundError:
        return Finding("write lock", OK, "free")
    except (OSError, ValueError, KeyError, TypeError):
        pid = -1
    if pid > 0 and pid_alive(pid):
        return Finding("write lock", OK, f"held by a running ingest (pid {pid})")
    if repair:
        owner.unlink(missing_ok=True)
        return Finding("write lock", REPAIRED, "removed the note of a writer that is gone")
    return Finding("write lock", OK, "a writer that is gone left a note (harmless)")


# -- salvage ----------------------------------------------------------------------------------


def _salvage(index_dir: Path) -> Finding:
    """Copy every readable row of the damaged database into a fresh one, keeping whole
    documents only; the damaged file is renamed aside, never deleted."""
    db = index_dir / DB_NAME
    fresh = index_dir / f".{DB_NAME}.salvage"
    fresh.unlink(missing_ok=True)
    SQLiteStore(index_dir / ".salvage-schema", create=True).close()  # the current schema
    shutil.move(str(index_dir / ".salvage-schema" / DB_NAME), fresh)
    shutil.rmtree(index_dir / ".salvage-schema", ignore_errors=True)
    source = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    target = sqlite3.connect(fresh, isolation_level=None)
    lost: dict[str, list[tuple[int, int]]] = {}
    try:
        target.execute("BEGIN")
        target.execute("DELETE FROM meta")
        for table in _TABLES:
            columns = _columns(target, table)
            names = ", ".join(f'"{c}"' for c in columns)
            marks = ", ".join("?" * len(columns))
            gaps: list[tuple[int, int]] = []
            for row in _readable_rows(source, table, names, gaps):
                target.execute(f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({marks})", row)
            lost[table] = gaps
        kept_docs, files_to_redo = _keep_whole_documents(target, lost["chunks"])
        target.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")
        target.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('generation', '1')")
        target.execute("COMMIT")
    finally:
        source.close()
        target.close()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = index_dir / f"{DB_NAME}.damaged-{stamp}"
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{db}{suffix}").exists():
            os.replace(f"{db}{suffix}", f"{aside}{suffix}")
    os.replace(fresh, db)
    shutil.rmtree(index_dir / "derived", ignore_errors=True)
    unreadable = sum(b - a + 1 for gaps in lost.values() for a, b in gaps)
    detail = (f"database was damaged ({unreadable} unreadable rows); recovered {kept_docs} "
              f"whole documents; {files_to_redo} file(s) to ingest again (damaged file kept as "
              f"{aside.name})")
    fix = ("run the same `ragline ingest` again: it re-adds what was lost" if files_to_redo
           or unreadable else "")
    return Finding("database", REPAIRED, detail, fix)


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")]


def _readable_rows(
    conn: sqlite3.Connection, table: str, names: str, gaps: list[tuple[int, int]]
) -> Iterator[tuple[object, ...]]:
    """Rows of `table` by rowid range, bisecting around the ranges SQLite cannot read."""
    try:
        low, high = conn.execute(f"SELECT min(rowid), max(rowid) FROM {table}").fetchone()
    except sqlite3.DatabaseError:
        low, high = 1, 1 << 22  # the table's own b-tree root may be unreadable: probe widely
    if low is None:
        return
    stack = [(int(low), int(high))]
    while stack:
        a, b = stack.pop()
        try:
            rows = conn.execute(
                f"SELECT {names} FROM {table} WHERE rowid BETWEEN ? AND ? ORDER BY rowid",
                (a, b)).fetchall()
        except sqlite3.DatabaseError:
            if a == b:
                gaps.append((a, b))
            else:
                middle = (a + b) // 2
                stack.extend([(middle + 1, b), (a, middle)])
            continue
        yield from rows


def _keep_whole_documents(
    conn: sqlite3.Connection, chunk_gaps: list[tuple[int, int]]
) -> tuple[int, int]:
    """Drop documents that lost a chunk (a document's chunks have consecutive rowids, so a lost
    rowid belongs to the document of its neighbours), and the file records that point at a
    missing document, so that re-ingesting the file restores it."""
    suspects: set[str] = set()
    for a, b in chunk_gaps:
        for row in conn.execute(
            "SELECT doc_id FROM chunks WHERE rowid IN "
            "((SELECT max(rowid) FROM chunks WHERE rowid < ?), "
            " (SELECT min(rowid) FROM chunks WHERE rowid > ?))", (a, b)):
            suspects.add(str(row[0]))
    # Chunks whose document row was lost, and documents with gaps in their chunk ordinals.
    conn.execute("DELETE FROM chunks WHERE doc_id NOT IN (SELECT id FROM documents)")
    for (doc_id,) in conn.execute(
            "SELECT doc_id FROM chunks GROUP BY doc_id HAVING count(*) != max(ordinal) + 1"):
        suspects.add(str(doc_id))
    conn.executemany("DELETE FROM chunks WHERE doc_id = ?", [(d,) for d in suspects])
    conn.executemany("DELETE FROM documents WHERE id = ?", [(d,) for d in suspects])
    present = {str(r[0]) for r in conn.execute("SELECT id FROM documents")}
    stale = [str(path) for path, ids in conn.execute("SELECT path, doc_ids FROM files")
             if not set(json.loads(ids)) <= present]
    conn.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in stale])
    return len(present), len(stale)
