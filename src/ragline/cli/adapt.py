"""`ragline adapt`: adapt retrieval to the index's own corpus without labels (issue #11).

`adapt generate` writes synthetic training queries (`ragline.adapt.generate`);
`adapt train-reranker` trains a cross-encoder reranker on them, or on a labelled split
(`ragline.adapt.reranker`); `adapt run` chains the two and scores the index's search before and
after on labelled queries with the paired statistics (`ragline.adapt.run`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ragline.cli._common import console, err_console

if TYPE_CHECKING:
    from ragline.train.cross_encoder import TrainConfig
from ragline.cli.answer import (
    BaseUrlOpt,
    ConfigOpt,
    IndexOpt,
    ModelOpt,
    ProviderOpt,
    TimeoutOpt,
    open_index,
)

adapt_app = typer.Typer(rich_markup_mode=None, help="Adapt retrieval to your corpus without labels: synthetic queries, "
                        "a trained reranker, before/after.", no_args_is_help=True)


@adapt_app.command("generate")
def generate_command(
    out: Annotated[Path, typer.Option(help="Folder for the dataset (resumed if it exists).")],
    index: IndexOpt = Path(".ragline"),
    config: ConfigOpt = None,
    provider: ProviderOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    timeout: TimeoutOpt = None,
    passages: Annotated[int, typer.Option(min=1, help="Passages to write a question for.")] = 200,
    k: Annotated[int, typer.Option(
        min=1, help="Keep a question only if search finds its passage in this top k.")] = 10,
    negatives: Annotated[int, typer.Option(min=0, help="Hard negatives kept per question.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the passage sample and the model.")] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Write a question for each sampled passage with an LLM, keep those that retrieve their
    passage, mine hard negatives; every call is in the ledger with its cost."""
    from ragline.adapt.generate import GenerationSettings, generate
    from ragline.llm import LLM
    from ragline.llm.config import build_llm, llm_settings

    settings = llm_settings(config, provider=provider, model=model, base_url=base_url,
                            timeout=timeout)
    with open_index(index, config) as idx, (
            LLM("local") if settings.is_default_local else build_llm(settings)) as llm, Progress(
            TextColumn("[bold]questions"), BarColumn(), MofNCompleteColumn(),
            TextColumn("kept {task.fields[kept]} · ${task.fields[cost]:.4f}"), TimeElapsedColumn(),
            console=err_console, disable=json_output) as bar:
        task = bar.add_task("generate", total=passages, kept=0, cost=0.0)
        summary = generate(idx, llm, out, GenerationSettings(passages=passages, k=k,
                                                             negatives=negatives, seed=seed),
                           progress=lambda done, total, kept, cost: bar.update(
                               task, completed=done, total=total, kept=kept, cost=cost))
    data = summary.to_dict()
    if json_output:
        typer.echo(json.dumps(data, indent=2))
        return
    console.print(
        f"{data['passages']} passages: {data['generated']} questions ({data['malformed']} "
        f"malformed replies dropped), {data['kept']} kept by the round-trip filter "
        f"({data['kept_share']:.0%}); "
        + (f"{data['questions_per_minute']:.1f} questions/min this run ({data['asked_this_run']} "
           "asked)" if data["asked_this_run"] else "nothing left to ask: every passage was done "
           "by an earlier run")
        + "; cost "
        f"${data['cost_usd']:.4f}; written to {out}", highlight=False, soft_wrap=True)


EpochsOpt = Annotated[float | None, typer.Option(
    min=0.1, help="Passes over the training pairs (default: the model's training default).")]
BatchOpt = Annotated[int, typer.Option(min=1, help="Pairs per training step.")]
LengthOpt = Annotated[int | None, typer.Option(
    min=16, max=512, help="Word pieces of (passage, query) read at once (default: the model's "
    "training default).")]


def _overrides(config: TrainConfig, **values: Any) -> TrainConfig:
    """`config` with the options the user gave (None: keep the model's own default)."""
    return replace(config, **{k: v for k, v in values.items() if v is not None})


