"""`batchml table show | history | export | vacuum`: look into Delta tables, export a
snapshot, vacuum.

`show` and `history` read the Delta log (and, for `show`, the first rows' files) with
delta-rs: no Spark, no JVM, an answer in about a second. A table whose features delta-rs
would read wrong (deletion vectors, column mapping) is shown through the Delta backend.
`export` and `vacuum` run on Spark and the configured backend."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from batchml.jobs.app import (
    JsonOption,
    TableArg,
    TimestampOption,
    VersionOption,
    emit,
    pin_version,
    recorded,
    reports_errors,
    run_context,
)
from batchml.lib.delta import DeltaTables, VacuumResult, delta_log
from batchml.lib.delta.delta_log import UnsupportedFeature, open_snapshot, preview
from batchml.lib.delta.paths import normalize_uri
from batchml.lib.platform import storage
from batchml.lib.platform.errors import ConfigError, InputError
from batchml.lib.platform.logs import get_logger

log = get_logger(__name__)
EXPORT_FORMATS = ("parquet", "csv")
MIN_RETAIN_HOURS = 168  # Delta's default retention; less needs --force

app = typer.Typer(help="Look into Delta tables, export a snapshot, vacuum.", no_args_is_help=True)


@dataclass(frozen=True)
class TableSummary:
    """What `table show` prints."""

    uri: str
    version: int
    schema: list[dict[str, Any]]
    row_count: int
    rows: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "version": self.version,
            "schema": self.schema,
            "row_count": self.row_count,
            "rows": self.rows,
        }


def show(
    uri: str,
    *,
    version: int | None = None,
    timestamp: datetime | None = None,
    limit: int = 10,
    tables: Callable[[], DeltaTables],
) -> TableSummary:
    """Schema, version, row count and the first `limit` rows of one snapshot.

    Read from the log by delta-rs; `tables` (the run's Delta backend, started only when
    needed) reads a table delta-rs cannot read correctly.
    """
    try:
        snapshot = open_snapshot(uri, version=version, timestamp=timestamp)
        count, rows = preview(snapshot, limit)
    except UnsupportedFeature:
        return _show_through_backend(tables(), uri, version, timestamp, limit)
    schema = snapshot.spark_schema()
    return TableSummary(snapshot.uri, snapshot.version, _fields(schema), count, rows)


def _show_through_backend(
    tables: DeltaTables, uri: str, version: int | None, timestamp: datetime | None, limit: int
) -> TableSummary:
    read = tables.read(uri, version=version, timestamp=timestamp)
    rows = [row.asDict(recursive=True) for row in read.df.limit(limit).collect()]
    return TableSummary(read.uri, read.version, _fields(read.df.schema), read.df.count(), rows)


def _fields(schema: T.StructType) -> list[dict[str, Any]]:
    return [
        {"name": f.name, "type": f.dataType.simpleString(), "nullable": f.nullable} for f in schema
    ]


def history(uri: str, *, limit: int | None = None) -> list[dict[str, Any]]:
    """The table's commits, newest first (from the log, by delta-rs)."""
    return delta_log.history(uri, limit)


def export(
    spark: SparkSession,
    tables: DeltaTables,
    uri: str,
    *,
    to: Path | str,
    file_format: str = "parquet",
    version: int | None = None,
    timestamp: datetime | None = None,
) -> dict[str, Any]:
    """Write one snapshot's rows as a plain Parquet or CSV folder (Spark writes in parallel)."""
    if file_format not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {file_format!r} (use parquet or csv)")
    to = str(to)
    if storage.exists(to):
        raise InputError(f"export target {to} already exists; choose a new folder")
    read = tables.read(uri, version=version, timestamp=timestamp)
    writer = read.df.write.mode("errorifexists")
    if file_format == "csv":
        writer.option("header", "true").csv(storage.spark_uri(to))
    else:
        writer.parquet(storage.spark_uri(to))
    files = [
        e.uri
        for e in storage.list_files(to, recursive=False)
        if e.uri.endswith((".parquet", ".csv"))
    ]
    log.info("exported", extra={"table": read.uri, "version": read.version, "to": str(to)})
    return {
        "uri": read.uri,
        "version": read.version,
        "to": str(to),
        "format": file_format,
        "files": len(files),
    }


