"""`ragline eval retrieval` and `ragline tune retrieval`: configurations over a labelled set,
recorded in the run registry, compared with paired statistics, gated, reported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ragline.cli._common import console as out
from ragline.cli._common import err_console as err
from ragline.cli.runs import comparison_table
from ragline.config import RaglineConfig, load_config, to_toml
from ragline.evaluate.experiment import (
    RETRIEVAL_METRICS,
    embedder_models,
    evaluate_retrieval,
    subset_means,
)
from ragline.evaluate.metrics import metric_label
from ragline.evaluate.report import ConfigResult as ReportConfig
from ragline.evaluate.report import ReportData, write_report
from ragline.evaluate.retrieval import ConfigResult, load_dataset
from ragline.evaluate.stats import Comparison
from ragline.evaluate.tune import PRIMARY, best, default_grid, pareto_front, sweep

eval_app = typer.Typer(rich_markup_mode=None, help="Evaluate retrieval, answers or the claim verifier; runs are recorded.",
                       no_args_is_help=True)
tune_app = typer.Typer(rich_markup_mode=None, help="Tune retrieval settings on a train split (never on test).",
                       no_args_is_help=True)


METRICS = RETRIEVAL_METRICS


def load_configs(paths: list[Path] | None) -> list[RaglineConfig]:
    if not paths:
        return [RaglineConfig(name="default")]
    configs = [load_config(p) for p in paths]
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise typer.BadParameter(f"configuration names must differ, got {names}")
    return configs


@eval_app.command("retrieval")
def eval_retrieval(
    dataset: Annotated[Path, typer.Option(help="BEIR folder, qa.jsonl folder or question-set .jsonl.")],
    split: Annotated[str, typer.Option(help="qrels split (BEIR).")] = "test",
    config: Annotated[list[Path] | None, typer.Option("--config", "-c",
                      help="Configuration TOML; repeat to compare several.")] = None,
    baseline: Annotated[str | None, typer.Option(help="Run id to compare against.")] = None,
    fail_on_regression: Annotated[bool, typer.Option(
        help="Exit 1 when a metric is significantly worse than --baseline.")] = False,
    report: Annotated[Path | None, typer.Option(help="Write an HTML report (and .md beside it).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the statistics.")] = 0,
    novel_against: Annotated[Path | None, typer.Option(
        help="A training set (BEIR folder): also score only the test queries none of whose "
             "relevant documents are relevant in its --novel-split.")] = None,
    novel_split: Annotated[str, typer.Option(help="qrels split of --novel-against.")] = "train",
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Run each configuration over the queries; report metrics with CIs, latency and index size."""
    data = load_dataset(dataset, split)
    for warning in data.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    configs = load_configs(config)
    say = (lambda m: None) if json_output else (lambda m: err.print(m, highlight=False))
    result = evaluate_retrieval(data, configs, split=split, baseline=baseline, seed=seed,
                                models=embedder_models(configs[0]), source=str(dataset), say=say)
    if report is not None:
        _write_report(report, result.run_id, data.name, result.results, result.comparisons,
                      result.manifest.to_dict(), seed)
    novel = None
    if novel_against is not None:
        from ragline.evaluate.leakage import scan

        seen = load_dataset(novel_against, novel_split)
        ids = scan(seen.queries, {}, train_qrels=seen.qrels, test_qrels=data.qrels
                   ).novel_test_queries or []
        novel = {"against": f"{novel_against} ({novel_split})", "queries": len(ids),
                 "of": len(data.qrels),
                 "configs": {r.name: subset_means(r, ids) for r in result.results}}
    if json_output:
        typer.echo(json.dumps({**result.to_dict(), "novel": novel}, indent=2))
    else:
        _print_results(result.run_id, result.results, result.comparisons, result.gate_failures)
        if novel is not None:
            _print_novel(novel)
    if fail_on_regression and not result.passed:
        raise typer.Exit(1)


