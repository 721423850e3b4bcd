"""LLMConfig and build_llm; LLM construction errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ragline.llm import LLM, LLMConfig, LLMConfigError, build_llm, parse_model_ref
from ragline.llm.client import ModelRef


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        LLMConfig.model_validate({"provider": "openai", "modle": "gpt-4o"})


def test_config_rejects_unknown_provider() -> None:
    with pytest.raises(ValidationError):
        LLMConfig.model_validate({"provider": "cohere"})


def test_build_llm_applies_retry_fallbacks_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "k")
    llm = build_llm(
        LLMConfig(
            provider="openai",
            model="gpt-4o",
            api_key_env="MY_KEY",
            temperature=0,
            max_attempts=5,
            fallbacks=("gpt-4o-mini", "anthropic:claude-haiku-4-5"),
        )
    )
    assert llm.retry.max_attempts == 5
    assert llm.defaults.temperature == 0
    assert llm.targets == (
        ModelRef("openai", "gpt-4o"),
        ModelRef("openai", "gpt-4o-mini"),
        ModelRef("anthropic", "claude-haiku-4-5"),
    )


def test_build_llm_requires_the_named_key_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MISSING_KEY", raising=False)
    with pytest.raises(LLMConfigError, match="MISSING_KEY"):
        build_llm(LLMConfig(api_key_env="MISSING_KEY"))


def test_missing_api_key_says_which_variable_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(LLMConfigError, match="ANTHROPIC_API_KEY"):
        LLM("anthropic")


def test_openai_compatible_needs_base_url_and_model() -> None:
    with pytest.raises(LLMConfigError, match="base_url"):
        LLM("openai-compatible", "m")
    with pytest.raises(LLMConfigError, match="model"):
        LLM("openai-compatible", base_url="http://127.0.0.1:9/v1")


def test_unknown_provider_names_the_valid_ones() -> None:
    with pytest.raises(LLMConfigError, match="openai-compatible"):
        LLM("cohere")


def test_unknown_call_option_is_rejected() -> None:
    llm = LLM("openai", api_key="k", base_url="http://127.0.0.1:9/v1", ledger=False)
    with pytest.raises(LLMConfigError, match="temprature"):
        llm.complete("hi", temprature=0)


def test_model_refs_parse_provider_prefixes_only_for_known_providers() -> None:
    assert parse_model_ref("anthropic:claude-sonnet-4", "openai") == ModelRef(
        "anthropic", "claude-sonnet-4"
    )
    assert parse_model_ref("llama3:8b", "openai-compatible") == ModelRef(
        "openai-compatible", "llama3:8b"
    )


def test_local_provider_does_not_start_a_server_until_first_call() -> None:
    from ragline.llm.providers.local import LocalProvider

    llm = LLM("local", ledger=False, cache=False)
    provider = llm._provider("local")
    assert isinstance(provider, LocalProvider)
    assert llm.model.startswith("SmolLM2")  # the GGUF's stem, known before any start
    assert provider._server is None
    llm.close()
