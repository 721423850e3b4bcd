from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from ragline.evaluate.registry import QueryResult, RunRegistry
from ragline.evaluate.report import ConfigResult, ReportData, report_data_from_runs, write_report
from ragline.evaluate.stats import compare_paired

METRICS = ["nDCG@10", "R@10", "R@100", "RR@10", "AP@100"]
EVIL = '<script>alert("x")</script>&'


def _config(name: str, shift: float, latency: float, n: int = 50) -> ConfigResult:
    rng = np.random.default_rng(len(name))
    base = np.random.default_rng(0).uniform(0.2, 0.8, n)
    values = np.clip(base + shift + rng.normal(0, 0.05, n), 0, 1)
    per_query = {f"q{i}": dict.fromkeys(METRICS, float(v)) for i, v in enumerate(values)}
    return ConfigResult(
        name, per_query, list(rng.lognormal(np.log(latency), 0.3, n)), index_bytes=3_500_000
    )


@pytest.fixture
def data() -> ReportData:
    a, b = _config("bm25", 0.0, 0.004), _config(EVIL, 0.08, 0.02)
    comp = compare_paired(
        a.per_query, b.per_query, METRICS, n_resamples=499, label_a=a.name, label_b=b.name
    )
    manifest = {
        "config": {"dataset": "scifact"},
        "dataset_hash": "f" * 64,
        "git_sha": "a" * 40,
        "git_dirty": False,
        "created_at": "2026-11-26T06:00:00+00:00",
        "seed": 0,
        "ragline_version": "0.1.0",
        "machine": {"cpu_model": "Test CPU", "cpu_count": 2, "python": "3.11.7"},
    }
    return ReportData("SciFact test", (a, b), (comp,), manifest)


def test_html_is_self_contained(tmp_path: Path, data: ReportData) -> None:
    write_report(data, tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<style>" in html
    assert not re.search(r"<script|<link|@import|src=\"http|href=\"http|url\(", html)


def test_html_has_the_tables_and_charts(tmp_path: Path, data: ReportData) -> None:
    write_report(data, tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    for label in ("nDCG@10", "Recall@10", "Recall@100", "MRR@10", "MAP@100", "p50 ms", "p95 ms"):
        assert label in html
    assert html.count("<svg") == 3  # quality vs latency, win/loss, latency distributions
    assert "better" in html and "Holm p" in html and "MDE" in html
    assert "scifact" in html and "aaaaaaaaaaaa" in html and "Test CPU" in html


def test_user_strings_are_escaped(tmp_path: Path, data: ReportData) -> None:
    write_report(data, tmp_path / "r.html", tmp_path / "r.md")
    html = (tmp_path / "r.html").read_text()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    md = (tmp_path / "r.md").read_text()
    assert "<script>" not in md


def test_markdown_has_the_same_tables(tmp_path: Path, data: ReportData) -> None:
    write_report(data, tmp_path / "r.html", tmp_path / "r.md")
    md = (tmp_path / "r.md").read_text()
    assert md.startswith("# SciFact test")
    assert "| configuration | queries | nDCG@10 |" in md
    assert "| nDCG@10 |" in md and "**better**" in md
    table_rows = [line for line in md.splitlines() if line.startswith("| bm25 |")]
    assert len(table_rows) == 1 and table_rows[0].count("|") == 2 + len(METRICS) + 3 + 1


def test_win_loss_counts_are_shown(tmp_path: Path, data: ReportData) -> None:
    write_report(data, tmp_path / "r.html")
    row = data.comparisons[0].metric("nDCG@10")
    html = (tmp_path / "r.html").read_text()
    assert f"{row.wins} better" in html and f"{row.losses} worse" in html


def test_report_without_latencies_or_comparisons(tmp_path: Path) -> None:
    cfg = ConfigResult("only", {"q1": {"nDCG@10": 0.5}, "q2": {"nDCG@10": 0.7}})
    write_report(ReportData("t", (cfg,)), tmp_path / "r.html")
    assert "<svg" not in (tmp_path / "r.html").read_text()


def test_report_from_registry_runs(tmp_path: Path) -> None:
    with RunRegistry(tmp_path / "r.sqlite") as reg:
        run_id = reg.start_run("retrieval", "toy", {"config": {"dataset": "toy"}})
        for name, shift in (("bm25", 0.0), ("dense", 0.1)):
            reg.add_query_results(
                run_id,
                name,
                [
                    QueryResult(f"q{i}", {"nDCG@10": 0.3 + shift + i / 100}, 0.01 + i / 1000)
                    for i in range(20)
                ],
            )
        reg.finish_run(run_id, {})
        run = reg.get_run(run_id)
        comp = reg.compare_runs(run_id, run_id, "bm25", "dense", n_resamples=499)
    data = report_data_from_runs([run], [comp])
    assert [c.name for c in data.configs] == [f"{run_id}:bm25", f"{run_id}:dense"]
    write_report(data, tmp_path / "out" / "r.html")
    assert run_id in (tmp_path / "out" / "r.html").read_text()


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path: Path, data: ReportData) -> None:
    import shutil
    import subprocess

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    write_report(data, tmp_path / "r.html")
    png = tmp_path / "r.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={png}",
            "--window-size=1280,2000",
            (tmp_path / "r.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert png.stat().st_size > 10_000
