"""Evaluation datasets: BEIR folders, JSONL question sets, the HotpotQA set.

Every dataset presents the same retrieval view (`RetrievalDataset`): a name, a content hash of
the files it was read from, `queries` ({qid: text}), `qrels` ({qid: {doc_id: grade}}),
`iter_documents()` and `warnings` (what was skipped and why). `fetch_beir` downloads a BEIR zip
for users with internet; nothing here touches the network unless that function is called.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import tempfile
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx

from ragline._download import DownloadFailed, resume_download
from ragline.errors import DatasetError
from ragline.types import DocType, Document

__all__ = [
    "BeirDataset",
    "QADataset",
    "QAItem",
    "RetrievalDataset",
    "fetch_beir",
    "load_beir",
    "load_hotpotqa",
    "load_qa_jsonl",
]

log = logging.getLogger(__name__)

BEIR_LAYOUT = "corpus.jsonl, queries.jsonl and qrels/<split>.tsv (query-id, corpus-id, score)"


@runtime_checkable
class RetrievalDataset(Protocol):
    """What a retrieval evaluation needs from a dataset."""

    @property
    def name(self) -> str: ...

    @property
    def hash(self) -> str: ...

    @property
    def queries(self) -> dict[str, str]: ...

    @property
    def qrels(self) -> dict[str, dict[str, int]]: ...

    @property
    def warnings(self) -> tuple[str, ...]: ...

    def iter_documents(self) -> Iterator[Document]: ...


def _document(doc_id: str, title: str, text: str, source: Path | None) -> Document:
    full = f"{title}\n\n{text}" if title else text
    return Document(
        id=doc_id,
        text=full,
        doc_type=DocType.JSONL,
        content_hash=hashlib.sha256(full.encode("utf-8")).hexdigest(),
        title=title,
        source_path=str(source) if source else None,
    )


def _hash_files(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise DatasetError(f"{path}:{lineno}: expected a JSON object per line")
            yield record


def _require(record: Mapping[str, Any], key: str, path: Path) -> Any:
    if key not in record:
        raise DatasetError(f"{path}: a record lacks the {key!r} field (has {sorted(record)})")
    return record[key]


def _filter_qrels(
    qrels: dict[str, dict[str, int]], query_ids: set[str], doc_ids: set[str] | None, source: str
) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Drop judgements naming unknown queries or documents; say how many were dropped."""
    bad_q: Counter[str] = Counter()
    bad_d = 0
    kept: dict[str, dict[str, int]] = {}
    for qid, docs in qrels.items():
        if qid not in query_ids:
            bad_q[qid] += len(docs)
            continue
        good = {d: g for d, g in docs.items() if doc_ids is None or d in doc_ids}
        bad_d += len(docs) - len(good)
        if good:
            kept[qid] = good
    warnings = []
    if bad_q:
        warnings.append(
            f"{source}: skipped {sum(bad_q.values())} judgements of {len(bad_q)} query ids "
            f"not in the queries (e.g. {next(iter(bad_q))})"
        )
    if bad_d:
        warnings.append(
            f"{source}: skipped {bad_d} judgements naming document ids not in the corpus"
        )
    for message in warnings:
        log.warning(message)
    return kept, warnings


@dataclass(frozen=True, slots=True)
class BeirDataset:
    """A BEIR dataset folder read for one split. The corpus is streamed, not held in memory."""

    name: str
    root: Path
    split: str
    corpus_path: Path
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    hash: str
    warnings: tuple[str, ...] = ()

    def iter_documents(self) -> Iterator[Document]:
        """The corpus as Documents: text = title + blank line + text (when titled), id = _id."""
        for record in _read_jsonl(self.corpus_path):
            doc_id = str(_require(record, "_id", self.corpus_path))
            title = str(record.get("title") or "")
            yield _document(doc_id, title, str(record.get("text") or ""), self.corpus_path)


