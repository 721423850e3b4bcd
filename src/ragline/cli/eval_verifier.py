"""`ragline eval verifier`: claim verifiers on labelled claims, recorded and compared.

    ragline eval verifier --dataset claims.jsonl                      # {"id","doc","claim","label"}
    ragline eval verifier --dataset ../shared/datasets/scifact --split test \\
        --verifier model --verifier cosine                            # paired A/B
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ragline import __version__
from ragline.cli._common import console as out
from ragline.cli._common import err_console as err
from ragline.errors import RaglineError
from ragline.evaluate.claim_data import ClaimSet, load_claims
from ragline.evaluate.experiment import recorded_run
from ragline.evaluate.verifier import COMPARED, VerifierConfig, VerifierRun, run_verifier


def _models(runs: list[VerifierRun]) -> list[dict[str, Any]]:
    from ragline.answer.support_model import SHIPPED_DIR

    models = []
    for run in runs:
        files = [str(SHIPPED_DIR / n) for n in ("model.onnx", "tokenizer.json", "manifest.json")]
        models.append({"id": f"verifier:{run.scorer_name}",
                       "files": files if run.scorer_name.startswith("model") else []})
    return models


def eval_verifier(
    dataset: Annotated[Path, typer.Option(
        help="Claims: JSONL file or folder ({id, doc, claim, label}, 1 = supported) or a BEIR "
        "SciFact folder.")],
    split: Annotated[str, typer.Option(help="SciFact split (a folder dataset only).")] = "test",
    verifier: Annotated[list[str] | None, typer.Option(
        help="model, model+checks, cosine, cosine+checks, overlap, overlap+checks; repeat to "
        "compare (the first is A).")] = None,
    threshold: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, help="Override every verifier's threshold.")] = None,
    baseline: Annotated[str | None, typer.Option(help="Run id to compare against.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N claims.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the statistics.")] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Balanced accuracy, AUROC, precision/recall/F1 of "unsupported", threshold and claims/s
    for each verifier, with paired comparisons; recorded in the run registry."""
    from ragline.evaluate.manifest import build_manifest
    from ragline.evaluate.registry import QueryResult, RunRegistry
    from ragline.evaluate.stats import compare_paired

    try:
        configs = [VerifierConfig.parse(v, threshold) for v in (verifier or ["model"])]
        if len({c.name for c in configs}) != len(configs):
            raise typer.BadParameter("each --verifier must differ")
        data = load_claims(dataset, split)
    except RaglineError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    pairs = data.pairs[:limit] if limit else data.pairs

    def say(message: str) -> None:
        if not json_output:
            err.print(message, highlight=False)

    say(f"{data.name}: {len(pairs)} claims ({sum(p.label for p in pairs)} supported)")
    try:
        runs = [_run(c, pairs, say) for c in configs]
    except RaglineError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    with RunRegistry() as registry:
        manifest = build_manifest(
            {"kind": "verifier", "dataset": str(dataset), "split": split, "limit": limit,
             "verifiers": [c.name for c in configs], "threshold": threshold,
             "ragline": __version__}, data.hash, _models(runs), seed)
        with recorded_run(registry, "verifier", data.name, manifest) as run_id:
            for run in runs:
                registry.add_query_results(run_id, run.config.name, [
                    QueryResult(qid, values, run.seconds / max(1, len(pairs)))
                    for qid, values in run.per_claim().items()])
            summary = {r.config.name: r.summary() for r in runs}
            registry.finish_run(run_id, summary)
        comparisons = [compare_paired(runs[0].per_claim(), r.per_claim(), COMPARED, seed=seed,
                                      label_a=runs[0].config.name, label_b=r.config.name)
                       for r in runs[1:]]
        if baseline is not None:
            comparisons += [registry.compare_runs(baseline, run_id, None, r.config.name, seed=seed)
                            for r in runs]
    if json_output:
        typer.echo(json.dumps({"run_id": run_id, "dataset": data.name, "claims": len(pairs),
                               "verifiers": summary,
                               "comparisons": [c.to_dict() for c in comparisons],
                               **summary[configs[0].name]}, indent=2))
        return
    _print(run_id, data, summary, comparisons)


def _run(config: VerifierConfig, pairs: list[Any], say: Any) -> VerifierRun:
    say(f"[{config.name}] scoring ...")
    return run_verifier(config, pairs)


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _print(run_id: str, data: ClaimSet, summary: dict[str, dict[str, Any]],
           comparisons: list[Any]) -> None:
    from ragline.cli.runs import comparison_table

    table = Table(title=f"{data.name}: verifier run {run_id}")
    for column in ("verifier", "claims", "balanced acc", "AUROC", "unsupported P / R / F1",
                   "false flags", "threshold", "claims/s"):
        table.add_column(column)
    for name, s in summary.items():
        table.add_row(name, f"{s['n']} ({s['supported']} sup.)", _fmt(s["balanced_accuracy"]),
                      _fmt(s["auroc"]),
                      f"{_fmt(s['flag_precision'])} / {_fmt(s['flag_recall'])} / "
                      f"{_fmt(s['flag_f1'])}",
                      _fmt(s["false_flag_rate"], ".1%"), _fmt(s["threshold"]),
                      f"{s['claims_per_second']:.1f}")
    out.print(table)
    for comparison in comparisons:
        out.print(comparison_table(comparison))
