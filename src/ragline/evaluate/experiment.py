"""The experiment workflow as a Python API: run configurations over a labelled set, record the
run in the registry, compare the configurations (paired statistics), and gate against a
baseline run. `ragline eval retrieval` is a thin door onto `evaluate_retrieval`; `eval answers`
and `eval verifier` record their runs through `recorded_run` and gate through `against_baseline`.

    from ragline.config import RaglineConfig
    from ragline.evaluate import evaluate_retrieval

    result = evaluate_retrieval("../shared/datasets/scifact", [RaglineConfig()], split="test")
    result.results[0].means["nDCG@10"], result.run_id
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragline import __version__
from ragline.config import RaglineConfig
from ragline.evaluate.datasets import RetrievalDataset
from ragline.evaluate.gate import regression_gate
from ragline.evaluate.manifest import Manifest, build_manifest
from ragline.evaluate.registry import QueryResult, RunRegistry
from ragline.evaluate.retrieval import ConfigResult, Say, evaluate_config, load_dataset
from ragline.evaluate.stats import Comparison, compare_paired

RETRIEVAL_METRICS = ("nDCG@10", "R@10", "R@100", "RR@10", "AP@100")


@contextmanager
def recorded_run(registry: RunRegistry, kind: str, name: str,
                 manifest: Manifest) -> Iterator[str]:
    """A run in the registry for the block: its id; discarded (never left "running", never
    "complete") if the block fails or is interrupted. The block calls `finish_run`."""
    run_id = registry.start_run(kind, name, manifest)
    try:
        yield run_id
    except BaseException:
        registry.discard_run(run_id, "interrupted or failed before all configurations finished")
        raise


def against_baseline(registry: RunRegistry, baseline: str, run_id: str, names: Sequence[str],
                     *, seed: int = 0) -> tuple[list[Comparison], list[str]]:
    """Each configuration of `run_id` compared with the same-named one of `baseline` (or its
    only one), and the regression gate's failures over all of them."""
    base = registry.get_run(baseline)
    comparisons, failures = [], []
    for name in names:
        comparison = registry.compare_runs(baseline, run_id, name if name in base.configs else None,
                                           name, seed=seed)
        comparisons.append(comparison)
        failures += regression_gate(comparison).failures
    return comparisons, failures


@dataclass(frozen=True)
class RetrievalExperiment:
    """What `evaluate_retrieval` did: the run id, each configuration's result, the paired
    comparisons (each configuration against the first, then against the baseline) and the
    gate's failures (empty: passed, or no baseline)."""

    run_id: str
    dataset: RetrievalDataset
    split: str
    manifest: Manifest
    results: list[ConfigResult]
    comparisons: list[Comparison]
    gate_failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.gate_failures

    def summary(self) -> dict[str, Any]:
        return {r.name: r.summary() for r in self.results}

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "dataset": self.dataset.name, "split": self.split,
            "queries": len(self.dataset.qrels), "configs": self.summary(),
            "comparisons": [c.to_dict() for c in self.comparisons],
            "gate": {"passed": self.passed, "failures": self.gate_failures},
        }


def evaluate_retrieval(
    dataset: str | Path | RetrievalDataset,
    configs: Sequence[RaglineConfig],
    *,
    split: str = "test",
    baseline: str | None = None,
    seed: int = 0,
    registry: RunRegistry | None = None,
    models: list[dict[str, Any]] | None = None,
    source: str | None = None,
    say: Say = lambda _m: None,
) -> RetrievalExperiment:
    """Evaluate each configuration on `dataset` (a BEIR folder, a qa.jsonl folder, a question
    set, or a loaded dataset) and record the run; compare against `baseline` when given.
    `source` is what the manifest names the data by (default: the path given, or its name)."""
    given = source or (str(dataset) if isinstance(dataset, str | Path) else None)
    data = load_dataset(Path(dataset), split) if isinstance(dataset, str | Path) else dataset
    if not configs:
        configs = [RaglineConfig()]
    own = registry is None
    registry = registry or RunRegistry()
    try:
        manifest = build_manifest(
            {"kind": "retrieval", "dataset": given or data.name,
             "split": split, "configs": {c.name: c.model_dump(mode="json") for c in configs},
             "ragline": __version__},
            data.hash, models or [], seed)
        with recorded_run(registry, "retrieval", f"{data.name}/{split}", manifest) as run_id:
            results = []
            for config in configs:
                result = evaluate_config(data, config, name=config.name or "default", say=say)
                registry.add_query_results(run_id, result.name, [
                    QueryResult(qid, values, result.latencies.get(qid))
                    for qid, values in result.per_query.items()])
                results.append(result)
            registry.finish_run(run_id, {r.name: r.summary() for r in results})
        comparisons = [compare_paired(results[0].per_query, r.per_query, RETRIEVAL_METRICS,
                                      seed=seed, label_a=results[0].name, label_b=r.name)
                       for r in results[1:]]
        failures: list[str] = []
        if baseline is not None:
            against, failures = against_baseline(registry, baseline, run_id,
                                                  [r.name for r in results], seed=seed)
            comparisons += against
    finally:
        if own:
            registry.close()
    return RetrievalExperiment(run_id, data, split, manifest, results, comparisons, failures)
