"""Versioned prompt templates (`prompts/<name>.v<N>.txt`) and the formatting of sources.

A template file holds `[system]` and `[user]` sections; `{{ var }}` placeholders are filled by
Jinja2 with strict undefined variables, so a missing variable is an error, never an empty string.
Sources are always delimited and every template says that text inside them is data, not
instructions (the prompt-injection defence).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from typing import Any, Literal

import jinja2
from jinja2 import meta

from ragline.errors import RaglineError
from ragline.types import Hit

Family = Literal["small", "gpt", "claude"]
_FILE = re.compile(r"^(?P<name>[a-z0-9_]+)\.v(?P<version>\d+)\.txt$")
_SECTION = re.compile(r"^\[(system|user)\]\s*$", re.MULTILINE)
_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False
)


class PromptError(RaglineError):
    """A prompt template is missing, malformed, or was rendered without a variable it needs."""


class SourceStyle(enum.StrEnum):
    XML = "xml"  # <source id="1" title="...">...</source>: small models and Claude
    FENCED = "fenced"  # <<<SOURCE 1>>> ... <<<END SOURCE 1>>>: GPT-style models


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: int
    text: str

    @property
    def id(self) -> str:
        """`name.vN`: recorded with every call so results name the prompt that produced them."""
        return f"{self.name}.v{self.version}"

    @cached_property
    def _template(self) -> jinja2.Template:
        return _ENV.from_string(self.text)

    @property
    def variables(self) -> frozenset[str]:
        return frozenset(meta.find_undeclared_variables(_ENV.parse(self.text)))

    def render(self, **values: Any) -> str:
        """The filled-in template; raises PromptError naming any missing or unknown variable."""
        missing = sorted(self.variables - values.keys())
        if missing:
            raise PromptError(
                f"prompt {self.id} needs {', '.join(missing)}; pass them to render() "
                f"(it takes: {', '.join(sorted(self.variables))})"
            )
        extra = sorted(values.keys() - self.variables)
        if extra:
            raise PromptError(
                f"prompt {self.id} has no variable {', '.join(extra)} "
                f"(it takes: {', '.join(sorted(self.variables))})"
            )
        return self._template.render(**values).strip()

    def messages(self, **values: Any) -> list[dict[str, str]]:
        """The rendered template as chat messages, one per `[system]`/`[user]` section."""
        rendered = self.render(**values)
        parts = _SECTION.split(rendered)
        if len(parts) < 3:
            return [{"role": "user", "content": rendered}]
        return [
            {"role": role, "content": body.strip()}
            for role, body in zip(parts[1::2], parts[2::2], strict=True)
        ]


def _prompt_dir() -> Any:
    return resources.files("ragline.answer").joinpath("prompts")


def available_prompts() -> dict[str, list[int]]:
    """Every template name with its versions, ascending."""
    found: dict[str, list[int]] = {}
    for entry in _prompt_dir().iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.setdefault(match["name"], []).append(int(match["version"]))
    return {name: sorted(versions) for name, versions in sorted(found.items())}


def load_prompt(name: str, version: int | None = None) -> PromptTemplate:
    """Load template `name` at `version` (default: the highest version present)."""
    known = available_prompts()
    if name not in known:
        raise PromptError(f"no prompt named {name!r}; available: {', '.join(known)}")
    chosen = max(known[name]) if version is None else version
    if chosen not in known[name]:
        versions = ", ".join(str(v) for v in known[name])
        raise PromptError(f"prompt {name!r} has no version {chosen}; available: {versions}")
    text = _prompt_dir().joinpath(f"{name}.v{chosen}.txt").read_text(encoding="utf-8")
    if "[system]" not in text and "[user]" not in text:
        raise PromptError(f"prompt {name}.v{chosen} has no [system] or [user] section")
    return PromptTemplate(name, chosen, text)


_SMALL_HINTS = ("smollm", "135m", "360m", "0.5b", "1.5b", "1b", "gguf", "tinyllama", "qwen2.5-0")
_LOCAL_PROVIDERS = ("llamacpp", "llama.cpp", "local", "embedded", "ollama", "xllamacpp")


def family_for_model(provider: str, model: str) -> Family:
    """Which prompt family suits a model: 'claude' for Anthropic models, 'small' for local or
    small models, and 'gpt' (a generic chat prompt) for everything else."""
    p, m = provider.casefold(), model.casefold()
    if p == "anthropic" or m.startswith("claude"):
        return "claude"
    if p in _LOCAL_PROVIDERS or any(hint in m for hint in _SMALL_HINTS):
        return "small"
    return "gpt"


def answer_prompt(provider: str, model: str, version: int | None = None) -> PromptTemplate:
    """The answer template for a model's family (`answer_small`, `answer_gpt`, `answer_claude`)."""
    return load_prompt(f"answer_{family_for_model(provider, model)}", version)


def source_style(family: Family) -> SourceStyle:
    return SourceStyle.FENCED if family == "gpt" else SourceStyle.XML


def _xml_safe(text: str) -> str:
    # A source must not be able to close its own tag and speak outside it.
    return re.sub(r"<(/?)(sources?)\b", r"&lt;\1\2", text, flags=re.IGNORECASE)


def _fence_safe(text: str) -> str:
    return text.replace("<<<", "< < <").replace(">>>", "> > >")


def format_sources(hits: Sequence[Hit], style: SourceStyle = SourceStyle.XML) -> str:
    """Number the hits' chunks [1]..[n] inside delimiters that their text cannot close."""
    blocks = []
    for number, hit in enumerate(hits, 1):
        title = hit.doc_title or hit.chunk.doc_id
        if style is SourceStyle.XML:
            safe_title = _xml_safe(title).replace('"', "'")
            blocks.append(
                f'<source id="{number}" title="{safe_title}">\n{_xml_safe(hit.chunk.text)}\n</source>'
            )
        else:
            blocks.append(
                f"<<<SOURCE {number}>>> ({_fence_safe(title)})\n{_fence_safe(hit.chunk.text)}\n"
                f"<<<END SOURCE {number}>>>"
            )
    return "\n\n".join(blocks)
