"""The trained claim verifier: a cross-encoder that reads (evidence, claim) and gives the
probability that the evidence supports the claim. onnxruntime + tokenizers only, no torch.

Evidence longer than the model's window is split into sentence-aligned chunks that fit beside the
claim, and a claim's score is the maximum over its chunks (the MiniCheck recipe): a claim is
supported when some passage of the evidence supports it. All (chunk, claim) pairs of a call are
scored in length-sorted batches.

The model ships inside ragline (`answer/models/verifier/`): `model.onnx`, `tokenizer.json` and
`manifest.json` with their sha256, the threshold chosen on the training run's own dev split, and
how it was trained (`ragline train verifier` rebuilds it). Every file is checked against the
manifest when the model is loaded, so a damaged file is a clear error, never a silent bad score.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragline.errors import RaglineError

if TYPE_CHECKING:
    import onnxruntime
    from tokenizers import Tokenizer

SHIPPED_DIR = Path(__file__).parent / "models" / "verifier"
THREADS_ENV = "RAGLINE_VERIFIER_THREADS"
MAX_CLAIM_TOKENS = 96  # a longer claim is cut: claims are sentences, evidence gets the window
MAX_CHARS = 200_000  # evidence past this is not read (about 40,000 words)


class VerifierModelError(RaglineError):
    """The verifier model is missing, damaged or unusable."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    path: Path
    model_file: str
    threshold: float
    max_length: int
    manifest: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.manifest.get("model_id", self.path.name))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(path: Path, *, check_files: bool = True) -> ModelInfo:
    """Read and check a verifier model folder (`manifest.json` + the files it lists)."""
    manifest_file = path / "manifest.json"
    if not manifest_file.exists():
        raise VerifierModelError(
            f"no verifier model in {path} (manifest.json missing); build one with "
            "`ragline train verifier --out DIR` or reinstall ragline")
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        files: dict[str, str] = manifest["files"]
        info = ModelInfo(path=path, model_file=str(manifest["model_file"]),
                         threshold=float(manifest["threshold"]),
                         max_length=int(manifest["max_length"]), manifest=manifest)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise VerifierModelError(f"{manifest_file} is not a verifier manifest ({exc})") from None
    if check_files:
        for name, expected in files.items():
            file = path / name
            if not file.exists():
                raise VerifierModelError(
                    f"verifier model file {file} is missing (expected sha256 {expected}); "
                    "reinstall ragline or rebuild it with `ragline train verifier`")
            actual = sha256_file(file)
            if actual != expected:
                raise VerifierModelError(
                    f"verifier model file {file} is damaged: sha256 {actual}, expected "
                    f"{expected}; reinstall ragline or rebuild it with `ragline train verifier`")
    return info


