"""Command-line front doors over the evaluation API: `ragline runs ...` and `ragline datasets ...`.

The main CLI mounts these apps: `app.add_typer(runs_app, name="runs")`,
`app.add_typer(datasets_app, name="datasets")`.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from ragline.errors import RaglineError
from ragline.evaluate.datasets import BEIR_BASE_URL, fetch_beir
from ragline.evaluate.gate import regression_gate
from ragline.evaluate.metrics import metric_label
from ragline.evaluate.registry import RunRecord, RunRegistry, differing_settings
from ragline.evaluate.report import report_data_from_runs, write_report
from ragline.evaluate.stats import Comparison, Verdict

runs_app = typer.Typer(rich_markup_mode=None, help="Recorded evaluation runs: list, show, compare.", no_args_is_help=True)
datasets_app = typer.Typer(rich_markup_mode=None, help="Evaluation datasets.", no_args_is_help=True)

RegistryOption = Annotated[
    Path | None,
    typer.Option("--registry", help="Run registry file (default $RAGLINE_HOME/runs.sqlite)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]

_VERDICT_STYLE = {
    Verdict.BETTER: "bold green",
    Verdict.WORSE: "bold red",
    Verdict.NO_DIFFERENCE: "dim",
}


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _fail(exc: RaglineError) -> typer.Exit:
    Console(stderr=True, highlight=False).print(f"[red]error:[/red] {escape(str(exc))}", markup=True)
    return typer.Exit(2)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


@runs_app.command("list")
def list_runs(
    limit: Annotated[int, typer.Option(help="How many recent runs to show.")] = 20,
    as_json: JsonOption = False,
    registry: RegistryOption = None,
) -> None:
    """List recent evaluation runs, newest first."""
    with RunRegistry(registry) as reg:
        runs = reg.list_runs(limit)
    differs = differing_settings(runs)
    if as_json:
        _print_json([{**r.to_dict(), "differs": differs[r.id]} for r in runs])
        return
    # The id is what a user types next (show, compare, --baseline): never truncate it.
    id_column = Column("id", no_wrap=True, min_width=max((len(r.id) for r in runs), default=2))
    table = Table(id_column, "kind", "name", "status", "created",
                  Column("settings that differ", overflow="fold", min_width=24), "note")
    for r in runs:
        d = r.to_dict()
        style = {"complete": "green", "running": "yellow"}.get(d["status"], "red")
        table.add_row(
            r.id,
            r.kind,
            r.name,
            f"[{style}]{d['status']}[/{style}]",
            d["created_at"],
            escape(", ".join(f"{k}={v}" for k, v in differs[r.id].items())),
            r.reason or "",
        )
    _console().print(table)


def _show_text(run: RunRecord) -> None:
    console = _console()
    info = run.info.to_dict()
    console.print(f"[bold]{run.id}[/bold]  {run.info.kind} {run.info.name}  [{info['status']}]")
    m = run.manifest
    console.print(
        f"created {info['created_at']}  git {str(m.get('git_sha'))[:12]}"
        f"{' (dirty)' if m.get('git_dirty') else ''}  dataset {str(m.get('dataset_hash'))[:12]}"
        f"  config {str(m.get('config_hash'))[:12]}  seed {m.get('seed')}"
    )
    if run.info.reason:
        console.print(f"reason: {run.info.reason}")
    for cfg in run.configs:
        per_query = run.per_query(cfg)
        names = sorted({k for row in per_query.values() for k in row})
        table = Table("metric", "mean", title=f"{cfg}: {len(per_query)} queries")
        for name in names:
            mean = sum(row.get(name, 0.0) for row in per_query.values()) / len(per_query)
            table.add_row(metric_label(name), f"{mean:.4f}")
        console.print(table)
    if run.summary:
        rows = list(_flatten(run.summary))
        table = Table("summary", "value", title="summary")
        for key, value in rows[:SUMMARY_ROWS]:
            table.add_row(escape(key), escape(value))
        console.print(table)
        if len(rows) > SUMMARY_ROWS:
            console.print(f"... and {len(rows) - SUMMARY_ROWS} more (ragline runs show "
                          f"{run.id} --json)")


SUMMARY_ROWS = 40


def _flatten(data: Any, prefix: str = "") -> Any:
    """(dotted key, printable value) pairs of a nested summary; long lists are counted."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(data, list) and (len(data) > 5 or any(isinstance(v, dict | list)
                                                          for v in data)):
        yield prefix, f"{len(data)} items"
    elif isinstance(data, float):
        yield prefix, f"{data:.4g}"
    else:
        yield prefix, "-" if data is None else str(data)


