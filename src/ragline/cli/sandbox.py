"""`ragline sandbox run FILE.py`: run a Python file in the sandbox for model-written code, so anyone
can try their own escape. Exit code: the program's own status; 124 when a limit stopped it;
128+N when signal N killed it; 2 when the sandbox cannot run here (nothing was run)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ragline.cli._common import JsonOption, err_console, fail

sandbox_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                          help="Run Python in the sandbox for model-written code (no network, "
                               "read-only files, limits).")

LIMIT_EXIT = 124  # as `timeout` does: a limit, not the program, ended the run


@sandbox_app.command("run")
def run_command(
    file: Annotated[Path, typer.Argument(help="The Python file to run.")],
    cpu: Annotated[float, typer.Option("--cpu", help="CPU seconds.")] = 10.0,
    wall: Annotated[float, typer.Option("--wall", help="Wall-clock seconds.")] = 30.0,
    memory: Annotated[int, typer.Option("--memory", help="Memory (address space) in MB.")] = 512,
    processes: Annotated[int, typer.Option(help="Processes and threads.")] = 32,
    output: Annotated[int, typer.Option(help="Bytes kept of stdout, and of stderr.")] = 1_048_576,
    allow_file: Annotated[list[Path] | None, typer.Option(
        "--allow-file", help="A file the program may read, as /input/NAME (repeatable).")] = None,
    allow_without_seccomp: Annotated[bool, typer.Option(
        help="Run even where libseccomp is missing (namespaces and rlimits only).")] = False,
    json_output: JsonOption = False,
) -> None:
    """Run a Python file in the sandbox: print its output, exit status and the limit that stopped it.

    Exit code: the program's own status, 124 when a limit stopped it, 128+N when signal N killed
    it, 2 when the sandbox cannot run here."""
    from ragline.agent.sandbox import Limits, SandboxUnavailable, run_python

    try:
        code = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {exc}")
    files: dict[str, Path] = {}
    for path in allow_file or []:
        if path.name in files:
            fail(f"two allowed files are both named {path.name!r} (they appear as /input/NAME)")
        files[path.name] = path
    try:
        limits = Limits(cpu_s=cpu, wall_s=wall, memory_mb=memory, processes=processes,
                        output_bytes=output)
        result = run_python(code, files=files, limits=limits,
                            allow_without_seccomp=allow_without_seccomp)
    except (ValueError, FileNotFoundError, SandboxUnavailable) as exc:
        fail(str(exc))
    if json_output:
        typer.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(result.stdout)
        sys.stdout.flush()
        sys.stderr.write(result.stderr)
        summary = (f"sandbox: {result.message} · cpu {result.cpu_s:.2f} s · "
                   f"wall {result.wall_s:.2f} s")
        err_console.print(summary, style="bold red" if not result.ok else "dim",
                          soft_wrap=True, highlight=False, markup=False)
    if result.stopped_by is not None and result.stopped_by.value != "signal":
        raise typer.Exit(LIMIT_EXIT)
    if result.signal is not None:
        raise typer.Exit(128 + result.signal)
    raise typer.Exit(result.exit_status or 0)
