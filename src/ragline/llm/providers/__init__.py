"""Model providers behind one seam (`Provider`), built by name with `build_provider`."""

from __future__ import annotations

from pathlib import Path

from ragline.llm.errors import LLMConfigError
from ragline.llm.providers.base import Provider
from ragline.llm.types import ProviderName

__all__ = ["Provider", "build_provider", "parse_provider"]


def parse_provider(name: str | ProviderName) -> ProviderName:
    """The ProviderName for `name`, or a config error naming the valid values."""
    try:
        return ProviderName(name)
    except ValueError:
        valid = ", ".join(p.value for p in ProviderName)
        raise LLMConfigError(f"unknown provider {name!r}: use one of {valid}") from None


def build_provider(
    name: str | ProviderName,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout: float = 60.0,
    model_path: Path | None = None,
    threads: int | None = None,
) -> Provider:
    """Build a provider by name; SDK clients are created here, no network is touched."""
    kind = parse_provider(name)
    if kind is ProviderName.OPENAI:
        from ragline.llm.providers.openai import OpenAIProvider

        return OpenAIProvider(api_key=api_key, base_url=base_url, timeout=timeout)
    if kind is ProviderName.ANTHROPIC:
        from ragline.llm.providers.anthropic import AnthropicProvider

        return AnthropicProvider(api_key=api_key, base_url=base_url, timeout=timeout)
    if kind is ProviderName.OPENAI_COMPATIBLE:
        from ragline.llm.providers.openai_compatible import OpenAICompatibleProvider

        if not base_url:
            raise LLMConfigError(
                "provider 'openai-compatible' needs base_url, e.g. http://127.0.0.1:8080/v1"
            )
        return OpenAICompatibleProvider(base_url=base_url, api_key=api_key, timeout=timeout)
    from ragline.llm.providers.local import LocalProvider

    return LocalProvider(model_path=model_path, threads=threads, timeout=max(timeout, 120.0))
