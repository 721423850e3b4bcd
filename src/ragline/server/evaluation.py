"""Evaluation runs and the LLM ledger over HTTP: what `ragline runs list/show/compare` and
`ragline ledger summary` print, as JSON, and a run's HTML report.

    GET /runs                   the recorded runs, most recent first
    GET /runs/compare?a=&b=     the paired comparison of run B against run A (`runs compare`)
    GET /runs/{id}              one run: manifest, summary, configurations
    GET /runs/{id}/report       its self-contained HTML report (tables and plots)
    GET /ledger/summary         LLM calls, cost and latency by model and purpose

Runs and the ledger belong to the machine (`$RAGLINE_HOME/runs.sqlite`, `.../ledger.sqlite`),
not to one collection, so every endpoint here needs a key for all collections (`*`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse

from ragline.llm.ledger import GROUP_FIELDS
from ragline.server.auth import Caller, caller
from ragline.server.errors import ApiError
from ragline.server.keys import ALL_COLLECTIONS
from ragline.server.ui import content_security_policy

router = APIRouter(tags=["evaluation"])
Authorized = Annotated[Caller, Depends(caller)]


def _require_all(who: Caller) -> None:
    if not who.key.allows(ALL_COLLECTIONS):
        raise ApiError(403, "forbidden", "evaluation runs belong to the whole machine, not to "
                       "one collection: they need a key for all collections "
                       "(`ragline keys create --collections '*'`)")


def _registry_path() -> Path:
    from ragline.paths import ragline_home

    return ragline_home() / "runs.sqlite"


def _no_runs() -> ApiError:
    return ApiError(404, "run_not_found", "no evaluation runs are recorded on this machine")


@router.get("/runs")
async def list_runs(who: Authorized,
                    limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
    """The recorded evaluation runs (`ragline runs list`), most recent first."""
    _require_all(who)

    def read() -> list[dict[str, Any]]:
        from ragline.evaluate.registry import RunRegistry

        if not _registry_path().exists():
            return []
        with RunRegistry(_registry_path()) as registry:
            return [run.to_dict() for run in registry.list_runs(limit)]

    return {"runs": await anyio.to_thread.run_sync(read)}


@router.get("/runs/compare")
async def compare_runs(
    who: Authorized,
    a: Annotated[str, Query(min_length=1, max_length=200, description="the baseline run (A)")],
    b: Annotated[str, Query(min_length=1, max_length=200, description="the candidate run (B)")],
    config_a: Annotated[str | None, Query(min_length=1, max_length=200, description=(
        "A's configuration, when it has several"))] = None,
    config_b: Annotated[str | None, Query(min_length=1, max_length=200, description=(
        "B's configuration, when it has several"))] = None,
    seed: Annotated[int, Query(ge=0, le=2**32 - 1, description=(
        "seed of the bootstrap and the permutation test"))] = 0,
) -> dict[str, Any]:
    """Paired comparison of run B against run A over the same queries (`ragline runs compare
    --json`): per metric the means, B - A with its confidence interval, p and Holm p, the
    minimum detectable effect and a verdict, and the regression gate."""
    _require_all(who)
    return await anyio.to_thread.run_sync(
        lambda: run_comparison(_registry_path(), a, b, config_a, config_b, seed))


def run_comparison(path: Path, a: str, b: str, config_a: str | None, config_b: str | None,
                   seed: int) -> dict[str, Any]:
    """What `ragline runs compare A B --json` prints, with both runs' full ids."""
    from ragline.evaluate.gate import regression_gate
    from ragline.evaluate.registry import RegistryError, RunNotFound, RunRegistry
    from ragline.evaluate.stats import ComparisonError

    if not path.exists():
        raise _no_runs()
    with RunRegistry(path) as registry:
        try:
            comparison = registry.compare_runs(a, b, config_a, config_b, seed=seed)
            ids = registry.resolve(a), registry.resolve(b)
        except RunNotFound as exc:
            raise ApiError(404, "run_not_found", str(exc)) from exc
        except (ComparisonError, RegistryError) as exc:
            raise ApiError(422, "not_comparable", str(exc)) from exc
    gate = regression_gate(comparison)
    return {**comparison.to_dict(), "run_a": ids[0], "run_b": ids[1],
            "config_a": config_a, "config_b": config_b,
            "gate": {"passed": gate.passed, "failures": gate.failures}}


