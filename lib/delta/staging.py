"""The embedded writer's plan and files: schema checks, staged files, hive layouts.

Plain functions over schemas, snapshots and local files; `embedded.py` runs them.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pyspark.sql import types as T

from batchml.lib.delta import delta_log
from batchml.lib.delta.paths import partition_dirs, same_value, typed_value
from batchml.lib.delta.schemas import check_partition_columns, compare_schemas
from batchml.lib.platform import storage
from batchml.lib.platform.errors import InputError
from batchml.lib.platform.runtime import process_alive


@dataclass
class StagedFile:
    relative: str  # path below the table root, as on storage
    size: int
    modification_time: int
    num_records: int
    stats: str
    partition_values: dict[str, str | None]


@dataclass(frozen=True)
class WritePlan:
    schema: T.StructType  # the table schema after this write, every field nullable
    partitions: list[str]
    new_fields: tuple[T.StructField, ...] = ()
    replace_schema: bool = False  # an overwrite that replaces the schema too

    def without_new_fields(self) -> WritePlan:
        return WritePlan(self.schema, self.partitions, (), self.replace_schema)


def plan_write(
    incoming: T.StructType,
    root: str,
    base: delta_log.Snapshot | None,
    partition_by: list[str] | None,
    merge_schema: bool,
    overwrite_schema: bool = False,
) -> WritePlan:
    """Validate the data against the table (or a new table's declaration)."""
    if base is None or overwrite_schema:
        partitions = list(
            partition_by
            if partition_by is not None
            else (base.partition_columns if base is not None else [])
        )
        check_partition_columns(incoming, partitions, root)
        return WritePlan(delta_log.nullable(incoming), partitions, (), base is not None)
    table_schema = base.spark_schema()
    partitions = base.partition_columns
    if partition_by is not None and list(partition_by) != partitions:
        raise InputError(
            f"table {root} is partitioned by ({', '.join(partitions) or 'nothing'}), "
            f"not ({', '.join(partition_by) or 'nothing'})"
        )
    diff = compare_schemas(table_schema, incoming)
    problem = diff.describe(root, allow_extra=merge_schema)
    if problem:
        raise InputError(problem)
    new_fields = tuple(delta_log.nullable(T.StructType(diff.extra)).fields)
    schema = T.StructType([*table_schema.fields, *new_fields])
    return WritePlan(schema, partitions, new_fields)


def add_columns(snapshot: delta_log.Snapshot, fields: tuple[T.StructField, ...]) -> None:
    """Schema evolution: delta-rs commits new columns as their own metadata commit."""
    schema = delta_log.delta_schema(T.StructType(list(fields)))
    snapshot.table.alter.add_columns(list(schema.fields))
    snapshot.table.update_incremental()


def delta_type(data_type: T.DataType) -> str:
    """Delta's (= Spark's JSON) type name: `long`, `integer`, `decimal(10,2)`, ..."""
    if isinstance(data_type, T.DecimalType):
        return f"decimal({data_type.precision},{data_type.scale})"
    return data_type.typeName()


def hive_layout_matches(
    files: list[str], partitions: list[str], types: dict[str, str], values: dict[str, list[Any]]
) -> bool:
    """Whether each file sits in `col=value` directories that spell its logged values."""
    for index, relative in enumerate(files):
        dirs = partition_dirs(relative)
        if [column for column, _ in dirs] != partitions:
            return False
        for column, raw in dirs:
            try:
                parsed = typed_value(raw, types[column])
            except ValueError:
                return False
            if not same_value(parsed, values[column][index]):
                return False
    return True


def move_into_place(staging: Path, root: str, staged: list[StagedFile], moved: list[str]) -> None:
    """Move the staged files into the table, appending each to `moved` as it lands (so an
    interrupted move still knows which files to take back)."""
    for item in staged:
        target = Path(root) / item.relative
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / item.relative, target)
        moved.append(item.relative)


def remove_files(root: str, relatives: list[str]) -> None:
    for relative in relatives:
        storage.delete(storage.join(root, relative))


CLAIM_SUFFIX = ".writer.json"
STAGING_DIR = "_batchml_staging"


@dataclass(frozen=True)
class WriterClaim:
    """A writer's note beside its staging folder: who it is, and the files it moved (or is
    about to move) into the table and has not committed yet."""

    folder: Path
    host: str
    pid: int
    started: float
    files: tuple[str, ...]

    def alive(self, retain_hours: float) -> bool:
        """Its process still runs (checked on this host; elsewhere: it is recent)."""
        alive = process_alive(self.host, self.pid)
        if alive is None:
            return time.time() - self.started < retain_hours * 3600
        return alive


def write_claim(staging: Path, files: list[str] | None = None) -> Path:
    """Write (or update) the claim of the writer staging into `staging`."""
    claim = Path(f"{staging}{CLAIM_SUFFIX}")
    claim.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.time(),
        "files": files or [],
    }
    partial = claim.with_suffix(".tmp")
    partial.write_text(json.dumps(body))
    os.replace(partial, claim)
    return claim


