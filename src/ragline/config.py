"""ragline's configuration: one validated model, loadable from TOML, with errors that list valid keys.

    [chunking]  how documents are split      (strategy, chunk_tokens, overlap_tokens, ...)
    [embedder]  which embedding model         (provider, model, base_url, threads, ...)
    [bm25]      keyword index parameters      (k1, b, stopwords, stemmer)
    [search]    default search behaviour      (mode, fusion, rrf_k, alpha, depth, k, ...)
    [answer]    what `ask` gives the model    (context, context_tokens)
    [llm]       the answer model              (provider, model, base_url, timeout, ...)
"""

from __future__ import annotations

import enum
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ragline.embed.base import Embedder
from ragline.errors import ConfigError
from ragline.llm.config import LLMConfig
from ragline.types import FusionMethod, RetrievalMode


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChunkingSettings(_Section):
    strategy: Literal["auto", "recursive", "headings", "record"] = "auto"
    chunk_tokens: int = Field(200, gt=0)
    overlap_tokens: int = Field(30, ge=0)
    record_max_tokens: int = Field(256, gt=0)

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingSettings:
        if self.overlap_tokens >= self.chunk_tokens:
            raise ValueError(
                f"overlap_tokens ({self.overlap_tokens}) must be smaller than "
                f"chunk_tokens ({self.chunk_tokens})"
            )
        return self


class EmbedderSettings(_Section):
    provider: Literal["onnx", "openai-compatible"] = "onnx"
    model: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    threads: int | None = Field(None, gt=0)
    batch_size: int = Field(32, gt=0)
    cache: bool = True

    def build(self, *, cache_queries: bool = True) -> Embedder:
        """The configured embedder (cached by content hash when `cache`).

        `cache_queries=False` keeps query embeddings out of the cache, so search latency
        measured with it includes embedding the query.
        """
        from ragline.embed.cache import CachedEmbedder
        from ragline.embed.factory import build_embedder

        embedder = build_embedder(self)
        if isinstance(embedder, CachedEmbedder):
            embedder.cache_queries = cache_queries
        return embedder


class BM25Settings(_Section):
    k1: float = Field(1.2, gt=0)
    b: float = Field(0.75, ge=0, le=1)
    stopwords: str = "en"
    stemmer: str = "english"


class SearchSettings(_Section):
    """Defaults of `ragline search`. The fusion defaults are the ones `ragline tune retrieval`
    picked on SciFact *train* queries (see docs/benchmarks.md); never tuned on test."""

    mode: RetrievalMode = RetrievalMode.HYBRID
    fusion: FusionMethod = FusionMethod.MINMAX
    rrf_k: int = Field(60, gt=0)
    alpha: float = Field(0.4, ge=0, le=1, description="weight of the dense scores in minmax fusion")
    depth: int = Field(200, gt=0, description="candidates taken from each retriever before fusion")
    k: int = Field(10, gt=0)
    reranker: str = Field("none", description="the reranking stage after retrieval (none: off)")
    rerank_depth: int = Field(50, gt=0, description="retrieved hits the reranker sees")
    rerank_model: str | None = Field(
        None, description="model folder of a cross-encoder reranker (its manifest.json)")
    rerank_window: int | None = Field(
        None, ge=16, le=512, description="word pieces of (chunk, query) the cross-encoder reads "
        "(default: the window it was trained with; fewer is faster)")
    rerank_blend: float | None = Field(
        None, ge=0, le=1, description="weight of the reranker's probability against the "
        "retrieval score (normalised over the reranked hits); 1: the reranker's order alone "
        "(default: the blend chosen on the model's held-out queries, in its manifest, else 1)")
    metadata_boost: float = Field(
        0.25, ge=0, description="weight of the filing metadata signal after fusion: hits of "
        "filings whose fiscal year, form type or company agree with the query's gain "
        "w * (score range) per fact, those that contradict lose it (0: off; "
        "retrieve/metadata.py; the default was chosen on the generated filings' tune split, "
        "benchmarks/filings_retrieval.py)")


class ContextMode(enum.StrEnum):
    """What a model answer's source holds: the hit's chunk, or its page(s) or heading section."""

    CHUNK = "chunk"
    PAGE = "page"
    SECTION = "section"


class AnswerSettings(_Section):
    """Defaults of `ragline ask` (model answers; extractive answers always quote chunks)."""

    context: ContextMode = Field(
        ContextMode.CHUNK, description="each source given to the model: the retrieved chunk, "
        "its page(s) (paged documents) or its heading section (documents with headings)")
    context_tokens: int = Field(
        600, gt=0, description="most tokens (the embedder's word pieces) of one expanded "
        "source, trimmed around the hit")


