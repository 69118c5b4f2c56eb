"""Delta file statistics (numRecords, minValues, maxValues, nullCount) from Parquet footers.

Only the footer of each file is read. Statistics cover flat primitive columns; a
column whose min/max cannot be stated safely gets none (NaN or infinity present,
strings longer than 32 characters, booleans, binary), which Delta readers take as
"unknown" and never use to skip the file.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow.parquet as pq

MAX_STRING_STAT = 32
_NUMERIC = {"byte", "short", "integer", "long", "float", "double"}
_PRIMITIVE = _NUMERIC | {"string", "date", "timestamp", "timestamp_ntz", "boolean", "binary"}


def footer_stats(metadata: pq.FileMetaData, columns: dict[str, str]) -> tuple[int, str]:
    """`(numRecords, stats JSON)` for one Parquet file.

    Args:
        metadata: the file's Parquet footer.
        columns: data column name -> Delta type name (`long`, `decimal(10,2)`, ...).
    """
    num_records = metadata.num_rows
    positions = {metadata.schema.column(i).path: i for i in range(metadata.num_columns)}
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for name, type_name in columns.items():
        base_type = type_name.split("(")[0]
        if (base_type not in _PRIMITIVE and base_type != "decimal") or name not in positions:
            continue
        nulls_known, low, high = _combine(metadata, positions[name], type_name)
        if nulls_known is not None:
            nulls[name] = nulls_known
        if low is not None and high is not None:
            mins[name] = low
            maxs[name] = high
    stats = {"numRecords": num_records, "minValues": mins, "maxValues": maxs, "nullCount": nulls}
    return num_records, to_json(stats)


def _combine(metadata: pq.FileMetaData, index: int, type_name: str) -> tuple[int | None, Any, Any]:
    null_count: int | None = 0
    low: Any = None
    high: Any = None
    has_range = True
    for group in range(metadata.num_row_groups):
        column = metadata.row_group(group).column(index)
        stats = column.statistics
        if stats is None:
            return None, None, None
        if stats.has_null_count and null_count is not None:
            null_count += stats.null_count
        else:
            null_count = None
        if column.num_values - (stats.null_count if stats.has_null_count else 0) == 0:
            continue  # an all-null row group says nothing about the range
        if not stats.has_min_max:
            has_range = False
            continue
        lo, hi = stats.min, stats.max
        low = lo if low is None or lo < low else low
        high = hi if high is None or hi > high else high
    if not has_range or low is None:
        return null_count, None, None
    bounds = _delta_bounds(low, high, type_name)
    return (null_count, *bounds)


def _delta_bounds(low: Any, high: Any, type_name: str) -> tuple[Any, Any]:
    """Parquet min/max -> Delta's JSON representation, or `(None, None)` when unsafe."""
    base_type = type_name.split("(")[0]
    if base_type in ("boolean", "binary"):
        return None, None
    if base_type in ("float", "double"):
        if not (math.isfinite(low) and math.isfinite(high)):
            return None, None
        return float(low), float(high)
    if base_type in _NUMERIC:
        return int(low), int(high)
    if base_type == "decimal":
        return Decimal(low), Decimal(high)
    if base_type == "string":
        if isinstance(low, bytes):
            low, high = low.decode(), high.decode()
        if len(low) > MAX_STRING_STAT or len(high) > MAX_STRING_STAT:
            return None, None
        return low, high
    if base_type == "date":
        return _iso_date(low), _iso_date(high)
    if base_type in ("timestamp", "timestamp_ntz"):
        suffix = "Z" if base_type == "timestamp" else ""
        return _millis(low, up=False) + suffix, _millis(high, up=True) + suffix
    return None, None


def _iso_date(value: Any) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def _millis(value: datetime, *, up: bool) -> str:
    """Delta keeps timestamp stats in milliseconds: round the max up so no row falls outside."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    extra = value.microsecond % 1000
    value = value - timedelta(microseconds=extra)
    if up and extra:
        value += timedelta(milliseconds=1)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}"


def to_json(value: Any) -> str:
    """Compact JSON in which Decimals stay exact numbers (json.dumps would need floats)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Decimal):
        return format(value, "f")
    return json.dumps(value)
