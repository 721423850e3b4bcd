"""Statistics for comparing two systems: paired over the same queries (offline A/B), and
two independent groups (`two_sample_*`: the arms of an online experiment).

Every offline comparison is paired by query: system B's score on query q is compared with
system A's on the same q. The engines are scipy's (`scipy.stats.bootstrap`, `scipy.stats.permutation_test`);
this module fixes the choices (paired, two-sided, percentile interval, seeded) and adds Holm's
correction, the minimum detectable effect and a verdict a person can read.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from ragline.errors import RaglineError

FloatArray = npt.NDArray[np.float64]
PerQuery = Mapping[str, Mapping[str, float]]
Values = Sequence[float] | npt.NDArray[np.floating[Any]]

DEFAULT_RESAMPLES = 10_000
SIGNIFICANCE = 0.05


class ComparisonError(RaglineError):
    """Two result sets cannot be compared (different queries, missing metrics, too few queries)."""


class Verdict(enum.StrEnum):
    """What a comparison of B against A says, in words a person can act on."""

    BETTER = "better"
    WORSE = "worse"
    NO_DIFFERENCE = "no detectable difference"


class Interval(NamedTuple):
    """A point estimate with a two-sided confidence interval."""

    estimate: float
    low: float
    high: float


def _as_pair(a: Values, b: Values) -> tuple[FloatArray, FloatArray]:
    xa = np.asarray(a, dtype=np.float64)
    xb = np.asarray(b, dtype=np.float64)
    if xa.ndim != 1 or xa.shape != xb.shape:
        raise ComparisonError(
            f"paired samples must be 1-D and of equal length, got {xa.shape} and {xb.shape}"
        )
    if xa.size < 2:
        raise ComparisonError(f"need at least 2 paired values, got {xa.size}; add queries")
    return xa, xb


def _mean_diff(a: FloatArray, b: FloatArray, axis: int = -1) -> Any:
    return np.mean(b - a, axis=axis)


def _percentile_bootstrap(estimate: float, samples: tuple[FloatArray, FloatArray],
                          statistic: Any, *, paired: bool, n_resamples: int, confidence: float,
                          seed: int) -> Interval:
    """`estimate` with scipy's percentile-bootstrap interval of `statistic` over `samples`
    (`paired`: resample pairs together; else each group on its own)."""
    result = sps.bootstrap(samples, statistic, n_resamples=n_resamples, paired=paired,
                           vectorized=True, confidence_level=confidence, method="percentile",
                           rng=np.random.default_rng(seed))
    ci = result.confidence_interval
    return Interval(estimate, float(ci.low), float(ci.high))


def paired_bootstrap_ci(
    a: Values,
    b: Values,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Mean of (b - a) with a paired percentile-bootstrap confidence interval.

    Queries are resampled with replacement, keeping each query's pair together.
    When every difference is identical the interval collapses to that value.
    """
    xa, xb = _as_pair(a, b)
    diffs = xb - xa
    estimate = float(diffs.mean())
    if np.all(diffs == diffs[0]):
        return Interval(estimate, estimate, estimate)
    return _percentile_bootstrap(estimate, (xa, xb), _mean_diff, paired=True,
                                 n_resamples=n_resamples, confidence=confidence, seed=seed)


