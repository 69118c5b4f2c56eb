"""Both Delta backends, the same tests: the connector (Delta's Spark connector) and the
embedded one (delta-rs for the log, Spark for the data), with delta-rs's QueryBuilder as
the independent reader, and each backend reading what the other wrote."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from deltalake import DeltaTable
from oracles import oracle_rows, spark_rows
from pyspark.sql import SparkSession

from batchml.lib.delta import DeltaTables, WriteToken
from batchml.lib.delta.connector import ConnectorDelta
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.platform.errors import InputError

SCHEMA = "id int, city string, amount double"


@pytest.fixture(params=["connector", "embedded"])
def tables(request: pytest.FixtureRequest, spark: SparkSession) -> DeltaTables:
    return ConnectorDelta(spark) if request.param == "connector" else EmbeddedDelta(spark)


def other(tables: DeltaTables) -> DeltaTables:
    spark = tables.spark
    return EmbeddedDelta(spark) if isinstance(tables, ConnectorDelta) else ConnectorDelta(spark)


def ids(tables: DeltaTables, uri: str, **pin) -> list[int]:
    return sorted(row["id"] for row in tables.read(uri, **pin).df.collect())


def test_versions_timestamps_and_every_write_mode(tables, spark, tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    first = spark.createDataFrame([(1, "nyc", 1.0), (2, None, None)], SCHEMA)
    assert tables.write(first, uri, partition_by=["city"]).version == 0
    time.sleep(0.05)
    after_first = datetime.now(UTC)
    time.sleep(0.05)
    appended = tables.write(spark.createDataFrame([(3, "sf", 3.0)], SCHEMA), uri)
    replaced = tables.write(
        spark.createDataFrame([(4, "nyc", 4.0)], SCHEMA),
        uri,
        mode="replace",
        replace_where="city = 'nyc'",
    )
    overwritten = tables.write(
        spark.createDataFrame([(5, "la", 5.0)], SCHEMA), uri, mode="overwrite"
    )
    assert [appended.version, replaced.version, overwritten.version] == [1, 2, 3]
    expected = {0: [1, 2], 1: [1, 2, 3], 2: [2, 3, 4], 3: [5]}
    for version, wanted in expected.items():
        assert ids(tables, uri, version=version) == wanted
        assert sorted(r["id"] for r in oracle_rows(uri, version)) == wanted
        assert ids(other(tables), uri, version=version) == wanted  # cross-read
    assert ids(tables, uri, timestamp=after_first) == [1, 2]
    assert tables.read(uri).version == 3 and tables.version(uri) == 3
    assert spark_rows(tables.read(uri, version=2).df) == oracle_rows(uri, 2)
    assert DeltaTable(uri).metadata().partition_columns == ["city"]
    with pytest.raises(InputError, match="version 9"):
        tables.read(uri, version=9)


def test_tokens_make_a_rerun_a_no_op(tables, spark, tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    df = spark.createDataFrame([(1, "nyc", 1.0)], SCHEMA)
    assert tables.write(df, uri, token=WriteToken("job", 1)).committed
    again = tables.write(df, uri, token=WriteToken("job", 1))
    assert (again.committed, again.version) == (False, 0)
    assert tables.has_token(uri, WriteToken("job", 1))
    assert not tables.has_token(uri, WriteToken("job", 2))
    assert other(tables).has_token(uri, WriteToken("job", 1))  # the other backend sees it
    assert tables.write(df, uri, token=WriteToken("job", 2)).version == 1
    assert ids(tables, uri) == [1, 1]


def test_schema_errors_merge_and_overwrite(tables, spark, tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    tables.write(spark.createDataFrame([(1, "nyc", 1.0)], SCHEMA), uri)
    wider = spark.createDataFrame([(2, "sf", 2.0, "x")], SCHEMA + ", note string")
    with pytest.raises(InputError):
        tables.write(wider, uri)
    assert tables.version(uri) == 0  # the refused write left the table as it was
    merged = tables.write(wider, uri, merge_schema=True).version
    # the connector adds the column and the rows in one commit; the embedded backend
    # commits the new column first (delta-rs's alter), then the rows
    assert merged == (1 if isinstance(tables, ConnectorDelta) else 2)
    assert [f.name for f in tables.read(uri).df.schema] == ["id", "city", "amount", "note"]
    assert [r["note"] for r in oracle_rows(uri)] == [None, "x"]
    narrow = spark.createDataFrame([(9,)], "id int")
    assert tables.write(narrow, uri, mode="overwrite", overwrite_schema=True).version == merged + 1
    assert [f.name for f in other(tables).read(uri).df.schema] == ["id"]
    assert oracle_rows(uri) == [{"id": 9}]


def test_history_names_the_operations(tables, spark, tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    df = spark.createDataFrame([(1, "nyc", 1.0)], SCHEMA)
    tables.write(df, uri, commit_info={"job": "test", "run_id": "r1"})
    tables.write(df, uri, mode="overwrite")
    commits = tables.history(uri)
    assert [c["version"] for c in commits] == [1, 0]
    assert tables.history(uri, 1)[0]["version"] == 1


def test_partition_values_read_back_by_every_reader(tables, spark, tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    cities = ["new york", "a=b", "x/y", "100%", "é ü", None]
    rows = [(i, city, float(i)) for i, city in enumerate(cities)]
    tables.write(spark.createDataFrame(rows, SCHEMA), uri, partition_by=["city"])
    wanted = sorted(cities, key=str)
    for reader in (tables, other(tables)):
        assert sorted((r["city"] for r in reader.read(uri).df.collect()), key=str) == wanted
    assert sorted((r["city"] for r in oracle_rows(uri)), key=str) == wanted


def test_missing_tables_and_bad_predicates_are_input_errors(tables, spark, tmp_path) -> None:
    with pytest.raises(InputError):
        tables.read(str(tmp_path / "nothing"))
    uri = str(tmp_path / "t")
    tables.write(spark.createDataFrame([(1, "nyc", 1.0)], SCHEMA), uri, partition_by=["city"])
    with pytest.raises(InputError):
        tables.write(
            spark.createDataFrame([(2, "sf", 2.0)], SCHEMA),
            uri,
            mode="replace",
            replace_where="city = 'nyc'",  # the new rows do not match the predicate
        )
    assert ids(tables, uri) == [1] and tables.version(uri) == 0


def test_connector_tables_with_deletion_vectors_column_mapping_and_type_widening(
    spark, tmp_path
) -> None:
    connector, embedded = ConnectorDelta(spark), EmbeddedDelta(spark)
    vectors = str(tmp_path / "vectors")
    connector.write(
        spark.createDataFrame([(i, "nyc", float(i)) for i in range(6)], SCHEMA), vectors
    )
    spark.sql(
        f"ALTER TABLE delta.`{vectors}` SET TBLPROPERTIES (delta.enableDeletionVectors = true)"
    )
    spark.sql(f"DELETE FROM delta.`{vectors}` WHERE id % 2 = 0")  # a deletion vector, no rewrite
    assert ids(connector, vectors) == [1, 3, 5]
    with pytest.raises(InputError, match=r"uses deletion vectors.*delta\.backend = 'connector'"):
        embedded.read(vectors)  # refused by name, never read with the deleted rows
    mapped = str(tmp_path / "mapped")
    connector.write(spark.createDataFrame([(1, "nyc", 1.0)], SCHEMA), mapped)
    spark.sql(
        f"ALTER TABLE delta.`{mapped}` SET TBLPROPERTIES ('delta.columnMapping.mode' = 'name', "
        "'delta.minReaderVersion' = '2', 'delta.minWriterVersion' = '5')"
    )
    spark.sql(f"ALTER TABLE delta.`{mapped}` RENAME COLUMN amount TO fare")
    read = connector.read(mapped)
    assert [f.name for f in read.df.schema] == ["id", "city", "fare"]
    assert [r["fare"] for r in read.df.collect()] == [1.0]
    with pytest.raises(InputError, match=r"uses column mapping.*delta\.backend = 'connector'"):
        embedded.read(mapped)
    widened = str(tmp_path / "widened")
    connector.write(spark.createDataFrame([(1, "nyc", 1.0)], SCHEMA), widened)
    spark.sql(
        f"ALTER TABLE delta.`{widened}` SET TBLPROPERTIES ('delta.enableTypeWidening' = 'true')"
    )
    spark.sql(f"ALTER TABLE delta.`{widened}` CHANGE COLUMN id TYPE BIGINT")  # int -> long
    connector.write(
        spark.createDataFrame([(2**40, "sf", 2.0)], "id long, city string, amount double"), widened
    )
    read = connector.read(widened)
    assert read.df.schema["id"].dataType.simpleString() == "bigint"
    assert sorted(r["id"] for r in read.df.collect()) == [1, 2**40]  # the old file widened
    with pytest.raises(InputError, match=r"uses type widening.*delta\.backend = 'connector'"):
        embedded.read(widened)


def test_read_added_returns_the_rows_of_new_files_only(tables, spark, tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    tables.write(
        spark.createDataFrame([(1, "nyc", 1.0), (2, "sf", 2.0)], SCHEMA), uri, partition_by=["city"]
    )
    tables.write(spark.createDataFrame([(3, "nyc", 3.0)], SCHEMA), uri)
    tables.write(spark.createDataFrame([(4, "la", 4.0), (5, None, 5.0)], SCHEMA), uri)
    for since, wanted in ((0, [3, 4, 5]), (1, [4, 5]), (2, [])):
        added = tables.read_added(uri, since, 2)
        assert added.version == 2
        assert sorted(r["id"] for r in added.df.collect()) == wanted
        assert added.rows == len(wanted)  # counted from the log's file statistics
    assert [f.name for f in tables.read_added(uri, 0, 2).df.schema] == ["id", "city", "amount"]
    tables.write(
        spark.createDataFrame([(6, "nyc", 6.0)], SCHEMA),
        uri,
        mode="replace",
        replace_where="city = 'nyc'",
    )
    assert tables.read_added(uri, 2, 3) is None  # files were rewritten: read it whole
    with pytest.raises(InputError, match="version 7"):
        tables.read_added(uri, 2, 7)
