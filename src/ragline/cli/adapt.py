"""`ragline adapt`: adapt retrieval to the index's own corpus without labels (issue #11).

`adapt generate` writes synthetic training queries (see `ragline.adapt.generate`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ragline.cli._common import console, err_console
from ragline.cli.answer import (
    BaseUrlOpt,
    ConfigOpt,
    IndexOpt,
    ModelOpt,
    ProviderOpt,
    TimeoutOpt,
    open_index,
)

adapt_app = typer.Typer(help="Adapt retrieval to your corpus without labels: synthetic queries.",
                        no_args_is_help=True)


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
        f"({data['kept_share']:.0%}); {data['questions_per_minute']:.1f} questions/min; cost "
        f"${data['cost_usd']:.4f}; written to {out}", highlight=False, soft_wrap=True)
