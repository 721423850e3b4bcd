"""The price table: every row sourced and dated; snapshots priced; unknown models unpriced."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragline.llm import LLMConfigError, Usage, default_prices, load_prices


def test_every_row_has_a_source_and_a_date() -> None:
    table = default_prices()
    assert table.version >= 1 and table.updated
    for price in table.prices:
        assert price.source and price.as_of, price.model


def test_table_covers_the_main_openai_and_anthropic_models() -> None:
    table = default_prices()
    for model in (
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "o3",
        "o4-mini",
        "gpt-5",
        "gpt-5-mini",
        "gpt-5-nano",
    ):
        assert table.lookup("openai", model) is not None, model
    for model in ("claude-sonnet-4", "claude-opus-4", "claude-3-5-haiku", "claude-haiku-4-5"):
        assert table.lookup("anthropic", model) is not None, model


def test_dated_snapshots_take_their_base_model_price() -> None:
    table = default_prices()
    assert table.lookup("openai", "gpt-4o-2024-08-06").model == "gpt-4o"  # type: ignore[union-attr]
    assert table.lookup("openai", "gpt-4o-mini-2024-07-18").model == "gpt-4o-mini"  # type: ignore[union-attr]
    assert table.lookup("anthropic", "claude-sonnet-4-20250514").model == "claude-sonnet-4"  # type: ignore[union-attr]
    assert table.lookup("anthropic", "claude-sonnet-4-5-20250929").model == "claude-sonnet-4-5"  # type: ignore[union-attr]


def test_unknown_model_is_unpriced_not_free() -> None:
    table = default_prices()
    assert table.lookup("openai", "gpt-4o-turbo-ultra") is None
    assert table.cost("openai", "my-finetune", Usage(100, 0, 0, 0, 10)) is None


def test_self_hosted_models_cost_zero() -> None:
    assert default_prices().cost("local", "SmolLM2-135M", Usage(1000, 0, 0, 0, 100)) == 0.0


def test_cost_prices_each_token_class() -> None:
    price = default_prices().lookup("anthropic", "claude-sonnet-4")
    assert price is not None
    usage = Usage(
        input_tokens=1_000_000 + 2_000_000 + 1_000_000,
        cached_input_tokens=2_000_000,
        cache_write_tokens=1_000_000,
        output_tokens=1_000_000,
    )
    assert price.cost(usage) == pytest.approx(3.00 + 2 * 0.30 + 3.75 + 15.00)


def test_reasoning_tokens_are_priced_as_part_of_output() -> None:
    price = default_prices().lookup("openai", "o3")
    assert price is not None
    assert price.cost(
        Usage(0, 0, 0, reasoning_tokens=500_000, output_tokens=1_000_000)
    ) == pytest.approx(8.00)


def test_a_row_without_source_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        'version = 1\nupdated = "x"\n[[price]]\nprovider = "openai"\n'
        'model = "m"\ninput = 1\ncached_input = 1\ncache_write = 0\n'
        "reasoning = 1\noutput = 1\n"
    )
    with pytest.raises(LLMConfigError, match="source"):
        load_prices(path)
