"""The SQLite embedding cache, CachedEmbedder, and the embedder factory."""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from ragline.config import parse_config
from ragline.embed import (
    CachedEmbedder,
    Embedder,
    EmbedderConfig,
    EmbeddingCache,
    EmbeddingCacheError,
    OnnxEmbedder,
    OpenAICompatibleEmbedder,
    build_embedder,
)
from ragline.embed.base import EmbedKind, Vectors
from ragline.errors import ConfigError


class CountingEmbedder:
    """A deterministic in-memory embedder that records every call it gets."""

    def __init__(self, dim: int = 4, model_id: str = "counting") -> None:
        self.model_id = model_id
        self.dim = dim
        self.max_tokens = 100
        self.calls: list[tuple[list[str], EmbedKind]] = []

    def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        self.calls.append((list(texts), kind))
        rows = [[len(t), sum(map(ord, t)) % 97, 1.0, len(t) % 5] for t in texts]
        matrix = np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)
        unit: Vectors = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
        return unit

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]


@pytest.fixture
def cache(tmp_path: Path) -> EmbeddingCache:
    return EmbeddingCache(tmp_path / "embeddings.sqlite")


# ---------------------------------------------------------------- EmbeddingCache


def test_stored_vectors_come_back_bit_for_bit(cache: EmbeddingCache) -> None:
    vectors = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    cache.put_many("m", ["a", "b", "c"], vectors)
    got = cache.get_many("m", ["c", "a", "b"])
    assert all(v is not None for v in got)
    np.testing.assert_array_equal(np.stack([v for v in got if v is not None]), vectors[[2, 0, 1]])


def test_unknown_texts_are_none(cache: EmbeddingCache) -> None:
    cache.put_many("m", ["a"], np.ones((1, 2), dtype=np.float32))
    assert [v is None for v in cache.get_many("m", ["a", "b"])] == [False, True]


def test_entries_are_keyed_by_model_id(cache: EmbeddingCache) -> None:
    cache.put_many("model-1", ["a"], np.ones((1, 2), dtype=np.float32))
    assert cache.get_many("model-2", ["a"]) == [None]


def test_put_replaces_an_existing_entry(cache: EmbeddingCache) -> None:
    cache.put_many("m", ["a"], np.ones((1, 2), dtype=np.float32))
    cache.put_many("m", ["a"], np.full((1, 2), 2.0, dtype=np.float32))
    (vector,) = cache.get_many("m", ["a"])
    assert vector is not None and vector.tolist() == [2.0, 2.0]
    assert cache.count("m") == 1


def test_lookups_beyond_the_sqlite_parameter_limit_work(cache: EmbeddingCache) -> None:
    texts = [f"text {i}" for i in range(2500)]
    cache.put_many("m", texts, np.ones((2500, 2), dtype=np.float32))
    assert all(v is not None for v in cache.get_many("m", texts))


def test_put_many_rejects_a_count_mismatch(cache: EmbeddingCache) -> None:
    with pytest.raises(EmbeddingCacheError, match="one vector per text"):
        cache.put_many("m", ["a", "b"], np.ones((1, 2), dtype=np.float32))


def test_default_path_is_under_ragline_home(_isolated_home: Path) -> None:
    cache = EmbeddingCache()
    cache.put_many("m", ["a"], np.ones((1, 2), dtype=np.float32))
    assert cache.path == _isolated_home / "cache" / "embeddings.sqlite"
    assert cache.path.is_file()


