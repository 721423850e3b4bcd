"""The cost ledger: one row per attempt, summaries by model and purpose, the CLI command."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ragline.cli.llm import ledger_app
from ragline.llm import CallRecord, Ledger, LLMConfigError, Usage
from ragline.llm.ledger import percentile, summarize_records


def rec(call: str, attempt: int = 1, **kw: object) -> CallRecord:
    base: dict[str, object] = {
        "provider": "openai",
        "model": "gpt-4o",
        "purpose": "answer",
        "outcome": "ok",
        "usage": Usage(10, 0, 0, 0, 5),
        "cost_usd": 0.001,
        "provider_s": 0.2,
    }
    base.update(kw)
    return CallRecord(call, attempt, **base)  # type: ignore[arg-type]


def test_ledger_lives_under_ragline_home() -> None:
    assert Ledger().path == Path(os.environ["RAGLINE_HOME"]) / "ledger.sqlite"


def test_records_round_trip_every_field() -> None:
    ledger = Ledger()
    row = rec(
        "c1",
        2,
        usage=Usage(100, 40, 10, 3, 20),
        ttft_s=0.05,
        wait_s=1.5,
        reask=1,
        fallback=True,
        outcome="RateLimited",
        error="slow down",
        cost_usd=None,
    )
    ledger.record(row)
    assert ledger.records() == [row]


def test_records_filter_by_call_and_time() -> None:
    ledger = Ledger()
    ledger.record(rec("old", timestamp=100.0))
    ledger.record(rec("new", timestamp=200.0))
    assert [r.call_id for r in ledger.records(since=150.0)] == ["new"]
    assert [r.call_id for r in ledger.records(call_id="old")] == ["old"]


def test_percentile_interpolates() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 95) == 5.0
    assert percentile([], 50) == 0.0


def test_summary_counts_calls_attempts_errors_and_cost() -> None:
    rows = summarize_records(
        [
            rec("a", 1, outcome="ServerError", cost_usd=0.0, usage=Usage(), wait_s=0.0),
            rec("a", 2, wait_s=0.5),
            rec("b", 1),
            rec("c", 1, outcome="cache_hit", cost_usd=0.0),
        ]
    )
    assert len(rows) == 1
    row = rows[0]
    assert (row.calls, row.attempts, row.errors, row.cache_hits) == (3, 4, 1, 1)
    assert row.cost_usd == pytest.approx(0.002)
    assert row.input_tokens == 20  # the cache hit spent no tokens


def test_summary_latency_is_per_call_including_backoff() -> None:
    rows = summarize_records([rec("a", 1, provider_s=0.1), rec("a", 2, wait_s=2.0, provider_s=0.1)])
    assert rows[0].latency_p50_s == pytest.approx(2.2)


def test_summary_groups_by_model_and_purpose() -> None:
    rows = summarize_records([rec("a"), rec("b", purpose="judge"), rec("c", model="o3")])
    assert [r.group for r in rows] == [
        {"model": "gpt-4o", "purpose": "answer"},
        {"model": "gpt-4o", "purpose": "judge"},
        {"model": "o3", "purpose": "answer"},
    ]


def test_summary_shows_unpriced_calls_instead_of_zero_cost() -> None:
    rows = summarize_records([rec("a", model="mystery", cost_usd=None)])
    assert rows[0].unpriced == 1


def test_summary_rejects_unknown_group_field() -> None:
    with pytest.raises(LLMConfigError, match="group"):
        summarize_records([rec("a")], group_by=("colour",))


def _app() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(ledger_app, name="ledger")
    return app


def test_summary_command_prints_json() -> None:
    Ledger().record(rec("a", purpose="judge"))
    result = CliRunner().invoke(_app(), ["ledger", "summary", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data[0]["group"] == {"model": "gpt-4o", "purpose": "judge"}
    assert data[0]["calls"] == 1


def test_summary_command_prints_a_table_with_unpriced_flag() -> None:
    Ledger().record(rec("a", model="mystery", cost_usd=None))
    result = CliRunner().invoke(_app(), ["ledger", "summary"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "mystery" in result.stdout
    assert "unpriced" in result.stdout
    assert " 1 " in result.stdout.split("mystery")[1]


def test_summary_command_rejects_a_bad_since() -> None:
    result = CliRunner().invoke(_app(), ["ledger", "summary", "--since", "yesterday"])
    assert result.exit_code == 2