def _beir_files(root: Path, split: str) -> tuple[Path, Path, Path]:
    if not root.is_dir():
        raise DatasetError(
            f"dataset folder {root} does not exist; a BEIR folder holds {BEIR_LAYOUT}"
        )
    corpus, queries, qrels = (
        root / "corpus.jsonl",
        root / "queries.jsonl",
        root / "qrels" / f"{split}.tsv",
    )
    for path in (corpus, queries, qrels):
        if not path.is_file():
            splits = sorted(p.stem for p in (root / "qrels").glob("*.tsv"))
            hint = f" (splits present: {', '.join(splits)})" if splits and path == qrels else ""
            raise DatasetError(
                f"{path} is missing{hint}; a BEIR folder holds {BEIR_LAYOUT}. "
                "Fetch one with `ragline datasets fetch beir NAME`"
            )
    return corpus, queries, qrels


def _read_qrels_tsv(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh, delimiter="\t"), 1):
            if not row or (lineno == 1 and row[0] == "query-id"):
                continue
            if len(row) < 3:
                raise DatasetError(f"{path}:{lineno}: expected query-id, corpus-id, score")
            try:
                grade = int(float(row[2]))
            except ValueError as exc:
                raise DatasetError(f"{path}:{lineno}: score {row[2]!r} is not a number") from exc
            qrels.setdefault(row[0], {})[row[1]] = grade
    return qrels


def load_beir(dir: Path, split: str = "test") -> BeirDataset:
    """Read a BEIR folder for `split`: only queries judged in that split are kept.

    Judgements naming unknown query or document ids are skipped and counted in `warnings`.
    """
    root = Path(dir)
    corpus, queries_path, qrels_path = _beir_files(root, split)
    doc_ids = {str(_require(r, "_id", corpus)) for r in _read_jsonl(corpus)}
    all_queries = {
        str(_require(r, "_id", queries_path)): str(_require(r, "text", queries_path))
        for r in _read_jsonl(queries_path)
    }
    qrels, warnings = _filter_qrels(
        _read_qrels_tsv(qrels_path), set(all_queries), doc_ids, qrels_path.name
    )
    return BeirDataset(
        name=root.resolve().name,
        root=root,
        split=split,
        corpus_path=corpus,
        queries={qid: all_queries[qid] for qid in qrels},
        qrels=qrels,
        hash=_hash_files([corpus, queries_path, qrels_path]),
        warnings=tuple(warnings),
    )


@dataclass(frozen=True, slots=True)
class QAItem:
    """One question with its gold answers and the ids of the documents that support it."""

    id: str
    question: str
    answers: tuple[str, ...]
    relevant: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class QADataset:
    """A question set; with passages (inline or a corpus file) it is also a retrieval dataset."""

    name: str
    path: Path
    items: tuple[QAItem, ...]
    documents: tuple[Document, ...]
    hash: str
    warnings: tuple[str, ...] = ()
    has_corpus: bool = True
    queries: dict[str, str] = field(init=False)
    qrels: dict[str, dict[str, int]] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "queries", {i.id: i.question for i in self.items if i.relevant})
        qrels = {i.id: dict.fromkeys(i.relevant, 1) for i in self.items if i.relevant}
        object.__setattr__(self, "qrels", qrels)

    def iter_documents(self) -> Iterator[Document]:
        """The pooled passages; raises DatasetError when the set has none."""
        if not self.has_corpus:
            raise DatasetError(
                f"{self.path} has no passages (no 'contexts' in its lines); "
                "add 'contexts' to its lines, or pass the BEIR folder that holds its corpus.jsonl"
            )
        return iter(self.documents)

    def answers(self) -> dict[str, tuple[str, ...]]:
        """Gold answers by question id."""
        return {i.id: i.answers for i in self.items}


