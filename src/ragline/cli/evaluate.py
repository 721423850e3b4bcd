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


# --- ragline eval agent ----------------------------------------------------------------------


def _agent_configs(paths: list[Path] | None, defaults: dict[str, Any],
                   baseline: str | None) -> list[dict[str, Any]]:
    """Agent configurations: TOML files of `name`, `mode` ("agent" or "ask"), `tools`,
    `max_steps`, `provider`, `model`, `base_url`, `k`, over the command's defaults."""
    import tomllib

    configs = [] if baseline is None else [{**defaults, "name": "ask", "mode": "ask"}]
    for path in paths or []:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise typer.BadParameter(f"cannot read agent configuration {path}: {exc}") from exc
        configs.append({**defaults, "name": path.stem, **raw.get("agent", raw)})
    if not paths:
        configs.append({**defaults, "name": "agent", "mode": "agent"})
    names = [c["name"] for c in configs]
    if len(set(names)) != len(names):
        raise typer.BadParameter(f"configuration names must differ, got {names}")
    for c in configs:
        if c.get("mode", "agent") not in ("agent", "ask"):
            raise typer.BadParameter(f"{c['name']}: mode is 'agent' or 'ask', got {c['mode']!r}")
    return configs


def _agent_runner(spec: dict[str, Any], index_dir: Path | None) -> Any:
    from ragline.agent.loop import Agent, Budget
    from ragline.agent.tools import SpanRegistry, builtin_tools
    from ragline.evaluate.agent_eval import AgentRunner, AskRunner
    from ragline.llm.config import build_llm, llm_settings

    llm = build_llm(llm_settings(None, provider=spec.get("provider"), model=spec.get("model"),
                                 base_url=spec.get("base_url")))
    index = None
    if index_dir is not None:
        from ragline.index import Index

        index = Index(index_dir)
    if spec.get("mode") == "ask":
        if index is None:
            raise typer.BadParameter("the ask baseline needs --index DIR")
        return AskRunner(spec["name"], index, llm=llm, k=int(spec.get("k", 5)))

    def build(task: Any) -> Agent:
        names = list(task.tools or spec["tools"])
        if index is None:
            names = [n for n in names if n not in ("search", "read")]
        registry = SpanRegistry()
        tools = builtin_tools(names, index=index, registry=registry)
        return Agent(llm, tools, registry=registry,
                     budget=Budget(max_steps=int(spec["max_steps"])), config={"eval": spec})

    return AgentRunner(spec["name"], build)


@eval_app.command("agent")
def eval_agent(
    tasks: Annotated[Path, typer.Option(help="Task file (.jsonl): id, task, answer|check[, judge].")],
    repeats: Annotated[int, typer.Option(min=1, help="Attempts per task (for pass^k).")] = 1,
    config: Annotated[list[Path] | None, typer.Option(
        "--config", "-c", help="Agent configuration TOML; repeat to compare two or more.")] = None,
    index: Annotated[Path | None, typer.Option("--index", "-i", help="Index for search/read.")] = None,
    baseline: Annotated[str | None, typer.Option(
        help="'ask': also answer each task single-shot with Index.ask, compared paired.")] = None,
    tools: Annotated[str, typer.Option(help="Default tools (a task's own `tools` win).")
                     ] = "search,read,calculator",
    max_steps: Annotated[int, typer.Option(min=1, help="Most model calls per attempt.")] = 10,
    provider: Annotated[str | None, typer.Option(help="LLM provider.")] = None,
    model: Annotated[str | None, typer.Option(help="Model (default per provider).")] = None,
    base_url: Annotated[str | None, typer.Option(help="Server URL (openai-compatible).")] = None,
    judge_provider: Annotated[str | None, typer.Option(help="Judge provider (judge tasks).")] = None,
    judge_model: Annotated[str | None, typer.Option(help="Judge model (judge tasks).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the statistics.")] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Run each task --repeats times per configuration; report success, pass^k, steps,
    tool-error rate, tokens, cost, latency and stop reasons, with paired comparisons."""
    from ragline.errors import RaglineError
    from ragline.evaluate.agent_eval import evaluate_agents
    from ragline.evaluate.agent_tasks import load_tasks

    if baseline not in (None, "ask"):
        raise typer.BadParameter(f"--baseline is 'ask', got {baseline!r}")
    try:
        task_list = load_tasks(tasks)
    except RaglineError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from exc
    defaults = {"mode": "agent", "tools": [t.strip() for t in tools.split(",") if t.strip()],
                "max_steps": max_steps, "provider": provider, "model": model,
                "base_url": base_url}
    specs = _agent_configs(config, defaults, baseline)
    say = (lambda m: None) if json_output else (lambda m: err.print(m, highlight=False))
    try:
        runners = [_agent_runner(s, index) for s in specs]
        judge = _agent_judge(judge_provider, judge_model) if any(
            t.judge for t in task_list) else None
        result = evaluate_agents(task_list, runners, repeats=repeats, judge=judge,
                                 source=str(tasks), settings={"configs": specs,
                                                              "index": str(index) if index else None},
                                 seed=seed, say=say)
    except RaglineError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from exc
    if json_output:
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    _print_agent(result.run_id, result.summary(), repeats)
    for comp in result.comparisons:
        out.print(comparison_table(comp))
    for line in result.skipped_comparisons:
        out.print(f"[yellow]not compared:[/] {escape(line)}", highlight=False)


def _agent_judge(provider: str | None, model: str | None) -> Any:
    from ragline.evaluate.judge import CorrectnessJudge
    from ragline.llm.config import build_llm, llm_settings

    return CorrectnessJudge(build_llm(llm_settings(None, provider=provider, model=model)))


def _print_agent(run_id: str, summary: dict[str, Any], repeats: int) -> None:
    table = Table(title=f"agent run {run_id} ({repeats} attempt(s) per task)")
    cols = ["config", "success", *(f"pass^{k}" for k in range(2, repeats + 1)), "F1",
            "correct", "steps",
            "tool err", "tokens/att", "USD/att", "p50 ms", "p95 ms", "stop reasons"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("config", "stop reasons") else "right")
    for name, s in summary.items():
        usd = s["cost_usd_per_attempt"]
        table.add_row(name, f"{s['success_rate']:.3f}",
                      *(f"{s['pass^k'][str(k)]:.3f}" for k in range(2, repeats + 1)),
                      "-" if s["F1"] is None else f"{s['F1']:.3f}",
                      "-" if s.get("correct") is None else f"{s['correct']:.3f}",
                      f"{s['steps_mean']:.1f}",
                      f"{s['tool_error_rate']:.3f}", f"{s['tokens']['per_attempt']:.0f}",
                      "n/a" if usd is None else f"{usd:.5f}", f"{s['latency_ms']['p50']:.0f}",
                      f"{s['latency_ms']['p95']:.0f}",
                      ", ".join(f"{k} {v}" for k, v in s["stop_reasons"].items()))
    out.print(table)
    for name, s in summary.items():
        if s.get("judge"):
            j, ref = s["judge"], s["judge"]["reliability_vs_reference_rule"]
            out.print(f"{name}: judge {j['judge_model']} correct {j['mean']} "
                      f"({j['measured']} measured); vs reference rule accuracy "
                      f"{ref['accuracy']} kappa {ref['kappa']} (n={ref['n']})", highlight=False)
