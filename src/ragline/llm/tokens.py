"""Count prompt tokens before sending.

- OpenAI: exact BPE ids with tiktoken, built offline from the `bpe_openai` package's
  cl100k_base / o200k_base rank files (the same files tiktoken downloads; checked by sha256),
  plus OpenAI's documented per-message overhead (3 tokens a message, 3 to prime the reply).
- Local models: the model's own tokenizer and chat template (`LocalProvider.count_tokens`).
- Anthropic: no offline tokenizer exists; an ESTIMATE, cl100k tokens x 1.15 rounded up
  (Claude's tokenizer yields somewhat more tokens than cl100k on English text).
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import math
from importlib import resources

import tiktoken

from ragline.llm.errors import LLMConfigError
from ragline.llm.types import Message, ProviderName

ANTHROPIC_ESTIMATE_FACTOR = 1.15
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING_TOKENS = 3

_ENCODINGS: dict[str, tuple[str, str, dict[str, int]]] = {
    # name: (sha256 of the rank file, split pattern, special tokens) -- as in tiktoken_ext
    "cl100k_base": (
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
    "o200k_base": (
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        "|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
}
_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")


def encoding_name_for_model(model: str) -> str:
    """o200k_base for gpt-4o / gpt-4.1 / gpt-5 / o-series, cl100k_base for older models."""
    return "o200k_base" if model.startswith(_O200K_PREFIXES) else "cl100k_base"


@functools.cache
def get_encoding(name: str) -> tiktoken.Encoding:
    """A tiktoken Encoding built from the rank file shipped in `bpe_openai` (no network)."""
    if name not in _ENCODINGS:
        raise LLMConfigError(f"unknown encoding {name!r}: use one of {sorted(_ENCODINGS)}")
    sha, pattern, special = _ENCODINGS[name]
    blob = resources.files("bpe_openai.data").joinpath(f"{name}.tiktoken.gz").read_bytes()
    data = gzip.decompress(blob)
    if hashlib.sha256(data).hexdigest() != sha:
        raise LLMConfigError(f"bpe_openai's {name} file does not match tiktoken's; reinstall it")
    ranks = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in data.splitlines() if line)
    }
    return tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=special)


def _chat_tokens(encoding: tiktoken.Encoding, messages: tuple[Message, ...]) -> int:
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        total += TOKENS_PER_MESSAGE + len(encoding.encode_ordinary(message.role.value))
        total += len(encoding.encode_ordinary(message.content))
        for call in message.tool_calls:
            total += len(encoding.encode_ordinary(call.name + str(call.arguments)))
    return total


def count_prompt_tokens(
    provider: str | ProviderName, model: str, messages: tuple[Message, ...] | list[Message]
) -> int:
    """Prompt tokens before sending: exact for OpenAI, an estimate for Anthropic.

    For `local` use `LLM.count_prompt_tokens` (it asks the running model's tokenizer); for
    `openai-compatible` servers the o200k count is an approximation.
    """
    kind = ProviderName(provider)
    msgs = tuple(messages)
    if kind is ProviderName.LOCAL:
        raise LLMConfigError(
            "local models count with their own tokenizer: use LLM(provider='local')"
            ".count_prompt_tokens(messages)"
        )
    if kind is ProviderName.ANTHROPIC:
        return math.ceil(
            _chat_tokens(get_encoding("cl100k_base"), msgs) * ANTHROPIC_ESTIMATE_FACTOR
        )
    return _chat_tokens(get_encoding(encoding_name_for_model(model)), msgs)


def is_estimate(provider: str | ProviderName) -> bool:
    """True where `count_prompt_tokens` estimates rather than counts exactly."""
    return ProviderName(provider) in (ProviderName.ANTHROPIC, ProviderName.OPENAI_COMPATIBLE)
