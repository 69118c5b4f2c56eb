"""Row keys: the columns that say which row is which, checked where a job relies on them.

A key names a row for `predict` (its output's identity), for `monitor` (a scored row
meets its label on the key) and for a feature view. Keys repeat in real data (a
customer across monthly snapshots, a record delivered twice), so the jobs that rely on a
key count what repeats in the pass they make and say so, rather than trusting it.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml.lib.platform.errors import InputError


def check_key_columns(schema: T.StructType, key: list[str], where: str) -> None:
    """Every key column is present and of a type whose equality is exact.

    Raises:
        InputError: missing key columns, or floating-point ones (1e-16 apart is another
            key), each named.
    """
    present = {f.name: f.dataType for f in schema}
    missing = [c for c in key if c not in present]
    if missing:
        raise InputError(
            f"{where}: key column(s) {', '.join(missing)} missing (key: {', '.join(key)}); "
            "nothing was written"
        )
    fractional = [c for c in key if isinstance(present[c], (T.FloatType, T.DoubleType))]
    if fractional:
        raise InputError(
            f"{where}: key column {', '.join(fractional)} is floating-point; equality of "
            "such values is fragile: key the rows by an integer or string column; nothing "
            "was written"
        )


@dataclass(frozen=True)
class KeyCounts:
    """How a key behaves over some rows."""

    rows: int
    distinct: int  # distinct keys among rows without a null key column
    duplicated: int  # keys on more than one row
    duplicate_rows: int  # rows beyond the first of each duplicated key
    null_rows: int  # rows with a null in a key column (no identity)
    example: str  # one duplicated key as `col=value, ...` ("" when none)
    all_null: tuple[str, ...]  # key columns null on every row (rows > 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """`12 keys on more than one row (30 extra rows, e.g. id=7)`, or ''."""
        parts = []
        if self.duplicated:
            parts.append(
                f"{self.duplicated} keys on more than one row ({self.duplicate_rows} extra "
                f"rows, e.g. {self.example})"
            )
        if self.null_rows:
            parts.append(f"{self.null_rows} rows with a null key")
        return "; ".join(parts)


def count_keys(frame: DataFrame, key: list[str]) -> KeyCounts:
    """Rows, distinct keys, repeated keys and null keys of `frame`, from one aggregation
    over the key columns alone (a Delta read prunes to them)."""
    columns = [F.col(f"`{c}`") for c in key]
    per_key = frame.groupBy(*columns).agg(F.count(F.lit(1)).alias("__n"))
    whole = functools.reduce(lambda a, b: a & b, [c.isNotNull() for c in columns])
    repeated = whole & (F.col("__n") > 1)
    found = per_key.agg(
        F.sum("__n").alias("rows"),
        F.sum(whole.cast("long")).alias("distinct"),
        F.sum(repeated.cast("long")).alias("duplicated"),
        F.sum(F.when(repeated, F.col("__n") - 1)).alias("duplicate_rows"),
        F.sum(F.when(~whole, F.col("__n"))).alias("null_rows"),
        F.first(F.when(repeated, F.struct(*columns)), ignorenulls=True).alias("example"),
        *[F.max(c.isNotNull()).alias(f"__seen{i}") for i, c in enumerate(columns)],
    ).collect()[0]
    rows = int(found["rows"] or 0)
    example = found["example"]
    return KeyCounts(
        rows=rows,
        distinct=int(found["distinct"] or 0),
        duplicated=int(found["duplicated"] or 0),
        duplicate_rows=int(found["duplicate_rows"] or 0),
        null_rows=int(found["null_rows"] or 0),
        example=", ".join(f"{c}={example[c]!r}" for c in key) if example else "",
        all_null=tuple(c for i, c in enumerate(key) if rows and not found[f"__seen{i}"]),
    )


def refuse_all_null(counts: KeyCounts, key: list[str], where: str) -> None:
    """Raises InputError when a key column is null on every row: no row has an identity."""
    if counts.all_null:
        raise InputError(
            f"{where}: key column {', '.join(counts.all_null)} is null in all {counts.rows} "
            f"rows (key: {', '.join(key)}); nothing was written"
        )
