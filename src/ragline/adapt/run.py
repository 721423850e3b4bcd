"""`ragline adapt run`: generate synthetic queries, train a reranker (and, with `embedder`, a
fine-tuned embedder) on them, score before/after.

Every step writes into one work folder and resumes: `queries/` is an `adapt generate` folder
(resumed passage by passage), `reranker/` and `embedder/` model folders (training resumes from a
checkpoint, and a model already trained on the same queries is kept), `report.json` the
outcome. The before/after is an `evaluate_retrieval` run of the index's own configuration
("before"), the same with the new reranker as a stage ("reranker") and, with the embedder, the
corpus re-embedded by it without and with the reranker, on the user's labelled queries: paired
statistics against "before", latency of every configuration measured in one run, and the
generation's cost from the ledger. Without labelled queries the report holds the held-out check
on synthetic queries only, and says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragline.adapt.embedder import EMBEDDER_TRAINING, train_embedder
from ragline.adapt.generate import AdaptError, GenerationSettings, GenerationSummary, generate
from ragline.adapt.reranker import (
    RERANKER_TRAINING,
    TrainingQuery,
    labelled_queries,
    split_queries,
    synthetic_queries,
    train_reranker,
)
from ragline.train.cross_encoder import Progress, TrainConfig

if TYPE_CHECKING:
    from ragline.config import RaglineConfig
    from ragline.evaluate.experiment import RetrievalExperiment
    from ragline.index import Index
    from ragline.llm import LLM

Say = Callable[[str], None]


@dataclass(frozen=True)
class AdaptSettings:
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    training: TrainConfig = RERANKER_TRAINING
    random_negatives: int = 1
    rerank_depth: int = 20
    eval_dataset: Path | None = None
    split: str = "test"
    embedder: bool = False  # also fine-tune the embedder (scoring it re-embeds the corpus)
    embedder_training: TrainConfig = EMBEDDER_TRAINING


@dataclass
class AdaptReport:
    generation: GenerationSummary
    reranker: dict[str, Any]  # the model's manifest
    reranker_dir: Path
    experiment: RetrievalExperiment | None = None
    embedder: dict[str, Any] | None = None  # the fine-tuned embedder's manifest
    embedder_dir: Path | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "generation": self.generation.to_dict(),
            "reranker": {"path": str(self.reranker_dir), "model_id": self.reranker["model_id"],
                         "held_out": self.reranker["held_out"],
                         "training": self.reranker["training"]},
            "notes": self.notes,
        }
        if self.embedder is not None:
            out["embedder"] = {"path": str(self.embedder_dir), "model_id": self.embedder["model_id"],
                               "held_out": self.embedder["held_out"],
                               "training": self.embedder["training"]}
        if self.experiment is not None:
            out["evaluation"] = {
                "run_id": self.experiment.run_id, "dataset": self.experiment.dataset.name,
                "split": self.experiment.split, "queries": len(self.experiment.dataset.qrels),
                "configs": {r.name: {"metrics": r.means, "latency_ms": {
                    k: r.latency_ms.get(k) for k in ("p50", "p95")}}
                    for r in self.experiment.results},
                "comparisons": [c.to_dict() for c in self.experiment.comparisons],
            }
        return out


def reranker_queries(index: Index, *, data: Path | None, labels: Path | None, split: str,
                     say: Say = lambda _m: None) -> tuple[list[TrainingQuery], dict[str, Any]]:
    """The training queries of `adapt train-reranker` and where they came from (the manifest's
    `source`): a generate folder, or a labelled split of a BEIR folder (never its test split)."""
    if (data is None) == (labels is None):
        raise AdaptError("give either --data (an `adapt generate` folder) or --labels (a BEIR "
                         "folder), not both or neither")
    if data is not None:
        manifest = data / "manifest.json"
        sha = json.loads(manifest.read_text())["pairs_sha256"] if manifest.exists() else None
        return synthetic_queries(data), {"kind": "synthetic", "path": str(data),
                                         "pairs_sha256": sha}
    assert labels is not None
    if split == "test":
        raise AdaptError("a reranker is never trained on a test split: use --split train (or "
                         "dev), and score on test")
    from ragline.evaluate.datasets import load_beir

    dataset = load_beir(labels, split)
    queries, skipped = labelled_queries(index, dataset.queries, dataset.qrels)
    say(f"{len(queries)} labelled queries from {labels} ({split}); {skipped} skipped (no relevant "
        "chunk in the search's top 20)")
    return queries, {"kind": "labelled", "path": str(labels), "split": split,
                     "dataset_sha256": dataset.hash, "skipped": skipped}


def with_reranker(config: RaglineConfig, model_dir: Path, depth: int) -> RaglineConfig:
    search = config.search.model_copy(update={"reranker": "cross-encoder",
                                              "rerank_model": str(model_dir.resolve()),
                                              "rerank_depth": depth})
    return config.model_copy(update={"search": search})


def with_embedder(config: RaglineConfig, model_file: Path) -> RaglineConfig:
    embedder = config.embedder.model_copy(update={"model": str(model_file.resolve())})
    return config.model_copy(update={"embedder": embedder})


def _named(config: RaglineConfig, name: str) -> RaglineConfig:
    return config.model_copy(update={"name": name})


def adapt(index: Index, llm: LLM, out: Path, settings: AdaptSettings = AdaptSettings(), *,
          say: Say = lambda _m: None, progress: Progress | None = None) -> AdaptReport:
    """Generate -> train the reranker -> evaluate before/after; every step resumes."""
    say("1/3 writing synthetic queries")
    summary = generate(index, llm, out / "queries", settings.generation)
    queries = synthetic_queries(out / "queries")
    split_queries(queries)  # too few kept queries: a clear error before any training
    model_dir = out / "reranker"
    data_hash = _data_hash(queries)
    manifest = _existing(model_dir, data_hash)
    if manifest is None:
        say("2/3 training the reranker")
        manifest = train_reranker(
            index, queries, model_dir, config=settings.training,
            random_negatives=settings.random_negatives, depth=settings.rerank_depth,
            source={"kind": "synthetic", "path": str(out / "queries")}, say=say,
            progress=progress)
    else:
        say(f"2/3 the reranker in {model_dir} was trained on these queries: kept")
    report = AdaptReport(summary, manifest, model_dir)
    check = manifest.get("held_out", {})
    if check.get("blend") == 0.0:
        report.notes.append(
            f"the reranker did not improve the {check.get('queries')} held-out queries at any "
            f"blend (alone: MRR@10 {check.get('after_alone', {}).get('MRR@10')} against "
            f"{check.get('before', {}).get('MRR@10')} before), so it runs at blend 0 and "
            "changes nothing: do not pay its latency; more queries (--passages) or epochs may "
            "teach it more")
    if settings.embedder:
        report.embedder_dir = out / "embedder"
        report.embedder = _existing(report.embedder_dir, data_hash)
        if report.embedder is None:
            say("2/3 fine-tuning the embedder")
            report.embedder = train_embedder(
                index, queries, report.embedder_dir, config=settings.embedder_training,
                source={"kind": "synthetic", "path": str(out / "queries")}, say=say,
                progress=progress)
        else:
            say(f"2/3 the embedder in {report.embedder_dir} was trained on these queries: kept")
    if settings.eval_dataset is None:
        report.notes.append("no --eval-dataset: the only check is the held-out synthetic "
                            "queries, which says the reranker learned the synthetic task, not "
                            "that search got better for real questions")
    else:
        from ragline.evaluate.experiment import evaluate_retrieval

        say(f"3/3 scoring before and after on {settings.eval_dataset} ({settings.split})")
        before = index.config.model_copy(update={"name": "before"})
        if before.search.reranker != "none":
            report.notes.append(
                f"'before' is the index's own configuration, which already reranks "
                f"({before.search.reranker}, {before.search.rerank_model}); pass --config to "
                "compare against another")
        configs = [before, _named(with_reranker(before, model_dir, settings.rerank_depth),
                                  "reranker")]
        if report.embedder_dir is not None:
            tuned = with_embedder(before, report.embedder_dir / "model.onnx")
            configs += [_named(tuned, "embedder"),
                        _named(with_reranker(tuned, model_dir, settings.rerank_depth),
                               "embedder+reranker")]
        report.experiment = evaluate_retrieval(settings.eval_dataset, configs,
                                               split=settings.split, say=say)
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def _data_hash(queries: list[TrainingQuery]) -> str:
    data = split_queries(queries)
    return data.hash


def _existing(model_dir: Path, data_hash: str) -> dict[str, Any] | None:
    try:
        manifest: dict[str, Any] = json.loads((model_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return manifest if manifest.get("data_sha256") == data_hash else None


__all__ = ["AdaptError", "AdaptReport", "AdaptSettings", "adapt", "reranker_queries",
           "with_embedder", "with_reranker"]
