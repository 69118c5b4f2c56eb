"""`batchml table ...`: look into Delta tables, export a snapshot, vacuum."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from batchml.lib.delta import DeltaTables, VacuumResult
from batchml.lib.delta.paths import normalize_uri
from batchml.lib.errors import ConfigError, InputError
from batchml.lib.logs import get_logger

log = get_logger(__name__)
EXPORT_FORMATS = ("parquet", "csv")
MIN_RETAIN_HOURS = 168  # Delta's default retention; less needs --force


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
    tables: DeltaTables,
    uri: str,
    *,
    version: int | None = None,
    timestamp: datetime | None = None,
    limit: int = 10,
) -> TableSummary:
    """Schema, version, row count and the first `limit` rows of one snapshot."""
    read = tables.read(uri, version=version, timestamp=timestamp)
    schema = [
        {"name": f.name, "type": f.dataType.simpleString(), "nullable": f.nullable}
        for f in read.df.schema
    ]
    rows = [row.asDict(recursive=True) for row in read.df.limit(limit).collect()]
    return TableSummary(read.uri, read.version, schema, read.df.count(), rows)


def history(tables: DeltaTables, uri: str, *, limit: int | None = None) -> list[dict[str, Any]]:
    """The table's commits, newest first."""
    return tables.history(uri, limit)


def export(
    spark: SparkSession,
    tables: DeltaTables,
    uri: str,
    *,
    to: Path,
    file_format: str = "parquet",
    version: int | None = None,
    timestamp: datetime | None = None,
) -> dict[str, Any]:
    """Write one snapshot's rows as a plain Parquet or CSV folder (Spark writes in parallel)."""
    if file_format not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {file_format!r} (use parquet or csv)")
    if to.exists():
        raise InputError(f"export target {to} already exists; choose a new folder")
    read = tables.read(uri, version=version, timestamp=timestamp)
    writer = read.df.write.mode("errorifexists")
    if file_format == "csv":
        writer.option("header", "true").csv(str(to))
    else:
        writer.parquet(str(to))
    files = sorted(p.name for p in to.iterdir() if p.suffix in (".parquet", ".csv"))
    log.info("exported", extra={"table": read.uri, "version": read.version, "to": str(to)})
    return {"uri": read.uri, "version": read.version, "to": str(to), "format": file_format,
            "files": len(files)}  # fmt: skip


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
