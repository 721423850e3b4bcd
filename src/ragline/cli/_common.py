"""What every `ragline` command shares: the consoles, the common options, the error exit."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.text import Text

if TYPE_CHECKING:
    from ragline.config import RaglineConfig

DEFAULT_INDEX = Path(".ragline")

console = Console()
err_console = Console(stderr=True)

IndexOption = Annotated[Path, typer.Option("--index", "-i", help="Index folder.")]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML configuration file.", exists=False)
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)
    raise typer.Exit(code)


def config_from(path: Path | None) -> RaglineConfig | None:
    from ragline.config import load_config

    return load_config(path) if path is not None else None