ThreadsOpt = Annotated[int, typer.Option(min=1, help="CPU threads for training.")]
LearningRateOpt = Annotated[float | None, typer.Option(
    min=1e-7, max=1e-2, help="Peak learning rate (default: the model's training default).")]


@adapt_app.command("train-reranker")
def train_reranker_command(
    out: Annotated[Path, typer.Option(help="Model folder to write (replaced only when done).")],
    data: Annotated[Path | None, typer.Option(
        help="An `adapt generate` folder: train on its synthetic queries.")] = None,
    labels: Annotated[Path | None, typer.Option(
        help="Or a BEIR folder over the same corpus: train on the qrels of --split.")] = None,
    split: Annotated[str, typer.Option(help="qrels split of --labels (never test).")] = "train",
    index: IndexOpt = Path(".ragline"),
    config: ConfigOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = 16,
    max_length: LengthOpt = None,
    threads: ThreadsOpt = 2,
    random_negatives: Annotated[int, typer.Option(
        min=0, help="Random passages added per query as easy negatives.")] = 1,
    learning_rate: LearningRateOpt = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Train a cross-encoder reranker (the verifier's trainer) for this index; use it with
    [search] reranker = "cross-encoder", rerank_model = OUT."""
    from ragline.adapt.reranker import RERANKER_TRAINING, train_reranker
    from ragline.adapt.run import reranker_queries

    train_config = _overrides(RERANKER_TRAINING, epochs=epochs, batch_size=batch_size,
                              max_length=max_length, threads=threads,
                              learning_rate=learning_rate)
    with open_index(index, config) as idx:
        queries, source = reranker_queries(idx, data=data, labels=labels, split=split,
                                           say=_say(json_output))
        with _training_bar(json_output) as progress:
            manifest = train_reranker(idx, queries, out, source=source, config=train_config,
                                      random_negatives=random_negatives, say=_say(json_output),
                                      progress=progress)
    if json_output:
        typer.echo(json.dumps(manifest, indent=2))
        return
    check = manifest["held_out"]
    console.print(
        f"reranker written to {out} ({manifest['training']['pairs']:,} pairs, "
        f"{manifest['training']['seconds']} s). On {check['queries']} held-out queries, MRR@10 "
        f"{check['before']['MRR@10']:.3f} -> {check['after']['MRR@10']:.3f}, hit@1 "
        f"{check['before']['hit@1']:.3f} -> {check['after']['hit@1']:.3f} at blend "
        f"{check.get('blend', 1.0):.1f} (the reranker alone: MRR@10 "
        f"{check.get('after_alone', check['after'])['MRR@10']:.3f}); reranking the top "
        f"{check['depth']} costs {check['rerank_ms_p50']} ms p50 / {check['rerank_ms_p95']} ms "
        f"p95. Use it with [search] reranker = \"cross-encoder\", rerank_model = \"{out}\"",
        highlight=False, soft_wrap=True, markup=False)


@adapt_app.command("train-embedder")
def train_embedder_command(
    out: Annotated[Path, typer.Option(help="Model folder to write (replaced only when done).")],
    data: Annotated[Path | None, typer.Option(
        help="An `adapt generate` folder: train on its synthetic queries.")] = None,
    labels: Annotated[Path | None, typer.Option(
        help="Or a BEIR folder over the same corpus: train on the qrels of --split.")] = None,
    split: Annotated[str, typer.Option(help="qrels split of --labels (never test).")] = "train",
    index: IndexOpt = Path(".ragline"),
    config: ConfigOpt = None,
    epochs: EpochsOpt = None,
    batch_size: Annotated[int, typer.Option(
        min=2, help="Queries per step (the other passages are each one's negatives).")] = 32,
    max_length: LengthOpt = None,
    threads: ThreadsOpt = 2,
    hard_negatives: Annotated[int, typer.Option(min=0, help="Mined negatives per query.")] = 1,
    learning_rate: LearningRateOpt = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Fine-tune the embedding model (contrastive: in-batch and hard negatives) for this index;
    then `ragline adapt reembed` builds an index embedded with it."""
    from ragline.adapt.embedder import EMBEDDER_TRAINING, train_embedder
    from ragline.adapt.run import reranker_queries

    train_config = _overrides(EMBEDDER_TRAINING, epochs=epochs, batch_size=batch_size,
                              learning_rate=learning_rate, max_length=max_length,
                              threads=threads)
    with open_index(index, config) as idx:
        queries, source = reranker_queries(idx, data=data, labels=labels, split=split,
                                           say=_say(json_output))
        with _training_bar(json_output) as progress:
            manifest = train_embedder(idx, queries, out, source=source, config=train_config,
                                      hard_negatives=hard_negatives, say=_say(json_output),
                                      progress=progress)
    if json_output:
        typer.echo(json.dumps(manifest, indent=2))
        return
    check = manifest["held_out"]
    console.print(
        f"embedder written to {out}. On {check['queries']} held-out queries (ranking a pool of "
        f"{check['pool']} passages), MRR@10 {check['before']['MRR@10']:.3f} -> "
        f"{check['after']['MRR@10']:.3f}. Build an index with it: ragline adapt reembed --index "
        f"{index} --model {out / 'model.onnx'} --out NEW_INDEX", highlight=False, soft_wrap=True)


@adapt_app.command("reembed")
def reembed_command(
    model: Annotated[Path, typer.Option(help="The fine-tuned model.onnx to embed with.")],
    out: Annotated[Path, typer.Option(help="Folder of the new index (resumed if it exists).")],
    index: IndexOpt = Path(".ragline"),
    config: ConfigOpt = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Build a new index from this index's documents embedded with another model; the old
    index is not touched (its vectors and the new ones never mix)."""
    from ragline.adapt.embedder import reembed

    with open_index(index, config) as idx:
        summary = reembed(idx, model, out)
    if json_output:
        typer.echo(json.dumps({"index": str(out), "documents": summary.added + summary.updated
                               + summary.unchanged, "chunks_embedded": summary.chunks_embedded,
                               "seconds": round(summary.total_seconds, 1)}, indent=2))
        return
    console.print(
        f"{out}: {summary.added + summary.updated + summary.unchanged} documents, "
        f"{summary.chunks_embedded} chunks embedded in {summary.total_seconds:.0f} s; search it "
        f"with --index {out} (it remembers its embedder)", highlight=False, soft_wrap=True)


@adapt_app.command("run")
def run_command(
    out: Annotated[Path, typer.Option(help="Work folder: queries/, reranker/, report.json "
                                           "(a rerun resumes).")],
    eval_dataset: Annotated[Path | None, typer.Option(
        help="Labelled queries over the same corpus (a BEIR folder or qa.jsonl folder) to score "
             "before and after on.")] = None,
    split: Annotated[str, typer.Option(help="Split of --eval-dataset to score on.")] = "test",
    index: IndexOpt = Path(".ragline"),
    config: ConfigOpt = None,
    provider: ProviderOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    timeout: TimeoutOpt = None,
    passages: Annotated[int, typer.Option(min=1, help="Passages to write a question for.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the passage sample and the model.")] = 0,
    rerank_depth: Annotated[int, typer.Option(min=1, help="Hits the reranker reorders.")] = 20,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = 16,
    max_length: LengthOpt = None,
    threads: ThreadsOpt = 2,
    embedder: Annotated[bool, typer.Option(
        "--embedder/--no-embedder", help="Also fine-tune the embedder (scoring it re-embeds "
        "the evaluation corpus).")] = False,
    reranker_lr: Annotated[float | None, typer.Option(
        min=1e-7, max=1e-2, help="Peak learning rate of the reranker.")] = None,
    embedder_lr: Annotated[float | None, typer.Option(
        min=1e-7, max=1e-2, help="Peak learning rate of the embedder.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Generate synthetic queries, train a reranker on them, and score search before and after
    (paired statistics, latency, cost): whether adaptation helped, by how much, at what price."""
    from ragline.adapt.embedder import EMBEDDER_TRAINING
    from ragline.adapt.generate import GenerationSettings
    from ragline.adapt.reranker import RERANKER_TRAINING
    from ragline.adapt.run import AdaptSettings, adapt
    from ragline.llm import LLM
    from ragline.llm.config import build_llm, llm_settings

    settings = llm_settings(config, provider=provider, model=model, base_url=base_url,
                            timeout=timeout)
    plan = AdaptSettings(
        generation=GenerationSettings(passages=passages, seed=seed),
        training=_overrides(RERANKER_TRAINING, epochs=epochs, batch_size=batch_size,
                            max_length=max_length, threads=threads, learning_rate=reranker_lr),
        rerank_depth=rerank_depth, eval_dataset=eval_dataset, split=split, embedder=embedder,
        embedder_training=_overrides(EMBEDDER_TRAINING, epochs=epochs, max_length=max_length,
                                     threads=threads, learning_rate=embedder_lr))
    with open_index(index, config) as idx, (
            LLM("local") if settings.is_default_local else build_llm(settings)) as llm, \
            _training_bar(json_output) as progress:
        report = adapt(idx, llm, out, plan, say=_say(json_output), progress=progress)
    if json_output:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    _print_report(report)


def _say(quiet: bool) -> Any:
    return (lambda _m: None) if quiet else (lambda m: err_console.print(m, highlight=False))


@contextmanager
def _training_bar(quiet: bool) -> Iterator[Any]:
    with Progress(TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]:.3f}"), TimeElapsedColumn(),
                  console=err_console, disable=quiet) as bar:
        task = bar.add_task("train", total=None, loss=0.0)
        yield lambda step, total, loss: bar.update(task, completed=step, total=total, loss=loss)


def _print_report(adapted: Any) -> None:
    from rich.table import Table

    from ragline.cli.runs import comparison_table

    report = adapted.to_dict()
    gen = report["generation"]
    console.print(
        f"synthetic queries: {gen['kept']} kept of {gen['generated']} generated "
        f"({gen['kept_share']:.0%}), {gen['malformed']} malformed; cost ${gen['cost_usd']:.4f}",
        highlight=False, soft_wrap=True)
    check = report["reranker"]["held_out"]
    console.print(
        f"held-out synthetic queries ({check['queries']}): MRR@10 {check['before']['MRR@10']:.3f}"
        f" -> {check['after']['MRR@10']:.3f} at blend {check.get('blend', 1.0):.1f}",
        highlight=False, soft_wrap=True)
    evaluation = report.get("evaluation")
    if not evaluation:
        for note in report["notes"]:
            console.print(f"note: {note}", highlight=False, soft_wrap=True)
        return
    if "embedder" in report:
        check = report["embedder"]["held_out"]
        console.print(f"embedder, held-out synthetic queries ({check['queries']}): MRR@10 "
                      f"{check['before']['MRR@10']:.3f} -> {check['after']['MRR@10']:.3f}",
                      highlight=False, soft_wrap=True)
    configs = evaluation["configs"]
    table = Table("", *configs, title=f"{evaluation['dataset']} ({evaluation['split']}, "
                                      f"{evaluation['queries']} queries), run "
                                      f"{evaluation['run_id']}")
    for metric in configs["before"]["metrics"]:
        table.add_row(metric, *(f"{c['metrics'][metric]:.4f}" for c in configs.values()))
    for key in ("p50", "p95"):
        table.add_row(f"latency {key} (ms)", *(f"{c['latency_ms'][key]:.1f}"
                                               for c in configs.values()))
    console.print(table)
    for comparison in adapted.experiment.comparisons:
        console.print(comparison_table(comparison))
    for note in report["notes"]:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
