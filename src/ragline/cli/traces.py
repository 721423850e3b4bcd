"""`ragline traces ...` (the service's request traces) and `ragline experiments ...` (online A/B).

Both read the server's data directory (`--data-dir`, default $RAGLINE_HOME/server) with plain
SQLite: no server needs to run, and the `server` extra is not needed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ragline.cli._common import JsonOption, console, fail

traces_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                         help="Request traces of `ragline serve`: list, show.")
experiments_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                              help="Online A/B experiments of `ragline serve`: create, list, "
                              "stop, report.")
DataDirOption = Annotated[Path | None, typer.Option(
    "--data-dir", help="The server's data directory (default $RAGLINE_HOME/server).")]


def _data_dir(given: Path | None) -> Path:
    from ragline.server.settings import default_data_dir

    return given or default_data_dir()


def _trace_store(given: Path | None) -> Any:
    from ragline.server.traces import TRACES_FILE, TraceStore

    folder = _data_dir(given)
    if not (folder / TRACES_FILE).exists():
        fail(f"no traces in {folder} (a server writes {TRACES_FILE} there as it answers); "
             "point --data-dir at the folder `ragline serve --data-dir` uses")
    return TraceStore.in_dir(folder)


def _when(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ns / 1e9))


@traces_app.command("list")
def list_traces(
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 20,
    collection: Annotated[str | None, typer.Option(help="Only this collection's.")] = None,
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """List the latest requests: id, operation, time, duration, key id, collection, arm."""
    found = _trace_store(data_dir).recent(limit=limit, collection=collection)
    if json_output:
        typer.echo(json.dumps([t.to_dict() for t in found], indent=2))
        return
    table = Table(title="Request traces")
    table.add_column("trace", min_width=32, no_wrap=True)  # what `traces show` takes
    for column in ("operation", "started", "ms", "status", "key", "collection", "arm",
                   "claims", "rating"):
        table.add_column(column)
    for t in found:
        claims = "" if t.claims is None else f"{t.flagged or 0}/{t.claims} flagged"
        arm = f"{t.experiment}:{t.arm}" if t.experiment else ""
        table.add_row(t.trace_id, t.name, _when(t.start_ns), f"{t.duration_s * 1000:.0f}",
                      t.status, t.key_id or "", escape(t.collection or ""), escape(arm),
                      claims, t.rating or "")
    console.print(table)


@traces_app.command("show")
def show_trace(
    trace_id: Annotated[str, typer.Argument(help="A trace id (or its first characters).")],
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show one request as a tree of spans, with durations and attributes."""
    from ragline.server.traces import render_tree, span_tree

    store = _trace_store(data_dir)
    matches = store.find_prefix(trace_id.strip())
    if not matches:
        fail(f"no trace {trace_id!r} in {store.path}; `ragline traces list` shows the ids")
    if len(matches) > 1 and trace_id not in matches:
        fail(f"{trace_id!r} is the start of several traces ({', '.join(matches)}); give more "
             "of it")
    chosen = trace_id if trace_id in matches else matches[0]
    summary = store.summary(chosen)
    roots = span_tree(store.spans(chosen))
    if json_output:
        typer.echo(json.dumps({"trace": summary.to_dict() if summary else None,
                               "spans": [r.to_dict() for r in roots]}, indent=2))
        return
    if summary is not None:
        console.print(f"trace {chosen}  {summary.name}  {_when(summary.start_ns)}  "
                      f"{summary.duration_s * 1000:.1f} ms  key {summary.key_id}"
                      + (f"  rated {summary.rating}" if summary.rating else ""),
                      highlight=False, markup=False, soft_wrap=True)
    for line in render_tree(roots):
        console.print(line, highlight=False, markup=False, soft_wrap=True)


# ---------------------------------------------------------------- experiments


def _experiments(given: Path | None) -> Any:
    from ragline.server.experiments import ExperimentStore

    return ExperimentStore.in_dir(_data_dir(given))


