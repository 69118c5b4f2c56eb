"""The Delta transaction log through delta-rs: snapshots, protocol checks, history, schemas.

delta-rs validates little of what it is given, so the checks it skips live here:
reader features batchml cannot honour, versions and timestamps that do not exist.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import DeltaError, TableNotFoundError
from pyspark.sql import types as T

from batchml.lib.delta import defects
from batchml.lib.delta.paths import is_local, local_path, relative_file
from batchml.lib.platform import storage
from batchml.lib.platform.errors import InputError, first_line

# Reader features the embedded reader honours: it reads the log through delta-rs and the
# data as plain Parquet, so only features that change neither are safe.
SUPPORTED_READER_FEATURES = frozenset({"timestampNtz", "v2Checkpoint", "vacuumProtocolCheck"})
# Writer features the embedded writer honours (appendOnly is enforced by delta-rs itself).
SUPPORTED_WRITER_FEATURES = frozenset(
    {
        "appendOnly",
        "timestampNtz",
        "v2Checkpoint",
        "vacuumProtocolCheck",
        "invariants",
        "checkpointProtection",
    }
)
_UNSUPPORTED_FEATURE = re.compile(r"Feature '([^']+)' is not supported")
FEATURE_NAMES = {
    "deletionVectors": "deletion vectors",
    "columnMapping": "column mapping",
    "typeWidening": "type widening",
    "typeWidening-preview": "type widening",
}


@dataclass(frozen=True)
class Snapshot:
    """One version of a table as delta-rs loaded it."""

    uri: str
    table: DeltaTable

    @property
    def version(self) -> int:
        return self.table.version()

    @property
    def partition_columns(self) -> list[str]:
        return list(self.table.metadata().partition_columns)

    def spark_schema(self) -> T.StructType:
        """The table schema as Spark sees it (Delta's schema JSON is Spark's)."""
        return T.StructType.fromJson(json.loads(self.table.schema().to_json()))

    def add_actions(self) -> pa.Table:
        """Active files: path, size_bytes, num_records, and `partition.<col>` typed values."""
        return arrow_table(self.table.get_add_actions(flatten=True))


def delta_table(uri: str, **kwargs: Any) -> DeltaTable:
    """The table through delta-rs, reached as every other layer reaches the store
    (`lib/platform/storage.py`: `s3a://` given as `s3://`, the run's storage options)."""
    return DeltaTable(
        storage.delta_rs_uri(uri), storage_options=storage.delta_options(uri), **kwargs
    )


def table_exists(uri: str) -> bool:
    """Whether a Delta table (a `_delta_log` with at least one commit) is at `uri`."""
    if storage.is_remote(uri):
        # delta-rs says "no" for an unreachable store or a missing bucket alike: ask the
        # store first, so those are errors naming the cause, not "no table there"
        storage.is_dir(storage.join(uri, "_delta_log"))
    return DeltaTable.is_deltatable(
        storage.delta_rs_uri(uri), storage_options=storage.delta_options(uri)
    )


def open_snapshot(
    uri: str, *, version: int | None = None, timestamp: datetime | None = None
) -> Snapshot:
    """Load a table at its latest version, at a version, or as of a timestamp.

    Raises:
        InputError: no table there, no such version, or a timestamp outside the history.
    """
    if version is not None and timestamp is not None:
        raise InputError("give a version or a timestamp, not both")
    try:
        table = delta_table(uri)
    except TableNotFoundError:
        raise InputError(f"no Delta table at {uri}") from None
    except DeltaError as exc:
        unsupported = _UNSUPPORTED_FEATURE.search(str(exc))
        if unsupported:
            raise _unsupported(uri, f"reader feature {unsupported.group(1)}") from None
        table = _open_past_defect(uri, exc, version)
    latest = table.version()
    if timestamp is not None:
        version = version_at(table, uri, timestamp)
    if version is not None and version != latest:
        if version < 0 or version > latest:
            raise InputError(f"table {uri} has no version {version} (latest is {latest})")
        try:
            table.load_as_version(version)
        except DeltaError as exc:
            raise InputError(
                f"table {uri} version {version} cannot be loaded (its log may have been "
                f"cleaned up): {str(exc).splitlines()[0]}"
            ) from None
    return Snapshot(uri, table)


def _open_past_defect(uri: str, exc: DeltaError, version: int | None) -> DeltaTable:
    """The table delta-rs refused to open, when the refusal is only a stale
    `_last_checkpoint` hint and every commit is there (delta-rs trusts the hint, Delta's
    connector lists the log and reads the table); otherwise the defect, named.

    Raises:
        InputError: an empty schema, a gap in the log, a checkpoint gone with the
            commits before it, or whatever else delta-rs said (its first line).
    """
    listing = defects.local_listing(local_path(uri)) if is_local(uri) else None
    if defects.is_empty_schema(str(exc)):
        latest = listing.latest if listing else None
        at = latest if version is None else version
        raise defects.TableDefect(defects.empty_schema(uri, at)) from None
    if listing is not None:
        problem = defects.log_problem(uri, listing)
        if problem:
            raise defects.TableDefect(problem) from None
        if listing.stale_hint and listing.commits and min(listing.commits) == 0:
            latest, hint = listing.latest, listing.hint
            assert latest is not None and hint is not None  # commits listed, a hint named
            try:  # loading from version 0 onwards lists the commits, not the hint
                table = delta_table(uri, version=0)
                table.load_as_version(latest)
                return table
            except DeltaError:
                pass
            raise defects.TableDefect(
                f"table {uri}: checkpoint {defects.checkpoint_name(hint)} (version "
                f"{hint}, named in _delta_log/{defects.LAST_CHECKPOINT}) is missing; "
                "the commits are all there, so removing that hint file makes it readable"
            ) from None
    raise InputError(f"cannot open Delta table {uri}: {first_line(exc)}") from None


@dataclass(frozen=True)
class FileChanges:
    """The data files a table gained and lost between two versions (relative paths)."""

    since: int
    version: int
    added: list[str]
    removed: list[str]
    added_rows: int | None = None  # from the added files' statistics (None: not all have)


def counted_rows(actions: pa.Table) -> int | None:
    """Rows of these add actions by their statistics; None when a file has none."""
    counts = actions.column("num_records").to_pylist() if actions.num_rows else []
    return None if any(c is None for c in counts) else sum(counts)


def file_changes(uri: str, since: int, version: int) -> FileChanges:
    """Files added and removed between version `since` and `version`, from the log's two
    snapshots (an overwrite or a replace in between shows as removed files).

    Raises:
        InputError: a version is missing, or delta-rs cannot open the table.
    """
    before = open_snapshot(uri, version=since)
    after = open_snapshot(uri, version=version)
    check_readable(after)
    old = set(before.add_actions().column("path").to_pylist())
    actions = after.add_actions()
    paths = actions.column("path").to_pylist()
    new = set(paths)
    added = actions.filter(pa.array([p not in old for p in paths], pa.bool_()))
    return FileChanges(
        since,
        version,
        sorted(relative_file(p) for p in new - old),
        sorted(relative_file(p) for p in old - new),
        counted_rows(added),
    )


def version_at(table: DeltaTable, uri: str, timestamp: datetime) -> int:
    """The latest version committed at or before `timestamp` (see `version_as_of`)."""
    commits = [(entry["version"], entry["timestamp"]) for entry in table.history()]
    return version_as_of(commits, uri, timestamp)


def version_as_of(commits: list[tuple[int, int]], uri: str, timestamp: datetime) -> int:
    """The latest of `commits` ((version, epoch millis) pairs) at or before `timestamp`.

    A timestamp before the first available commit is an error (delta-rs would silently
    clamp it to the first version); one after the last commit reads the latest version.
    """
    when = timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=UTC)
    millis = int(when.timestamp() * 1000)
    ordered = sorted(commits)
    first_version, first_ts = ordered[0]
    if millis < first_ts:
        raise InputError(
            f"table {uri} has no version as of {when.isoformat()}: its first available commit "
            f"(version {first_version}) is at {_iso(first_ts)}"
        )
    return [version for version, ts in ordered if ts <= millis][-1]


