"""`ragline serve` (the HTTP service, `ragline.server`) and `ragline keys ...` (its API keys).

`keys` needs nothing beyond ragline itself; `serve` needs the `server` extra (FastAPI, uvicorn).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ragline.cli._common import ConfigOption, JsonOption, console, err_console, fail
from ragline.errors import RaglineError

keys_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                       help="API keys of `ragline serve`: create, list, revoke.")
KeysFileOption = Annotated[Path | None, typer.Option(
    "--keys", help="Keys file (default $RAGLINE_HOME/keys.sqlite).")]
MiB = 2**20


def serve_command(
    index: Annotated[Path | None, typer.Option(
        "--index", "-i", help="Serve this index folder as the collection 'default'.")] = None,
    config: ConfigOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(
        min=1, help="Worker processes (uvicorn); they share each key's limits.")] = 1,
    data_dir: Annotated[Path | None, typer.Option(
        help="Where collections live (default $RAGLINE_HOME/server).")] = None,
    keys: KeysFileOption = None,
    extractive: Annotated[bool, typer.Option(
        help="Answer by quoting the sources; start no model.")] = False,
    max_upload_bytes: Annotated[int, typer.Option(
        min=1, help="Largest upload request, in bytes.")] = 50 * MiB,
    rate: Annotated[float, typer.Option(
        min=0.001, help="Requests per second per key (a key's own limit wins).")] = 10.0,
    burst: Annotated[int, typer.Option(min=1, help="Requests a key may send at once.")] = 20,
    concurrency: Annotated[int, typer.Option(
        min=1, help="Requests of one key in flight at a time.")] = 4,
    inference_workers: Annotated[int, typer.Option(
        min=1, help="Threads running model work (embed, search, generate, verify).")] = 2,
    inference_queue: Annotated[int, typer.Option(
        min=0, help="Requests that may wait for a model thread; past that, 503.")] = 8,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
    otlp_endpoint: Annotated[str | None, typer.Option(
        help="Also export request traces over OTLP/HTTP to this collector (default "
        "$OTEL_EXPORTER_OTLP_ENDPOINT; needs pip install 'ragline[otlp]').")] = None,
) -> None:
    """Serve collections over HTTP: search, ask with verified citations, OpenAI-compatible /v1.

    Every endpoint but /healthz and /readyz needs an API key (`ragline keys create`). Needs
    the server extra: pip install 'ragline[server]'."""
    try:
        import uvicorn

        from ragline.server import ServerSettings, create_app
        from ragline.server.keys import KeyStore
        from ragline.server.settings import SETTINGS_ENV
    except ImportError as exc:
        fail(f"`ragline serve` needs the server extra ({exc.name} is missing): "
             "pip install 'ragline[server]'")
    if index is not None and config is None and not (index / "ragline.sqlite").exists():
        fail(f"no index at {index}; build one with `ragline ingest DOCS --index {index}`")
    values = {"config": config.resolve() if config else None, "extractive": extractive,
              "mounts": {"default": index.resolve()} if index is not None else {},
              "keys_path": keys, "max_upload_bytes": max_upload_bytes, "rate_per_second": rate,
              "burst": burst, "concurrency": concurrency,
              "inference_workers": inference_workers, "inference_queue": inference_queue,
              "otlp_endpoint": otlp_endpoint, "workers": workers}
    if data_dir is not None:
        values["data_dir"] = data_dir.resolve()
    settings = ServerSettings.model_validate(values)
    if not KeyStore(settings.keys_file()).keys(include_revoked=False):
        err_console.print("note: no API key exists yet, so every request but /healthz and "
                          "/readyz is refused; `ragline keys create` makes one", style="yellow")
    try:
        if workers > 1:  # each worker process builds its own app from the same settings
            os.environ[SETTINGS_ENV] = settings.model_dump_json()
            uvicorn.run("ragline.server.app:app_from_environment", factory=True, host=host,
                        port=port, workers=workers, log_level=log_level)
        else:
            uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)
    except RaglineError as exc:
        fail(str(exc))


@keys_app.command("create")
def create_key(
    collections: Annotated[str, typer.Option(
        help="Comma-separated collections the key may use ('*': all).")] = "*",
    name: Annotated[str, typer.Option(help="A label for `keys list`.")] = "",
    rate: Annotated[float | None, typer.Option(
        min=0.001, help="Requests per second (default: the server's).")] = None,
    burst: Annotated[int | None, typer.Option(min=1, help="Burst (default: the server's).")] = None,
    concurrency: Annotated[int | None, typer.Option(
        min=1, help="Requests in flight (default: the server's).")] = None,
    keys: KeysFileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from ragline.server.keys import KeyStore, parse_collections

    record, key = KeyStore(keys).create(parse_collections(collections), name=name, rate=rate,
                                        burst=burst, concurrency=concurrency)
    if json_output:
        typer.echo(json.dumps({**record.to_dict(), "key": key}, indent=2))
        return
    typer.echo(key)
    err_console.print(f"key {record.id} for {', '.join(record.collections)}: shown once, "
                      "store it now (send it as `Authorization: Bearer KEY`)", highlight=False)


@keys_app.command("list")
def list_keys(keys: KeysFileOption = None, json_output: JsonOption = False) -> None:
    """List the keys: id, name, collections, limits, revoked or not (never the keys)."""
    import time

    from ragline.server.keys import KeyStore

    found = KeyStore(keys).keys()
    if json_output:
        typer.echo(json.dumps([k.to_dict() for k in found], indent=2))
        return
    table = Table(title="API keys")
    table.add_column("id", min_width=12, no_wrap=True)  # what `keys revoke` takes: never cut
    for column in ("name", "collections", "limits", "created", "revoked"):
        table.add_column(column)
    for k in found:
        limits = ", ".join(f"{label} {value}" for label, value in
                           (("rate", k.rate), ("burst", k.burst), ("concurrency", k.concurrency))
                           if value is not None) or "server defaults"
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(k.created))
        revoked = time.strftime("%Y-%m-%d %H:%M", time.localtime(k.revoked)) if k.revoked else ""
        table.add_row(k.id, escape(k.name), escape(", ".join(k.collections)), limits, when,
                      revoked)
    console.print(table)


@keys_app.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key's id (from `keys list`).")],
    keys: KeysFileOption = None,
) -> None:
    """Revoke a key: every request with it is refused from now on."""
    from ragline.server.keys import KeyStore

    record = KeyStore(keys).revoke(key_id)
    console.print(f"revoked key {record.id} ({escape(record.name)})", highlight=False)