def default_threads() -> int:
    """`$RAGLINE_VERIFIER_THREADS`, else every core (at most 4), as the embedder: sessions
    run without spinning workers, so a busy core costs little (docs/benchmarks.md)."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return max(1, min(4, os.cpu_count() or 1))
    try:
        return max(1, int(raw))
    except ValueError:
        raise VerifierModelError(f"{THREADS_ENV}={raw!r} is not an integer") from None


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    from ragline.answer.claims import split_sentences

    return [(s.start, s.end) for s in split_sentences(text)] or [(0, len(text))]


def chunk_spans(text: str, tokenizer: Tokenizer, budget: int) -> list[tuple[int, int]]:
    """Sentence-aligned (start, end) spans of `text`, each of at most `budget` word pieces.

    Sentences are packed greedily; a sentence longer than the budget is cut at word-piece
    boundaries (by character offsets, so no text is lost or invented).
    """
    if not text.strip():
        return [(0, len(text))]
    spans = _sentence_spans(text)
    counts = tokenizer.encode_batch([text[a:b] for a, b in spans], add_special_tokens=False)
    pieces: list[tuple[int, int, int]] = []  # (start, end, tokens)
    for (start, end), encoding in zip(spans, counts, strict=True):
        n = len(encoding.ids)
        if n <= budget:
            pieces.append((start, end, n))
            continue
        offsets = encoding.offsets
        for i in range(0, n, budget):
            window = offsets[i:i + budget]
            pieces.append((start + window[0][0], start + window[-1][1], len(window)))
    chunks: list[tuple[int, int]] = []
    first, last, used = -1, -1, 0
    for start, end, n in pieces:
        if first >= 0 and used + n > budget:
            chunks.append((first, last))
            first, used = -1, 0
        if first < 0:
            first = start
        last, used = end, used + n
    if first >= 0:
        chunks.append((first, last))
    return chunks


def chunk_evidence(text: str, tokenizer: Tokenizer, budget: int) -> list[str]:
    """The text of `chunk_spans` (evidence past `MAX_CHARS` characters is not read)."""
    text = text[:MAX_CHARS]
    return [text[a:b] for a, b in chunk_spans(text, tokenizer, budget)]


class SupportModel:
    """Scores claims against evidence with the trained cross-encoder."""

    def __init__(self, path: Path | None = None, *, threads: int | None = None,
                 batch_size: int = 16, max_length: int | None = None) -> None:
        """`max_length` reads fewer word pieces than the model's window (never more)."""
        self.info = read_manifest(path or SHIPPED_DIR)
        if max_length is not None and max_length < self.info.max_length:
            self.info = replace(self.info, max_length=max_length)
        self.threads = threads or default_threads()
        self.batch_size = batch_size
        self._session: onnxruntime.InferenceSession | None = None
        self._tokenizer: Tokenizer | None = None
        self._counter: Tokenizer | None = None  # no truncation: counts word pieces of any text
        self._lock = threading.Lock()
        self._chunk_memo: dict[tuple[str, int], tuple[str, ...]] = {}

    @property
    def model_id(self) -> str:
        return self.info.id

    @property
    def threshold(self) -> float:
        return self.info.threshold

    def _load(self) -> tuple[onnxruntime.InferenceSession, Tokenizer]:
        with self._lock:
            if self._session is None or self._tokenizer is None:
                import onnxruntime
                from tokenizers import Tokenizer

                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
                options.log_severity_level = 3
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                try:
                    self._session = onnxruntime.InferenceSession(
                        str(self.info.path / self.info.model_file), options,
                        providers=["CPUExecutionProvider"])
                    tokenizer = Tokenizer.from_file(str(self.info.path / "tokenizer.json"))
                    counter = Tokenizer.from_file(str(self.info.path / "tokenizer.json"))
                except Exception as exc:  # onnxruntime raises its own untyped errors
                    raise VerifierModelError(
                        f"cannot load the verifier model in {self.info.path}: {exc}") from None
                tokenizer.no_padding()
                tokenizer.enable_truncation(self.info.max_length, strategy="only_first")
                counter.no_padding()
                counter.no_truncation()
                self._tokenizer, self._counter = tokenizer, counter
            return self._session, self._tokenizer

    def counter(self) -> Tokenizer:
        self._load()
        assert self._counter is not None
        return self._counter

    def chunks_for(self, evidence: str, claim: str) -> tuple[str, ...]:
        """The sentence-aligned chunks of `evidence` that fit the window beside `claim`."""
        n = min(MAX_CLAIM_TOKENS, len(self.counter().encode(claim, add_special_tokens=False).ids))
        bucket = min(MAX_CLAIM_TOKENS, -(-n // 16) * 16)  # round up: fewer distinct chunkings
        key = (evidence, bucket)
        found = self._chunk_memo.get(key)
        if found is None:
            found = tuple(chunk_evidence(evidence, self.counter(),
                                         self.info.max_length - bucket - 3))
            if len(self._chunk_memo) > 4096:
                self._chunk_memo.clear()
            self._chunk_memo[key] = found
        return found

    def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Probability of support for each (evidence, claim): the max over evidence chunks."""
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        owners, flat = [], []
        for i, (evidence, claim) in enumerate(pairs):
            for chunk in self.chunks_for(evidence, claim):
                owners.append(i)
                flat.append((chunk, claim))
        probs = self.score_chunks(flat)
        best = np.zeros(len(pairs), dtype=np.float32)
        np.maximum.at(best, np.asarray(owners), probs)
        return best

    def score_chunks(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Probability of support for each (chunk, claim) pair, each read in one window."""
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        session, tokenizer = self._load()
        # (evidence, claim), evidence truncated first: exactly the training encoding.
        encodings = tokenizer.encode_batch([(e, _claim_cut(tokenizer, c)) for e, c in pairs])
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        out = np.zeros(len(encodings), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            width = max(len(encodings[i].ids) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            types = np.zeros_like(ids)
            mask = np.zeros_like(ids)
            for r, i in enumerate(rows):
                enc = encodings[i]
                n = len(enc.ids)
                ids[r, :n], types[r, :n], mask[r, :n] = enc.ids, enc.type_ids, 1
            logits = session.run(None, {"input_ids": ids, "attention_mask": mask,
                                        "token_type_ids": types})[0][:, 0]
            out[rows] = 1.0 / (1.0 + np.exp(-logits))
        return out


def _claim_cut(tokenizer: Tokenizer, claim: str) -> str:
    encoding = tokenizer.encode(claim, add_special_tokens=False)  # claims are < the window
    if len(encoding.ids) <= MAX_CLAIM_TOKENS:
        return claim
    return claim[:encoding.offsets[MAX_CLAIM_TOKENS - 1][1]]


@lru_cache(maxsize=2)
def shipped_model(threads: int | None = None) -> SupportModel:
    """The verifier model that ships with ragline (loaded once per process)."""
    return SupportModel(threads=threads)
