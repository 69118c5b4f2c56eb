"""The connector Delta backend: Delta Lake's own Spark connector (clusters that have the jar).

Kept thin on purpose: Delta's connector already does versioned reads, `replaceWhere`,
idempotent writes (`txnAppId`/`txnVersion`) and schema merging. What this class adds
is the same API as the embedded backend and errors a user can act on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession

from batchml.lib.delta.api import (
    WRITE_MODES,
    TableRead,
    VacuumResult,
    WriteMode,
    WriteResult,
    WriteToken,
)
from batchml.lib.delta.schemas import compare_schemas
from batchml.lib.errors import InputError, first_line
from batchml.lib.logs import get_logger

log = get_logger(__name__)


def read_options(version: int | None, timestamp: datetime | None) -> dict[str, str]:
    """DataFrameReader options for time travel."""
    if version is not None and timestamp is not None:
        raise InputError("give a version or a timestamp, not both")
    if version is not None:
        return {"versionAsOf": str(version)}
    if timestamp is not None:
        when = timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=UTC)
        return {"timestampAsOf": when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")}
    return {}


def write_options(
    mode: WriteMode,
    replace_where: str | None,
    token: WriteToken | None,
    merge_schema: bool,
    commit_info: dict[str, Any],
) -> tuple[str, dict[str, str]]:
    """(Spark save mode, DataFrameWriter options) for one write."""
    if mode not in WRITE_MODES:
        raise InputError(f"unknown write mode {mode!r} (use {', '.join(WRITE_MODES)})")
    if (mode == "replace") != (replace_where is not None):
        raise InputError("mode 'replace' needs replace_where, and only it takes one")
    info = {"operation": mode, **commit_info}
    if token is not None:
        info["token"] = f"{token.app_id}@{token.version}"
    options = {"userMetadata": json.dumps({"batchml": info})}
    if replace_where is not None:
        options["replaceWhere"] = replace_where
    if token is not None:
        options["txnAppId"] = token.app_id
        options["txnVersion"] = str(token.version)
    if merge_schema:
        options["mergeSchema"] = "true"
    return ("append" if mode == "append" else "overwrite"), options


class ConnectorDelta:
    """Delta tables through `spark.read/write.format("delta")`."""

    name = "connector"

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark

    def _table(self, uri: str):  # -> delta.tables.DeltaTable
        from delta.tables import DeltaTable

        if not DeltaTable.isDeltaTable(self.spark, uri):
            raise InputError(f"no Delta table at {uri}")
        return DeltaTable.forPath(self.spark, uri)

    def exists(self, uri: str) -> bool:
        from delta.tables import DeltaTable

        return bool(DeltaTable.isDeltaTable(self.spark, uri))

    def has_token(self, uri: str, token: WriteToken) -> bool:
        """Whether the table's `txn` action for the token's app id has reached its version,
        whoever wrote it (this backend or the embedded one). The connector keeps txn
        versions internal, so the log is read with delta-rs; where delta-rs cannot open
        the table, the token batchml put into each commit's userMetadata is looked for."""
        if not self.exists(uri):
            return False
        try:
            from deltalake import DeltaTable

            committed = DeltaTable(uri).transaction_version(token.app_id)
            return committed is not None and committed >= token.version
        except Exception:  # a table delta-rs cannot open (a reader feature it lacks)
            log.debug("txn through delta-rs failed; reading commit metadata", exc_info=True)
        for commit in self.history(uri):
            try:
                info = json.loads(commit.get("userMetadata") or "{}").get("batchml", {})
            except json.JSONDecodeError:
                continue
            app_id, _, version = str(info.get("token", "")).rpartition("@")
            if app_id == token.app_id and version.isdigit() and int(version) >= token.version:
                return True
        return False

    def version(self, uri: str) -> int | None:
        if not self.exists(uri):
            return None
        return int(self._table(uri).history(1).collect()[0]["version"])

    def column_centres(self, uri: str, version: int, columns: list[str]) -> dict[str, float]:
        return {}  # the connector's Spark API does not expose file statistics

    def history(self, uri: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits, newest first, each with batchml's commit metadata under `batchml`
        (lifted from userMetadata, where the connector stores it), as the embedded
        backend returns them."""
        frame = self._table(uri).history(limit) if limit else self._table(uri).history()
        commits = [row.asDict(recursive=True) for row in frame.collect()]
        for commit in commits:
            try:
                info = json.loads(commit.get("userMetadata") or "{}").get("batchml")
            except (json.JSONDecodeError, AttributeError):
                info = None
            if isinstance(info, dict):
                commit["batchml"] = info
        return commits

    def read(
        self, uri: str, *, version: int | None = None, timestamp: datetime | None = None
    ) -> TableRead:
        options = read_options(version, timestamp)
        latest = self._require_version(uri)
        if not options:  # pin the latest version so the caller knows what it read
            options = {"versionAsOf": str(latest)}
        elif version is not None and not 0 <= version <= latest:
            raise InputError(f"table {uri} has no version {version} (latest is {latest})")
        try:
            df = self.spark.read.format("delta").options(**options).load(uri)
        except AnalysisException as exc:
            raise InputError(f"cannot read Delta table {uri}: {first_line(exc)}") from None
        read_version = int(options.get("versionAsOf", -1))
        if read_version < 0:
            read_version = self._version_at(uri, options["timestampAsOf"])
        return TableRead(df, uri, read_version)

    def _require_version(self, uri: str) -> int:
        current = self.version(uri)
        if current is None:
            raise InputError(f"no Delta table at {uri}")
        return current

    def _version_at(self, uri: str, timestamp: str) -> int:
        frame = self._table(uri).history().filter(f"timestamp <= '{timestamp}'")
        return int(frame.agg({"version": "max"}).collect()[0][0])

    def write(
        self,
        df: DataFrame,
        uri: str,
        *,
        mode: WriteMode = "append",
        partition_by: list[str] | None = None,
        replace_where: str | None = None,
        token: WriteToken | None = None,
        merge_schema: bool = False,
        commit_info: dict[str, Any] | None = None,
        before_commit: Callable[[], None] | None = None,
        overwrite_schema: bool = False,
    ) -> WriteResult:
        """One `df.write.format("delta")`. Delta's connector stages and commits in one
        call, so `before_commit` runs before the write (it cannot see the write's metrics:
        callers that need them compute them first)."""
        if before_commit is not None:
            before_commit()
        save_mode, options = write_options(
            mode, replace_where, token, merge_schema, commit_info or {}
        )
        before = self.version(uri)
        if before is not None and not overwrite_schema:
            # the same one-line error as the embedded backend, before Spark writes a byte
            current = self.spark.read.format("delta").load(uri).schema
            problem = compare_schemas(current, df.schema).describe(uri, allow_extra=merge_schema)
            if problem:
                raise InputError(problem)
        writer = df.write.format("delta").mode(save_mode).options(**options)
        if overwrite_schema:
            writer = writer.option("overwriteSchema", "true")
        if partition_by and before is None:
            writer = writer.partitionBy(*partition_by)
        try:
            writer.save(uri)
        except AnalysisException as exc:
            raise InputError(f"write to Delta table {uri} failed: {first_line(exc)}") from None
        after = self._require_version(uri)
        if after == before:
            return WriteResult(
                uri, after, False, message="token already committed; nothing written"
            )
        metrics = self._table(uri).history(1).collect()[0]["operationMetrics"] or {}
        return WriteResult(
            uri,
            after,
            True,
            files_added=int(metrics.get("numFiles", 0)),
            files_removed=int(metrics.get("numRemovedFiles", 0)),
            rows_added=int(metrics.get("numOutputRows", 0)),
            message="committed",
        )

    def vacuum(
        self,
        uri: str,
        *,
        retain_hours: float = 168,
        dry_run: bool = False,
        keep_versions: list[int] | None = None,
    ) -> VacuumResult:
        if keep_versions:
            raise InputError(
                "the connector backend cannot keep chosen versions through vacuum; "
                "vacuum this table with delta.backend = 'embedded'"
            )
        if dry_run:
            sql = f"VACUUM delta.`{uri}` RETAIN {retain_hours} HOURS DRY RUN"
            files = [row[0] for row in self.spark.sql(sql).collect()]
            return VacuumResult(uri, True, files)
        self._table(uri).vacuum(retain_hours)
        return VacuumResult(uri, False, [])
