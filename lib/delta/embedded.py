"""The embedded Delta backend: delta-rs keeps the transaction log, Spark moves the data.

Reads take the active files of a version from delta-rs and let Spark read them in
parallel with the log's schema. Writes let Spark write Parquet into a staging folder
inside the table, move the files into place, and commit exactly those files (with
footer statistics) in one delta-rs transaction. No row passes through the driver.
"""

from __future__ import annotations

import random
import shutil
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from functools import reduce
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import CommitProperties
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import (
    AddAction,
    RemoveAction,
    Transaction,
    create_table_with_add_actions,
)
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml.lib.delta import defects, delta_log
from batchml.lib.delta.api import (
    WRITE_MODES,
    CommitConflict,
    TableRead,
    VacuumResult,
    WriteMode,
    WriteResult,
    WriteToken,
)
from batchml.lib.delta.paths import (
    hadoop_path,
    is_local,
    local_path,
    partition_dirs,
    relative_file,
    to_delta_value,
)
from batchml.lib.delta.replace import (
    affected_files,
    check_predicate,
    check_rows_match,
    quoted,
)
from batchml.lib.delta.staging import (
    REMOTE_STAGE_PREFIX,
    STAGING_DIR,
    StagedFile,
    WritePlan,
    add_columns,
    delta_type,
    hive_layout_matches,
    move_into_place,
    plan_write,
    remove_empty_dirs,
    remove_files,
    remove_if_empty,
    write_claim,
    write_remote_claim,
    written_files,
)
from batchml.lib.delta.stats import footer_stats
from batchml.lib.delta.vacuum import vacuum_root
from batchml.lib.platform import storage
from batchml.lib.platform.errors import InputError, first_line
from batchml.lib.platform.logs import get_logger
from batchml.lib.spark.jvm import busy_task_threads, running_tasks

log = get_logger(__name__)

MAX_COMMIT_ATTEMPTS = 8


