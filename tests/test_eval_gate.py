from __future__ import annotations

import numpy as np

from ragline.evaluate.gate import regression_gate
from ragline.evaluate.stats import Comparison, compare_paired


def _compare(shift: float, n: int = 80, seed: int = 0) -> Comparison:
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.3, 0.9, n)
    b = a + shift + rng.normal(0, 0.05, n)
    per_a = {f"q{i}": {"nDCG@10": float(x), "R@10": float(x)} for i, x in enumerate(a)}
    per_b = {
        f"q{i}": {"nDCG@10": float(y), "R@10": float(x)}
        for i, (x, y) in enumerate(zip(a, b, strict=True))
    }
    return compare_paired(per_a, per_b, ["nDCG@10", "R@10"], n_resamples=999)


def test_identical_results_pass() -> None:
    result = regression_gate(_compare(0.0, seed=5))
    assert result.passed and result.failures == [] and result.exit_code == 0
    assert len(result.checked) == 2


def test_significant_drop_fails_and_says_which_and_by_how_much() -> None:
    result = regression_gate(_compare(-0.1))
    assert not result.passed and result.exit_code == 1
    assert len(result.failures) == 1
    line = result.failures[0]
    assert line.startswith("REGRESSION nDCG@10:")
    assert "absolute" in line and "relative" in line and "% relative" in line
    assert "95% CI [" in line and "Holm p = " in line


def test_significant_improvement_passes() -> None:
    assert regression_gate(_compare(0.1)).passed


def test_small_noisy_drop_does_not_fail() -> None:
    # Mean drop 0.0075 over 8 queries with mixed signs: noise, not a regression.
    a = [0.5] * 8
    b = [0.53, 0.46, 0.52, 0.45, 0.51, 0.48, 0.5, 0.49]
    comp = compare_paired(
        {f"q{i}": {"nDCG@10": x} for i, x in enumerate(a)},
        {f"q{i}": {"nDCG@10": y} for i, y in enumerate(b)},
        ["nDCG@10"],
    )
    assert comp.metric("nDCG@10").diff < 0
    assert regression_gate(comp).passed


def test_stricter_alpha_can_pass_a_borderline_drop() -> None:
    comp = _compare(-0.02, n=40, seed=3)
    row = comp.metric("nDCG@10")
    strict = regression_gate(comp, alpha=row.p_holm / 2)
    loose = regression_gate(comp, alpha=min(1.0, row.p_holm * 2))
    assert strict.passed
    assert loose.passed == (row.ci_high >= 0)
