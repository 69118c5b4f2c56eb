"""Independent readers to check batchml's Delta I/O against: delta-rs's QueryBuilder."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder
from pyspark.sql import DataFrame


def normalize(value: Any) -> Any:
    """One Python shape for values from Spark rows and from Arrow (maps, structs, times)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if hasattr(value, "asDict"):
        return normalize(value.asDict(recursive=True))
    if isinstance(value, float) and value != value:
        return "NaN"
    return value


def _key(row: dict[str, Any]) -> str:
    return repr(sorted((k, repr(v)) for k, v in row.items()))


def sorted_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    normalized = [{k: normalize(v) for k, v in row.items()} for row in rows]
    return sorted(normalized, key=_key)


def spark_rows(df: DataFrame) -> list[dict[str, Any]]:
    return sorted_rows([row.asDict(recursive=True) for row in df.collect()])


def oracle_rows(uri: str, version: int | None = None) -> list[dict[str, Any]]:
    """The rows delta-rs (DataFusion) reads from the table, independent of Spark."""
    table = DeltaTable(uri, version=version)
    result = QueryBuilder().register("t", table).execute("SELECT * FROM t").read_all()
    return sorted_rows(pa.table(result).to_pylist(maps_as_pydicts="strict"))


__all__ = ["Decimal", "normalize", "oracle_rows", "sorted_rows", "spark_rows"]
