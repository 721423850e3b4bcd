from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ragline.cli.runs import runs_app
from ragline.errors import ConfigError
from ragline.evaluate.manifest import FileHasher, build_manifest, canonical_json, config_hash
from ragline.evaluate.registry import (
    QueryResult,
    RegistryError,
    RunNotFound,
    RunRegistry,
    RunStatus,
    new_run_id,
)
from ragline.evaluate.stats import ComparisonError, Verdict
from ragline.types import RetrievalMode

# --- manifest -------------------------------------------------------------------------------


def test_config_hash_ignores_key_order_and_handles_enums_and_paths() -> None:
    one = {"mode": RetrievalMode.HYBRID, "k": 10, "index": Path("/x/y")}
    two = {"index": "/x/y", "k": 10, "mode": "hybrid"}
    assert canonical_json(one) == canonical_json(two)
    assert config_hash(one) == config_hash(two)
    assert config_hash(one) != config_hash({**two, "k": 11})


def test_config_with_unrecordable_value_is_an_error() -> None:
    with pytest.raises(ConfigError, match="cannot be recorded"):
        config_hash({"fn": object()})


def test_build_manifest_records_everything(tmp_path: Path) -> None:
    model_file = tmp_path / "model.onnx"
    model_file.write_bytes(b"weights")
    manifest = build_manifest(
        {"mode": "bm25", "k": 100},
        "d" * 64,
        [{"id": "minilm", "files": [model_file], "dim": 384}],
        seed=7,
    )
    assert manifest.config == {"mode": "bm25", "k": 100}
    assert manifest.config_hash == config_hash({"k": 100, "mode": "bm25"})
    assert manifest.dataset_hash == "d" * 64
    assert manifest.seed == 7
    model = manifest.models[0]
    assert model.id == "minilm" and model.details == {"dim": 384}
    assert model.files[0].sha256 == hashlib.sha256(b"weights").hexdigest()
    assert {"numpy", "scipy", "ir-measures"} <= set(manifest.libraries)
    assert manifest.machine.cpu_count and manifest.machine.python
    json.dumps(manifest.to_dict())  # JSON-ready


def test_manifest_records_git_sha_or_none(tmp_path: Path) -> None:
    manifest = build_manifest({}, "h", [], 0, repo=tmp_path)  # tmp_path is no git checkout
    assert manifest.git_sha is None and manifest.git_dirty is None
    here = build_manifest({}, "h", [], 0, repo=Path(__file__).parent)
    if here.git_sha is not None:
        assert re.fullmatch(r"[0-9a-f]{40}", here.git_sha)
        assert isinstance(here.git_dirty, bool)


def test_file_hash_is_cached_by_path_size_and_mtime(tmp_path: Path) -> None:
    f = tmp_path / "m.bin"
    f.write_bytes(b"abc")
    hasher = FileHasher(tmp_path / "cache.json")
    first = hasher.hash(f)
    assert first.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    cached = json.loads((tmp_path / "cache.json").read_text())
    assert list(cached.values()) == [first.sha256]
    f.write_bytes(b"abcd")
    assert FileHasher(tmp_path / "cache.json").hash(f).sha256 != first.sha256


def test_missing_model_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        build_manifest({}, "h", [{"id": "m", "files": [tmp_path / "nope"]}], 0)


# --- registry --------------------------------------------------------------------------------

MANIFEST = {"config": {"mode": "bm25"}, "dataset_hash": "abc", "seed": 0}


def _rows(values: list[float], latency: float = 0.01) -> list[QueryResult]:
    return [QueryResult(f"q{i}", {"nDCG@10": v, "R@10": v}, latency) for i, v in enumerate(values)]


def _complete_run(reg: RunRegistry, values: list[float], config: str = "bm25") -> str:
    run_id = reg.start_run("retrieval", "toy", MANIFEST)
    reg.add_query_results(run_id, config, _rows(values))
    reg.finish_run(run_id, {"means": {"nDCG@10": float(np.mean(values))}})
    return run_id


def test_run_ids_are_short_sortable_and_typeable() -> None:
    run_id = new_run_id(now=1_800_000_000)
    assert re.fullmatch(r"r\d{8}-\d{4}-[0-9a-f]{4}", run_id)
    assert new_run_id(now=1_800_000_000)[:14] < new_run_id(now=1_900_000_000)[:14]