class EmbeddedDelta:
    """Delta tables through delta-rs (log) and Spark (data)."""

    name = "embedded"

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark
        # where the last write spent its time: parquet_write, stats, commit (seconds)
        self.last_write_seconds: dict[str, float] = {}

    # ----------------------------------------------------------------- inspect
    def exists(self, uri: str) -> bool:
        return delta_log.table_exists(_root(uri))

    def has_token(self, uri: str, token: WriteToken) -> bool:
        root = _root(uri)
        return delta_log.table_exists(root) and _token_committed(
            delta_log.open_snapshot(root), token
        )

    def version(self, uri: str) -> int | None:
        root = _root(uri)
        return delta_log.open_snapshot(root).version if delta_log.table_exists(root) else None

    def history(self, uri: str, limit: int | None = None) -> list[dict[str, Any]]:
        return delta_log.history(_root(uri), limit)

    def column_centres(self, uri: str, version: int, columns: list[str]) -> dict[str, float]:
        snapshot = delta_log.open_snapshot(_root(uri), version=version)
        return delta_log.column_centres(snapshot, columns)

    # -------------------------------------------------------------------- read
    def read(
        self, uri: str, *, version: int | None = None, timestamp: datetime | None = None
    ) -> TableRead:
        """Read a table at its latest version, a version, or as of a timestamp."""
        root = _root(uri)
        snapshot = delta_log.open_snapshot(root, version=version, timestamp=timestamp)
        return self._read_snapshot(root, snapshot)

    def read_added(self, uri: str, since: int, version: int) -> TableRead | None:
        """The rows of the files added between versions `since` and `version`; None when
        files were also removed in between (an overwrite or a replace rewrote rows)."""
        root = _root(uri)
        changes = delta_log.file_changes(root, since, version)
        if changes.removed:
            return None
        snapshot = delta_log.open_snapshot(root, version=version)
        return self._read_snapshot(root, snapshot, only=set(changes.added))

    def _read_snapshot(
        self, root: str, snapshot: delta_log.Snapshot, only: set[str] | None = None
    ) -> TableRead:
        delta_log.check_readable(snapshot)
        schema = snapshot.spark_schema()
        partitions = snapshot.partition_columns
        actions = snapshot.add_actions()
        if only is not None:  # these files only (relative paths)
            keep = [relative_file(p) in only for p in actions.column("path").to_pylist()]
            actions = actions.filter(pa.array(keep, pa.bool_()))
        files = [relative_file(p) for p in actions.column("path").to_pylist()]
        _check_files_present(root, snapshot.version, files)
        log.debug(
            "delta read", extra={"table": root, "version": snapshot.version, "files": len(files)}
        )
        if not files:
            df = self.spark.createDataFrame([], schema)
        elif not partitions:
            df = self.spark.read.schema(schema).parquet(*[_spark_path(root, f) for f in files])
        else:
            values = {
                column: actions.column(f"partition.{column}").to_pylist() for column in partitions
            }
            df = self._read_partitioned(root, schema, partitions, files, values)
        df = df.select(*[quoted(name) for name in schema.fieldNames()])
        return TableRead(df, root, snapshot.version, delta_log.counted_rows(actions))

    def _read_partitioned(
        self,
        root: str,
        schema: T.StructType,
        partitions: list[str],
        files: list[str],
        values: dict[str, list[Any]],
    ) -> DataFrame:
        data_schema = T.StructType([f for f in schema if f.name not in partitions])
        types = {c: schema[c].dataType.typeName() for c in partitions}
        if hive_layout_matches(files, partitions, types, values):
            # Directory names spell the log's values: Spark's own partition discovery
            # types them from the schema and prunes files on partition filters.
            return (
                self.spark.read.schema(schema)
                .option("basePath", hadoop_path(root))
                .parquet(*[_spark_path(root, f) for f in files])
            )
        # Any other layout: read each partition's files and attach its values as literals.
        groups: dict[tuple[Any, ...], list[str]] = defaultdict(list)
        for index, relative in enumerate(files):
            key = tuple(values[c][index] for c in partitions)
            groups[key].append(_spark_path(root, relative))
        frames = []
        for key, paths in groups.items():
            frame = self.spark.read.schema(data_schema).parquet(*paths)
            literals = [
                F.lit(value).cast(schema[column].dataType).alias(column)
                for column, value in zip(partitions, key, strict=True)
            ]
            frames.append(frame.select("*", *literals))
        return reduce(DataFrame.unionByName, frames)

    # ------------------------------------------------------------------- write
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
        """Write a DataFrame as one Delta commit (or none at all).

        Args:
            df: the rows to write.
            uri: the table location (created when absent).
            mode: `append`, `overwrite` (every row replaced), or `replace` (the rows
                matching `replace_where`, a predicate over partition columns).
            partition_by: partition columns of a new table; must match an existing one's.
            replace_where: the predicate of mode `replace`.
            token: idempotency token; a write whose token is committed is a no-op.
            merge_schema: add the data's extra columns to the table schema.
            commit_info: extra metadata stored in the commit (job name, run id, ...).
            overwrite_schema: with mode `overwrite`, replace the table's schema (and
                partitioning, when `partition_by` is given) in the same commit.
            before_commit: called once the data is staged (the Spark job has run, so its
                observed metrics are known) and before anything is committed; if it
                raises, the staged files are removed and nothing is committed.

        Raises:
            InputError: a schema, partition or predicate problem (nothing is written),
                or a conflicting concurrent commit (nothing is committed).
        """
        if mode not in WRITE_MODES:
            raise InputError(f"unknown write mode {mode!r} (use {', '.join(WRITE_MODES)})")
        if (mode == "replace") != (replace_where is not None):
            raise InputError("mode 'replace' needs replace_where, and only it takes one")
        root = _root(uri)
        base = self._current(root)
        if base is not None:
            delta_log.check_writable(base)
            if _token_committed(base, token):
                return _noop(root, base.version, token)
        if overwrite_schema and mode != "overwrite":
            raise InputError("overwrite_schema needs mode 'overwrite'")
        plan = plan_write(df.schema, root, base, partition_by, merge_schema, overwrite_schema)
        if replace_where is not None:
            check_predicate(self.spark, replace_where, plan.schema, plan.partitions, root)

        if storage.is_remote(root):
            return self._write_in_place(
                df, root, base, plan, mode, replace_where, token, commit_info, before_commit
            )
        staging = Path(root) / STAGING_DIR / uuid.uuid4().hex
        # Something unique in our commit's info: the version we made is found by it, not by
        # reading "latest" (a concurrent writer may have committed since), and a failure
        # after the commit can tell whether the log holds our commit.
        commit_id = uuid.uuid4().hex
        moved: list[str] = []
        committing = False
        claim = write_claim(staging)  # tells vacuum this writer is alive, and its files
        staged_all = False
        try:
            staged = self._stage(df, plan, staging)
            staged_all = True
            self._check_staged(staged, root, plan, replace_where, before_commit)
            started = time.perf_counter()
            write_claim(staging, [f.relative for f in staged])
            move_into_place(staging, root, staged, moved)
            committing = True
            info = {**(commit_info or {}), "commit_id": commit_id}  # as before_commit left it
            result = self._commit(root, base, plan, staged, mode, replace_where, token, info)
            self.last_write_seconds["commit"] = time.perf_counter() - started
            return result
        except BaseException:
            # Our files may be removed only while no log entry references them: before
            # the commit, or when the log shows that ours never landed. When that cannot
            # be told (the log unreadable), they stay: unreferenced files harm no reader
            # and `table vacuum` removes them.
            if moved and (not committing or _commit_absent(root, commit_id)):
                remove_files(root, moved)
                remove_empty_dirs(root, moved)
            raise
        finally:
            if not staged_all:  # interrupted: cancelled tasks may still be writing there
                _wait_until_tasks_stop(self.spark)
            shutil.rmtree(staging, ignore_errors=True)
            if not staged_all:
                _sweep_until_quiet(staging)
                _INTERRUPTED.add(staging)  # swept once more when Spark has stopped
            claim.unlink(missing_ok=True)
            remove_if_empty(Path(root) / STAGING_DIR)
            remove_if_empty(Path(root))

    def _write_in_place(
        self,
        df: DataFrame,
        root: str,
        base: delta_log.Snapshot | None,
        plan: WritePlan,
        mode: WriteMode,
        replace_where: str | None,
        token: WriteToken | None,
        commit_info: dict[str, Any] | None,
        before_commit: Callable[[], None] | None,
    ) -> WriteResult:
        """`write` on an object store, where a rename is a copy: Spark writes the files
        into a folder of their own inside the table and they are committed where they
        are (readers see nothing until the commit names them). On any failure before
        the commit, or when the log shows ours never landed, the folder is removed."""
        stage = f"{REMOTE_STAGE_PREFIX}{uuid.uuid4().hex}"
        staging = storage.join(root, stage)
        commit_id = uuid.uuid4().hex
        committing = False
        staged_all = False
        claim = write_remote_claim(root, stage)
        try:
            staged = self._stage(df, plan, staging, prefix=stage)
            staged_all = True
            self._check_staged(staged, root, plan, replace_where, before_commit)
            started = time.perf_counter()
            write_remote_claim(root, stage, [f.relative for f in staged])
            committing = True
            info = {**(commit_info or {}), "commit_id": commit_id}
            result = self._commit(root, base, plan, staged, mode, replace_where, token, info)
            self.last_write_seconds["commit"] = time.perf_counter() - started
            if not result.committed:  # a concurrent run committed our token first
                storage.delete_tree(staging)
            return result
        except BaseException:
            if not committing or _commit_absent(root, commit_id):
                if not staged_all:
                    _wait_until_tasks_stop(self.spark)
                _quietly(storage.delete_tree, staging)
                if not staged_all:  # a cancelled task may still land a file: once more
                    time.sleep(1.0)
                    _quietly(storage.delete_tree, staging)
            raise
        finally:
            _quietly(storage.delete, claim)

    def _check_staged(
        self,
        staged: list[StagedFile],
        root: str,
        plan: WritePlan,
        replace_where: str | None,
        before_commit: Callable[[], None] | None,
    ) -> None:
        """The last checks before a commit: a replace's rows all match its predicate, and
        the caller's own (`before_commit`, e.g. ingest's contract policy)."""
        if replace_where is not None:
            check_rows_match(self.spark, staged, replace_where, plan, root)
        if before_commit is not None:
            before_commit()

    def _current(self, root: str) -> delta_log.Snapshot | None:
        """The snapshot a write starts from (None for a new table)."""
        return delta_log.open_snapshot(root) if delta_log.table_exists(root) else None

    def _stage(
        self, df: DataFrame, plan: WritePlan, staging: Path | str, prefix: str = ""
    ) -> list[StagedFile]:
        """Spark writes the Parquet files; their footers give the statistics. Each file's
        `relative` is below the table root: `prefix` (the stage folder of a write in
        place) then its path below `staging`."""
        ordered = df.select(*[quoted(f.name) for f in plan.schema if f.name in df.columns])
        writer = ordered.write.mode("errorifexists").option("compression", "snappy")
        if plan.partitions:
            writer = writer.partitionBy(*plan.partitions)
        started = time.perf_counter()
        writer.parquet(hadoop_path(str(staging)))
        write_seconds = time.perf_counter() - started
        started = time.perf_counter()
        data_types = {
            f.name: delta_type(f.dataType) for f in plan.schema if f.name not in plan.partitions
        }
        part_types = {c: plan.schema[c].dataType.typeName() for c in plan.partitions}
        staged = []
        for inner, size, mtime_ms, metadata in written_files(str(staging)):
            if metadata.num_rows == 0:
                continue  # Spark writes a schema-only file for an empty DataFrame
            num_records, stats = footer_stats(metadata, data_types)
            values = {
                column: to_delta_value(raw, part_types[column])
                for column, raw in partition_dirs(inner)
            }
            relative = f"{prefix}/{inner}" if prefix else inner
            staged.append(StagedFile(relative, size, mtime_ms, num_records, stats, values))
        self.last_write_seconds = {
            "parquet_write": write_seconds,
            "stats": time.perf_counter() - started,
        }
        log.debug("staged files", extra={"files": len(staged), **self.last_write_seconds})
        return staged

    def _commit(
        self,
        root: str,
        base: delta_log.Snapshot | None,
        plan: WritePlan,
        staged: list[StagedFile],
        mode: WriteMode,
        predicate: str | None,
        token: WriteToken | None,
        commit_info: dict[str, Any],
    ) -> WriteResult:
        adds = [
            AddAction(
                f.relative,
                f.size,
                f.partition_values,
                f.modification_time,
                True,
                f.stats,
            )
            for f in staged
        ]
        info = {"operation": mode, **({"predicate": predicate} if predicate else {}), **commit_info}
        properties = CommitProperties(
            custom_metadata={"batchml": info},
            max_commit_retries=0,  # retried below, where a retry is known to be safe
            app_transactions=[Transaction(token.app_id, token.version)] if token else None,
        )
        rows = sum(f.num_records for f in staged)
        delta_schema = delta_log.delta_schema(plan.schema)
        affected = None
        for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
            try:
                if base is None:
                    create_table_with_add_actions(
                        storage.delta_rs_uri(root),
                        delta_schema,
                        adds,
                        mode="error",
                        partition_by=plan.partitions or None,
                        storage_options=storage.delta_options(root),
                        commit_properties=properties,
                    )
                    removed = 0
                else:
                    if affected is None:
                        affected = affected_files(self.spark, base, mode, predicate, plan)
                    if plan.new_fields:
                        add_columns(base, plan.new_fields)
                        plan = plan.without_new_fields()
                    if plan.replace_schema:  # delta-rs's overwrite: new metadata, all removed
                        base.table.create_write_transaction(
                            # delta-rs annotates a list of adds and removes: adds alone are fine
                            adds,  # type: ignore[arg-type]
                            "overwrite",
                            delta_schema,
                            partition_by=plan.partitions or None,
                            commit_properties=properties,
                        )
                        version = _our_version(root, commit_info["commit_id"])
                        return WriteResult(
                            root,
                            version,
                            True,
                            len(adds),
                            len(affected),
                            rows,
                            "committed (schema replaced)",
                            attempt,
                        )
                    now = int(time.time() * 1000)
                    # delta-rs encodes action paths itself: hand it the plain relative path
                    removes = [
                        RemoveAction(relative_file(p), True, now, size) for p, size in affected
                    ]
                    base.table.create_write_transaction(
                        adds + removes,
                        "append",
                        delta_schema,
                        partition_by=plan.partitions or None,
                        commit_properties=properties,
                    )
                    removed = len(removes)
                version = _our_version(root, commit_info["commit_id"])
                log.info(
                    "delta commit",
                    extra={
                        "table": root,
                        "version": version,
                        "operation": mode,
                        "files_added": len(adds),
                        "files_removed": removed,
                        "rows": rows,
                    },
                )
                return WriteResult(
                    root, version, True, len(adds), removed, rows, "committed", attempt
                )
            except (CommitFailedError, DeltaError) as exc:
                if base is not None and not _is_conflict(exc):
                    raise InputError(f"commit to table {root} failed: {first_line(exc)}") from None
                if base is None and not delta_log.table_exists(root):
                    raise InputError(f"creating table {root} failed: {first_line(exc)}") from None
                if attempt == MAX_COMMIT_ATTEMPTS:
                    raise CommitConflict(
                        f"commit to table {root} kept conflicting with concurrent writers "
                        f"({attempt} attempts); nothing was committed"
                    ) from None
                fresh = delta_log.open_snapshot(root)
                if _token_committed(fresh, token):
                    remove_files(root, [f.relative for f in staged])
                    return _noop(root, fresh.version, token)
                if base is None:  # someone created the table first: write into theirs
                    delta_log.check_writable(fresh)
                    plan = plan_write(plan.schema, root, fresh, plan.partitions, merge_schema=False)
                elif mode != "append":
                    now_affected = affected_files(self.spark, fresh, mode, predicate, plan)
                    if set(now_affected) != set(affected or []):
                        raise CommitConflict(
                            f"commit to table {root} conflicts with version {fresh.version}, "
                            f"which changed the files this {mode} replaces; nothing was "
                            "committed (rerun the job)"
                        ) from None
                log.info(
                    "delta commit conflict, retrying",
                    extra={"table": root, "attempt": attempt, "latest": fresh.version},
                )
                base = fresh
                time.sleep(random.uniform(0.02, 0.1) * attempt)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ vacuum
    def vacuum(
        self,
        uri: str,
        *,
        retain_hours: float = 168,
        dry_run: bool = False,
        keep_versions: list[int] | None = None,
    ) -> VacuumResult:
        """Remove unreferenced files older than `retain_hours` and stale staging folders.

        Never removes what a live writer staged or moved into place and has not committed
        yet (its claim in the staging folder lists those files). delta-rs counts whole
        hours, so its cut-off is `retain_hours` rounded up: never more removed than asked.
        """
        return vacuum_root(_root(uri), retain_hours, dry_run, keep_versions)


