"""`ragline train verifier`: rebuild the shipped claim verifier (needs `ragline[train]`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ragline.cli._common import err_console as err

train_app = typer.Typer(rich_markup_mode=None, help="Train ragline's own models (needs: pip install 'ragline[train]').",
                        no_args_is_help=True)


def _progress_line(every: float = 5.0):  # type: ignore[no-untyped-def]
    """A progress callback: a rich bar on a terminal, one line every few seconds otherwise."""
    import time

    from ragline.train.cross_encoder import StepTimer

    timer, last = StepTimer(), [0.0]

    def show(step: int, total: int, loss: float) -> None:
        now = time.monotonic()
        if step != total and now - last[0] < every:
            return
        last[0] = now
        rate = timer.rate(step)
        left = (total - step) / rate if rate > 0 else 0.0
        end = "\n" if step == total or not sys.stderr.isatty() else "\r"
        sys.stderr.write(f"step {step}/{total}  loss {loss:.3f}  {rate:.2f} steps/s  "
                         f"~{left / 60:.0f} min left{end}")
        sys.stderr.flush()

    return show


@train_app.command("verifier")
def train_verifier_command(
    data: Annotated[list[Path], typer.Option(
        "--data", help="Claim pairs: a JSONL file or folder ({id, doc, claim, label}), or a BEIR "
        "SciFact folder (its train split). Repeat for several.")],
    out: Annotated[Path, typer.Option(help="Folder to write the model to (replaced only "
                                      "when training finished).")],
    epochs: Annotated[float, typer.Option(min=0.01)] = 1.0,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    learning_rate: Annotated[float, typer.Option(min=0.0)] = 4e-5,
    max_length: Annotated[int, typer.Option(min=32, max=512)] = 256,
    seed: int = 13,
    threads: Annotated[int, typer.Option(min=1)] = 2,
    limit: Annotated[int | None, typer.Option(min=1, help="Train on the first N pairs only "
                                              "(a smoke test, not a model).")] = None,
    augment: Annotated[bool, typer.Option(help="Add rule-based hard examples (negation flips, "
                                          "swapped names, changed counts) to the training split "
                                          "(tried: lower dev accuracy, so off by default)."
                                          )] = False,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Fine-tune the MiniLM cross-encoder on claim pairs, export ONNX, pick precision and
    threshold on a held-out dev split, and print dev results before (the cosine heuristic)
    and after."""
    from ragline.train.cross_encoder import TrainConfig, TrainingError, require_torch
    from ragline.train.verifier import train_verifier

    try:
        require_torch()
    except TrainingError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    config = TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                         max_length=max_length, seed=seed, threads=threads)
    manifest = train_verifier(data, out, config=config,
                              say=lambda m: err.print(m, highlight=False),
                              progress=_progress_line(), limit=limit, augment=augment)
    if json_output:
        typer.echo(json.dumps(manifest, indent=2))
        return
    dev = manifest["dev"][manifest["precision"]]
    before = manifest["dev"].get("before_cosine")
    typer.echo(f"model: {out / 'model.onnx'} ({manifest['precision']}), "
               f"threshold {manifest['threshold']:.3f} (chosen on dev)")
    typer.echo(f"dev macro balanced accuracy: before (cosine) "
               f"{before['macro_balanced_accuracy'] if before else float('nan'):.3f}, after "
               f"{dev['macro_balanced_accuracy']:.3f}; {dev['claims_per_second']:.0f} claims/s")
    for source, scores in dev["per_source"].items():
        was = before["per_source"].get(source, {}) if before else {}
        typer.echo(f"  {source:28} n={scores['n']:5}  balanced accuracy "
                   f"{was.get('balanced_accuracy', float('nan')):.3f} -> "
                   f"{scores['balanced_accuracy']:.3f}  AUROC "
                   f"{scores['auroc'] or float('nan'):.3f}")


@train_app.command("simplify")
def simplify_command(
    folder: Annotated[Path, typer.Argument(help="A verifier model folder (manifest.json and "
                                           "its model file).")],
) -> None:
    """Rewrite a verifier exported without the exact graph clean-up (merged duplicate nodes,
    no softmax NaN guard): same scores, faster. Checks the outputs before writing and records
    the old sha256 in the manifest. Training applies it already."""
    from ragline.train.verifier import simplify_model_dir

    if not (folder / "manifest.json").is_file():
        err.print(f"[bold red]error:[/] no manifest.json in {escape(str(folder))}")
        raise typer.Exit(2)
    try:
        report = simplify_model_dir(folder)
    except ModuleNotFoundError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}: pip install 'ragline[train]'")
        raise typer.Exit(2) from None
    except (OSError, ValueError) as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    if not report.changed:
        typer.echo(f"{folder}: nothing to simplify ({report.nodes_before} nodes)")
        return
    typer.echo(f"{folder}: {report.nodes_before} -> {report.nodes_after} nodes "
               f"({report.merged} duplicates merged, {report.nan_guards} NaN guards dropped); "
               f"outputs differ by at most {report.max_abs_diff:.1e}")