def vacuum(
    tables: DeltaTables,
    uri: str,
    *,
    retain_hours: float = 168,
    dry_run: bool = False,
    keep_versions: list[int] | None = None,
    pinned: dict[str, set[int]] | None = None,
    force: bool = False,
) -> tuple[VacuumResult, list[int]]:
    """Remove unreferenced files older than the retention, and stale staging folders.

    `pinned` (table -> versions, from the model registry) names versions whose files must
    survive, so that a registered model can still be retrained from its training data.
    A retention under `MIN_RETAIN_HOURS` needs `force`: a reader or a time-travel query
    still on an older version would find its files gone (Delta's retentionDurationCheck).
    Returns the result and the versions kept.

    Raises:
        ConfigError: a negative retention, or one under the floor without `force`.
    """
    if retain_hours < 0:
        raise ConfigError(f"--retain-hours must be 0 or more, not {retain_hours:g}")
    if retain_hours < MIN_RETAIN_HOURS and not force:
        raise ConfigError(
            f"--retain-hours {retain_hours:g} is under {MIN_RETAIN_HOURS} hours: readers of "
            "older versions (a running job, a time-travel query) could lose their files; "
            "add --force if none can be running"
        )
    keep = set(keep_versions or [])
    key = normalize_uri(uri)
    for table, versions in (pinned or {}).items():
        if normalize_uri(table) == key:
            keep |= versions
    kept = sorted(keep)
    result = tables.vacuum(
        uri, retain_hours=retain_hours, dry_run=dry_run, keep_versions=kept or None
    )
    return result, kept


@app.command("show")
@reports_errors
def show_command(
    ctx: typer.Context,
    uri: TableArg,
    *,
    version: VersionOption = None,
    timestamp: TimestampOption = None,
    limit: Annotated[int, typer.Option("--limit", help="Rows to show.", min=0)] = 10,
    as_json: JsonOption = False,
) -> None:
    """Schema, version, row count and first rows of a table snapshot."""
    state = run_context(ctx)
    pinned_version, pinned_time = pin_version(version, timestamp)
    summary = show(
        state.location(uri),
        version=pinned_version,
        timestamp=pinned_time,
        limit=limit,
        tables=state.tables,
    )
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


@app.command("history")
@reports_errors
def history_command(
    ctx: typer.Context,
    uri: TableArg,
    *,
    limit: Annotated[int | None, typer.Option("--limit", help="Newest N commits.", min=1)] = None,
    as_json: JsonOption = False,
) -> None:
    """The table's commits, newest first: version, time, operation, batchml metadata."""
    state = run_context(ctx)
    location = state.location(uri)
    emit({"uri": location, "commits": history(location, limit=limit)}, as_json, _render_history)


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


@app.command("export")
@reports_errors
def export_command(
    ctx: typer.Context,
    uri: TableArg,
    *,
    to: Annotated[
        str, typer.Option("--to", help="New folder (or object-store URI) for the files.")
    ],
    file_format: Annotated[
        str, typer.Option("--format", help="parquet or csv (with a header).")
    ] = "parquet",
    version: VersionOption = None,
    timestamp: TimestampOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write one snapshot's rows as a plain Parquet or CSV folder."""
    state = run_context(ctx)
    pinned_version, pinned_time = pin_version(version, timestamp)
    result = export(
        state.spark(),
        state.tables(),
        state.location(uri),
        to=to if storage.is_remote(to) else Path(to).expanduser().resolve(),
        file_format=file_format,
        version=pinned_version,
        timestamp=pinned_time,
    )
    emit(
        result,
        as_json,
        lambda d: (
            f"exported {d['uri']}@{d['version']} to {d['to']} ({d['files']} {d['format']} files)"
        ),
    )


@app.command("vacuum")
@recorded("table vacuum")
@reports_errors
def vacuum_command(
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

    state = run_context(ctx)
    result, kept = vacuum(
        state.tables(),
        state.location(uri),
        retain_hours=retain_hours,
        dry_run=dry_run,
        pinned=state.registry().pinned_table_versions(),
        force=force,
    )
    data = {
        "uri": result.uri,
        "dry_run": result.dry_run,
        "files": result.files,
        "staging_dirs": result.staging_dirs,
        "kept_versions": kept,
    }
    verb = "would remove" if result.dry_run else "removed"
    emit(
        data,
        as_json,
        lambda d: (
            f"{verb} {len(d['files'])} files and "
            f"{len(d['staging_dirs'])} staging folders from {d['uri']}; kept versions "
            f"{d['kept_versions'] or 'none'} for registered models"
        ),
    )
