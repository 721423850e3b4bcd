"""Prompt token counting before sending, offline."""

from __future__ import annotations

import gzip
import hashlib
from importlib import resources
from pathlib import Path

import pytest
import tiktoken

from ragline.llm import LLMConfigError, Message, count_prompt_tokens
from ragline.llm.tokens import encoding_name_for_model, get_encoding, is_estimate


def test_model_families_map_to_their_encoding() -> None:
    assert encoding_name_for_model("gpt-4o-mini") == "o200k_base"
    assert encoding_name_for_model("gpt-4.1") == "o200k_base"
    assert encoding_name_for_model("o3") == "o200k_base"
    assert encoding_name_for_model("gpt-5-nano") == "o200k_base"
    assert encoding_name_for_model("gpt-4") == "cl100k_base"
    assert encoding_name_for_model("gpt-3.5-turbo") == "cl100k_base"


def test_encoding_matches_tiktoken_seeded_from_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
    blob = resources.files("bpe_openai.data").joinpath("cl100k_base.tiktoken.gz").read_bytes()
    (tmp_path / hashlib.sha1(url.encode()).hexdigest()).write_bytes(gzip.decompress(blob))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    reference = tiktoken.get_encoding("cl100k_base")
    text = "Retrieval-augmented generation, 2024: naïve façade!\n  indented  code()"
    assert get_encoding("cl100k_base").encode(text) == reference.encode(text)


def test_openai_count_includes_per_message_overhead() -> None:
    enc = get_encoding("cl100k_base")
    messages = [Message.system("Be brief."), Message.user("Hello there")]
    expected = 3 + sum(
        3 + len(enc.encode(m.role.value)) + len(enc.encode(m.content)) for m in messages
    )
    assert count_prompt_tokens("openai", "gpt-4", messages) == expected


def test_anthropic_count_is_a_documented_estimate_above_cl100k() -> None:
    messages = [Message.user("A fairly ordinary English sentence about retrieval.")]
    assert is_estimate("anthropic") and not is_estimate("openai")
    assert count_prompt_tokens("anthropic", "claude-sonnet-4", messages) > count_prompt_tokens(
        "openai", "gpt-4", messages
    )


def test_local_counting_needs_the_model_tokenizer() -> None:
    with pytest.raises(LLMConfigError, match="own tokenizer"):
        count_prompt_tokens("local", "x", [Message.user("hi")])


def test_unknown_encoding_is_a_config_error() -> None:
    with pytest.raises(LLMConfigError):
        get_encoding("p50k_base")