def writer_claims(staging_root: Path, retain_hours: float) -> tuple[list[WriterClaim], list[Path]]:
    """(claims of live writers, staging folders no live writer owns and older than the
    retention). A folder without a claim belongs to a writer that died before claiming."""
    if not staging_root.is_dir():
        return [], []
    live: list[WriterClaim] = []
    owned: set[str] = set()
    for path in staging_root.glob(f"*{CLAIM_SUFFIX}"):
        try:
            body = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        claim = WriterClaim(
            Path(str(path)[: -len(CLAIM_SUFFIX)]),
            body["host"],
            body["pid"],
            body["started"],
            tuple(body.get("files", [])),
        )
        if claim.alive(retain_hours):
            live.append(claim)
            owned.add(claim.folder.name)
    cutoff = time.time() - retain_hours * 3600
    stale = [
        folder
        for folder in sorted(staging_root.iterdir())
        if folder.is_dir() and folder.name not in owned and folder.stat().st_mtime <= cutoff
    ]
    # claims of writers that died (SIGKILL) without a folder to go with them
    stale += [
        path
        for path in sorted(staging_root.glob(f"*{CLAIM_SUFFIX}"))
        if path.name[: -len(CLAIM_SUFFIX)] not in owned
        and not (staging_root / path.name[: -len(CLAIM_SUFFIX)]).is_dir()
    ]
    return live, stale


def remove_empty_dirs(root: str, relatives: list[str]) -> None:
    """Remove the partition directories our removed files leave empty (never the root)."""
    folders = {Path(root, relative).parent for relative in relatives}
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
        while folder != Path(root) and Path(root) in folder.parents:
            if any(folder.iterdir()) if folder.is_dir() else False:
                break
            remove_if_empty(folder)
            folder = folder.parent


def remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty, or already gone
        folder.rmdir()


# ---------------------------------------------------------------- object stores
# On an object store a rename is a copy: the embedded writer lets Spark write each
# write's files under a folder of their own inside the table, `batchml-write-<id>/`, and
# commits them where they are. The folder name is not hidden (no `_` or `.`), so Delta's
# and delta-rs's vacuum remove its files once no version references them; the claim
# (who writes, since when, which files) is an object in `_batchml_staging/`.
REMOTE_STAGE_PREFIX = "batchml-write-"


def remote_claim(root: str, stage: str) -> str:
    return storage.join(root, STAGING_DIR, f"{stage}{CLAIM_SUFFIX}")


def write_remote_claim(root: str, stage: str, files: list[str] | None = None) -> str:
    """Write (or replace) the claim of the writer staging into `<root>/<stage>`."""
    claim = remote_claim(root, stage)
    body = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.time(),
        "files": files or [],
    }
    storage.write_text(claim, json.dumps(body))
    return claim


def remote_writer_claims(root: str, retain_hours: float) -> tuple[list[WriterClaim], list[str]]:
    """(claims of live writers, leftovers of writers gone: their claims and the
    `_temporary` folders Spark left in their stages) of a table on an object store. A
    writer on another host is live while its claim is younger than the retention."""
    live: list[WriterClaim] = []
    stale: list[str] = []
    for entry in storage.list_files(storage.join(root, STAGING_DIR), recursive=False):
        name = storage.basename(entry.uri)
        if not name.endswith(CLAIM_SUFFIX):
            continue
        try:
            body = json.loads(storage.read_text(entry.uri))
            claim = WriterClaim(
                Path(name[: -len(CLAIM_SUFFIX)]),
                body["host"],
                body["pid"],
                body["started"],
                tuple(body.get("files", [])),
            )
        except (OSError, ValueError, KeyError):
            continue
        if claim.alive(retain_hours):
            live.append(claim)
        else:
            stale.append(entry.uri)
    owned = {claim.folder.name for claim in live}
    cutoff = time.time() - retain_hours * 3600
    for folder in storage.list_dirs(root):
        stage = storage.basename(folder)
        if not stage.startswith(REMOTE_STAGE_PREFIX) or stage in owned:
            continue
        temporary = storage.join(folder, "_temporary")
        leftovers = storage.list_files(temporary)
        if leftovers and max(e.mtime_ns for e in leftovers) <= cutoff * 1e9:
            stale.append(temporary)
    return live, stale


def written_files(staging: str) -> list[tuple[str, int, int, Any]]:
    """(path below `staging`, size, modification ms, Parquet footer) of each data file
    Spark wrote there, sorted by path."""
    found = []
    if storage.is_remote(staging):
        fs, _ = storage.filesystem(staging)
        for entry in storage.list_files(staging):
            inner = entry.uri[len(staging.rstrip("/")) + 1 :]
            # Spark's rule: `_x` and `.x` are its own (`_temporary`), `_x=v` a partition
            hidden = any(
                part.startswith(".") or (part.startswith("_") and "=" not in part)
                for part in inner.split("/")[:-1]
            )
            if not inner.endswith(".parquet") or hidden:
                continue
            _, path = storage.filesystem(entry.uri)
            with fs.open_input_file(path) as handle:
                metadata = pq.read_metadata(handle)
            found.append((inner, entry.size, entry.mtime_ns // 1_000_000, metadata))
        return found
    for file in sorted(Path(staging).rglob("*.parquet")):
        info = file.stat()
        found.append(
            (
                file.relative_to(staging).as_posix(),
                info.st_size,
                int(info.st_mtime * 1000),
                pq.read_metadata(file),
            )
        )
    return found