@runs_app.command("show")
def show_run(
    run_id: Annotated[
        str, typer.Argument(help="Run id, a prefix of it, or its last 4 characters.")
    ],
    as_json: JsonOption = False,
    per_query: Annotated[bool, typer.Option(help="Include per-query values in --json.")] = False,
    registry: RegistryOption = None,
) -> None:
    """Show one run: manifest, summary and mean metrics per configuration."""
    try:
        with RunRegistry(registry) as reg:
            run = reg.get_run(run_id)
    except RaglineError as exc:
        raise _fail(exc) from exc
    if as_json:
        _print_json(run.to_dict(per_query=per_query))
    else:
        _show_text(run)


def comparison_table(comp: Comparison) -> Table:
    table = Table(
        "metric",
        "A",
        "B",
        "B - A",
        f"{comp.confidence:.0%} CI",
        "p",
        "Holm p",
        "MDE",
        "verdict",
        title=f"{comp.label_b} (B) vs {comp.label_a} (A), {comp.n_queries} queries",
    )
    for m in comp.metrics:
        style = _VERDICT_STYLE[m.verdict]
        table.add_row(
            metric_label(m.metric),
            f"{m.mean_a:.4f}",
            f"{m.mean_b:.4f}",
            f"{m.diff:+.4f}",
            f"[{m.ci_low:+.4f}, {m.ci_high:+.4f}]",
            f"{m.p_value:.4f}",
            f"{m.p_holm:.4f}",
            f"{m.mde:.4f}",
            f"[{style}]{m.verdict.value}[/{style}]",
        )
    return table


@runs_app.command("compare")
def compare(
    id1: Annotated[str, typer.Argument(help="Baseline run (A).")],
    id2: Annotated[str, typer.Argument(help="Candidate run (B).")],
    config_a: Annotated[
        str | None, typer.Option(help="Configuration of A, if it has several.")
    ] = None,
    config_b: Annotated[
        str | None, typer.Option(help="Configuration of B, if it has several.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and permutation test.")] = 0,
    as_json: JsonOption = False,
    report: Annotated[Path | None, typer.Option(help="Write an HTML report here.")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Write a Markdown summary here.")] = None,
    fail_on_regression: Annotated[
        bool, typer.Option(help="Exit 1 when B is significantly worse on any metric.")
    ] = False,
    registry: RegistryOption = None,
) -> None:
    """Paired comparison of run B against run A over the same queries."""
    try:
        with RunRegistry(registry) as reg:
            comp = reg.compare_runs(id1, id2, config_a, config_b, seed=seed)
            runs = [reg.get_run(id1)] + (
                [] if reg.resolve(id1) == reg.resolve(id2) else [reg.get_run(id2)]
            )
    except RaglineError as exc:
        raise _fail(exc) from exc
    gate = regression_gate(comp)
    if as_json:
        _print_json({**comp.to_dict(), "gate": {"passed": gate.passed, "failures": gate.failures}})
    else:
        _console().print(comparison_table(comp))
        for line in gate.failures:
            _console().print(f"[red]{line}[/red]")
    if report is not None:
        write_report(report_data_from_runs(runs, [comp]), report, markdown)
    if fail_on_regression and not gate.passed:
        raise typer.Exit(1)


@datasets_app.callback()
def _datasets() -> None:
    """Evaluation datasets: fetch public ones."""


class DatasetSource(enum.StrEnum):
    BEIR = "beir"


@datasets_app.command("fetch")
def fetch(
    source: Annotated[DatasetSource, typer.Argument(help="Dataset family.")],
    name: Annotated[str, typer.Argument(help="Dataset name, e.g. scifact.")],
    dest: Annotated[Path, typer.Option(help="Folder to unpack into.")] = Path("datasets"),
    base_url: Annotated[str, typer.Option(help="Where the zips are served.")] = BEIR_BASE_URL,
) -> None:
    """Download and unpack a public dataset (needs internet)."""
    try:
        path = fetch_beir(name, dest, base_url=base_url)
    except RaglineError as exc:
        raise _fail(exc) from exc
    typer.echo(str(path))
