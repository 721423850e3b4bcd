"""Typed errors of the LLM layer. Providers map every SDK error to one of these.

`retryable` says what the default `RetryPolicy` does with the error; the policy's
`retry_on` set is the one place that decides.
"""

from __future__ import annotations

from ragline.errors import ConfigError, RaglineError


class ProviderError(RaglineError):
    """A model provider call failed. `attempts` is set once the retry executor gives up."""

    retryable = False
    hint = "check the provider's status and your request"

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        model: str = "",
        status: int | None = None,
    ) -> None:
        where = f"{provider}/{model}: " if provider else ""
        super().__init__(f"{where}{message} ({self.hint})")
        self.detail = message
        self.provider = provider
        self.model = model
        self.status = status
        self.attempts = 0


class RateLimited(ProviderError):
    retryable = True
    hint = "retried with backoff; lower the request rate or raise your quota"

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        model: str = "",
        status: int | None = 429,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, provider=provider, model=model, status=status)
        self.retry_after = retry_after


class ServerError(ProviderError):
    retryable = True
    hint = "a server-side failure; retried with backoff"


class Overloaded(ProviderError):
    retryable = True
    hint = "the provider is overloaded (529); retried with backoff, or add a fallback model"


class Timeout(ProviderError):
    retryable = True
    hint = ("no reply within the timeout; raise it with --timeout SECONDS (config: [llm] "
            "timeout) or check the server")


class ConnectionLost(ProviderError):
    retryable = True
    hint = ("could not reach the server or the connection dropped; check --base-url (config: "
            "[llm] base_url) and the network")


class StreamInterrupted(ProviderError):
    """A stream ended early. `partial_text` holds what was already yielded to the caller."""

    retryable = True
    hint = "the stream ended before it finished; call again"

    def __init__(
        self, message: str, *, provider: str = "", model: str = "", partial_text: str = ""
    ) -> None:
        super().__init__(message, provider=provider, model=model)
        self.partial_text = partial_text


class MalformedResponse(ProviderError):
    retryable = True
    hint = "the server sent a reply that is not valid for its API; check --base-url ([llm] base_url)"


class BadRequest(ProviderError):
    hint = "fix the request (model name, parameters, context length); it is not retried"


class AuthenticationFailed(ProviderError):
    hint = "set a valid API key (e.g. OPENAI_API_KEY / ANTHROPIC_API_KEY); not retried"


class PermissionDenied(ProviderError):
    hint = "your key may not use this model or endpoint; not retried"


class ContentPolicy(ProviderError):
    hint = "the provider refused the content; change the prompt; not retried"


class RetryBudgetExhausted(ProviderError):
    """The time budget ran out before the next attempt could start."""

    hint = "raise [llm] max_elapsed (RetryPolicy.max_elapsed) or add [llm] fallbacks"


class StructuredOutputError(ProviderError):
    """The reply did not validate against the response model after every re-ask."""

    hint = ("simplify the response model, or use a stronger model (--model, [llm] model); "
            "Python: raise LLM(max_reasks=...)")


class LLMConfigError(ConfigError):
    """An LLM configuration value is invalid (unknown provider, missing key, ...)."""
