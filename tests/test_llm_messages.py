"""Messages may be given the way most users already hold them."""

from __future__ import annotations

import pytest

from ragline.llm import LLMConfigError, Message
from ragline.llm.client import as_messages
from ragline.llm.types import Role


def test_openai_style_dicts_become_messages() -> None:
    messages = as_messages([{"role": "system", "content": "be brief"},
                            {"role": "user", "content": "hi"}])
    assert [m.role for m in messages] == [Role.SYSTEM, Role.USER]
    assert messages[1].content == "hi"


def test_a_string_role_is_coerced() -> None:
    assert Message("assistant", "ok").role is Role.ASSISTANT  # type: ignore[arg-type]


def test_a_malformed_message_names_what_is_missing() -> None:
    with pytest.raises(LLMConfigError, match="'role' and 'content'"):
        as_messages([{"text": "hi"}])  # type: ignore[list-item]
