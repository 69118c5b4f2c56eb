"""The connector Delta backend: Delta Lake's own Spark connector (clusters that have the jar).

Kept thin on purpose: Delta's connector already does versioned reads, `replaceWhere`,
idempotent writes (`txnAppId`/`txnVersion`) and schema merging. What this class adds
is the same API as the embedded backend and errors a user can act on.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession

from batchml.lib.delta import connector_defects, defects
from batchml.lib.delta.api import (
    WRITE_MODES,
    TableRead,
    VacuumResult,
    WriteMode,
    WriteResult,
    WriteToken,
)
from batchml.lib.delta.paths import relative_file
from batchml.lib.delta.schemas import compare_schemas
from batchml.lib.platform.errors import InputError, first_line
from batchml.lib.platform.logs import get_logger
from batchml.lib.spark.jvm import hadoop_filesystem

log = get_logger(__name__)


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
    # a fresh id per commit, as the embedded backend writes it
    info: dict[str, Any] = {"operation": mode}
    if replace_where is not None:
        info["predicate"] = replace_where
    info.update(commit_info, commit_id=uuid.uuid4().hex)
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


@contextmanager
def delta_errors(uri: str) -> Iterator[None]:
    """Delta's own refusals of a table (a reader or writer feature newer than this
    connector, a corrupt log), which reach Python as a bare Py4JJavaError, become one-line
    input errors naming the table."""
    from py4j.protocol import Py4JJavaError

    try:
        yield
    except Py4JJavaError as exc:
        message = str(exc.java_exception.getMessage() or "")
        if "[DELTA_" not in message:
            raise
        raise InputError(f"Delta table {uri}: {message.strip().splitlines()[0]}") from None


class ConnectorDelta:
    """Delta tables through `spark.read/write.format("delta")`."""

    name = "connector"

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark

    def _table(self, uri: str):  # -> delta.tables.DeltaTable
        from delta.tables import DeltaTable

        if not self.exists(uri):
            raise InputError(f"no Delta table at {uri}")
        with delta_errors(uri):
            return DeltaTable.forPath(self.spark, uri)

    def exists(self, uri: str) -> bool:
        """Whether `uri` holds a Delta table: its `_delta_log` has a commit or a
        checkpoint. Read through Hadoop's file system, as the connector reads it;
        `DeltaTable.isDeltaTable` loads a snapshot to say the same (a third of a second
        a call, and a job asks several times)."""
        with delta_errors(uri):
            fs, log_dir = hadoop_filesystem(self.spark, uri.rstrip("/") + "/_delta_log")
            if not fs.exists(log_dir):
                return False
            entries = fs.listStatusIterator(log_dir)
            while entries.hasNext():
                name = entries.next().getPath().getName()
                if (name.endswith(".json") and name[:20].isdigit()) or ".checkpoint." in name:
                    return True
            return False

    def has_token(self, uri: str, token: WriteToken) -> bool:
        """Whether the table's `txn` action for the token's app id has reached its version,
        whoever wrote it (this backend or the embedded one). The connector keeps txn
        versions internal, so the log is read with delta-rs; where delta-rs cannot open
        the table, the token batchml put into each commit's userMetadata is looked for."""
        if not self.exists(uri):
            return False
        try:
            from batchml.lib.delta.delta_log import delta_table

            committed = delta_table(uri).transaction_version(token.app_id)
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
        rust = _delta_rs(uri)  # the log alone: no snapshot state to rebuild, no Spark job
        if rust is not None:
            return int(rust.version())
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
        if version is not None and timestamp is not None:
            raise InputError("give a version or a timestamp, not both")
        with connector_defects.named_defects(self.spark, uri, version):
            latest = self._require_version(uri)
            if timestamp is not None:
                # resolved here, as the embedded backend does: the connector refuses a
                # timestamp after the latest commit, which for a reader means "the latest"
                version = self._version_at(uri, timestamp)
            elif version is None:  # pin the latest version so the caller knows what it read
                version = latest
            elif not 0 <= version <= latest:
                raise InputError(f"table {uri} has no version {version} (latest is {latest})")
            try:
                reader = self.spark.read.format("delta").option("versionAsOf", str(version))
                df = reader.load(uri)
            except AnalysisException as exc:
                if defects.is_empty_schema(str(exc)):
                    raise defects.TableDefect(defects.empty_schema(uri, version)) from None
                raise InputError(f"cannot read Delta table {uri}: {first_line(exc)}") from None
            if not df.schema.fields:
                raise defects.TableDefect(defects.empty_schema(uri, version))
            self._check_files_present(uri, version, df)
        return TableRead(df, uri, version)

    def _check_files_present(self, uri: str, version: int, df: DataFrame) -> None:
        """A version whose data files are gone is a named input error at read time (see
        `connector_defects.first_missing` for why here, and what it costs). The file list
        comes from delta-rs where it can open the table (the log alone, no Spark job),
        else from the connector's own snapshot (`inputFiles()`)."""
        from batchml.lib.delta.delta_log import arrow_table

        files = None
        rust = _delta_rs(uri)
        if rust is not None:
            try:
                if rust.version() != version:
                    rust.load_as_version(version)
                actions = arrow_table(rust.get_add_actions(flatten=True))
                files = [relative_file(p) for p in actions.column("path").to_pylist()]
            except Exception:  # a version delta-rs cannot load: ask the connector
                log.debug("delta-rs cannot list the version's files", exc_info=True)
        if files is None:
            files = [_relative(path, uri) for path in df.inputFiles()]
        gone = connector_defects.first_missing(self.spark, uri, files)
        if gone is not None:
            raise defects.TableDefect(defects.missing_file(uri, version, gone))

    def read_added(self, uri: str, since: int, version: int) -> TableRead | None:
        """The rows of the files added between versions `since` and `version`; None when
        files were also removed in between, or when delta-rs (which finds the files from
        the two versions' logs) cannot open the table."""
        from pyspark.sql import functions as F

        from batchml.lib.delta.delta_log import UnsupportedFeature, file_changes

        try:
            changes = file_changes(uri, since, version)
        except UnsupportedFeature:
            return None
        if changes.removed:
            return None
        read = self.read(uri, version=version)
        # Delta names data files with a unique id: the file name alone tells them apart
        names = [path.rsplit("/", 1)[-1] for path in changes.added]
        name = F.element_at(F.split(F.col("_metadata.file_path"), "/"), -1)
        return TableRead(read.df.filter(name.isin(names)), uri, version, changes.added_rows)

    def _require_version(self, uri: str) -> int:
        current = self.version(uri)
        if current is None:
            raise InputError(f"no Delta table at {uri}")
        return current

    def _version_at(self, uri: str, timestamp: datetime) -> int:
        from pyspark.sql import functions as F

        from batchml.lib.delta.delta_log import version_as_of

        # epoch millis, so the session time zone plays no part
        frame = (
            self._table(uri)
            .history()
            .select("version", (F.unix_micros("timestamp") / 1000).cast("long").alias("millis"))
        )
        commits = [(int(row["version"]), int(row["millis"])) for row in frame.collect()]
        return version_as_of(commits, uri, timestamp)

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
        self._check_write(
            df, uri, before, partition_by, replace_where, merge_schema, overwrite_schema
        )
        writer = df.write.format("delta").mode(save_mode).options(**options)
        if overwrite_schema:
            writer = writer.option("overwriteSchema", "true")
        if partition_by and before is None:
            writer = writer.partitionBy(*partition_by)
        try:
            writer.save(uri)
        except AnalysisException as exc:
            if "DELTA_REPLACE_WHERE_MISMATCH" in str(exc) and replace_where is not None:
                # Delta checks this as it writes: its files are left unreferenced (vacuum
                # removes them), the log untouched
                raise InputError(
                    f"data for table {uri} has rows outside the replace predicate "
                    f"{replace_where!r}, e.g. {self._row_outside(df, replace_where)}; "
                    "nothing was committed"
                ) from None
            raise InputError(f"write to Delta table {uri} failed: {first_line(exc)}") from None
        commit_id = json.loads(options["userMetadata"])["batchml"]["commit_id"]
        ours = self._commit_with_id(uri, commit_id, after=before)
        if ours is None:  # Delta skipped the write: the token was committed already
            return WriteResult(
                uri,
                self._require_version(uri),
                False,
                message="token already committed; nothing written",
            )
        metrics = ours["operationMetrics"] or {}
        return WriteResult(
            uri,
            int(ours["version"]),
            True,
            files_added=int(metrics.get("numFiles", 0)),
            files_removed=int(metrics.get("numRemovedFiles", 0)),
            rows_added=int(metrics.get("numOutputRows", 0)),
            message="committed",
        )

    def _commit_with_id(self, uri: str, commit_id: str, after: int | None) -> Any:
        """Our commit (a history row), found by its id: with concurrent writers the latest
        version may be someone else's."""
        from pyspark.sql import functions as F

        frame = self._table(uri).history()
        if after is not None:
            frame = frame.filter(F.col("version") > after)
        found = frame.filter(F.col("userMetadata").contains(commit_id)).collect()
        return found[0] if found else None

    def _row_outside(self, df: DataFrame, predicate: str) -> dict[str, Any]:
        """One row of `df` the predicate does not hold for (for the error message only)."""
        from pyspark.sql import functions as F

        found = df.filter(~F.coalesce(F.expr(predicate), F.lit(False))).limit(1).collect()
        return found[0].asDict() if found else {}

    def _check_write(
        self,
        df: DataFrame,
        uri: str,
        before: int | None,
        partition_by: list[str] | None,
        replace_where: str | None,
        merge_schema: bool,
        overwrite_schema: bool,
    ) -> None:
        """The embedded backend's checks and one-line errors, before Spark writes a byte:
        partition columns a new table can have, the table's own partitioning, the schema,
        a replace predicate over partition columns only (the API's contract; Delta itself
        would take any predicate)."""
        from batchml.lib.delta.replace import check_predicate
        from batchml.lib.delta.schemas import check_partition_columns

        if before is None or overwrite_schema:
            check_partition_columns(df.schema, list(partition_by or []), uri)
            if before is None:
                return
        rust = _delta_rs(uri)
        if rust is not None:
            partitions = list(rust.metadata().partition_columns)
        else:  # a Spark job
            detail = self._table(uri).detail().select("partitionColumns").collect()[0][0]
            partitions = list(detail or [])
        if partition_by is not None and not overwrite_schema and list(partition_by) != partitions:
            raise InputError(
                f"table {uri} is partitioned by ({', '.join(partitions) or 'nothing'}), "
                f"not ({', '.join(partition_by) or 'nothing'})"
            )
        current = self.spark.read.format("delta").load(uri).schema
        if not overwrite_schema:
            problem = compare_schemas(current, df.schema).describe(uri, allow_extra=merge_schema)
            if problem:
                raise InputError(problem)
        if replace_where is not None:
            check_predicate(self.spark, replace_where, current, partitions, uri)

    def vacuum(
        self,
        uri: str,
        *,
        retain_hours: float = 168,
        dry_run: bool = False,
        keep_versions: list[int] | None = None,
    ) -> VacuumResult:
        if keep_versions:
            # Delta's VACUUM cannot keep chosen old versions; the embedded backend's vacuum
            # can, and works on any table delta-rs can open (it refuses the others by name)
            from batchml.lib.delta.embedded import EmbeddedDelta

            return EmbeddedDelta(self.spark).vacuum(
                uri, retain_hours=retain_hours, dry_run=dry_run, keep_versions=keep_versions
            )
        self._require_version(uri)
        # the retention floor is the caller's (`batchml table vacuum --force`), not Delta's;
        # Delta lists the table in as many tasks as parallelPartitionDiscovery.parallelism
        # says, 10,000 by default: minutes on a small machine for a small table
        listing = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
        tasks = str(max(8, 4 * self.spark.sparkContext.defaultParallelism))
        overrides = {"spark.databricks.delta.retentionDurationCheck.enabled": "false"}
        if self.spark.conf.get(listing, "10000") == "10000":
            overrides[listing] = tasks
        previous = {key: self.spark.conf.get(key, None) for key in overrides}
        for key, value in overrides.items():
            self.spark.conf.set(key, value)
        try:
            sql = f"VACUUM delta.`{uri}` RETAIN {retain_hours} HOURS DRY RUN"
            files = sorted(_relative(row[0], uri) for row in self.spark.sql(sql).collect())
            if not dry_run and files:
                self._table(uri).vacuum(retain_hours)
        finally:
            for key, old in previous.items():
                if old is None:
                    self.spark.conf.unset(key)
                else:
                    self.spark.conf.set(key, old)
        return VacuumResult(uri, dry_run, files)


def _relative(path: str, uri: str) -> str:
    """A file Delta's VACUUM names (a full URI) relative to the table's root, as the
    embedded backend names it."""
    file_path, root = urlparse(path).path, urlparse(uri).path.rstrip("/")
    return file_path[len(root) + 1 :] if file_path.startswith(root + "/") else path


def _delta_rs(uri: str):  # -> deltalake.DeltaTable | None
    """The table through delta-rs, for what its log alone answers (version, partition
    columns) without the connector rebuilding a snapshot with a Spark job; None where
    delta-rs cannot open it (a reader feature it lacks, a store it has no credentials
    for): then the connector answers."""
    try:
        from batchml.lib.delta.delta_log import delta_table

        return delta_table(uri)
    except Exception:
        log.debug("delta-rs cannot open the table; asking the connector", exc_info=True)
        return None
