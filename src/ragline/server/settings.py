"""`ServerSettings`: everything `ragline serve` decides, in one validated object.

It travels to uvicorn's worker processes as JSON (`RAGLINE_SERVER_SETTINGS`) when `--workers`
is above 1, so every field is plain data.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ragline.paths import ragline_home

SETTINGS_ENV = "RAGLINE_SERVER_SETTINGS"
MiB = 2**20


def default_data_dir() -> Path:
    return ragline_home() / "server"


class ServerSettings(BaseModel):
    """How the service runs. `data_dir` holds one folder per collection
    (`collections/<name>/index` and `.../uploads`); `mounts` serves existing index folders as
    collections (`ragline serve --index DIR` mounts DIR as `default`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Field(default_factory=default_data_dir)
    mounts: dict[str, Path] = Field(default_factory=dict)
    config: Path | None = None  # a ragline TOML file: [llm] and the settings of new collections
    keys_path: Path | None = None  # default $RAGLINE_HOME/keys.sqlite
    extractive: bool = False  # answer by quoting sources only: no model is started
    # limits of one request
    max_upload_bytes: int = Field(50 * MiB, gt=0)
    max_body_bytes: int = Field(1 * MiB, gt=0)
    # the processes serving this data directory (`--workers`): above 1, the per-key limits
    # below are counted for all of them together in <data_dir>/limits.sqlite
    workers: int = Field(1, gt=0)
    # per key (a key's own values win)
    rate_per_second: float = Field(10.0, gt=0)
    burst: int = Field(20, gt=0)
    concurrency: int = Field(4, gt=0)
    # model inference off the event loop: threads, and requests allowed to wait for one
    inference_workers: int = Field(2, gt=0)
    inference_queue: int = Field(8, ge=0)
    retry_after_s: int = Field(1, gt=0)
    # request traces, kept in <data_dir>/traces.sqlite; exported over OTLP/HTTP too when an
    # endpoint is set here or in OTEL_EXPORTER_OTLP_ENDPOINT (needs `ragline[otlp]`)
    otlp_endpoint: str | None = None
    trace_flush_ms: int = Field(500, gt=0)  # how long finished spans may wait to be written

    @property
    def shared_limits(self) -> bool:
        """Whether the per-key limits are shared between worker processes (a file), rather
        than counted in this process alone (a dictionary: faster, right for one worker)."""
        return self.workers > 1

    def keys_file(self) -> Path:
        from ragline.server.keys import default_keys_path

        return self.keys_path or default_keys_path()