def test_start_add_finish_and_get_run() -> None:
    with RunRegistry() as reg:
        run_id = reg.start_run("retrieval", "toy", MANIFEST)
        assert reg.get_run(run_id).info.status is RunStatus.RUNNING
        reg.add_query_results(run_id, "bm25", _rows([0.5, 1.0]))
        reg.finish_run(run_id, {"ok": True})
        run = reg.get_run(run_id)
    assert run.info.status is RunStatus.COMPLETE
    assert run.manifest == MANIFEST
    assert run.summary == {"ok": True}
    assert run.per_query("bm25") == {
        "q0": {"nDCG@10": 0.5, "R@10": 0.5},
        "q1": {"nDCG@10": 1.0, "R@10": 1.0},
    }
    assert run.latencies("bm25") == [0.01, 0.01]


def test_default_registry_lives_in_ragline_home(_isolated_home: Path) -> None:
    with RunRegistry() as reg:
        assert reg.path == _isolated_home / "runs.sqlite"


def test_lookup_by_prefix_and_by_suffix() -> None:
    with RunRegistry() as reg:
        run_id = _complete_run(reg, [0.1, 0.2])
        assert reg.get_run(run_id[:-2]).id == run_id
        assert reg.get_run(run_id[-4:]).id == run_id
        with pytest.raises(RunNotFound):
            reg.get_run("r1999")


def test_ambiguous_prefix_lists_the_candidates() -> None:
    with RunRegistry() as reg:
        _complete_run(reg, [0.1, 0.2])
        _complete_run(reg, [0.1, 0.2])
        with pytest.raises(RegistryError, match="matches 2 runs"):
            reg.get_run("r")


def test_finished_run_refuses_more_results() -> None:
    with RunRegistry() as reg:
        run_id = _complete_run(reg, [0.1, 0.2])
        with pytest.raises(RegistryError, match="is complete, not running"):
            reg.add_query_results(run_id, "bm25", _rows([0.3]))


def test_run_of_a_dead_process_is_marked_interrupted(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    code = (
        "from ragline.evaluate.registry import RunRegistry, QueryResult\n"
        f"r = RunRegistry({str(db)!r})\n"
        "i = r.start_run('retrieval', 'x', {})\n"
        "r.add_query_results(i, 'c', [QueryResult('q1', {'nDCG@10': 1.0})])\n"
        "print(i)\n"
    )
    src = Path(__file__).resolve().parents[1] / "src"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(src), "RAGLINE_HOME": str(tmp_path)},
        check=True,
    )
    run_id = done.stdout.strip()
    with RunRegistry(db) as reg:
        run = reg.get_run(run_id)
        assert run.info.status is RunStatus.INTERRUPTED
        assert run.summary is None
        assert "process ended" in (run.info.reason or "")
        with pytest.raises(ComparisonError, match="interrupted"):
            reg.compare_runs(run_id, run_id)
        assert reg.resume_run(run_id) == run_id
        assert reg.completed_queries(run_id, "c") == {"q1"}
        reg.finish_run(run_id, {})
        assert reg.get_run(run_id).info.status is RunStatus.COMPLETE


def test_running_run_of_this_process_stays_running(tmp_path: Path) -> None:
    with RunRegistry(tmp_path / "r.sqlite") as reg:
        run_id = reg.start_run("retrieval", "x", {})
    with RunRegistry(tmp_path / "r.sqlite") as reg:
        assert reg.get_run(run_id).info.status is RunStatus.RUNNING


def test_discard_run_keeps_it_out_of_comparisons() -> None:
    with RunRegistry() as reg:
        run_id = reg.start_run("retrieval", "x", {})
        reg.discard_run(run_id, "bad config")
        run = reg.get_run(run_id)
        assert run.info.status is RunStatus.DISCARDED and run.info.reason == "bad config"
        other = _complete_run(reg, [0.1, 0.2])
        with pytest.raises(ComparisonError, match="discarded"):
            reg.compare_runs(other, run_id)


def test_list_runs_newest_first() -> None:
    with RunRegistry() as reg:
        first = _complete_run(reg, [0.1, 0.2])
        second = _complete_run(reg, [0.1, 0.2])
        assert [r.id for r in reg.list_runs(10)] == [second, first]
        assert len(reg.list_runs(1)) == 1


def test_finish_is_atomic_with_the_summary(tmp_path: Path) -> None:
    with RunRegistry(tmp_path / "r.sqlite") as reg:
        run_id = reg.start_run("retrieval", "x", {})
        reg.finish_run(run_id, {"means": {}})
    rows = (
        sqlite3.connect(tmp_path / "r.sqlite")
        .execute("SELECT status, summary IS NOT NULL, finished_at IS NOT NULL FROM runs")
        .fetchall()
    )
    assert rows == [("complete", 1, 1)]


