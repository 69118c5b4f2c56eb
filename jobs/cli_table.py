"""`batchml table ...` commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from batchml.jobs.app import (
    JsonOption,
    RunContext,
    TableArg,
    TimestampOption,
    VersionOption,
    emit,
    pin_version,
    reports_errors,
    table_app,
)


@table_app.command("show")
@reports_errors
def table_show(
    ctx: typer.Context,
    uri: TableArg,
    *,
    version: VersionOption = None,
    timestamp: TimestampOption = None,
    limit: Annotated[int, typer.Option("--limit", help="Rows to show.", min=0)] = 10,
    as_json: JsonOption = False,
) -> None:
    """Schema, version, row count and first rows of a table snapshot."""
    from batchml.jobs import table

    state: RunContext = ctx.find_object(RunContext)
    pinned_version, pinned_time = pin_version(version, timestamp)
    summary = table.show(
        state.tables(), state.table_uri(uri), version=pinned_version, timestamp=pinned_time,
        limit=limit,
    )  # fmt: skip
    emit(summary.to_dict(), as_json, _render_table)


def _render_table(data: dict[str, Any]) -> str:
    lines = [f"{data['uri']}  version {data['version']}  rows {data['row_count']}", ""]
    lines += [
        f"  {f['name']:<24} {f['type']}{'' if f['nullable'] else ' not null'}"
        for f in data["schema"]
    ]
    if data["rows"]:
        names = [f["name"] for f in data["schema"]]
        cells = [[_cell(row.get(n)) for n in names] for row in data["rows"]]
        widths = [max(len(n), *(len(c[i]) for c in cells)) for i, n in enumerate(names)]
        lines += ["", " | ".join(n.ljust(w) for n, w in zip(names, widths, strict=True))]
        lines.append("-+-".join("-" * w for w in widths))
        lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    text = "NULL" if value is None else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


@table_app.command("history")
@reports_errors
def table_history(
    ctx: typer.Context,
    uri: TableArg,
    *,
    limit: Annotated[int | None, typer.Option("--limit", help="Newest N commits.", min=1)] = None,
    as_json: JsonOption = False,
) -> None:
    """The table's commits, newest first: version, time, operation, batchml metadata."""
    from batchml.jobs import table

    state: RunContext = ctx.find_object(RunContext)
    commits = table.history(state.tables(), state.table_uri(uri), limit=limit)
    emit({"uri": state.table_uri(uri), "commits": commits}, as_json, _render_history)


def _render_history(data: dict[str, Any]) -> str:
    lines = [f"{'version':>7}  {'time (UTC)':<23}  {'operation':<12}  details"]
    for commit in data["commits"]:
        when = commit.get("timestamp")
        if isinstance(when, int):
            when = datetime.fromtimestamp(when / 1000, UTC).isoformat(timespec="milliseconds")
        details = commit.get("batchml") or commit.get("operationParameters") or {}
        lines.append(
            f"{commit.get('version'):>7}  {str(when)[:23]:<23}  "
            f"{commit.get('operation', ''):<12}  {json.dumps(details, default=str)}"
        )
    return "\n".join(lines)


@table_app.command("export")
@reports_errors
def table_export(
    ctx: typer.Context,
    uri: TableArg,
    *,
    to: Annotated[Path, typer.Option("--to", help="New folder for the exported files.")],
    file_format: Annotated[
        str, typer.Option("--format", help="parquet or csv (with a header).")
    ] = "parquet",
    version: VersionOption = None,
    timestamp: TimestampOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write one snapshot's rows as a plain Parquet or CSV folder."""
    from batchml.jobs import table

    state: RunContext = ctx.find_object(RunContext)
    pinned_version, pinned_time = pin_version(version, timestamp)
    result = table.export(
        state.spark(), state.tables(), state.table_uri(uri), to=to, file_format=file_format,
        version=pinned_version, timestamp=pinned_time,
    )  # fmt: skip
    emit(result, as_json, lambda d: f"exported {d['uri']}@{d['version']} to {d['to']} "
         f"({d['files']} {d['format']} files)")  # fmt: skip


@table_app.command("vacuum")
@reports_errors
def table_vacuum(
    ctx: typer.Context,
    uri: TableArg,
    *,
    retain_hours: Annotated[
        float,
        typer.Option(
            "--retain-hours",
            help="Keep unreferenced files younger than this (hours, fractions allowed).",
        ),
    ] = 168,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List, do not delete.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Allow a retention below 168 hours.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Remove files no version within the retention needs, and stale staging folders.

    Versions a registered model was trained on, and files of writers still running,
    are always kept.
    """
    from batchml.jobs import table
    from batchml.jobs.cli_models import registry_of

    state: RunContext = ctx.find_object(RunContext)
    result, kept = table.vacuum(
        state.tables(), state.table_uri(uri), retain_hours=retain_hours, dry_run=dry_run,
        pinned=registry_of(state).pinned_table_versions(), force=force,
    )  # fmt: skip
    data = {"uri": result.uri, "dry_run": result.dry_run, "files": result.files,
            "staging_dirs": result.staging_dirs, "kept_versions": kept}  # fmt: skip
    verb = "would remove" if result.dry_run else "removed"
    emit(data, as_json, lambda d: f"{verb} {len(d['files'])} files and "
         f"{len(d['staging_dirs'])} staging folders from {d['uri']}; kept versions "
         f"{d['kept_versions'] or 'none'} for registered models")  # fmt: skip