@experiments_app.command("create")
def create_experiment(
    name: Annotated[str, typer.Argument(help="A name for the experiment.")],
    collection: Annotated[str, typer.Option(help="The collection whose traffic is split.")],
    a: Annotated[Path, typer.Option("--a", exists=True, dir_okay=False,
                                    help="Arm A's TOML ([search], [llm]).")],
    b: Annotated[Path, typer.Option("--b", exists=True, dir_okay=False,
                                    help="Arm B's TOML ([search], [llm]).")],
    share: Annotated[float, typer.Option(help="Share of traffic for arm B.")] = 0.5,
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Split a collection's traffic between two configurations, sticky by user (else key)."""
    found = _experiments(data_dir).create(name, collection, a, b, share)
    if json_output:
        typer.echo(json.dumps(found.to_dict(), indent=2))
        return
    console.print(f"experiment {found.name} on {escape(collection)}: {1 - share:.0%} to A "
                  f"({escape(str(a))}), {share:.0%} to B ({escape(str(b))}); running servers "
                  "pick it up within seconds", highlight=False)


@experiments_app.command("list")
def list_experiments(data_dir: DataDirOption = None, json_output: JsonOption = False) -> None:
    """List the experiments: collection, share, arms, running or stopped."""
    found = _experiments(data_dir).all()
    if json_output:
        typer.echo(json.dumps([e.to_dict() for e in found], indent=2))
        return
    table = Table(title="Experiments")
    for column in ("name", "collection", "share b", "a", "b", "created", "stopped"):
        table.add_column(column)
    for e in found:
        stopped = _when(int(e.stopped * 1e9)) if e.stopped else "running"
        table.add_row(escape(e.name), escape(e.collection), f"{e.share:.2f}",
                      escape(e.a_source), escape(e.b_source), _when(int(e.created * 1e9)),
                      stopped)
    console.print(table)


@experiments_app.command("stop")
def stop_experiment(name: Annotated[str, typer.Argument(help="The experiment.")],
                    data_dir: DataDirOption = None) -> None:
    """Stop splitting traffic (the collection's own configuration answers again)."""
    found = _experiments(data_dir).stop(name)
    console.print(f"stopped experiment {escape(found.name)}", highlight=False)


@experiments_app.command("report")
def report_experiment(
    name: Annotated[str, typer.Argument(help="The experiment.")],
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and permutations.")] = 0,
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Compare the arms: thumbs-up rate, verifier flag rate, latency, cost, with CIs and p."""
    from ragline.server.experiments import experiment_report
    from ragline.server.traces import TraceStore

    folder = _data_dir(data_dir)
    report = experiment_report(_experiments(data_dir).get(name), TraceStore.in_dir(folder),
                               seed=seed)
    if json_output:
        typer.echo(json.dumps(report, indent=2))
        return
    print_report(report)


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def print_report(report: dict[str, Any]) -> None:
    experiment, arms = report["experiment"], report["arms"]
    console.print(f"experiment {experiment['name']} on {experiment['collection']} "
                  f"(share to B {experiment['share']:.2f})", highlight=False, markup=False)
    for arm in ("a", "b"):
        info = arms[arm]
        console.print(f"  arm {arm.upper()}: {info['source']}: {info['answers']} answers, "
                      f"{info['feedback']} feedback items ({info['thumbs_up']} up)",
                      highlight=False, markup=False)
    table = Table(title="B against A (two-sample bootstrap 95% CI, permutation p, Holm)")
    for column in ("metric", "n A", "n B", "A", "B", "B - A", "95% CI", "p (Holm)", "MDE",
                   "verdict"):
        table.add_column(column)
    for metric, row in report["metrics"].items():
        ci = "-" if row["ci_low"] is None else f"[{_num(row['ci_low'])}, {_num(row['ci_high'])}]"
        table.add_row(metric, str(row["n_a"]), str(row["n_b"]), _num(row["mean_a"]),
                      _num(row["mean_b"]), _num(row["diff"]), ci, _num(row["p_holm"]),
                      _num(row["mde"]), row["verdict"])
    console.print(table)
    console.print("MDE: the smallest true difference these sample sizes would detect (80% "
                  "power); a smaller one reads as no detectable difference.", highlight=False)