def test_compare_identical_runs_is_no_detectable_difference() -> None:
    values = list(np.random.default_rng(0).uniform(0, 1, 40))
    with RunRegistry() as reg:
        a, b = _complete_run(reg, values), _complete_run(reg, values)
        comp = reg.compare_runs(a, b, n_resamples=999)
    assert [m.metric for m in comp.metrics] == ["nDCG@10", "R@10"]
    assert all(m.verdict is Verdict.NO_DIFFERENCE and m.p_value == 1.0 for m in comp.metrics)


def test_compare_runs_refuses_different_query_sets() -> None:
    with RunRegistry() as reg:
        a, b = _complete_run(reg, [0.1, 0.2, 0.3]), _complete_run(reg, [0.1, 0.2])
        with pytest.raises(ComparisonError, match="1 only in A, 0 only in B"):
            reg.compare_runs(a, b)


def test_compare_configs_within_one_run() -> None:
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 0.7, 60)
    with RunRegistry() as reg:
        run_id = reg.start_run("retrieval", "sweep", {})
        reg.add_query_results(run_id, "bm25", _rows(list(base)))
        reg.add_query_results(run_id, "hybrid", _rows(list(base + 0.2)))
        reg.finish_run(run_id, {})
        with pytest.raises(ComparisonError, match="name the one"):
            reg.compare_runs(run_id, run_id)
        comp = reg.compare_runs(run_id, run_id, "bm25", "hybrid", n_resamples=999)
    assert comp.metric("nDCG@10").verdict is Verdict.BETTER
    assert comp.label_b.endswith(":hybrid")


# --- commands ----------------------------------------------------------------------------------


def test_runs_list_show_and_compare_commands(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    values = list(np.random.default_rng(2).uniform(0, 1, 30))
    with RunRegistry(db) as reg:
        a, b = _complete_run(reg, values), _complete_run(reg, values)
    runner = CliRunner()
    listed = runner.invoke(runs_app, ["list", "--json", "--registry", str(db)])
    assert listed.exit_code == 0, listed.output
    assert {r["id"] for r in json.loads(listed.output)} == {a, b}
    shown = runner.invoke(runs_app, ["show", a[-4:], "--json", "--registry", str(db)])
    assert json.loads(shown.output)["id"] == a
    text = runner.invoke(runs_app, ["show", a, "--registry", str(db)])
    assert "nDCG@10" in text.output
    report = tmp_path / "out.html"
    compared = runner.invoke(
        runs_app, ["compare", a, b, "--json", "--report", str(report), "--registry", str(db)]
    )
    assert compared.exit_code == 0, compared.output
    data = json.loads(compared.output)
    assert data["metrics"][0]["verdict"] == "no detectable difference"
    assert data["gate"]["passed"] is True
    assert report.read_text().startswith("<!DOCTYPE html>")


def test_compare_command_fails_on_regression(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    values = np.random.default_rng(3).uniform(0.3, 1, 60)
    with RunRegistry(db) as reg:
        a, b = _complete_run(reg, list(values)), _complete_run(reg, list(values - 0.2))
    result = CliRunner().invoke(
        runs_app, ["compare", a, b, "--fail-on-regression", "--registry", str(db)]
    )
    assert result.exit_code == 1
    assert "REGRESSION" in result.output


def test_show_unknown_run_is_a_clean_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(runs_app, ["show", "nope", "--registry", str(tmp_path / "r.db")])
    assert result.exit_code == 2
    assert "ragline runs list" in result.output


def test_runs_list_shows_the_settings_that_tell_runs_apart(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    with RunRegistry(db) as reg:
        extractive = reg.start_run("answers", "hotpotqa", {"config": {
            "kind": "answers", "settings": {"extractive": True, "model": None, "k": 5}}})
        model = reg.start_run("answers", "hotpotqa", {"config": {
            "kind": "answers", "settings": {"extractive": False, "model": "qwen", "k": 5}}})
        other = reg.start_run("retrieval", "scifact/test", {"config": {"configs": {"a": 1}}})
    listed = CliRunner().invoke(runs_app, ["list", "--json", "--registry", str(db)])
    differs = {r["id"]: r["differs"] for r in json.loads(listed.output)}
    assert differs[extractive] == {"settings.extractive": True, "settings.model": None}
    assert differs[model] == {"settings.extractive": False, "settings.model": "qwen"}
    assert differs[other] == {}  # alone of its kind and dataset: nothing to tell apart
    text = CliRunner().invoke(runs_app, ["list", "--registry", str(db)], terminal_width=200)
    assert "settings.extractive=True" in "".join(text.output.replace("│", " ").split())