# ----------------------------------------------------------------- small helpers
def _root(uri: str) -> str:
    """A table's location as this backend names it: an absolute local path, or the
    object-store URI as Spark takes it (`s3a://`; deltalake is given `s3://`)."""
    if not is_local(uri):
        storage.store_of(uri)  # an unknown scheme is refused by name
        return storage.spark_uri(uri).rstrip("/")
    return local_path(uri)


def _quietly(action: Callable[[str], None], uri: str) -> None:
    """A clean-up step that must not replace the error being raised: its own failure
    is logged (`table vacuum` removes what it leaves)."""
    try:
        action(uri)
    except Exception as exc:
        log.warning(f"could not remove {uri}: {first_line(exc)}")


def _spark_path(root: str, relative: str) -> str:
    return hadoop_path(f"{root}/{relative}")


def _check_files_present(root: str, version: int, files: list[str]) -> None:
    """A version whose data files were deleted (by hand, or another tool's vacuum) is an
    input error now, not a Spark failure halfway through a job. On an object store, one
    listing of the table's prefix instead of a request per file."""
    if storage.is_remote(root):
        if not files:
            return
        base = root.rstrip("/") + "/"
        present = {e.uri[len(base) :] for e in storage.list_files(root)}
        gone = next((f for f in files if f not in present), None)
    else:
        gone = defects.first_missing(files, root=root)
    if gone is not None:
        raise defects.TableDefect(defects.missing_file(root, version, gone))


