"""`batchml report monitoring MODEL`: a model's drift, performance, retrains and cost over
time as one HTML page with PNG plots (`lib/monitoring/page.py`). Reads the monitoring
table, the runs table and the registry with delta-rs: no Spark session is started."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from batchml.jobs.app import JsonOption, emit, reports_errors, run_context
from batchml.lib.delta.delta_log import table_exists, table_rows
from batchml.lib.delta.lakehouse import resolve_path
from batchml.lib.monitoring import page as monitoring_report
from batchml.lib.monitoring.table import monitoring_uri
from batchml.lib.platform import storage
from batchml.lib.platform.errors import InputError
from batchml.lib.platform.settings import Settings
from batchml.lib.platform.sqltext import string as sql_string
from batchml.lib.tracking import runs
from batchml.lib.tracking.registry import CHAMPION, alias_holder, registry_of

app = typer.Typer(help="Reports over time, as HTML pages with plots.")


@app.callback()
def _group() -> None:
    """Reports over time, as HTML pages with plots (`report monitoring MODEL`)."""


HEADLINE = ("areaUnderROC", "rmse", "accuracy")


def history_of(settings: Settings, model: str) -> monitoring_report.History:
    """Everything the page shows about `model`.

    Raises:
        InputError: no such model in the registry.
    """
    registry = registry_of(settings, None)
    versions = registry.list(model)
    if not versions:
        raise InputError(f"no model {model!r} in the registry at {registry.root}")
    monitoring = monitoring_uri(settings)
    rows = []
    if table_exists(monitoring):
        rows = table_rows(monitoring, where=f"model = {sql_string(model)}")
    recorded = sorted(
        (r for r in runs.list_runs(runs.runs_uri(settings)) if _touches(r, model)),
        key=lambda r: r["started_at"],
    )
    champion = alias_holder(versions, CHAMPION)
    return monitoring_report.History(
        model=model,
        monitoring=rows,
        runs=recorded,
        versions=[
            {"version": v.version, "created_at": v.created_at, "baseline": _baseline(v.metrics)}
            for v in versions
        ],
        champion=champion.version if champion else None,
    )


def _baseline(metrics: dict[str, Any]) -> float | None:
    test = metrics.get("test") or metrics.get("validation") or {}
    return next((test[m] for m in HEADLINE if m in test), None)


def _touches(run: dict[str, Any], model: str) -> bool:
    """Whether a recorded run worked on `model`: registered or aliased it, was run with
    it as an argument, or (a pipeline) had it as its model."""
    touched = json.loads(run.get("models") or "[]")
    if any(m.get("name") == model for m in touched):
        return True
    summary = json.loads(run.get("summary") or "null") or {}
    if summary.get("model") == model:
        return True
    arguments = json.loads(run.get("arguments") or "{}")
    values = [v for v in arguments.values() if isinstance(v, str)]
    return any(v == model or v.startswith(f"{model}@") for v in values)


@app.command("monitoring")
@reports_errors
def monitoring(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="A registered model's name.")],
    *,
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            help="A folder or URI to write to (default: <lakehouse>/_reports/monitoring/MODEL).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Drift per feature over time, the headline metric per period, retrains and
    promotions, rows scored and resources per run: one HTML page with PNG plots."""
    state = run_context(ctx)
    settings = state.config().settings
    history = history_of(settings, model)
    if out is None:
        directory = resolve_path(f"_reports/monitoring/{model}", settings)
    else:
        directory = out if storage.is_remote(out) else str(Path(out).expanduser().resolve())
    page = monitoring_report.write(directory, history)
    data = {
        "model": model,
        "report": str(page),
        "monitoring_runs": len(monitoring_report.monitoring_runs(history)),
        "periods": len(monitoring_report.performance_rows(history)),
        "events": len(history.events),
        "runs": len(history.runs),
        "plots": sorted(
            storage.basename(e.uri)
            for e in storage.list_files(directory, recursive=False)
            if e.uri.endswith(".png")
        ),
    }
    emit(data, as_json, _render)


def _render(data: dict[str, Any]) -> str:
    return (
        f"{data['model']}: {data['monitoring_runs']} monitoring runs, {data['periods']} judged "
        f"periods, {data['events']} registry events, {data['runs']} runs\n"
        f"  report: {data['report']} ({', '.join(data['plots']) or 'no plots: no data yet'})"
    )