def _iso(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="milliseconds")


def check_readable(snapshot: Snapshot) -> None:
    """Refuse, before reading a byte, a table whose reader features the embedded reader lacks."""
    protocol = snapshot.table.protocol()
    config = snapshot.table.metadata().configuration
    mapping = config.get("delta.columnMapping.mode", "none")
    if mapping not in ("none", None):
        raise _unsupported(snapshot.uri, "column mapping", f"mode {mapping}")
    unknown = sorted(set(protocol.reader_features or []) - SUPPORTED_READER_FEATURES)
    if unknown:
        raise _unsupported(
            snapshot.uri, FEATURE_NAMES.get(unknown[0], f"reader feature {unknown[0]}")
        )
    if protocol.min_reader_version > 3:
        raise _unsupported(snapshot.uri, f"reader version {protocol.min_reader_version}")


def check_writable(snapshot: Snapshot) -> None:
    """Refuse writes to a table with writer features the embedded writer would not honour."""
    check_readable(snapshot)
    protocol = snapshot.table.protocol()
    unknown = sorted(set(protocol.writer_features or []) - SUPPORTED_WRITER_FEATURES)
    if unknown:
        name = FEATURE_NAMES.get(unknown[0], f"writer feature {unknown[0]}")
        raise _unsupported(snapshot.uri, name, action="write")
    config = snapshot.table.metadata().configuration
    if any(key.startswith("delta.constraints.") for key in config):
        raise _unsupported(snapshot.uri, "CHECK constraints", action="write")
    if config.get("delta.enableChangeDataFeed", "false").lower() == "true":
        raise _unsupported(snapshot.uri, "change data feed", action="write")
    for field in json.loads(snapshot.table.schema().to_json())["fields"]:
        meta = field.get("metadata", {})
        if "delta.generationExpression" in meta or "delta.identity.start" in meta:
            raise _unsupported(snapshot.uri, f"generated column {field['name']}", action="write")