def test_entries_persist_across_cache_instances(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    EmbeddingCache(path).put_many("m", ["a"], np.ones((1, 2), dtype=np.float32))
    assert EmbeddingCache(path).get_many("m", ["a"])[0] is not None


def test_database_uses_write_ahead_logging(cache: EmbeddingCache) -> None:
    cache.count()
    import sqlite3

    with sqlite3.connect(cache.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unreadable_database_raises_a_cache_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(EmbeddingCacheError, match="delete the file"):
        EmbeddingCache(path).count()


def _write_many(path: str, worker: int) -> None:
    cache = EmbeddingCache(Path(path))
    for round_ in range(20):
        texts = [f"w{worker}-r{round_}-{i}" for i in range(10)]
        cache.put_many("m", texts, np.full((10, 3), worker, dtype=np.float32))
        cache.get_many("m", texts)


def test_concurrent_processes_can_write_the_same_cache(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    EmbeddingCache(path).count()
    context = multiprocessing.get_context("spawn")  # separate processes, like two ragline commands
    workers = [context.Process(target=_write_many, args=(str(path), w)) for w in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert EmbeddingCache(path).count("m") == 3 * 20 * 10


# ---------------------------------------------------------------- CachedEmbedder


def test_cached_embedder_satisfies_the_protocol(cache: EmbeddingCache) -> None:
    assert isinstance(CachedEmbedder(CountingEmbedder(), cache), Embedder)


def test_second_call_is_served_from_the_cache(cache: EmbeddingCache) -> None:
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner, cache)
    first = cached.embed(["a", "bb"])
    second = cached.embed(["a", "bb"])
    np.testing.assert_array_equal(first, second)
    assert len(inner.calls) == 1
    assert (cached.hits, cached.misses) == (2, 2)


def test_only_misses_are_embedded_and_order_is_kept(cache: EmbeddingCache) -> None:
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner, cache)
    cached.embed(["b"])
    result = cached.embed(["a", "b", "c"])
    assert inner.calls[-1][0] == ["a", "c"]
    np.testing.assert_allclose(result, CountingEmbedder().embed(["a", "b", "c"]), atol=1e-7)


def test_a_text_repeated_in_one_call_is_embedded_once(cache: EmbeddingCache) -> None:
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner, cache)
    result = cached.embed(["x", "y", "x"])
    assert inner.calls == [(["x", "y"], "document")]
    np.testing.assert_array_equal(result[0], result[2])
    assert cached.embedded == 2


def test_cache_is_keyed_by_the_inner_model_id(cache: EmbeddingCache) -> None:
    CachedEmbedder(CountingEmbedder(model_id="one"), cache).embed(["a"])
    other = CountingEmbedder(model_id="two")
    CachedEmbedder(other, cache).embed(["a"])
    assert len(other.calls) == 1


def test_queries_skip_the_cache_when_asked(cache: EmbeddingCache) -> None:
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner, cache, cache_queries=False)
    cached.embed(["q"], kind="query")
    cached.embed(["q"], kind="query")
    assert len(inner.calls) == 2
    assert cache.count() == 0


def test_the_query_kind_reaches_the_inner_embedder(cache: EmbeddingCache) -> None:
    inner = CountingEmbedder()
    CachedEmbedder(inner, cache).embed(["q"], kind="query")
    assert inner.calls == [(["q"], "query")]


def test_bypass_neither_reads_nor_writes_the_cache(cache: EmbeddingCache) -> None:
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner, cache)
    cached.embed(["a"])
    with cached.bypass():
        cached.embed(["a", "b"])
    assert inner.calls[-1][0] == ["a", "b"]
    assert cache.count() == 1
    assert cached.enabled


def test_empty_input_does_not_touch_the_inner_model_state(cache: EmbeddingCache) -> None:
    inner = CountingEmbedder()
    assert CachedEmbedder(inner, cache).embed([]).shape == (0, 4)


def test_attributes_and_token_counts_come_from_the_inner_embedder(cache: EmbeddingCache) -> None:
    cached = CachedEmbedder(CountingEmbedder(dim=4, model_id="inner"), cache)
    assert (cached.model_id, cached.dim, cached.max_tokens) == ("inner", 4, 100)
    assert cached.count_tokens(["one two"]) == [2]


# ---------------------------------------------------------------- factory


def test_default_config_builds_a_cached_onnx_embedder() -> None:
    embedder = build_embedder(EmbedderConfig())
    assert isinstance(embedder, CachedEmbedder)
    assert isinstance(embedder.inner, OnnxEmbedder)


def test_cache_false_builds_the_bare_embedder() -> None:
    embedder = build_embedder(EmbedderConfig(cache=False, threads=1, batch_size=8))
    assert isinstance(embedder, OnnxEmbedder)
    assert (embedder.threads, embedder.batch_size) == (1, 8)


def test_openai_compatible_config_reads_the_key_from_the_named_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MY_KEY", "sk-local")
    config = EmbedderConfig(
        provider="openai-compatible",
        model="m",
        base_url="http://x/v1",
        api_key_env="MY_KEY",
        cache=False,
    )
    embedder = build_embedder(config)
    assert isinstance(embedder, OpenAICompatibleEmbedder)
    assert embedder.model_id == "openai-compatible:http://x/v1:m"


def test_openai_compatible_config_needs_model_and_base_url() -> None:
    with pytest.raises(ConfigError, match="base_url"):
        build_embedder(EmbedderConfig(provider="openai-compatible", model="m"))


def test_unknown_provider_names_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="'onnx' or 'openai-compatible'"):
        parse_config({"embedder": {"provider": "cohere"}})
    config = EmbedderConfig.model_construct(provider="cohere")  # unvalidated, as a caller might
    with pytest.raises(ConfigError, match="onnx, openai-compatible"):
        build_embedder(config)
