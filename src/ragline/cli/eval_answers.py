"""`ragline eval answers`: answer a question set from the index, score the answers, judge them,
record every per-question value in the run registry (kind "answers") and report.

The lead mounts `eval_answers` as `ragline eval answers` (`eval_app.command("answers")`).
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ragline.cli._common import console as out
from ragline.cli._common import err_console as err
from ragline.cli.evaluate import load_configs
from ragline.cli.runs import comparison_table
from ragline.errors import DatasetError, RaglineError
from ragline.evaluate.answers import (
    AnswerRun,
    JudgeSettings,
    RecordingLedger,
    answer_items,
)
from ragline.evaluate.datasets import QADataset
from ragline.evaluate.experiment import run_answer_experiment, shared_metrics
from ragline.evaluate.judge import CorrectnessJudge, JudgeMode
from ragline.evaluate.report import ConfigResult as ReportConfig
from ragline.evaluate.report import ReportData, write_report
from ragline.evaluate.retrieval import load_dataset
from ragline.llm import LLM

SAMPLING_TEMPERATURE = 0.7  # the default temperature of repeated samples (--repeats > 1)



def _qa_dataset(path: Path) -> QADataset:
    data = load_dataset(path)
    if not isinstance(data, QADataset):
        raise DatasetError(
            f"{path} has no gold answers: answer evaluation needs a question set (.jsonl lines "
            "with id, question, answers and relevant or contexts) or a folder with qa.jsonl"
        )
    return data


def _llm(provider: str, model: str | None, base_url: str | None, ledger: RecordingLedger,
         timeout: float | None = None) -> LLM:
    return LLM(provider, model, base_url=base_url, ledger=ledger, timeout=timeout or 60.0)


def _temperature(given: float | None, repeats: int) -> float:
    if given is not None:
        return given
    return SAMPLING_TEMPERATURE if repeats > 1 else 0.0


def eval_answers(
    dataset: Annotated[Path, typer.Option(help="Question set .jsonl or a folder with qa.jsonl.")],
    config: Annotated[list[Path] | None, typer.Option(
        "--config", "-c", help="Configuration TOML; repeat to compare several.")] = None,
    provider: Annotated[str, typer.Option(help="LLM provider of the answers.")] = "local",
    model: Annotated[str | None, typer.Option(help="Answer model (default per provider).")] = None,
    base_url: Annotated[str | None, typer.Option(help="Base URL of the answer model.")] = None,
    timeout: Annotated[float | None, typer.Option(
        min=0.001, help="Seconds per model attempt (default 60).")] = None,
    extractive: Annotated[bool, typer.Option(help="Extractive answers: no LLM.")] = False,
    judge_provider: Annotated[str | None, typer.Option(help="Judge provider (enables the judge).")] = None,
    judge_model: Annotated[str | None, typer.Option(help="Judge model (enables the judge).")] = None,
    judge_base_url: Annotated[str | None, typer.Option(help="Base URL of the judge.")] = None,
    judge_mode: Annotated[JudgeMode, typer.Option(help="structured or text output.")] = JudgeMode.STRUCTURED,
    judge_repeats: Annotated[int | None, typer.Option(
        help="Verdicts per question for self-agreement (default: --repeats).")] = None,
    repeats: Annotated[int, typer.Option(min=1, help="Samples per question.")] = 1,
    temperature: Annotated[float | None, typer.Option(
        help=f"Answer temperature (default 0, or {SAMPLING_TEMPERATURE} with --repeats > 1).")] = None,
    k: Annotated[int, typer.Option(min=1, help="Chunks retrieved per question.")] = 5,
    strict: Annotated[bool, typer.Option(help="Abstain when a claim fails verification.")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N questions.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the samples and the statistics.")] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
    report: Annotated[Path | None, typer.Option(help="Write an HTML report (and .md beside it).")] = None,
) -> None:
    """Answer each question, then report EM, F1, citation precision/recall, supported claims,
    abstention, judge correctness and reliability, cost, latency and consistency over repeats."""
    try:
        data = _qa_dataset(dataset)
        items = answer_items(data, limit)
    except RaglineError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from exc
    say = (lambda m: None) if json_output else (lambda m: err.print(m, highlight=False))
    settings: dict[str, Any] = {
        "provider": None if extractive else provider, "model": None if extractive else model,
        "base_url": None if extractive else base_url, "extractive": extractive,
        "temperature": None if extractive else _temperature(temperature, repeats),
        "repeats": repeats, "k": k, "strict": strict, "limit": limit,
        "judge": {"provider": judge_provider, "model": judge_model, "mode": judge_mode.value,
                  "repeats": judge_repeats or repeats}
        if judge_provider or judge_model else None,
    }
    configs = load_configs(config)
    try:
        with ExitStack() as stack:
            ledger = RecordingLedger()
            stack.callback(ledger.close)
            llm = None if extractive else stack.enter_context(
                _llm(provider, model, base_url, ledger, timeout))
            if llm is not None:  # the model that answered, also when it is the local default
                settings["model"] = llm.model
            judge = _judge(stack, settings["judge"], provider, judge_base_url, ledger, seed)
            result = run_answer_experiment(data, items, configs, settings, (llm, judge, ledger),
                                           seed, say)
    except RaglineError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from exc
    _output(result, json_output)
    if report is not None:
        _write_report(report, result)


def _judge(stack: ExitStack, spec: dict[str, Any] | None, provider: str, base_url: str | None,
           ledger: RecordingLedger, seed: int) -> JudgeSettings | None:
    if spec is None:
        return None
    llm = stack.enter_context(_llm(spec["provider"] or provider, spec["model"], base_url, ledger))
    judge = CorrectnessJudge(llm, mode=JudgeMode(spec["mode"]))
    return JudgeSettings(judge, repeats=spec["repeats"], temperature=SAMPLING_TEMPERATURE,
                         seed=seed)


# --- output --------------------------------------------------------------------------------------

_ROWS = (
    ("EM", "EM"), ("F1", "F1"), ("token recall of the gold answer", "token_recall"),
    ("correct (answerable: EM, contains or recall >= 0.8)", "accuracy_answerable"),
    ("abstained (unanswerable)", "accuracy_unanswerable"),
    ("false abstentions (answerable)", "false_abstention_rate"),
    ("abstention rate (all)", "abstention_rate"),
    ("citation precision", "citation_precision"), ("citation recall", "citation_recall"),
    ("citation precision (answered)", "citation_precision_answered"),
    ("citation recall (answered)", "citation_recall_answered"),
    ("supported-claim rate", "supported_claim_rate"),
    ("extractive fallback rate (model failed)", "fallback_rate"),
)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _summary_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [(label, _fmt(s.get(key))) for label, key in _ROWS]
    rows.append(("claims verified (attributed by the verifier)",
                 f"{s['claims']} ({s['attributed_claims']})"))
    lat, cost = s["latency_ms"], s["cost"]
    rows += [("latency p50 / p95 ms", f"{lat['p50']:.0f} / {lat['p95']:.0f}"),
             ("cost per question USD", _fmt(cost["answer_usd_per_question"])),
             ("LLM calls (cache hits)", f"{cost['calls']} ({cost['cache_hits']})"),
             ("tokens in / out", f"{cost['input_tokens']} / {cost['output_tokens']}")]
    rows += _judge_rows(s.get("judge"))
    rows += _consistency_rows(s.get("consistency"))
    return rows


def _judge_rows(j: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not j:
        return []
    ref = j["reliability_vs_reference_rule"]
    rows = [(f"judge correct ({j['judge_model']}, {j['prompt_id']})",
             f"{_fmt(j['mean'])} ({j['measured']} measured, {j['unmeasured']} unmeasured)"),
            ("judge vs reference rule: accuracy / kappa",
             f"{_fmt(ref['accuracy'])} / {_fmt(ref['kappa'])} (n={ref['n']})")]
    if j.get("reliability_vs_labels"):
        lab = j["reliability_vs_labels"]
        rows.append(("judge vs labels: accuracy / kappa",
                     f"{_fmt(lab['accuracy'])} / {_fmt(lab['kappa'])} (n={lab['n']})"))
    if j.get("self_agreement") is not None:
        rows.append(("judge self-agreement", _fmt(j["self_agreement"])))
    return rows


def _consistency_rows(c: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not c:
        return []
    n = c["repeats"]
    return [("agreement (majority answer)", _fmt(c["agreement"])),
            (f"pass^{n}", _fmt(c[f"pass^{n}"])), (f"pass@{n}", _fmt(c[f"pass@{n}"])),
            ("flaky questions", str(len(c["flaky"])))]


def _output(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        public = {k: v for k, v in result.items() if k not in ("runs", "manifest")}
        public["comparisons"] = [c.to_dict() for c in result["comparisons"]]
        typer.echo(json.dumps(public, indent=2, default=str))
        return
    table = Table(title=f"run {result['run_id']}: {result['dataset']}, "
                        f"{result['questions']} questions")
    table.add_column("measure")
    names = list(result["configs"])
    for name in names:
        table.add_column(name, justify="right")
    per_config = [_summary_rows(result["configs"][n]["answers"]) for n in names]
    for i, (label, _) in enumerate(per_config[0]):
        table.add_row(label, *(rows[i][1] if i < len(rows) else "-" for rows in per_config))
    out.print(table)
    for name in names:
        flaky = (result["configs"][name]["answers"].get("consistency") or {}).get("flaky", [])
        for f in flaky:
            out.print(f"flaky [{name}] {f['id']}: {f['correct_samples']}/{f['samples']} correct "
                      f"- {f['question']}", highlight=False)
    for comp in result["comparisons"]:
        out.print(comparison_table(comp))


def _write_report(path: Path, result: dict[str, Any]) -> None:
    runs: list[AnswerRun] = result["runs"]
    metrics = tuple(shared_metrics(runs))
    data = ReportData(
        title=f"ragline answer evaluation: {result['dataset']} ({result['run_id']})",
        configs=tuple(ReportConfig(r.name, r.per_query(), list(r.latencies().values()),
                                   result["run_id"]) for r in runs),
        comparisons=tuple(result["comparisons"]), manifest=result["manifest"],
        metrics=metrics, seed=result["seed"],
    )
    md = path.with_suffix(".md")
    write_report(data, path, md)
    with md.open("a", encoding="utf-8") as fh:
        fh.write("\n## Answer evaluation\n\n")
        for name in result["configs"]:
            fh.write(f"### {name}\n\n| measure | value |\n|---|---|\n")
            for label, value in _summary_rows(result["configs"][name]["answers"]):
                fh.write(f"| {label} | {value} |\n")
            fh.write("\n")
    err.print(f"report written to {path} and {md}")
