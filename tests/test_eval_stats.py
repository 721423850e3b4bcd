from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from ragline.errors import RaglineError
from ragline.evaluate.stats import (
    ComparisonError,
    Verdict,
    compare_paired,
    holm,
    mean_ci,
    min_detectable_effect,
    paired_bootstrap_ci,
    paired_permutation_test,
    two_sample_bootstrap_ci,
    two_sample_min_detectable_effect,
    two_sample_permutation_test,
)


def _pairs(n: int = 60, shift: float = 0.0, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.2, 0.8, n)
    b = np.clip(a + shift + rng.normal(0, 0.1, n), 0, 1)
    return a, b


def _exact_sign_flip_p(d: list[float]) -> float:
    """Textbook exact two-sided sign-flip test: share of the 2**n flips with |mean| >= observed."""
    observed = abs(np.mean(d))
    flips = list(itertools.product([1, -1], repeat=len(d)))
    extreme = sum(abs(np.mean(np.array(s) * d)) >= observed - 1e-12 for s in flips)
    return extreme / len(flips)


def test_permutation_exact_textbook_all_positive_differences() -> None:
    # 4 positive differences: only the all-plus and all-minus flips are as extreme: p = 2/16.
    p = paired_permutation_test([0, 0, 0, 0], [1, 2, 3, 4], n_resamples=10_000)
    assert p == pytest.approx(2 / 16)


def test_permutation_exact_matches_enumeration() -> None:
    a = [0.1, 0.5, 0.3, 0.9, 0.4, 0.2, 0.6, 0.7]
    b = [0.3, 0.4, 0.6, 0.95, 0.5, 0.1, 0.9, 0.8]
    d = [y - x for x, y in zip(a, b, strict=True)]
    assert paired_permutation_test(a, b) == pytest.approx(_exact_sign_flip_p(d))


def test_permutation_matches_scipy_samples_permutation() -> None:
    a, b = _pairs(n=40, shift=0.03)
    ours = paired_permutation_test(a, b, n_resamples=5000, seed=7)
    ref = sps.permutation_test(
        (a, b),
        lambda x, y, axis: np.mean(y - x, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=5000,
        rng=np.random.default_rng(123),
    ).pvalue
    assert abs(ours - ref) < 0.03


def test_permutation_identical_inputs_give_p_one() -> None:
    a, _ = _pairs()
    assert paired_permutation_test(a, a) == 1.0


def test_permutation_is_reproducible_with_seed() -> None:
    a, b = _pairs(n=50, shift=0.02)
    assert paired_permutation_test(a, b, seed=3) == paired_permutation_test(a, b, seed=3)


def test_permutation_p_is_never_zero_when_sampled() -> None:
    a, b = _pairs(n=80, shift=0.3)
    p = paired_permutation_test(a, b, n_resamples=999)
    assert 0 < p <= 2 / 1000


def test_bootstrap_ci_matches_scipy_paired_bootstrap() -> None:
    a, b = _pairs(n=100, shift=0.02)
    est, low, high = paired_bootstrap_ci(a, b, seed=5)
    ref = sps.bootstrap(
        (a, b),
        lambda x, y, axis: np.mean(y - x, axis=axis),
        paired=True,
        vectorized=True,
        method="percentile",
        rng=np.random.default_rng(99),
    ).confidence_interval
    assert est == pytest.approx(np.mean(b - a))
    assert low == pytest.approx(ref.low, abs=0.004)
    assert high == pytest.approx(ref.high, abs=0.004)


def test_bootstrap_ci_close_to_textbook_normal_interval() -> None:
    a, b = _pairs(n=400, shift=0.01)
    d = b - a
    half = 1.959964 * d.std(ddof=1) / math.sqrt(d.size)
    est, low, high = paired_bootstrap_ci(a, b, seed=2)
    assert low == pytest.approx(est - half, abs=0.003)
    assert high == pytest.approx(est + half, abs=0.003)


def test_bootstrap_ci_of_identical_inputs_is_zero_width() -> None:
    a, _ = _pairs()
    assert tuple(paired_bootstrap_ci(a, a)) == (0.0, 0.0, 0.0)


def test_bootstrap_is_reproducible_with_seed() -> None:
    a, b = _pairs()
    assert paired_bootstrap_ci(a, b, seed=11) == paired_bootstrap_ci(a, b, seed=11)


def test_mean_ci_brackets_the_mean() -> None:
    a, _ = _pairs()
    est, low, high = mean_ci(a)
    assert low < est < high


def test_holm_textbook_example() -> None:
    # Sorted p: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> raised to 0.06 (monotone).
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005})
    assert adjusted == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06, "d": 0.02})


def test_holm_caps_at_one_and_keeps_keys() -> None:
    adjusted = holm({"x": 0.6, "y": 0.7})
    assert list(adjusted) == ["x", "y"]
    assert adjusted == {"x": 1.0, "y": 1.0}


