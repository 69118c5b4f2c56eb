from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchml.lib.delta.paths import (
    HIVE_NULL,
    hadoop_path,
    hive_unescape,
    partition_dirs,
    same_value,
    to_delta_value,
    typed_value,
)
from batchml.lib.delta.stats import footer_stats, to_json

# the characters Spark's partition-path escaping replaces by %XX (besides control chars),
# from Spark's ExternalCatalogUtils
HIVE_SPECIAL = set("\"#%'*/:=?\\\x7f{[]^")


def hive_escape(value: str) -> str:
    """Spark's escaping of a partition value in a directory name (the writer's side)."""
    return "".join(
        f"%{ord(ch):02X}" if ch in HIVE_SPECIAL or ord(ch) < 0x20 else ch for ch in value
    )


@pytest.mark.parametrize("value", ["a b", "100%", "x/y", "é ü", "a=b", "q?*[1]{2}", "\x01", "%41"])
def test_hive_escape_round_trips(value: str) -> None:
    escaped = hive_escape(value)
    assert "/" not in escaped and "=" not in escaped
    assert hive_unescape(escaped) == value


def test_partition_dirs_reads_hive_segments() -> None:
    relative = f"city=new york/day={HIVE_NULL}/at=2013-01-01 05%3A00%3A00/part-0.parquet"
    assert partition_dirs(relative) == [
        ("city", "new york"),
        ("day", None),
        ("at", "2013-01-01 05:00:00"),
    ]
    assert partition_dirs("part-0.parquet") == []
    assert partition_dirs("random/part-0.parquet") == []


def test_delta_partition_strings() -> None:
    assert to_delta_value("2013-01-01 05:00:00", "timestamp") == "2013-01-01T05:00:00.000000Z"
    assert to_delta_value("2013-01-01 05:00:00.5", "timestamp") == "2013-01-01T05:00:00.500000Z"
    assert to_delta_value("2013-01-01 05:00:00", "timestamp_ntz") == "2013-01-01 05:00:00.000000"
    assert to_delta_value("12.50", "decimal") == "12.50"
    assert to_delta_value("", "string") is None
    assert to_delta_value(None, "date") is None


def test_typed_values_and_equality() -> None:
    aware = typed_value("2013-01-01T05:00:00.000000Z", "timestamp")
    assert aware == datetime(2013, 1, 1, 5, tzinfo=UTC)
    assert same_value(typed_value("2013-01-01 05:00:00", "timestamp"), aware)
    assert typed_value("2013-02-03", "date") == date(2013, 2, 3)
    assert typed_value("1.50", "decimal") == Decimal("1.5")
    assert typed_value("TRUE", "boolean") is True
    with pytest.raises(ValueError):
        typed_value("yes", "boolean")
    with pytest.raises(ValueError):
        typed_value("x", "integer")


def test_hadoop_path_escapes_globs_only() -> None:
    assert hadoop_path("/t/q=a[1]{2}*?/f 100%.parquet") == r"/t/q=a\[1\]\{2\}\*\?/f 100%.parquet"


def test_footer_stats_of_a_file_with_many_row_groups(tmp_path) -> None:
    path = tmp_path / "f.parquet"
    table = pa.table(
        {
            "n": pa.array([5, None, -2, 9], pa.int64()),
            "x": pa.array([1.0, 2.0, float("inf"), 0.5]),
            "s": pa.array(["b", "a" * 40, "c", None]),
            "d": pa.array(
                [Decimal("0.10"), Decimal("-3.25"), None, Decimal("7.00")], pa.decimal128(5, 2)
            ),
        }
    )
    pq.write_table(table, path, row_group_size=2)
    count, text = footer_stats(
        pq.read_metadata(path), {"n": "long", "x": "double", "s": "string", "d": "decimal(5,2)"}
    )
    assert count == 4
    assert text == (
        '{"numRecords":4,"minValues":{"n":-2,"d":-3.25},"maxValues":{"n":9,"d":7.00},'
        '"nullCount":{"n":1,"x":0,"s":1,"d":1}}'
    )


def test_to_json_keeps_decimals_exact() -> None:
    assert to_json({"a": Decimal("123456789012345678.000001"), "b": [1]}) == (
        '{"a":123456789012345678.000001,"b":[1]}'
    )