def mean_ci(
    values: Values,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Mean of `values` with a percentile-bootstrap confidence interval (one system's metric)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ComparisonError("cannot compute a mean of no values; the run has no queries")
    estimate = float(x.mean())
    if x.size < 2 or np.all(x == x[0]):
        return Interval(estimate, estimate, estimate)
    result = sps.bootstrap(
        (x,),
        np.mean,
        n_resamples=n_resamples,
        vectorized=True,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    ci = result.confidence_interval
    return Interval(estimate, float(ci.low), float(ci.high))


def paired_permutation_test(
    a: Values,
    b: Values,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> float:
    """Two-sided p-value of a paired randomisation (sign-flip) test of mean(b - a) = 0.

    Exact (all 2**n sign assignments) when 2**n <= n_resamples; otherwise Monte Carlo with the
    (count + 1) / (n_resamples + 1) correction, so p is never 0.
    """
    xa, xb = _as_pair(a, b)
    if np.all(xa == xb):
        return 1.0
    result = sps.permutation_test(
        (xa, xb),
        _mean_diff,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return float(min(1.0, result.pvalue))


def _as_groups(a: Values, b: Values) -> tuple[FloatArray, FloatArray]:
    xa = np.asarray(a, dtype=np.float64)
    xb = np.asarray(b, dtype=np.float64)
    if xa.ndim != 1 or xb.ndim != 1:
        raise ComparisonError(f"samples must be 1-D, got {xa.shape} and {xb.shape}")
    if xa.size < 2 or xb.size < 2:
        raise ComparisonError(f"need at least 2 values in each group, got {xa.size} and "
                              f"{xb.size}; collect more")
    return xa, xb


def _diff_of_means(a: FloatArray, b: FloatArray, axis: int = -1) -> Any:
    return np.mean(b, axis=axis) - np.mean(a, axis=axis)


def two_sample_bootstrap_ci(
    a: Values,
    b: Values,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """mean(b) - mean(a) of two independent groups (unpaired: e.g. the two arms of an online
    experiment, different users in each) with a percentile-bootstrap confidence interval.

    Each group is resampled with replacement on its own, keeping its size.
    """
    xa, xb = _as_groups(a, b)
    estimate = float(xb.mean() - xa.mean())
    if np.all(xa == xa[0]) and np.all(xb == xb[0]):
        return Interval(estimate, estimate, estimate)
    return _percentile_bootstrap(estimate, (xa, xb), _diff_of_means, paired=False,
                                 n_resamples=n_resamples, confidence=confidence, seed=seed)


def two_sample_permutation_test(
    a: Values,
    b: Values,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> float:
    """Two-sided p-value (twice the smaller one-sided p, as scipy defines it) of a
    two-sample permutation test of mean(b) = mean(a), for two independent groups: group
    labels are reshuffled over the pooled values.

    Exact when the number of distinct splits is at most n_resamples; otherwise Monte Carlo with
    the (count + 1) / (n_resamples + 1) correction, so p is never 0.
    """
    xa, xb = _as_groups(a, b)
    pooled = np.concatenate([xa, xb])
    if np.all(pooled == pooled[0]):
        return 1.0
    result = sps.permutation_test(
        (xa, xb),
        _diff_of_means,
        permutation_type="independent",
        vectorized=True,
        n_resamples=n_resamples,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return float(min(1.0, result.pvalue))


def two_sample_min_detectable_effect(
    a: Values, b: Values, *, alpha: float = SIGNIFICANCE, power: float = 0.8
) -> float:
    """Smallest true difference of means two independent groups of these sizes would detect,
    normal approximation: (z_{1-alpha/2} + z_{power}) * sqrt(s_a^2/n_a + s_b^2/n_b)."""
    xa, xb = _as_groups(a, b)
    z = float(sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power))
    return z * math.sqrt(float(xa.var(ddof=1)) / xa.size + float(xb.var(ddof=1)) / xb.size)


def holm(p_values: Mapping[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), same keys."""
    ordered = sorted(p_values.items(), key=lambda kv: kv[1])
    m = len(ordered)
    adjusted: dict[str, float] = {}
    running_max = 0.0
    for i, (name, p) in enumerate(ordered):
        running_max = max(running_max, min(1.0, (m - i) * p))
        adjusted[name] = running_max
    return {name: adjusted[name] for name in p_values}


def min_detectable_effect(
    diffs: Values, *, alpha: float = SIGNIFICANCE, power: float = 0.8
) -> float:
    """Smallest true mean difference this many queries would detect, normal approximation.

    MDE = (z_{1-alpha/2} + z_{power}) * sd(diffs) / sqrt(n), with sd the sample standard
    deviation (ddof=1) of the per-query differences. This is the paired t-test's power formula
    with z in place of t, a fair approximation once n is in the tens.
    """
    d = np.asarray(diffs, dtype=np.float64)
    if d.size < 2:
        raise ComparisonError(f"need at least 2 paired values for an MDE, got {d.size}")
    z = float(sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power))
    return z * float(d.std(ddof=1)) / math.sqrt(d.size)


@dataclass(frozen=True, slots=True)
class MetricComparison:
    """One metric of a paired comparison: B against A."""

    metric: str
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    p_holm: float
    mde: float
    verdict: Verdict
    wins: int
    losses: int
    ties: int
    higher_is_better: bool = True

    @property
    def relative_diff(self) -> float | None:
        """diff / mean_a, or None when A's mean is 0."""
        return None if self.mean_a == 0 else self.diff / self.mean_a

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "mean_a": self.mean_a,
            "mean_b": self.mean_b,
            "diff": self.diff,
            "relative_diff": self.relative_diff,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "p_value": self.p_value,
            "p_holm": self.p_holm,
            "mde": self.mde,
            "verdict": self.verdict.value,
            "wins": self.wins,
            "losses": self.losses,
            "ties": self.ties,
            "higher_is_better": self.higher_is_better,
        }


@dataclass(frozen=True, slots=True)
class Comparison:
    """A paired comparison of B against A over the same queries, one row per metric."""

    label_a: str
    label_b: str
    n_queries: int
    metrics: tuple[MetricComparison, ...]
    seed: int
    n_resamples: int
    confidence: float
    query_ids: tuple[str, ...] = ()
    diffs: dict[str, tuple[float, ...]] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()  # metrics defined for fewer than 2 shared queries

    def metric(self, name: str) -> MetricComparison:
        for row in self.metrics:
            if row.metric == name:
                return row
        known = ", ".join(r.metric for r in self.metrics)
        raise ComparisonError(f"metric {name!r} is not in this comparison; it has: {known}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.label_a,
            "b": self.label_b,
            "n_queries": self.n_queries,
            "seed": self.seed,
            "n_resamples": self.n_resamples,
            "confidence": self.confidence,
            "metrics": [m.to_dict() for m in self.metrics],
            "skipped_metrics": list(self.skipped),
        }


def _check_same_queries(a: PerQuery, b: PerQuery) -> list[str]:
    only_a = sorted(set(a) - set(b))
    only_b = sorted(set(b) - set(a))
    if only_a or only_b:
        examples = ", ".join([*only_a[:3], *only_b[:3]])
        raise ComparisonError(
            f"the runs cover different queries: {len(only_a)} only in A, {len(only_b)} only in B "
            f"(e.g. {examples}); compare runs made on the same dataset and split"
        )
    return sorted(a)


def _column(per_query: PerQuery, qids: Sequence[str], metric: str, side: str) -> FloatArray:
    missing = [q for q in qids if metric not in per_query[q]]
    if missing:
        raise ComparisonError(
            f"metric {metric!r} is missing for {len(missing)} queries in {side} "
            f"(e.g. {missing[0]}); compare metrics both runs computed"
        )
    return np.array([per_query[q][metric] for q in qids], dtype=np.float64)


def verdict(diff: float, ci: Interval, p_holm: float, *, higher_is_better: bool) -> Verdict:
    """Better or worse only when the (Holm-adjusted) p is below 0.05 and the interval
    excludes zero; otherwise no detectable difference."""
    return _verdict(diff, ci, p_holm, higher_is_better)


def _verdict(diff: float, ci: Interval, p_holm: float, higher_is_better: bool) -> Verdict:
    excludes_zero = ci.low > 0 or ci.high < 0
    if p_holm >= SIGNIFICANCE or not excludes_zero or diff == 0:
        return Verdict.NO_DIFFERENCE
    improved = diff > 0 if higher_is_better else diff < 0
    return Verdict.BETTER if improved else Verdict.WORSE


def compare_paired(
    per_query_a: PerQuery,
    per_query_b: PerQuery,
    metrics: Sequence[str],
    *,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    lower_is_better: frozenset[str] = frozenset(),
    label_a: str = "A",
    label_b: str = "B",
) -> Comparison:
    """Compare B against A metric by metric: diff (B - A), bootstrap CI, permutation p, Holm p,
    MDE and a verdict. Significant means Holm-corrected p < 0.05 and the CI excludes 0.

    Raises ComparisonError when the two sides cover different queries. A metric that is
    undefined for some queries (e.g. exact match on unanswerable questions) is compared over
    the queries where both sides define it; one defined for fewer than 2 is left out and named
    in `skipped`.
    """
    qids = _check_same_queries(per_query_a, per_query_b)
    if len(qids) < 2:
        raise ComparisonError(f"need at least 2 shared queries to compare, got {len(qids)}")
    raw: dict[str, tuple[FloatArray, FloatArray, Interval, float]] = {}
    skipped: list[str] = []
    for i, metric in enumerate(metrics):
        defined = [q for q in qids if metric in per_query_a[q] and metric in per_query_b[q]]
        if len(defined) < 2:
            skipped.append(metric)
            continue
        xa = _column(per_query_a, defined, metric, "A")
        xb = _column(per_query_b, defined, metric, "B")
        metric_seed = seed * 1_000 + i
        ci = paired_bootstrap_ci(
            xa, xb, n_resamples=n_resamples, confidence=confidence, seed=metric_seed
        )
        p = paired_permutation_test(xa, xb, n_resamples=n_resamples, seed=metric_seed)
        raw[metric] = (xa, xb, ci, p)
    if not raw:
        raise ComparisonError(
            f"no metric is defined for 2 or more queries on both sides (tried {list(metrics)})")
    corrected = holm({m: r[3] for m, r in raw.items()})
    rows = tuple(
        _metric_row(m, xa, xb, ci, p, corrected[m], m not in lower_is_better)
        for m, (xa, xb, ci, p) in raw.items()
    )
    return Comparison(
        label_a=label_a,
        label_b=label_b,
        n_queries=len(qids),
        metrics=rows,
        seed=seed,
        n_resamples=n_resamples,
        confidence=confidence,
        query_ids=tuple(qids),
        diffs={m: tuple(float(v) for v in r[1] - r[0]) for m, r in raw.items()},
        skipped=tuple(skipped),
    )


def _metric_row(
    metric: str,
    xa: FloatArray,
    xb: FloatArray,
    ci: Interval,
    p: float,
    p_holm: float,
    higher_is_better: bool,
) -> MetricComparison:
    d = xb - xa
    sign = 1.0 if higher_is_better else -1.0
    return MetricComparison(
        metric=metric,
        mean_a=float(xa.mean()),
        mean_b=float(xb.mean()),
        diff=ci.estimate,
        ci_low=ci.low,
        ci_high=ci.high,
        p_value=p,
        p_holm=p_holm,
        mde=min_detectable_effect(d),
        verdict=_verdict(ci.estimate, ci, p_holm, higher_is_better),
        wins=int(np.sum(sign * d > 0)),
        losses=int(np.sum(sign * d < 0)),
        ties=int(np.sum(d == 0)),
        higher_is_better=higher_is_better,
    )
