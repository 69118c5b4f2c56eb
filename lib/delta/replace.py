"""Replacing the rows that match a predicate over partition columns (Delta's replaceWhere).

The predicate is checked and evaluated by Spark over a tiny DataFrame of partition
values, one row per file: the table's files to remove, and the new files' partitions,
which must all satisfy it.
"""

from __future__ import annotations

from typing import Any

from pyspark.errors import AnalysisException, ParseException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml.lib.delta import delta_log
from batchml.lib.delta.api import WriteMode
from batchml.lib.delta.staging import StagedFile, WritePlan
from batchml.lib.platform.errors import InputError, first_line
from batchml.lib.platform.sqltext import identifier as quoted

_FILE_KEY = "__batchml_file"


def partition_frame(
    spark: SparkSession, rows: list[tuple[str, dict[str, Any]]], plan: WritePlan
) -> DataFrame:
    """A tiny DataFrame of (file, typed partition values), one row per file."""
    string_schema = T.StructType(
        [T.StructField(_FILE_KEY, T.StringType())]
        + [T.StructField(c, T.StringType()) for c in plan.partitions]
    )
    data = [
        (name, *[None if values[c] is None else str(values[c]) for c in plan.partitions])
        for name, values in rows
    ]
    frame = spark.createDataFrame(data, string_schema)
    return frame.select(
        F.col(_FILE_KEY),
        *[F.col(quoted(c)).cast(plan.schema[c].dataType).alias(c) for c in plan.partitions],
    )


def check_predicate(
    spark: SparkSession, predicate: str, schema: T.StructType, partitions: list[str], root: str
) -> None:
    """The predicate must parse and use partition columns only."""
    if not partitions:
        raise InputError(f"table {root} is not partitioned: mode 'replace' needs partitions")
    frame = spark.createDataFrame(
        [], T.StructType([T.StructField(c, schema[c].dataType) for c in partitions])
    )
    try:
        frame.filter(F.expr(predicate)).schema  # noqa: B018 - analysis only, no job
    except (AnalysisException, ParseException) as exc:
        raise InputError(
            f"replace predicate {predicate!r} for table {root} must be valid SQL over the "
            f"partition columns ({', '.join(partitions)}): {first_line(exc)}"
        ) from None


def check_rows_match(
    spark: SparkSession,
    staged: list[StagedFile],
    predicate: str,
    plan: WritePlan,
    root: str,
) -> None:
    """Every written partition must satisfy the replace predicate (Delta's rule)."""
    frame = partition_frame(spark, [(f.relative, f.partition_values) for f in staged], plan)
    outside = frame.filter(~F.coalesce(F.expr(predicate), F.lit(False))).limit(1).collect()
    if outside:
        values = {c: outside[0][c] for c in plan.partitions}
        raise InputError(
            f"data for table {root} has rows outside the replace predicate {predicate!r}, "
            f"e.g. partition {values}; nothing was written"
        )


def affected_files(
    spark: SparkSession,
    snapshot: delta_log.Snapshot,
    mode: WriteMode,
    predicate: str | None,
    plan: WritePlan,
) -> list[tuple[str, int]]:
    """The files a write removes from this snapshot: (action path, size)."""
    if mode == "append":
        return []
    actions = snapshot.add_actions()
    paths = actions.column("path").to_pylist()
    sizes = actions.column("size_bytes").to_pylist()
    if mode == "overwrite" or not paths:
        return list(zip(paths, sizes, strict=True))
    assert predicate is not None  # mode "replace" comes with its predicate
    rows = [
        (path, {c: actions.column(f"partition.{c}")[i].as_py() for c in plan.partitions})
        for i, path in enumerate(paths)
    ]
    frame = partition_frame(spark, rows, plan)
    matching = {r[_FILE_KEY] for r in frame.filter(F.expr(predicate)).select(_FILE_KEY).collect()}
    return [(p, s) for p, s in zip(paths, sizes, strict=True) if p in matching]
