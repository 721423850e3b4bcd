"""`LLMConfig`: the LLM settings a config file or the CLI gives, and `build_llm`."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field

from ragline.llm.client import LLM
from ragline.llm.errors import LLMConfigError
from ragline.llm.retry import RetryPolicy
from ragline.llm.types import CallOptions, ProviderName


class LLMConfig(BaseModel):
    """Which model, and how to call it. Unknown keys are an error (`extra="forbid"`).

    `api_key_env` names the environment variable holding the key (keys never live in files).
    `fallbacks` are model names on the same provider or "provider:model".
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: ProviderName = ProviderName.OPENAI
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    timeout: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    max_elapsed: float = Field(default=120.0, gt=0)
    base_delay: float = Field(default=0.5, ge=0)
    max_delay: float = Field(default=20.0, ge=0)
    fallbacks: tuple[str, ...] = ()
    cache: bool = True
    ledger: bool = True


def build_llm(config: LLMConfig) -> LLM:
    """An `LLM` from a validated config."""
    api_key = None
    if config.api_key_env:
        api_key = os.environ.get(config.api_key_env)
        if not api_key:
            raise LLMConfigError(f"${config.api_key_env} is not set: export the API key there")
    retry = RetryPolicy(
        max_attempts=config.max_attempts,
        max_elapsed=config.max_elapsed,
        base_delay=config.base_delay,
        max_delay=config.max_delay,
        fallbacks=config.fallbacks,
    )
    defaults = CallOptions(temperature=config.temperature, max_tokens=config.max_tokens)
    return LLM(
        config.provider,
        config.model,
        base_url=config.base_url,
        api_key=api_key,
        timeout=config.timeout,
        retry=retry,
        cache=config.cache,
        ledger=config.ledger,
        defaults=defaults,
    )
