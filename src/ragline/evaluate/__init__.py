"""Evaluation: datasets, retrieval metrics, paired statistics, the run registry, reports, the gate.

Each piece works on its own; `ragline eval retrieval` composes them.
"""

from __future__ import annotations

from ragline.evaluate.datasets import (
    BeirDataset,
    QADataset,
    QAItem,
    RetrievalDataset,
    fetch_beir,
    load_beir,
    load_hotpotqa,
    load_qa_jsonl,
)
from ragline.evaluate.experiment import (
    RetrievalExperiment,
    against_baseline,
    evaluate_retrieval,
    recorded_run,
    run_answer_experiment,
)
from ragline.evaluate.gate import GateResult, regression_gate
from ragline.evaluate.manifest import Manifest, build_manifest, config_hash
from ragline.evaluate.metrics import (
    DEFAULT_MEASURES,
    LatencySummary,
    RetrievalScores,
    evaluate_run,
    latency_summary,
    metric_label,
    run_from_hits,
)
from ragline.evaluate.registry import QueryResult, RunRecord, RunRegistry, RunStatus
from ragline.evaluate.report import ConfigResult, ReportData, report_data_from_runs, write_report
from ragline.evaluate.stats import (
    Comparison,
    ComparisonError,
    MetricComparison,
    Verdict,
    compare_paired,
    holm,
    mean_ci,
    min_detectable_effect,
    paired_bootstrap_ci,
    paired_permutation_test,
)

__all__ = [
    "DEFAULT_MEASURES",
    "BeirDataset",
    "Comparison",
    "ComparisonError",
    "ConfigResult",
    "GateResult",
    "LatencySummary",
    "Manifest",
    "MetricComparison",
    "QADataset",
    "QAItem",
    "QueryResult",
    "ReportData",
    "RetrievalDataset",
    "RetrievalExperiment",
    "RetrievalScores",
    "RunRecord",
    "RunRegistry",
    "RunStatus",
    "Verdict",
    "against_baseline",
    "build_manifest",
    "compare_paired",
    "config_hash",
    "evaluate_retrieval",
    "evaluate_run",
    "fetch_beir",
    "holm",
    "latency_summary",
    "load_beir",
    "load_hotpotqa",
    "load_qa_jsonl",
    "mean_ci",
    "metric_label",
    "min_detectable_effect",
    "paired_bootstrap_ci",
    "paired_permutation_test",
    "recorded_run",
    "regression_gate",
    "report_data_from_runs",
    "run_answer_experiment",
    "run_from_hits",
    "write_report",
]
