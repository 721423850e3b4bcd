"""Claim-verification data: JSONL claim files, SciFact claims, and the verifier metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragline.errors import DatasetError
from ragline.evaluate.claim_data import load_claim_jsonl, load_claims, load_scifact_claims
from ragline.evaluate.verifier_metrics import best_threshold, verifier_scores
from tests.conftest import SHARED_DATASETS


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_claim_file_reads_pairs_with_labels(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.jsonl", [
        {"id": "a", "doc": "The sky is blue.", "claim": "The sky is blue.", "label": 1},
        {"id": "b", "doc": "The sky is blue.", "claim": "The sky is green.", "label": "0"},
    ])
    data = load_claim_jsonl(path)
    assert [(p.id, p.label) for p in data.pairs] == [("a", 1), ("b", 0)]
    assert data.positives == 1 and len(data.hash) == 64


@pytest.mark.parametrize(("row", "message"), [
    ({"id": "x", "doc": "d", "claim": "c"}, r"c\.jsonl:2: missing label"),
    ({"id": "x", "doc": "d", "claim": "c", "label": 2}, r"c\.jsonl:2: label must be 0 or 1"),
    ({"id": "x", "doc": "d", "claim": "c", "label": True}, r"label must be 0 or 1"),
    ({"id": "x", "doc": 5, "claim": "c", "label": 1}, r"doc and claim must be strings"),
    ("{not json", r"c\.jsonl:2: not valid JSON"),
])
def test_bad_claim_line_is_an_error_naming_the_line(tmp_path: Path, row: object,
                                                    message: str) -> None:
    path = _write(tmp_path / "c.jsonl", [{"doc": "d", "claim": "c", "label": 1}, row])
    with pytest.raises(DatasetError, match=message):
        load_claim_jsonl(path)


def test_missing_or_empty_claim_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        load_claims(tmp_path / "nope.jsonl")
    with pytest.raises(DatasetError, match="no claims"):
        load_claim_jsonl(_write(tmp_path / "empty.jsonl", [""]))


@pytest.mark.skipif(not (SHARED_DATASETS / "scifact").is_dir(), reason="no shared data")
def test_scifact_test_claims_pair_each_claim_with_its_cited_abstract() -> None:
    data = load_scifact_claims(SHARED_DATASETS / "scifact", "test")
    assert len(data.pairs) == 209 and data.positives == 138  # SUPPORT vs CONTRADICT
    assert all(p.rationale and p.sentences for p in data.pairs)
    train = load_scifact_claims(SHARED_DATASETS / "scifact", "train")
    assert {p.group for p in train.pairs}.isdisjoint({p.group for p in data.pairs})


def test_verifier_scores_count_unsupported_as_the_flagged_class() -> None:
    labels = [1, 1, 1, 0, 0]
    scores = [0.9, 0.8, 0.2, 0.1, 0.7]
    s = verifier_scores(labels, scores, 0.5)
    assert s.balanced_accuracy == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert s.flag_precision == pytest.approx(1 / 2)  # flagged: 0.2 (wrongly), 0.1 (rightly)
    assert s.flag_recall == pytest.approx(1 / 2)
    assert s.false_flag_rate == pytest.approx(1 / 3)
    assert s.auroc == pytest.approx(5 / 6)  # 5 of the 6 (supported, not) pairs ordered


def test_best_threshold_weighs_every_source_equally() -> None:
    big = ([1] * 50 + [0] * 50, [0.9] * 50 + [0.4] * 50)
    small = ([1, 1, 0, 0], [0.35, 0.3, 0.1, 0.05])
    threshold = best_threshold([big, small])
    assert 0.05 < threshold <= 0.3
    assert verifier_scores(*small, threshold).balanced_accuracy == 1.0


# ---------------------------------------------------------------- ragline eval verifier


def test_eval_verifier_reports_and_compares_two_configurations(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ragline.cli import app

    rows = []
    for i in range(20):
        doc = f"Item {i} costs {i + 10} dollars and is sold in Lisbon."
        rows.append({"id": f"s{i}", "doc": doc, "claim": f"Item {i} is sold in Lisbon.",
                     "label": 1})
        rows.append({"id": f"u{i}", "doc": doc, "claim": f"Item {i} costs {i + 99} dollars.",
                     "label": 0})
    path = _write(tmp_path / "claims.jsonl", rows)
    result = CliRunner().invoke(app, ["eval", "verifier", "--dataset", str(path),
                                      "--verifier", "overlap", "--verifier", "overlap+checks",
                                      "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["claims"] == 40 and "balanced_accuracy" in report
    checks = report["verifiers"]["overlap+checks"]
    assert checks["balanced_accuracy"] == 1.0  # the changed numbers are caught by the checks
    assert report["comparisons"][0]["b"] == "overlap+checks"
    assert {m["metric"] for m in report["comparisons"][0]["metrics"]} == {
        "correct", "accept_supported", "flag_unsupported"}


def test_eval_verifier_bad_dataset_line_exits_2_naming_it(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ragline.cli import app

    path = _write(tmp_path / "claims.jsonl", [{"doc": "d", "claim": "c", "label": 7}])
    result = CliRunner().invoke(app, ["eval", "verifier", "--dataset", str(path)])
    assert result.exit_code == 2
    assert "claims.jsonl:1: label must be 0 or 1" in result.output
