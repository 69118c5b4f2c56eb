"""`batchml runs list|show`: the recorded job runs, with what they read, wrote and cost."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from batchml.jobs.app import JsonOption, emit, reports_errors, run_context
from batchml.lib.delta.lakehouse import lakehouse_root, under
from batchml.lib.tracking import runs

app = typer.Typer(help="Recorded job runs: inputs, outputs, outcome, resources.")


@app.command("list")
@reports_errors
def runs_list(
    ctx: typer.Context,
    *,
    job: Annotated[str | None, typer.Option("--job", help="Only runs of this job.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Newest N runs.", min=1)] = 20,
    as_json: JsonOption = False,
) -> None:
    """The newest recorded runs."""
    state = run_context(ctx)
    settings = state.config().settings
    uri = runs.runs_uri(settings)
    lakehouse = lakehouse_root(settings)
    rows = [_public(row, lakehouse) for row in runs.list_runs(uri, job=job, limit=limit)]
    emit({"runs_table": uri, "runs": rows}, as_json, _render_list)


@app.command("show")
@reports_errors
def runs_show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="A run id (or a unique prefix of one).")],
    *,
    as_json: JsonOption = False,
) -> None:
    """One run: arguments, tables read and written, models touched, resources."""
    state = run_context(ctx)
    settings = state.config().settings
    row = runs.get_run(runs.runs_uri(settings), run_id)
    emit(_public(row, lakehouse_root(settings)), as_json, _render_run)


def _public(row: dict[str, Any], lakehouse: str) -> dict[str, Any]:
    """A runs-table row as printed: JSON columns parsed, the tables and event log it
    recorded relative to the lakehouse shown where they are now."""
    out = dict(row)
    for column in ("arguments", "reads", "writes", "models", "gpu", "summary"):
        out[column] = json.loads(row[column]) if row.get(column) else None
    for column in ("reads", "writes"):
        for entry in out[column] or []:
            entry["table"] = under(entry["table"], lakehouse)
    if out.get("event_log"):
        out["event_log"] = under(out["event_log"], lakehouse)
    return out


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    size: float = value
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def _ms(value: int | None) -> str:
    return "-" if value is None else f"{value / 1000:.1f} s"


def _render_list(data: dict[str, Any]) -> str:
    if not data["runs"]:
        return f"no runs recorded in {data['runs_table']}"
    header = (
        f"{'run id':<16}  {'job':<13} {'started (UTC)':<19} {'took':>8}  {'status':<11} "
        f"{'exit':>4} {'jobs':>5} {'tasks':>6} {'task time':>10} {'peak heap':>10}"
    )
    lines = [header]
    for r in data["runs"]:
        lines.append(
            f"{r['run_id']:<16}  {r['job']:<13} {r['started_at']:%Y-%m-%d %H:%M:%S} "
            f"{r['duration_s']:>7.1f}s  {r['status']:<11} {r['exit_code']:>4} "
            f"{_count(r['jobs']):>5} {_count(r['tasks']):>6} {_ms(r['task_time_ms']):>10} "
            f"{_size(r['driver_peak_heap_bytes']):>10}"
        )
    return "\n".join(lines)


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _render_run(r: dict[str, Any]) -> str:
    lines = [
        f"run {r['run_id']}  {r['job']}  {r['status']} (exit {r['exit_code']})",
        f"  started {r['started_at']:%Y-%m-%d %H:%M:%S} UTC, took {r['duration_s']:.1f} s, "
        f"by {r['user']} on {r['host']} (pid {r['pid']})",
        f"  master {r['master']}  app {r['app_id'] or '-'}  config {r['config_hash'] or '-'}",
    ]
    if r["error"]:
        lines.append(f"  error: {r['error']}")
    options = (r["arguments"] or {}).get("options") or {}
    shown = {k: v for k, v in options.items() if v not in (None, False, [], "")}
    lines.append("  options " + (json.dumps(shown, default=str) if shown else "(defaults)"))
    for title, key in (("read", "reads"), ("wrote", "writes")):
        for entry in r[key] or []:
            lines.append(f"  {title:<6}{entry['table']}@{entry['version']}")
    for entry in r["models"] or []:
        lines.append(f"  model {entry['name']}@{entry['version']} ({entry['action']})")
    lines.append("")
    lines.append("  resources (measured by Spark)")
    rows = [
        (
            "Spark jobs / stages / tasks",
            f"{_count(r['jobs'])} / {_count(r['stages'])} / "
            f"{_count(r['tasks'])} ({_count(r['failed_tasks'])} failed)",
        ),
        ("task time", _ms(r["task_time_ms"])),
        ("executor CPU time", _ms(r["executor_cpu_time_ms"])),
        ("JVM GC time", _ms(r["jvm_gc_time_ms"])),
        ("peak execution memory", _size(r["peak_execution_memory_bytes"])),
        ("peak heap: driver", _size(r["driver_peak_heap_bytes"])),
        ("peak heap: executors", _size(r["executor_peak_heap_bytes"])),
        ("read / written", f"{_size(r['input_bytes'])} / {_size(r['output_bytes'])}"),
        (
            "shuffle read / write",
            f"{_size(r['shuffle_read_bytes'])} / {_size(r['shuffle_write_bytes'])}",
        ),
        (
            "spilled: memory / disk",
            f"{_size(r['memory_spilled_bytes'])} / {_size(r['disk_spilled_bytes'])}",
        ),
        ("GPU", "none used" if not r["gpu"] else json.dumps(r["gpu"])),
    ]
    lines.extend(f"    {name:<28} {value}" for name, value in rows)
    if r["event_log"]:
        lines.append("")
        lines.append(f"  event log {r['event_log']}")
        lines.append(
            "  replay it: the Spark History Server (README: 'Spark History Server'), "
            f"then http://localhost:18080/history/{r['app_id']}/jobs/"
        )
    return "\n".join(lines)