def _slug(title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return slug[:48].rstrip("-") or "untitled"


def context_doc_id(title: str, text: str) -> str:
    """Stable id of an inline passage: a slug of its title plus a short hash of title and text."""
    digest = hashlib.sha256(f"{title}\0{text}".encode()).hexdigest()[:10]
    return f"{_slug(title)}-{digest}"


def _pool_contexts(
    record: Mapping[str, Any], path: Path, pool: dict[str, Document]
) -> tuple[str, ...]:
    """Add a record's inline passages to the pool (deduplicated); return the supporting ids."""
    supporting = []
    for ctx in record["contexts"]:
        title, text = str(ctx.get("title") or ""), str(_require(ctx, "text", path))
        doc_id = context_doc_id(title, text)
        if doc_id not in pool:
            pool[doc_id] = _document(doc_id, title, text, path)
        if ctx.get("is_supporting"):
            supporting.append(doc_id)
    return tuple(dict.fromkeys(supporting))


def _qa_item(record: Mapping[str, Any], path: Path, relevant: tuple[str, ...]) -> QAItem:
    answers = record.get("answers") or []
    if isinstance(answers, str):
        answers = [answers]
    return QAItem(
        id=str(_require(record, "id", path)),
        question=str(_require(record, "question", path)),
        answers=tuple(str(a) for a in answers),
        relevant=relevant,
    )


def _corpus_documents(corpus: Path) -> dict[str, Document]:
    if not corpus.is_file():
        raise DatasetError(f"corpus file {corpus} is missing; expected BEIR corpus.jsonl lines")
    docs = {}
    for r in _read_jsonl(corpus):
        doc_id = str(_require(r, "_id", corpus))
        docs[doc_id] = _document(
            doc_id, str(r.get("title") or ""), str(r.get("text") or ""), corpus
        )
    return docs


def _filter_relevant(
    items: list[QAItem], doc_ids: set[str], source: str
) -> tuple[list[QAItem], list[str]]:
    qrels = {i.id: dict.fromkeys(i.relevant, 1) for i in items}
    kept, warnings = _filter_qrels(qrels, {i.id for i in items}, doc_ids, source)
    fixed = [QAItem(i.id, i.question, i.answers, tuple(kept.get(i.id, {}))) for i in items]
    return fixed, warnings


def load_qa_jsonl(path: Path, *, corpus: Path | None = None, name: str | None = None) -> QADataset:
    """Read a question set: lines `{id, question, answers[], relevant: [doc ids]}`, or lines with
    inline passages `contexts: [{title, text, is_supporting}]` (HotpotQA style).

    Inline passages of all questions are pooled (identical title+text deduplicated) into the
    corpus; supporting passages become the question's relevant documents. Without inline passages,
    `corpus` (a BEIR corpus.jsonl) supplies the documents.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"question file {path} is missing; expected JSONL lines with id, question, answers "
            "and relevant (or contexts)"
        )
    pool: dict[str, Document] = {}
    items: list[QAItem] = []
    inline = False
    for record in _read_jsonl(path):
        if "contexts" in record:
            inline = True
            relevant = _pool_contexts(record, path, pool)
        else:
            relevant = tuple(str(d) for d in record.get("relevant") or [])
        items.append(_qa_item(record, path, relevant))
    hashed = [path]
    if corpus is not None:
        pool.update(_corpus_documents(Path(corpus)))
        hashed.append(Path(corpus))
    has_corpus = inline or corpus is not None
    warnings: list[str] = []
    if has_corpus:
        items, warnings = _filter_relevant(items, set(pool), path.name)
    return QADataset(
        name=name or path.stem,
        path=path,
        items=tuple(items),
        documents=tuple(pool.values()),
        hash=_hash_files(hashed),
        warnings=tuple(warnings),
        has_corpus=has_corpus,
    )


def load_hotpotqa(dir: Path) -> QADataset:
    """The HotpotQA distractor set (`qa.jsonl`): every paragraph of every question pooled as the
    corpus, each question's two supporting paragraphs as its relevant documents."""
    root = Path(dir)
    path = root / "qa.jsonl"
    if not path.is_file():
        raise DatasetError(
            f"{path} is missing; a HotpotQA folder holds qa.jsonl with lines "
            "{id, question, answers, contexts: [{title, text, is_supporting}]}"
        )
    return load_qa_jsonl(path, name=root.resolve().name)


BEIR_BASE_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _download(url: str, target: Path, *, timeout: float) -> None:
    """Stream `url` to `target` via `target.part`, resuming a partial download when the server
    honours Range; the final rename is atomic."""
    part = target.with_name(target.name + ".part")
    try:
        with httpx.Client(timeout=timeout, follow_redirects=True) as client:
            resume_download(url, part, client=client)
    except DownloadFailed as exc:
        if exc.status is not None:
            raise DatasetError(f"downloading {url} failed with HTTP {exc.status}; check the "
                               "dataset name and --base-url") from None
        raise DatasetError(f"downloading {url} failed ({exc}); rerun to resume from "
                           f"{part.name}") from exc
    os.replace(part, target)


def _safe_members(archive: zipfile.ZipFile, dest: Path) -> list[zipfile.ZipInfo]:
    """Every member, after checking none would land outside `dest` or is a link."""
    root = dest.resolve()
    for info in archive.infolist():
        name = info.filename
        is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
        target = (root / name).resolve()
        if (
            is_link
            or name.startswith(("/", "\\"))
            or ".." in Path(name).parts
            or (target != root and root not in target.parents)
        ):
            raise DatasetError(
                f"refusing to unpack {name!r}: it would land outside {dest}; the archive is unsafe"
            )
    return archive.infolist()


def _unzip(zip_path: Path, dest: Path, name: str) -> Path:
    """Unpack into a temporary folder inside `dest`, check the layout, then move it to dest/name."""
    final = dest / name
    with tempfile.TemporaryDirectory(dir=dest, prefix=f".{name}-") as tmp:
        staging = Path(tmp) / "unpacked"
        staging.mkdir()
        try:
            with zipfile.ZipFile(zip_path) as archive:
                archive.extractall(staging, members=_safe_members(archive, staging))
        except zipfile.BadZipFile as exc:
            zip_path.unlink()
            raise DatasetError(
                f"{zip_path} is not a valid zip ({exc}); rerun to download again"
            ) from exc
        # BEIR zips hold one top-level folder named after the dataset; accept a flat zip too.
        unpacked = staging / name if (staging / name).is_dir() else staging
        _check_beir_layout(unpacked, zip_path.name)
        os.replace(unpacked, final)
    return final


def _check_beir_layout(root: Path, source: str) -> None:
    missing = [f for f in ("corpus.jsonl", "queries.jsonl") if not (root / f).is_file()] + (
        [] if any((root / "qrels").glob("*.tsv")) else ["qrels/*.tsv"]
    )
    if missing:
        raise DatasetError(
            f"{source} lacks {', '.join(missing)}; a BEIR dataset holds {BEIR_LAYOUT}"
        )


def fetch_beir(
    name: str, dest: Path, *, base_url: str = BEIR_BASE_URL, timeout: float = 60.0
) -> Path:
    """Download `{base_url}/{name}.zip` into `dest`, unpack it safely and check the BEIR layout.

    Returns `dest/name`. An existing, complete `dest/name` is returned without downloading.
    An interrupted download resumes from `dest/name.zip.part`. The zip is removed once unpacked.
    """
    if not _NAME_RE.match(name):
        raise DatasetError(f"invalid dataset name {name!r}; use a BEIR name such as scifact")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / name
    if final.is_dir():
        _check_beir_layout(final, str(final))
        return final
    zip_path = dest / f"{name}.zip"
    if not zip_path.exists():
        _download(f"{base_url.rstrip('/')}/{name}.zip", zip_path, timeout=timeout)
    result = _unzip(zip_path, dest, name)
    zip_path.unlink()
    return result