class StoreSettings(_Section):
    """Where the index's database lives: the embedded SQLite file in the index folder, or a
    PostgreSQL + pgvector server (`ragline[postgres]`). The index folder still holds the
    search files built from it. The password is read from the environment variable named by
    `password_env` (or libpq's PGPASSWORD / ~/.pgpass), never from this file."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    backend: Literal["sqlite", "postgres"] = "sqlite"
    dsn: str | None = Field(None, description="e.g. postgresql://ragline@127.0.0.1:5432/ragline")
    schema_name: str = Field("ragline", alias="schema", description="one index per schema")
    password_env: str = "RAGLINE_PG_PASSWORD"
    search: Literal["files", "native"] = Field(
        "files", description="files: exact vectors + BM25 from the search files (any backend); "
        "native: the store's own HNSW and full-text indexes (postgres)")

    @model_validator(mode="after")
    def _postgres_needs_a_dsn(self) -> StoreSettings:
        if self.backend == "postgres" and not self.dsn:
            raise ValueError('backend "postgres" needs dsn = "postgresql://USER@HOST:PORT/DB"')
        if self.search == "native" and self.backend != "postgres":
            raise ValueError('search = "native" needs backend = "postgres" (SQLite searches '
                             'with the search files: search = "files")')
        return self


# Knobs of one run (how fast, not what comes out) and the store's location: never stored in an
# index, and dropped when an index written before this rule holds them, so a thread count
# chosen for one ingest does not follow the index to another machine, and a DSN is not copied
# into the database it names.
RUN_KNOBS: dict[str, Any] = {"embedder": {"threads", "batch_size"}, "store": True}


class RaglineConfig(_Section):
    chunking: ChunkingSettings = ChunkingSettings()
    embedder: EmbedderSettings = EmbedderSettings()
    bm25: BM25Settings = BM25Settings()
    search: SearchSettings = SearchSettings()
    answer: AnswerSettings = AnswerSettings()
    llm: LLMConfig = LLMConfig()
    store: StoreSettings = StoreSettings()
    max_file_bytes: int = Field(50 * 2**20, gt=0)
    decode_errors: Literal["strict", "replace"] = Field(
        "strict", description="a text file that is not valid UTF-8: fail it, or load it with "
        "U+FFFD in place of the bad bytes")
    name: str | None = None

    def stored_json(self) -> str:
        """What an index keeps of this configuration: everything but `RUN_KNOBS`."""
        return self.model_dump_json(exclude=RUN_KNOBS)

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> RaglineConfig:
        """The configuration an index kept (`stored_json`), run knobs left at their defaults."""
        kept: dict[str, Any] = {}
        for section, values in data.items():
            drop = RUN_KNOBS.get(section)
            if drop is True:
                continue
            kept[section] = ({k: v for k, v in values.items() if k not in drop}
                             if drop and isinstance(values, dict) else values)
        return parse_config(kept)

    def fingerprint(self, *sections: str) -> str:
        """A short stable hash of the given sections (all when none given)."""
        data = self.model_dump(mode="json", include=set(sections) if sections else None)
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def merged(self, overrides: dict[str, Any]) -> RaglineConfig:
        """A copy with `{"section": {"key": value}}` overrides applied (validated)."""
        data = self.model_dump(mode="json")
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key].update(value)
            else:
                data[key] = value
        return parse_config(data)


def parse_config(data: dict[str, Any], *, source: str = "configuration") -> RaglineConfig:
    """Validate a configuration mapping; an unknown key or bad value raises ConfigError."""
    try:
        return RaglineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, source)) from exc


def load_config(path: Path) -> RaglineConfig:
    """Read a TOML configuration file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file {path} does not exist") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    config = parse_config(data, source=str(path))
    return config if config.name else config.model_copy(update={"name": path.stem})


def to_toml(config: RaglineConfig, *, header: str = "") -> str:
    """The settings of `config` that differ from the defaults, as a TOML file `load_config`
    reads back to an equal configuration."""
    data = config.model_dump(mode="json", exclude_defaults=True)
    lines = [f"# {line}" for line in header.splitlines()]
    top = {k: v for k, v in data.items() if not isinstance(v, dict)}
    lines += [f"{k} = {json.dumps(v)}" for k, v in top.items() if v is not None]

    def table(name: str, values: dict[str, Any]) -> None:
        scalars = {k: v for k, v in values.items() if not isinstance(v, dict)}
        if scalars:
            lines.append(f"\n[{name}]")
            lines.extend(f"{k} = {json.dumps(v)}" for k, v in scalars.items() if v is not None)
        for key, value in values.items():
            if isinstance(value, dict):
                table(f"{name}.{key}", value)

    for name, values in data.items():
        if isinstance(values, dict):
            table(name, values)
    return "\n".join(lines).lstrip("\n") + "\n"


def _explain(exc: ValidationError, source: str) -> str:
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        where = ".".join(loc) or "(top level)"
        if error["type"] == "extra_forbidden":
            valid = ", ".join(_valid_keys(loc[:-1]))
            section = f"[{'.'.join(loc[:-1])}]" if len(loc) > 1 else "the top level"
            lines.append(f"unknown key {where!r}; valid keys in {section}: {valid}")
        else:
            lines.append(f"{where}: {error['msg']}")
    return f"invalid {source}: " + "; ".join(lines)


def _valid_keys(section_path: list[str]) -> list[str]:
    model: type[BaseModel] = RaglineConfig
    for name in section_path:
        annotation = model.model_fields[name].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)
