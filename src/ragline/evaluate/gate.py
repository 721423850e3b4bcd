"""The regression gate: fail a CI step only when a metric is significantly worse than the baseline.

Significantly worse means: B moved in the bad direction, the Holm-corrected p-value is below
`alpha`, and the bootstrap interval of the difference excludes 0. Noise never fails the gate.
"""

from __future__ import annotations

from dataclasses import dataclass

from ragline.evaluate.metrics import metric_label
from ragline.evaluate.stats import Comparison, MetricComparison


@dataclass(frozen=True, slots=True)
class GateResult:
    """Whether the candidate passed, why not (one line per failing metric), and every checked line."""

    passed: bool
    failures: list[str]
    checked: list[str]

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


def _worse(row: MetricComparison, alpha: float) -> bool:
    bad_direction = row.diff < 0 if row.higher_is_better else row.diff > 0
    excludes_zero = row.ci_high < 0 if row.higher_is_better else row.ci_low > 0
    return bad_direction and excludes_zero and row.p_holm < alpha


def _describe(row: MetricComparison, confidence: float) -> str:
    rel = row.relative_diff
    rel_text = f", {rel:+.1%} relative" if rel is not None else ""
    return (
        f"{metric_label(row.metric)}: {row.mean_a:.4f} -> {row.mean_b:.4f} "
        f"({row.diff:+.4f} absolute{rel_text}); {confidence:.0%} CI "
        f"[{row.ci_low:+.4f}, {row.ci_high:+.4f}], Holm p = {row.p_holm:.4g} "
        f"(raw p = {row.p_value:.4g}); {row.verdict.value}"
    )


def regression_gate(comparison: Comparison, *, alpha: float = 0.05) -> GateResult:
    """Pass unless some metric of B is significantly worse than A (Holm-corrected p < alpha)."""
    failures: list[str] = []
    checked: list[str] = []
    for row in comparison.metrics:
        line = _describe(row, comparison.confidence)
        checked.append(line)
        if _worse(row, alpha):
            failures.append(f"REGRESSION {line}")
    return GateResult(passed=not failures, failures=failures, checked=checked)
