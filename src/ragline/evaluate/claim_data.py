"""Claim-verification data: (document, claim, label) pairs, for training and evaluating verifiers.

Two sources give the same `ClaimPair`s:

* a JSONL file (or a folder of them) with one `{"id", "doc", "claim", "label"}` a line, label 1 =
  the document supports the claim, 0 = it does not (the format public fact-checking benchmarks
  such as LLM-AggreFact use); a bad line is an error that names the file and the line;
* a BEIR SciFact folder: each claim of the chosen split (`qrels/<split>.tsv`) that carries
  SUPPORT / CONTRADICT evidence in `queries.jsonl` metadata, paired with the title and abstract it
  cites, plus the indices of its rationale sentences (used for training augmentation only).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragline.errors import DatasetError

__all__ = ["ClaimPair", "ClaimSet", "load_claim_jsonl", "load_claims", "load_scifact_claims"]


@dataclass(frozen=True, slots=True)
class ClaimPair:
    id: str
    doc: str
    claim: str
    label: int  # 1 = supported, 0 = not supported
    source: str = ""
    group: str = ""  # pairs of one group (one claim) always land on the same side of a split
    rationale: tuple[int, ...] = ()  # SciFact: indices of the rationale sentences in `sentences`
    sentences: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True)
class ClaimSet:
    name: str
    hash: str
    pairs: list[ClaimPair]

    @property
    def positives(self) -> int:
        return sum(p.label for p in self.pairs)


def _sha256(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _label(value: Any, where: str) -> int:
    if isinstance(value, bool) or value not in (0, 1, "0", "1"):
        raise DatasetError(f"{where}: label must be 0 or 1 (1 = supported), got {value!r}")
    return int(value)


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            except UnicodeDecodeError:
                raise DatasetError(f"{path}:{number}: not UTF-8 text") from None
            if not isinstance(record, dict):
                raise DatasetError(f"{path}:{number}: expected a JSON object")
            yield number, record


def _read_claim_file(path: Path) -> list[ClaimPair]:
    pairs = []
    for number, record in _lines(path):
        where = f"{path}:{number}"
        missing = [k for k in ("doc", "claim", "label") if k not in record]
        if missing:
            raise DatasetError(f"{where}: missing {', '.join(missing)} "
                               '(each line needs "id", "doc", "claim", "label")')
        doc, claim = record["doc"], record["claim"]
        if not isinstance(doc, str) or not isinstance(claim, str):
            raise DatasetError(f"{where}: doc and claim must be strings")
        pair_id = str(record.get("id", f"{path.stem}:{number}"))
        pairs.append(ClaimPair(id=pair_id, doc=doc, claim=claim,
                               label=_label(record["label"], where),
                               source=path.stem, group=pair_id))
    return pairs


def load_claim_jsonl(path: Path) -> ClaimSet:
    """Claim pairs from a JSONL file, or from every *.jsonl file of a folder."""
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise DatasetError(f"{path}: no .jsonl files in this folder")
    elif path.exists():
        files = [path]
    else:
        raise DatasetError(f"{path}: no such file or folder")
    pairs = [p for f in files for p in _read_claim_file(f)]
    if not pairs:
        raise DatasetError(f"{path}: no claims")
    return ClaimSet(name=path.name, hash=_sha256(files), pairs=pairs)


def _scifact_split_ids(root: Path, split: str) -> set[str]:
    qrels = root / "qrels" / f"{split}.tsv"
    if not qrels.exists():
        raise DatasetError(f"{root}: no qrels/{split}.tsv (splits: "
                           f"{', '.join(p.stem for p in (root / 'qrels').glob('*.tsv'))})")
    with qrels.open(encoding="utf-8") as handle:
        rows = [r for r in csv.reader(handle, delimiter="\t") if r and r[0] != "query-id"]
    return {r[0] for r in rows}


def _scifact_abstracts(root: Path, wanted: set[str]) -> dict[str, tuple[str, str]]:
    found = {}
    for _, record in _lines(root / "corpus.jsonl"):
        doc_id = str(record.get("_id"))
        if doc_id in wanted:
            found[doc_id] = (str(record.get("title") or ""), str(record.get("text") or ""))
    return found


def load_scifact_claims(root: Path, split: str = "test") -> ClaimSet:
    """SciFact claims of `split` paired with each abstract their evidence cites.

    label 1 = SUPPORT, 0 = CONTRADICT; claims without evidence (not enough information) have no
    cited abstract and are left out. The document is "title. abstract", as a reader would see it.
    """
    from ragline.answer.claims import split_sentences

    ids = _scifact_split_ids(root, split)
    claims: list[tuple[str, str, str, list[dict[str, Any]]]] = []
    for _, record in _lines(root / "queries.jsonl"):
        qid = str(record.get("_id"))
        metadata = record.get("metadata") or {}
        if qid in ids and isinstance(metadata, dict):
            for doc_id, evidence in metadata.items():
                claims.append((qid, str(record.get("text", "")), str(doc_id), evidence))
    abstracts = _scifact_abstracts(root, {c[2] for c in claims})
    pairs = []
    for qid, claim, doc_id, evidence in claims:
        if doc_id not in abstracts or not evidence:
            continue
        labels = {e.get("label") for e in evidence}
        if len(labels) != 1 or not labels <= {"SUPPORT", "CONTRADICT"}:
            continue  # mixed or unknown evidence labels: no single gold answer
        title, text = abstracts[doc_id]
        rationale = sorted({int(i) for e in evidence for i in e.get("sentences", [])})
        pairs.append(ClaimPair(
            id=f"scifact:{split}:{qid}:{doc_id}",
            doc=f"{title}. {text}" if title else text,
            claim=claim,
            label=1 if labels == {"SUPPORT"} else 0,
            source=f"scifact-{split}",
            group=f"scifact:{qid}",
            rationale=tuple(rationale),
            sentences=tuple(s.text for s in split_sentences(text)),
        ))
    if not pairs:
        raise DatasetError(f"{root}: no {split} claims with SUPPORT/CONTRADICT evidence")
    files = [root / "queries.jsonl", root / "corpus.jsonl", root / "qrels" / f"{split}.tsv"]
    return ClaimSet(name=f"scifact-{split}", hash=_sha256(files), pairs=pairs)


def is_scifact(path: Path) -> bool:
    return path.is_dir() and (path / "corpus.jsonl").exists() and (path / "queries.jsonl").exists()


def load_claims(path: Path, split: str = "test") -> ClaimSet:
    """A claim set from a JSONL file or folder, or from a BEIR SciFact folder (its `split`)."""
    return load_scifact_claims(path, split) if is_scifact(path) else load_claim_jsonl(path)
