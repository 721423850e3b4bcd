"""`LLMConfig`: the LLM settings a config file (`[llm]`) or the CLI gives, and `build_llm`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ragline.llm.errors import LLMConfigError
from ragline.llm.types import ProviderName

if TYPE_CHECKING:
    from ragline.llm.client import LLM


class LLMConfig(BaseModel):
    """Which model, and how to call it. Unknown keys are an error (`extra="forbid"`).

    `api_key_env` names the environment variable holding the key (keys never live in files).
    `fallbacks` are model names on the same provider or "provider:model". `timeout` is seconds
    per attempt (`--timeout` on the command line).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: ProviderName = ProviderName.LOCAL
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


    def with_flags(self, **flags: Any) -> LLMConfig:
        """A copy with the command-line values that were given (None means not given)."""
        given = {k: v for k, v in flags.items() if v is not None}
        return self.model_validate({**self.model_dump(), **given}) if given else self

    @property
    def is_default_local(self) -> bool:
        """The bundled or assembled local model with no settings of its own."""
        return self == LLMConfig()


def llm_settings(config: Path | None, **flags: Any) -> LLMConfig:
    """The `[llm]` section of a `--config` file (defaults without one), with the command-line
    flags that were given on top: how every command that calls a model chooses it."""
    from ragline.config import load_config

    base = load_config(config).llm if config is not None else LLMConfig()
    try:
        return base.with_flags(**flags)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise LLMConfigError(f"invalid LLM settings: {problems}") from exc


def build_llm(config: LLMConfig) -> LLM:
    """An `LLM` from a validated config."""
    from ragline.llm.client import LLM
    from ragline.llm.retry import RetryPolicy
    from ragline.llm.types import CallOptions

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