def test_min_detectable_effect_formula() -> None:
    d = [0.1, -0.1, 0.2, -0.2, 0.0, 0.05]
    expected = (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * np.std(d, ddof=1) / math.sqrt(6)
    assert min_detectable_effect(d) == pytest.approx(expected)
    assert min_detectable_effect(d) == pytest.approx(
        2.8016 * np.std(d, ddof=1) / math.sqrt(6), 1e-3
    )


def _per_query(values: np.ndarray, metric: str = "nDCG@10") -> dict[str, dict[str, float]]:
    return {f"q{i}": {metric: float(v), "R@10": float(v)} for i, v in enumerate(values)}


def test_identical_configurations_are_no_detectable_difference() -> None:
    a, _ = _pairs()
    result = compare_paired(_per_query(a), _per_query(a), ["nDCG@10", "R@10"], n_resamples=999)
    for row in result.metrics:
        assert row.verdict is Verdict.NO_DIFFERENCE
        assert row.verdict.value == "no detectable difference"
        assert row.p_value == 1.0
        assert row.p_holm == 1.0
        assert (row.diff, row.ci_low, row.ci_high) == (0.0, 0.0, 0.0)
        assert row.ties == len(a)


def test_clear_improvement_is_better_and_reverse_is_worse() -> None:
    a, b = _pairs(n=80, shift=0.1)
    better = compare_paired(_per_query(a), _per_query(b), ["nDCG@10"], n_resamples=999)
    worse = compare_paired(_per_query(b), _per_query(a), ["nDCG@10"], n_resamples=999)
    assert better.metric("nDCG@10").verdict is Verdict.BETTER
    assert better.metric("nDCG@10").ci_low > 0
    assert worse.metric("nDCG@10").verdict is Verdict.WORSE
    assert worse.metric("nDCG@10").diff < 0


def test_lower_is_better_flips_the_verdict() -> None:
    a, b = _pairs(n=80, shift=0.1)
    result = compare_paired(
        _per_query(a),
        _per_query(b),
        ["nDCG@10"],
        n_resamples=999,
        lower_is_better=frozenset({"nDCG@10"}),
    )
    assert result.metric("nDCG@10").verdict is Verdict.WORSE


def test_noise_only_is_no_detectable_difference() -> None:
    a, b = _pairs(n=60, shift=0.0, seed=4)
    result = compare_paired(_per_query(a), _per_query(b), ["nDCG@10"], n_resamples=999)
    assert result.metric("nDCG@10").verdict is Verdict.NO_DIFFERENCE


def test_compare_is_reproducible_with_seed() -> None:
    a, b = _pairs(n=50, shift=0.02)
    one = compare_paired(_per_query(a), _per_query(b), ["nDCG@10"], seed=4, n_resamples=999)
    two = compare_paired(_per_query(a), _per_query(b), ["nDCG@10"], seed=4, n_resamples=999)
    assert one.to_dict() == two.to_dict()


def test_compare_holm_corrects_across_metrics() -> None:
    a, b = _pairs(n=30, shift=0.03)
    result = compare_paired(_per_query(a), _per_query(b), ["nDCG@10", "R@10"], n_resamples=999)
    for row in result.metrics:
        assert row.p_holm >= row.p_value


def test_compare_refuses_different_query_sets_with_counts() -> None:
    a, b = _pairs(n=10)
    qa = _per_query(a)
    qb = _per_query(b)
    del qb["q0"]
    qb["extra1"] = {"nDCG@10": 0.5, "R@10": 0.5}
    qb["extra2"] = {"nDCG@10": 0.5, "R@10": 0.5}
    with pytest.raises(ComparisonError, match="1 only in A, 2 only in B") as info:
        compare_paired(qa, qb, ["nDCG@10"])
    assert isinstance(info.value, RaglineError)


def test_compare_refuses_missing_metric() -> None:
    a, b = _pairs(n=10)
    with pytest.raises(ComparisonError, match="MAP"):
        compare_paired(_per_query(a), _per_query(b), ["MAP"])


# ---------------------------------------------------------------- two independent groups


def test_two_sample_permutation_exact_matches_enumeration() -> None:
    a, b = [0.1, 0.4, 0.3], [0.9, 0.7, 0.8, 0.6]
    pooled = np.array(a + b)
    observed = np.mean(b) - np.mean(a)
    splits = list(itertools.combinations(range(len(pooled)), len(a)))
    diffs = [pooled[[i for i in range(len(pooled)) if i not in chosen]].mean()
             - pooled[list(chosen)].mean() for chosen in splits]
    # two-sided as scipy defines it: twice the smaller one-sided p (here 2 of 35 splits)
    greater = sum(d >= observed - 1e-12 for d in diffs) / len(splits)
    less = sum(d <= observed + 1e-12 for d in diffs) / len(splits)
    expected = min(1.0, 2 * min(greater, less))
    assert two_sample_permutation_test(a, b) == pytest.approx(expected)
    assert expected == pytest.approx(2 / 35)


def test_two_sample_permutation_agrees_with_welch_on_large_groups() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.0, 1.0, 200), rng.normal(0.3, 1.0, 300)
    p = two_sample_permutation_test(a, b, n_resamples=5000)
    assert p == pytest.approx(sps.ttest_ind(a, b, equal_var=False).pvalue, abs=0.01)
    assert two_sample_permutation_test(a, a.copy()) > 0.5


def test_two_sample_bootstrap_ci_brackets_the_difference_of_means() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.binomial(1, 0.5, 400).astype(float), rng.binomial(1, 0.7, 250).astype(float)
    ci = two_sample_bootstrap_ci(a, b)
    assert ci.estimate == pytest.approx(b.mean() - a.mean())
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    assert ci.low == pytest.approx(ci.estimate - 1.96 * se, abs=0.02)
    assert ci.high == pytest.approx(ci.estimate + 1.96 * se, abs=0.02)
    assert two_sample_bootstrap_ci([1.0, 1.0], [0.0, 0.0, 0.0]) == (-1.0, -1.0, -1.0)


def test_two_sample_mde_shrinks_with_more_data_and_groups_need_two_values() -> None:
    rng = np.random.default_rng(5)
    small = two_sample_min_detectable_effect(rng.normal(size=20), rng.normal(size=20))
    large = two_sample_min_detectable_effect(rng.normal(size=2000), rng.normal(size=2000))
    assert large < small / 5
    with pytest.raises(ComparisonError, match="at least 2 values in each group"):
        two_sample_permutation_test([1.0], [1.0, 2.0])
