"""`ragline eval leakage` and the novel-query scores of `eval retrieval` (ragline.evaluate.leakage)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ragline.cli import app
from ragline.evaluate.leakage import scan
from tests.test_eval_cli import beir  # noqa: F401  (the toy BEIR dataset fixture)

TRAIN = {"t1": "Obesity decreases life quality.",
         "t2": "Vitamin D deficiency increases the risk of fractures in older adults.",
         "t3": "Aspirin lowers the risk of colorectal cancer."}
TEST = {"q1": "obesity decreases  LIFE quality",  # the same after normalising
        "q2": "Vitamin D deficiency increases the risk of fractures in old adults.",  # near copy
        "q3": "Coffee is associated with a longer life in several large cohorts.",
        "q4": "We think that vitamin D deficiency increases the risk of hip pain."}  # a 5-gram


def test_scan_finds_exact_near_and_ngram_copies() -> None:
    report = scan(TRAIN, TEST)
    assert [(m.test_id, m.train_id) for m in report.exact_duplicates] == [("q1", "t1")]
    assert [(m.test_id, m.train_id) for m in report.near_duplicates] == [("q2", "t2")]
    assert 90 <= report.near_duplicates[0].similarity < 100
    # q1 is too short for a 5-gram (the exact check has it); q3 shares no 5 consecutive words
    assert report.ngram_overlaps == ["q2", "q4"]
    assert report.novel_test_queries is None  # no qrels given: documents not compared


def test_scan_counts_shared_relevant_documents_and_novel_queries() -> None:
    train_qrels = {"t1": {"d1": 1, "d2": 1}, "t2": {"d3": 1}, "t3": {"d9": 0}}  # 0: not relevant
    test_qrels = {"q1": {"d1": 1}, "q2": {"d4": 1, "d3": 1}, "q3": {"d5": 2}, "q4": {"d9": 1}}
    report = scan(TRAIN, TEST, train_qrels=train_qrels, test_qrels=test_qrels)
    assert (report.test_relevant_docs, report.shared_relevant_docs) == (5, 2)  # d1, d3
    assert report.novel_test_queries == ["q3", "q4"]  # d9 is in training only as irrelevant
    assert report.to_dict()["novel_test_query_count"] == 2


def test_eval_leakage_reports_the_toy_splits(beir: Path) -> None:  # noqa: F811
    result = CliRunner().invoke(app, ["eval", "leakage", "--train", str(beir), "--test",
                                      str(beir), "--train-split", "shuffled", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["exact_duplicates"]) == data["test_queries"] == 20  # the same queries
    assert data["shared_relevant_docs"] == 20 and data["novel_test_query_count"] == 0
    shown = CliRunner().invoke(app, ["eval", "leakage", "--train", str(beir), "--test", str(beir),
                                     "--train-split", "shuffled"])
    assert "novel test queries" in shown.output and "--novel-against" in shown.output


def test_eval_retrieval_scores_the_novel_queries_apart(beir: Path, tmp_path: Path) -> None:  # noqa: F811
    qrels = beir / "qrels"
    lines = (qrels / "train.tsv").read_text().splitlines()
    (qrels / "half.tsv").write_text("\n".join(lines[:11]) + "\n")  # q0-q9 seen, q10-q19 novel
    result = CliRunner().invoke(app, ["eval", "retrieval", "--dataset", str(beir),
                                      "--novel-against", str(beir), "--novel-split", "half",
                                      "--json"])
    assert result.exit_code == 0, result.output
    novel = json.loads(result.stdout)["novel"]
    assert (novel["queries"], novel["of"]) == (10, 20)
    assert 0 < novel["configs"]["default"]["nDCG@10"] <= 1
