"""`ragline eval retrieval` and `ragline tune retrieval` on a small BEIR-format dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragline.cli import app
from ragline.evaluate.registry import QueryResult, RunRegistry

TOPICS = [
    "volcanic eruptions and lava flows", "honeybee colony collapse", "quantum entanglement",
    "medieval castle architecture", "coral reef bleaching", "jazz improvisation",
    "glacier retreat in the alps", "antibiotic resistance in bacteria", "black hole mergers",
    "sourdough fermentation", "desert irrigation methods", "octopus camouflage",
    "roman aqueduct engineering", "solar panel efficiency", "migratory bird navigation",
    "ancient egyptian astronomy", "deep sea hydrothermal vents", "chess opening theory",
    "monsoon rainfall patterns", "vaccine adjuvant chemistry",
]

runner = CliRunner()


@pytest.fixture()
def beir(tmp_path: Path) -> Path:
    root = tmp_path / "toy"
    (root / "qrels").mkdir(parents=True)
    with (root / "corpus.jsonl").open("w") as fh:
        for i, topic in enumerate(TOPICS):
            text = f"This article is about {topic}. It explains {topic} in detail."
            fh.write(json.dumps({"_id": f"d{i}", "title": topic.title(), "text": text}) + "\n")
    with (root / "queries.jsonl").open("w") as fh:
        for i, topic in enumerate(TOPICS):
            fh.write(json.dumps({"_id": f"q{i}", "text": f"what is known about {topic}"}) + "\n")
    rows = ["query-id\tcorpus-id\tscore"]
    for split, shift in (("test", 0), ("train", 0), ("shuffled", 7)):
        lines = rows + [f"q{i}\td{(i + shift) % len(TOPICS)}\t1" for i in range(len(TOPICS))]
        (root / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


def _config(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(body)
    return path


def test_eval_two_configs_reports_metrics_and_a_paired_comparison(tmp_path: Path, beir: Path) -> None:
    a = _config(tmp_path, "bm25", '[search]\nmode = "bm25"\n')
    b = _config(tmp_path, "hybrid", '[search]\nmode = "hybrid"\n')
    result = runner.invoke(app, ["eval", "retrieval", "--dataset", str(beir), "--config", str(a),
                                 "--config", str(b), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data["configs"]) == {"bm25", "hybrid"}
    metrics = data["configs"]["bm25"]["metrics"]
    assert {"nDCG@10", "R@10", "R@100", "RR@10", "AP@100"} <= set(metrics)
    assert metrics["nDCG@10"] > 0.9
    assert data["configs"]["hybrid"]["latency_ms"]["p95"] > 0
    comparison = data["comparisons"][0]
    assert {m["verdict"] for m in comparison["metrics"]} <= {
        "better", "worse", "no detectable difference"}
    with RunRegistry() as registry:
        run = registry.get_run(data["run_id"])
        assert run.info.status.value == "complete"
        assert len(run.per_query("bm25")) == len(TOPICS)


def test_identical_configs_show_no_detectable_difference(tmp_path: Path, beir: Path) -> None:
    a = _config(tmp_path, "one", "")
    b = _config(tmp_path, "two", "")
    result = runner.invoke(app, ["eval", "retrieval", "--dataset", str(beir), "--config", str(a),
                                 "--config", str(b), "--json"])
    assert result.exit_code == 0, result.output
    verdicts = {m["verdict"] for m in json.loads(result.stdout)["comparisons"][0]["metrics"]}
    assert verdicts == {"no detectable difference"}


def test_unknown_config_key_is_an_error_listing_valid_keys(tmp_path: Path, beir: Path) -> None:
    bad = _config(tmp_path, "bad", "[search]\nmdoe = 'bm25'\n")
    result = runner.invoke(app, ["eval", "retrieval", "--dataset", str(beir), "--config", str(bad)])
    assert result.exit_code == 2
    assert "unknown key 'search.mdoe'" in result.stderr
    assert "mode, fusion, rrf_k" in result.stderr


def test_missing_dataset_file_is_named(tmp_path: Path, beir: Path) -> None:
    (beir / "queries.jsonl").unlink()
    result = runner.invoke(app, ["eval", "retrieval", "--dataset", str(beir)])
    assert result.exit_code == 2
    assert "queries.jsonl is missing" in result.stderr


def test_regression_gate_fails_only_on_a_significant_drop(tmp_path: Path, beir: Path) -> None:
    first = runner.invoke(app, ["eval", "retrieval", "--dataset", str(beir), "--json"])
    baseline = json.loads(first.stdout)["run_id"]
    same = runner.invoke(app, ["eval", "retrieval", "--dataset", str(beir), "--baseline", baseline,
                               "--fail-on-regression", "--json"])
    assert same.exit_code == 0, same.output
    assert json.loads(same.stdout)["gate"]["passed"] is True
    worse = runner.invoke(app, ["eval", "retrieval", "--dataset", str(beir), "--split", "shuffled",
                                "--baseline", baseline, "--fail-on-regression", "--json"])
    assert worse.exit_code == 1, worse.output
    failures = json.loads(worse.stdout)["gate"]["failures"]
    assert any("nDCG@10" in line for line in failures)


def test_comparing_runs_over_different_queries_is_refused(beir: Path) -> None:
    first = runner.invoke(app, ["eval", "retrieval", "--dataset", str(beir), "--json"])
    baseline = json.loads(first.stdout)["run_id"]
    with RunRegistry() as registry:
        run_id = registry.start_run("retrieval", "other", {"dataset": "elsewhere"})
        registry.add_query_results(run_id, "default", [
            QueryResult("other-query", {"nDCG@10": 1.0}, 0.01)])
        registry.finish_run(run_id, {})
    result = runner.invoke(app, ["runs", "compare", baseline, run_id])
    assert result.exit_code == 2
    assert "quer" in result.stderr


def test_report_is_written_as_html_and_markdown(tmp_path: Path, beir: Path) -> None:
    report = tmp_path / "out" / "report.html"
    report.parent.mkdir()
    result = runner.invoke(app, ["eval", "retrieval", "--dataset", str(beir), "--report",
                                 str(report)])
    assert result.exit_code == 0, result.output
    html = report.read_text()
    assert "<svg" in html and "nDCG@10" in html
    assert report.with_suffix(".md").exists()


def test_tune_prints_a_pareto_front_and_the_best_point(tmp_path: Path, beir: Path) -> None:
    result = runner.invoke(app, ["tune", "retrieval", "--dataset", str(beir), "--depths", "5,20",
                                 "--latency-sample", "3", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["split"] == "train"
    assert len(data["all"]) == 2 + 2 * (5 + 9)
    assert data["pareto_front"] and data["best"]["metrics"]["nDCG@10"] > 0.9
    assert {"p50", "p95"} <= set(data["best"]["latency_ms"])


def test_tune_writes_the_best_point_as_a_configuration(tmp_path: Path, beir: Path) -> None:
    from ragline.config import load_config

    written = tmp_path / "tuned.toml"
    result = runner.invoke(app, ["tune", "retrieval", "--dataset", str(beir), "--depths", "5",
                                 "--latency-sample", "2", "--json", "--write-config", str(written)])
    assert result.exit_code == 0, result.output
    best = json.loads(result.stdout)["best"]["search"]
    tuned = load_config(written)
    assert written.read_text().startswith("# Written by `ragline tune retrieval`")
    assert {k: getattr(tuned.search, k) for k in best} == best


def test_the_python_api_runs_records_compares_and_gates_as_the_cli_does(beir: Path) -> None:
    from ragline.config import RaglineConfig
    from ragline.evaluate import evaluate_retrieval

    bm25 = RaglineConfig.model_validate({"name": "bm25", "search": {"mode": "bm25"}})
    hybrid = RaglineConfig.model_validate({"name": "hybrid"})
    first = evaluate_retrieval(beir, [bm25, hybrid])
    assert [r.name for r in first.results] == ["bm25", "hybrid"]
    assert first.results[0].means["nDCG@10"] > 0.9 and len(first.comparisons) == 1
    with RunRegistry() as registry:
        assert registry.get_run(first.run_id).info.status.value == "complete"
    shuffled = evaluate_retrieval(beir, [bm25], split="shuffled", baseline=first.run_id)
    assert not shuffled.passed and shuffled.gate_failures  # the labels moved: far worse
    assert shuffled.to_dict()["gate"]["passed"] is False


def test_a_failed_evaluation_is_discarded_not_left_running(beir: Path, monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    from ragline.evaluate import evaluate_retrieval, experiment

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the model crashed")

    monkeypatch.setattr(experiment, "evaluate_config", broken)
    with pytest.raises(RuntimeError):
        evaluate_retrieval(beir, [])
    with RunRegistry() as registry:
        assert registry.list_runs()[0].status.value != "running"