class UnsupportedFeature(InputError):
    """The table uses a Delta feature the embedded backend (delta-rs log, plain Parquet
    reads) cannot honour; Delta's Spark connector can."""


def _unsupported(
    uri: str, feature: str, detail: str = "", *, action: str = "read"
) -> UnsupportedFeature:
    extra = f" ({detail})" if detail else ""
    return UnsupportedFeature(
        f"table {uri} uses {feature}{extra}, which the embedded Delta backend cannot {action} "
        "correctly; use delta.backend = 'connector' (Delta's Spark connector: on a cluster, "
        "or here once `batchml doctor --fetch-delta` has cached its jar)"
    )


def delta_schema(schema: T.StructType) -> DeltaSchema:
    """A Spark schema as a Delta schema, every field nullable (as Delta's Spark writer does)."""
    return DeltaSchema.from_json(nullable(schema).json())


def nullable(data_type: Any) -> Any:
    """The same Spark type with every field, element and value nullable."""
    if isinstance(data_type, T.StructType):
        return T.StructType(
            [T.StructField(f.name, nullable(f.dataType), True, f.metadata) for f in data_type]
        )
    if isinstance(data_type, T.ArrayType):
        return T.ArrayType(nullable(data_type.elementType), True)
    if isinstance(data_type, T.MapType):
        return T.MapType(nullable(data_type.keyType), nullable(data_type.valueType), True)
    return data_type