@router.get("/runs/{run_id}")
async def get_run(run_id: str, who: Authorized) -> dict[str, Any]:
    """One run (id, prefix or 4-hex suffix): its manifest, summary and configurations."""
    _require_all(who)
    record = await anyio.to_thread.run_sync(_read_run, run_id)
    return {**record.to_dict(), "has_report": bool(record.configs)}


@router.get("/runs/{run_id}/report", response_class=HTMLResponse)
async def run_report(run_id: str, who: Authorized) -> HTMLResponse:
    """The run's self-contained HTML report (`evaluate/report.py`: tables and plots)."""
    from ragline.evaluate.report import render_html, report_data_from_runs

    _require_all(who)

    def render() -> str:
        record = _read_run(run_id)
        if not record.configs:
            raise ApiError(409, "no_results", f"run {record.id} recorded no per-query results "
                           f"(status {record.info.status.value}); it has no report")
        return render_html(report_data_from_runs([record]))

    html = await anyio.to_thread.run_sync(render)
    # Opened on its own, the report may style itself but never run anything.
    policy = {"default-src": "'none'", "style-src": "'unsafe-inline'", "img-src": "data:",
              "sandbox": ""}
    return HTMLResponse(html, headers={"Content-Security-Policy": content_security_policy(policy),
                                       "X-Content-Type-Options": "nosniff"})


def _read_run(run_id: str) -> Any:
    from ragline.evaluate.registry import RegistryError, RunNotFound, RunRegistry

    if not _registry_path().exists():
        raise _no_runs()
    with RunRegistry(_registry_path()) as registry:
        try:
            return registry.get_run(run_id)
        except RunNotFound as exc:
            raise ApiError(404, "run_not_found", str(exc)) from exc
        except RegistryError as exc:  # a prefix that matches several runs
            raise ApiError(422, "ambiguous_run", str(exc)) from exc


@router.get("/ledger/summary")
async def ledger_summary(
    who: Authorized,
    since: Annotated[datetime | None, Query(description=(
        "only calls since this ISO date or time (2025-11-01, 2025-11-01T09:00)"))] = None,
    by: Annotated[str, Query(max_length=100, description=(
        f"group by, comma-separated: {', '.join(GROUP_FIELDS)}"))] = "model,purpose",
) -> dict[str, Any]:
    """LLM calls, attempts, errors, cache hits, cost, tokens and latency p50/p95 per group
    (`ragline ledger summary --json`)."""
    _require_all(who)
    group_by = tuple(part.strip() for part in by.split(",") if part.strip())
    unknown = [g for g in group_by if g not in GROUP_FIELDS]
    if not group_by or unknown or len(set(group_by)) != len(group_by):
        raise ApiError(422, "invalid_request", f"by={by!r}: group by one or more of "
                       f"{', '.join(GROUP_FIELDS)}, comma-separated, each once")
    return await anyio.to_thread.run_sync(lambda: ledger_rows(group_by, since))


def ledger_rows(group_by: tuple[str, ...], since: datetime | None) -> dict[str, Any]:
    from ragline.llm.ledger import Ledger
    from ragline.paths import ragline_home

    path = ragline_home() / "ledger.sqlite"
    rows: list[Any] = []
    if path.exists():  # reading never creates the file
        ledger = Ledger(path)
        try:
            rows = ledger.summarize(epoch_seconds(since), group_by)
        finally:
            ledger.close()
    return {"group_by": list(group_by), "since": since.isoformat() if since else None,
            "rows": [row.to_dict() for row in rows]}


def epoch_seconds(since: datetime | None) -> float | None:
    """`since` as a Unix time; a time too early for the local clock (year 1, read as local
    time, is before the first representable instant) means every call."""
    if since is None:
        return None
    try:
        return since.timestamp()
    except (ValueError, OverflowError, OSError):
        return None