def _token_committed(snapshot: delta_log.Snapshot, token: WriteToken | None) -> bool:
    if token is None:
        return False
    committed = snapshot.table.transaction_version(token.app_id)
    return committed is not None and committed >= token.version


def _noop(root: str, version: int, token: WriteToken | None) -> WriteResult:
    message = (
        f"token {token.app_id}@{token.version} is already committed to {root}; nothing written"
        if token
        else "nothing written"
    )
    log.info("delta write skipped", extra={"table": root, "version": version, "reason": message})
    return WriteResult(root, version, False, message=message)


# Staging folders of local writes interrupted in this process (SIGTERM, Ctrl-C, a failed
# job): once the SparkContext has stopped, no task of theirs can write any more.
_INTERRUPTED: set[Path] = set()


def settle_interrupted(spark: SparkSession, timeout: float = 20.0) -> None:
    """Before Spark stops: when a write was interrupted, wait (bounded) until its cancelled
    tasks have left their threads. A task of generated code runs its partition to the
    end, cancelled or not (seconds, on a loaded machine), and stopping the context does
    not wait for it: it would write into the folder `sweep_interrupted` just removed."""
    if not _INTERRUPTED:
        return
    busy = busy_task_threads(spark)
    if busy:
        log.info("waiting for %d cancelled Spark task(s) to stop", busy)
        _wait_until_tasks_stop(spark, timeout)