def _print_novel(novel: dict[str, Any]) -> None:
    table = Table(title=f"novel test queries: {novel['queries']} of {novel['of']}, no relevant "
                        f"document seen in {novel['against']}")
    table.add_column("config")
    for m in METRICS:
        table.add_column(metric_label(m), justify="right")
    for name, means in novel["configs"].items():
        table.add_row(name, *(f"{means[m]:.4f}" if m in means else "-" for m in METRICS))
    out.print(table)


def _print_results(run_id: str, results: list[ConfigResult], comparisons: list[Comparison],
                   gate_failures: list[str]) -> None:
    table = Table(title=f"run {run_id}")
    table.add_column("config")
    for m in METRICS:
        table.add_column(metric_label(m), justify="right")
    for col in ("p50 ms", "p95 ms", "index MB"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(r.name, *(f"{r.means[m]:.4f}" for m in METRICS),
                      f"{r.latency_ms['p50']:.1f}", f"{r.latency_ms['p95']:.1f}",
                      f"{r.index['bytes_on_disk'] / 2**20:.1f}")
    out.print(table)
    for comp in comparisons:
        out.print(comparison_table(comp))
    for line in gate_failures:
        out.print(f"[red]regression:[/] {line}", highlight=False)


def _write_report(path: Path, run_id: str, name: str, results: list[ConfigResult],
                  comparisons: list[Comparison], manifest: dict[str, Any], seed: int) -> None:
    data = ReportData(
        title=f"ragline retrieval evaluation: {name} ({run_id})",
        configs=tuple(ReportConfig(r.name, r.per_query, list(r.latencies.values()), run_id,
                                   r.index.get("bytes_on_disk")) for r in results),
        comparisons=tuple(comparisons), manifest=manifest, metrics=METRICS, seed=seed,
    )
    write_report(data, path, path.with_suffix(".md"))
    err.print(f"report written to {path} and {path.with_suffix('.md')}")


@tune_app.command("retrieval")
def tune_retrieval(
    dataset: Annotated[Path, typer.Option(help="BEIR folder or question set.")],
    split: Annotated[str, typer.Option(help="Tune on this split; never on test.")] = "train",
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Base configuration.")] = None,
    depths: Annotated[str, typer.Option(help="Candidate depths, comma-separated.")] = "20,50,100,200",
    latency_sample: Annotated[int, typer.Option(help="Queries timed per grid point.")] = 100,
    write_config: Annotated[Path | None, typer.Option(
        "--write-config", help="Write the base configuration with the best point's [search] "
        "settings to this TOML file (use it with --config for this corpus).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Grid over BM25, dense, and fusion method, RRF k / min-max alpha and depth; print the
    quality-latency front, and with --write-config keep the best point for this corpus."""
    if split == "test":
        err.print("[yellow]warning:[/] tuning on the test split makes its figures optimistic; "
                  "tune on train and report test once")
    data = load_dataset(dataset, split)
    base = load_config(config) if config else RaglineConfig(name="default")
    say = (lambda m: None) if json_output else (lambda m: err.print(m, highlight=False))
    grid = default_grid(tuple(int(d) for d in depths.split(",")))
    results = sweep(data, base, grid=grid, latency_sample=latency_sample, say=say)
    front, chosen = pareto_front(results), best(results)
    if write_config is not None:
        tuned = base.merged({"search": chosen.point.search_overrides()})
        write_config.write_text(to_toml(tuned, header=(
            f"Written by `ragline tune retrieval` on {data.name}/{split} "
            f"({len(data.qrels)} queries): best {PRIMARY} {chosen.means[PRIMARY]:.4f} "
            f"with {chosen.point.label}.")), encoding="utf-8")
        err.print(f"wrote {write_config}: [search] {chosen.point.label}", highlight=False)
    if json_output:
        typer.echo(json.dumps({
            "dataset": data.name, "split": split, "queries": len(data.qrels),
            "best": chosen.to_dict(), "pareto_front": [r.to_dict() for r in front],
            "all": [r.to_dict() for r in results],
        }, indent=2))
        return
    table = Table(title=f"quality-latency Pareto front on {data.name}/{split} "
                        f"({len(data.qrels)} queries, {len(results)} points)")
    for col in ("setting", PRIMARY, "95% CI", "Recall@100", "p50 ms", "p95 ms"):
        table.add_column(col, justify="left" if col == "setting" else "right")
    for r in front:
        table.add_row(r.point.label + (" ← best" if r is chosen else ""),
                      f"{r.means[PRIMARY]:.4f}", f"[{r.ci[0]:.3f}, {r.ci[1]:.3f}]",
                      f"{r.means['R@100']:.4f}", f"{r.latency_ms['p50']:.1f}",
                      f"{r.latency_ms['p95']:.1f}")
    out.print(table)
    settings = ", ".join(f"{k} = {json.dumps(v)}" for k, v in chosen.point.search_overrides().items())
    out.print(f"best: {chosen.point.label}; as configuration: [search] {settings}")


@eval_app.command("leakage")
def eval_leakage(
    train: Annotated[Path, typer.Option(help="The training (or synthetic) query set: a BEIR "
                                              "folder, qa.jsonl folder or question-set .jsonl.")],
    test: Annotated[Path, typer.Option(help="The test query set, in the same forms.")],
    train_split: Annotated[str, typer.Option(help="qrels split of --train (BEIR).")] = "train",
    test_split: Annotated[str, typer.Option(help="qrels split of --test (BEIR).")] = "test",
    near: Annotated[float, typer.Option(
        min=0, max=100, help="rapidfuzz ratio (0-100) from which two queries are near copies.")
    ] = 90.0,
    ngram: Annotated[int, typer.Option(min=1, help="Word n-gram length of the overlap check.")] = 5,
    show: Annotated[int, typer.Option(min=0, help="Example pairs to print.")] = 5,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Overlap of two query sets: duplicate and near-duplicate queries, shared n-grams, shared
    relevant documents, and the test queries that are novel to the training set."""
    from ragline.evaluate.leakage import scan

    a, b = load_dataset(train, train_split), load_dataset(test, test_split)
    train_queries = {q: a.queries[q] for q in a.qrels} or dict(a.queries)
    test_queries = {q: b.queries[q] for q in b.qrels} or dict(b.queries)
    report = scan(train_queries, test_queries, train_qrels=a.qrels or None,
                  test_qrels=b.qrels or None, near=near, ngram=ngram)
    if json_output:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    n = report.test_queries or 1
    table = Table(title=f"leakage: {report.train_queries} training queries ({train}, "
                        f"{train_split}) vs {report.test_queries} test queries ({test}, "
                        f"{test_split})", show_header=False)
    table.add_row("exact duplicate queries", f"{len(report.exact_duplicates)} "
                  f"({len(report.exact_duplicates) / n:.1%})")
    table.add_row(f"near duplicates (ratio >= {near:g})", f"{len(report.near_duplicates)} "
                  f"({len(report.near_duplicates) / n:.1%})")
    table.add_row(f"test queries sharing a word {ngram}-gram", f"{len(report.ngram_overlaps)} "
                  f"({len(report.ngram_overlaps) / n:.1%})")
    if report.test_relevant_docs is not None and report.novel_test_queries is not None:
        shared, total = report.shared_relevant_docs or 0, report.test_relevant_docs
        table.add_row("test-relevant documents also relevant in training",
                      f"{shared} of {total} ({shared / max(total, 1):.1%})")
        table.add_row("novel test queries (no relevant document seen)",
                      f"{len(report.novel_test_queries)} of {report.test_queries}")
    else:
        table.add_row("relevant documents", "not compared: a set has no qrels")
    out.print(table)
    for match in (report.exact_duplicates + report.near_duplicates)[:show]:
        out.print(f"  {match.similarity:5.1f}  test {escape(match.test)!s}\n"
                  f"         train {escape(match.train)!s}", highlight=False, soft_wrap=True)
    if report.novel_test_queries is not None:
        out.print("score a tuned system on the novel queries too: ragline eval retrieval "
                  f"--dataset {test} --split {test_split} --novel-against {train} "
                  f"--novel-split {train_split}", highlight=False, soft_wrap=True)