def history(uri: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Commit infos, newest first, each with its `version`.

    A commit written through Delta's Spark connector carries batchml's commit metadata in
    `userMetadata` (JSON); it is lifted into `batchml`, where the embedded writer puts it.
    """
    commits = open_snapshot(uri).table.history(limit)
    for commit in commits:
        if "batchml" not in commit and commit.get("userMetadata"):
            try:
                lifted = json.loads(commit["userMetadata"]).get("batchml")
            except (json.JSONDecodeError, AttributeError):
                lifted = None
            if isinstance(lifted, dict):
                commit["batchml"] = lifted
    return commits


def table_rows(uri: str, where: str | None = None) -> list[dict[str, Any]]:
    """Every row (matching the SQL `where`) of a small table at its latest version (the
    registry's index, the monitoring table), read by delta-rs without Spark. Timestamps
    come back naive in UTC, as a UTC Spark session collects them.

    Raises:
        InputError: no table there; UnsupportedFeature: a feature delta-rs reads wrong.
    """
    snapshot = open_snapshot(uri)
    check_readable(snapshot)
    sql = "SELECT * FROM t" + (f" WHERE {where}" if where else "")
    return [spark_like(row) for row in _query(snapshot, sql).to_pylist()]


def preview(snapshot: Snapshot, limit: int) -> tuple[int, list[dict[str, Any]]]:
    """(row count, the first `limit` rows) of a snapshot: the count from the log's
    per-file record counts (counted by DataFusion where a writer left them out), the rows
    from the first files.

    Raises:
        UnsupportedFeature: a feature (deletion vectors, column mapping) that would make
            plain Parquet reads wrong.
    """
    check_readable(snapshot)
    actions = snapshot.add_actions()
    if is_local(snapshot.uri):  # else DataFusion fails on the first gone file, unnamed
        root = local_path(snapshot.uri)
        gone = defects.first_missing(
            (relative_file(p) for p in actions.column("path").to_pylist()), root=root
        )
        if gone is not None:
            raise defects.TableDefect(defects.missing_file(snapshot.uri, snapshot.version, gone))
    counts = (
        actions.column("num_records").to_pylist() if "num_records" in actions.column_names else []
    )
    if actions.num_rows == 0:
        count = 0
    elif len(counts) == actions.num_rows and all(isinstance(c, int) for c in counts):
        count = sum(counts)
    else:
        count = _query(snapshot, "SELECT count(*) AS n FROM t").column("n")[0].as_py()
    columns = ", ".join(_quoted(field.name) for field in snapshot.spark_schema())
    rows = []
    if limit and count:
        rows = _query(snapshot, f"SELECT {columns} FROM t LIMIT {int(limit)}").to_pylist()
    return count, [spark_like(row) for row in rows]


def _query(snapshot: Snapshot, sql: str) -> pa.Table:
    """Run SQL over the snapshot (as table `t`) in delta-rs's DataFusion engine.

    Not `to_pyarrow_table()` / `to_pyarrow_dataset()`: those read through a filesystem
    written in Python, whose Arrow I/O threads crash the interpreter at exit (abort or
    segfault in 5 runs of 8 here, deltalake 1.6); DataFusion reads in Rust.
    """
    table = arrow_table(QueryBuilder().register("t", snapshot.table).execute(sql))
    # UTC timestamps as naive UTC wall times, as a UTC Spark session collects them (and
    # without the time zone, pyarrow converts them without importing pandas: ~1 s)
    naive = pa.schema(
        [
            f.with_type(pa.timestamp(f.type.unit)) if pa.types.is_timestamp(f.type) else f
            for f in table.schema
        ]
    )
    return table.cast(naive)


def arrow_table(stream: Any) -> pa.Table:
    """A pyarrow Table from delta-rs's Arrow results (arro3 tables and readers), through
    the Arrow stream interface: `pa.table()` would first import pandas (~1 s)."""
    return pa.RecordBatchReader.from_stream(stream).read_all()


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def spark_like(value: Any) -> Any:
    """An Arrow value as a UTC Spark session collects it: aware timestamps as naive UTC,
    maps as dicts."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, dict):
        return {key: spark_like(item) for key, item in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(item, tuple) and len(item) == 2 for item in value):
            return {key: spark_like(item) for key, item in value}
        return [spark_like(item) for item in value]
    return value


def column_centres(snapshot: Snapshot, columns: list[str]) -> dict[str, float]:
    """A rough centre of each numeric column, from the log's per-file min/max statistics
    (no data read): the mean of the files' mid-ranges. Columns without stats are left out."""
    actions = snapshot.add_actions()
    names = set(actions.column_names)
    centres: dict[str, float] = {}
    for column in columns:
        if f"min.{column}" not in names or f"max.{column}" not in names:
            continue
        lows = actions.column(f"min.{column}").to_pylist()
        highs = actions.column(f"max.{column}").to_pylist()
        mids = [
            (float(lo) + float(hi)) / 2
            for lo, hi in zip(lows, highs, strict=True)
            if isinstance(lo, int | float)
            and isinstance(hi, int | float)
            and math.isfinite(float(lo))
            and math.isfinite(float(hi))
        ]
        if mids:
            centres[column] = sum(mids) / len(mids)
    return centres