def sweep_interrupted() -> None:
    """Remove what interrupted writes may still have left in their staging folders, and
    the folders if empty; the run context calls it after stopping Spark. Under load a
    cancelled task can write its first file seconds after the writer gave up waiting."""
    for staging in sorted(_INTERRUPTED):
        shutil.rmtree(staging, ignore_errors=True)
        remove_if_empty(staging.parent)  # the table's _batchml_staging
        remove_if_empty(staging.parent.parent)  # the table folder a first write made
    _INTERRUPTED.clear()


def _sweep_until_quiet(staging: Path, quiet: float = 2.0, timeout: float = 30.0) -> None:
    """Remove `staging` until it has stayed gone for `quiet` seconds (bounded by
    `timeout`). Under load a cancelled task, or the aborting write on the JVM's side,
    can still create a file there after the status tracker said no task runs: two CI
    runs left the folder behind, after one sweep and after a fixed 2 s of sweeps."""
    deadline = time.monotonic() + timeout
    gone_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
            gone_since = time.monotonic()
        elif time.monotonic() - gone_since >= quiet:
            return


def _wait_until_tasks_stop(spark: SparkSession, timeout: float = 30.0) -> None:
    """Wait (bounded) until no Spark job or task runs: job cancellation is asynchronous,
    and a task still finishing would write into a staging folder already removed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            jobs = spark.sparkContext.statusTracker().getActiveJobsIds()
        except Exception:
            return
        running = running_tasks(spark)
        if running is None:
            return
        # the threads' stacks are read only once the tracker counts nothing running
        if not jobs and not running and not busy_task_threads(spark):
            return
        time.sleep(0.1)


def _our_version(root: str, commit_id: str) -> int:
    """The version of the commit that carries `commit_id` (just committed by us)."""
    found = find_commit(root, commit_id)
    if found is None:
        raise InputError(f"table {root}: the commit just made is not in its log")
    return found


def find_commit(root: str, commit_id: str) -> int | None:
    """The version whose batchml commit info holds `commit_id`, looking at the newest
    commits first (ours is among the last few unless many writers committed since)."""
    limit = 16
    while True:
        commits = delta_log.history(root, limit)
        for commit in commits:
            if (commit.get("batchml") or {}).get("commit_id") == commit_id:
                return int(commit["version"])
        if len(commits) < limit:
            return None
        limit *= 8


def _commit_absent(root: str, commit_id: str) -> bool:
    """True only when the table's log was read and holds no commit with `commit_id`."""
    try:
        return not delta_log.table_exists(root) or find_commit(root, commit_id) is None
    except BaseException:
        return False


def _is_conflict(exc: Exception) -> bool:
    text = str(exc).lower()
    return isinstance(exc, CommitFailedError) or "conflict" in text or "already exists" in text
