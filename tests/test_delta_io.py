"""Delta I/O on both backends — the connector (Delta's Spark connector) and the embedded one
(delta-rs for the log, Spark for the data) — against an independent reader (delta-rs's
QueryBuilder). Tests of what only the embedded backend does (its own statistics, its
refusals, its staging folder, its commit retries) take `embedded`."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from chispa import assert_df_equality
from deltalake import DeltaTable, write_deltalake
from oracles import oracle_rows, spark_rows
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from batchml.lib.delta import DeltaTables, WriteToken
from batchml.lib.delta.connector import ConnectorDelta
from batchml.lib.delta.embedded import STAGING_DIR, EmbeddedDelta
from batchml.lib.platform.errors import InputError

ALL_TYPES = T.StructType(
    [
        T.StructField("id", T.LongType(), False),
        T.StructField("small", T.ShortType()),
        T.StructField("flag", T.BooleanType()),
        T.StructField("ratio", T.DoubleType()),
        T.StructField("amount", T.DecimalType(20, 6)),
        T.StructField("day", T.DateType()),
        T.StructField("at", T.TimestampType()),
        T.StructField("local_at", T.TimestampNTZType()),
        T.StructField("name", T.StringType()),
        T.StructField("tags", T.ArrayType(T.StringType())),
        T.StructField(
            "point",
            T.StructType([T.StructField("x", T.IntegerType()), T.StructField("y", T.StringType())]),
        ),
        T.StructField("attrs", T.MapType(T.StringType(), T.LongType())),
    ]
)
ALL_ROWS = [
    (
        1,
        7,
        True,
        0.25,
        Decimal("123456789012.345678"),
        date(2013, 1, 1),
        datetime(2013, 1, 1, 5, 30, 0, 123456),
        datetime(2013, 1, 1, 5, 30),
        "jfk",
        ["a", None],
        {"x": 1, "y": "p"},
        {"k": 1},
    ),
    (
        2,
        None,
        None,
        float("nan"),
        Decimal("-0.000001"),
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    ),
    (
        3,
        -1,
        False,
        -1e300,
        None,
        date(1970, 1, 1),
        datetime(1970, 1, 1),
        None,
        "é ü",
        [],
        {"x": None, "y": None},
        {},
    ),
]

KEY_SCHEMA = T.StructType(
    [
        T.StructField("id", T.IntegerType()),
        T.StructField("label", T.StringType()),
        T.StructField("day", T.DateType()),
        T.StructField("at", T.TimestampType()),
        T.StructField("amount", T.DecimalType(10, 2)),
    ]
)
AWKWARD = ["a b", "100%", "x/y", "é ü", "a=b", "q?*[1]{2}", "", None, "__HIVE_DEFAULT_PARTITION__x"]


@pytest.fixture(params=["connector", "embedded"])
def tables(request: pytest.FixtureRequest, spark: SparkSession) -> DeltaTables:
    return ConnectorDelta(spark) if request.param == "connector" else EmbeddedDelta(spark)


@pytest.fixture
def embedded(spark: SparkSession) -> EmbeddedDelta:
    return EmbeddedDelta(spark)


def awkward_df(spark: SparkSession):
    rows = [
        (
            i,
            label,
            date(2013, 1 + i % 3, 1) if i % 4 else None,
            datetime(2013, 5, 1, i, 15, 30) if i % 3 else None,
            Decimal(f"{i}.{i:02d}") if i % 5 else None,
        )
        for i, label in enumerate(AWKWARD)
    ]
    return spark.createDataFrame(rows, KEY_SCHEMA)


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_round_trip_every_type_matches_the_independent_reader(
    spark: SparkSession, tables: DeltaTables, tmp_path: Path
) -> None:
    uri = str(tmp_path / "types")
    df = spark.createDataFrame(ALL_ROWS, ALL_TYPES)
    result = tables.write(df, uri, commit_info={"job": "test"})

    assert (result.version, result.committed, result.rows_added) == (0, True, 3)
    read = tables.read(uri)
    assert read.version == 0
    assert read.df.schema.simpleString() == df.schema.simpleString()
    assert spark_rows(read.df) == spark_rows(df)
    assert spark_rows(read.df) == oracle_rows(uri)
    # a new table has every field nullable, as Delta's Spark writer makes it
    assert all(field.nullable for field in read.df.schema)
    logged = json.loads(DeltaTable(uri).schema().to_json())["fields"]
    assert [f["nullable"] for f in logged] == [True] * len(ALL_TYPES.fields)
    assert ALL_TYPES["id"].nullable is False


def test_stats_are_exact_and_skip_nan_columns(
    spark: SparkSession, embedded: EmbeddedDelta, tmp_path: Path
) -> None:
    uri = str(tmp_path / "stats")
    embedded.write(spark.createDataFrame(ALL_ROWS, ALL_TYPES).coalesce(1), uri)
    actions = DeltaTable(uri).get_add_actions(flatten=False)
    stats_text = [
        json.loads(line)["add"]["stats"]
        for line in (Path(uri) / "_delta_log" / "00000000000000000000.json")
        .read_text()
        .splitlines()
        if '"add"' in line
    ]
    assert len(stats_text) == 1
    assert '"amount":-0.000001' in stats_text[0]
    assert '"amount":123456789012.345678' in stats_text[0]
    stats = json.loads(stats_text[0])
    assert stats["numRecords"] == 3
    assert "ratio" not in stats["minValues"]  # NaN present: no range
    assert stats["nullCount"]["ratio"] == 0
    assert stats["nullCount"]["name"] == 1
    assert (stats["minValues"]["id"], stats["maxValues"]["id"]) == (1, 3)
    assert stats["minValues"]["at"] == "1970-01-01T00:00:00.000Z"
    assert stats["maxValues"]["at"] == "2013-01-01T05:30:00.124Z"  # rounded up to the ms
    assert stats["minValues"]["day"] == "1970-01-01"
    assert "tags" not in stats["nullCount"]  # nested columns carry no stats
    assert pa.table(actions).num_rows == 1
    assert DeltaTable(uri).count() == 3


def test_partitioned_awkward_values_round_trip(
    spark: SparkSession, tables: DeltaTables, tmp_path: Path
) -> None:
    uri = str(tmp_path / "awkward")
    df = awkward_df(spark)
    tables.write(df, uri, partition_by=["label", "day", "at", "amount"])

    read = tables.read(uri)
    assert read.df.columns == df.columns
    expected = df.na.replace("", None, subset=["label"])  # Delta: "" is null
    assert_df_equality(read.df, expected, ignore_row_order=True, ignore_nullable=True)
    assert spark_rows(read.df) == oracle_rows(uri)
    add = [
        json.loads(line)["add"]
        for line in (Path(uri) / "_delta_log" / "00000000000000000000.json")
        .read_text()
        .splitlines()
        if '"add"' in line
    ]
    at_values = {a["partitionValues"]["at"] for a in add} - {None}
    assert "2013-05-01T01:15:30.000000Z" in at_values
    assert {a["partitionValues"]["amount"] for a in add} >= {"1.01", None}


def test_partition_filter_prunes_and_reads_typed_values(
    spark: SparkSession, tables: DeltaTables, tmp_path: Path
) -> None:
    uri = str(tmp_path / "prune")
    tables.write(awkward_df(spark), uri, partition_by=["label"])
    picked = tables.read(uri).df.filter("label = '100%'")
    assert [r["id"] for r in picked.collect()] == [1]
    plan = picked._jdf.queryExecution().executedPlan().toString()
    assert "PartitionFilters: [isnotnull(label" in plan


def test_reads_tables_written_by_delta_rs_identically(
    spark: SparkSession, tables: DeltaTables, tmp_path: Path
) -> None:
    uri = str(tmp_path / "by_delta_rs")
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("city", pa.string()),
            ("day", pa.date32()),
            ("at", pa.timestamp("us", tz="UTC")),
            ("value", pa.float64()),
        ]
    )
    for batch in range(4):
        rows = pa.table(
            {
                "id": [batch * 10 + i for i in range(3)],
                "city": ["new york", "a%b", None],
                "day": [date(2013, 1, batch + 1)] * 3,
                "at": [datetime(2013, 1, 1, batch, tzinfo=UTC)] * 3,
                "value": [1.5, None, float(batch)],
            },
            schema=schema,
        )
        write_deltalake(uri, rows, mode="append", partition_by=["city", "day", "at"])
    DeltaTable(uri).create_checkpoint()
    write_deltalake(uri, rows, mode="append", partition_by=["city", "day", "at"])

    read = tables.read(uri)
    assert read.version == 4
    assert spark_rows(read.df) == oracle_rows(uri)
    assert spark_rows(tables.read(uri, version=1).df) == oracle_rows(uri, version=1)
    assert read.df.count() == 15


def test_time_travel_by_version_and_timestamp(
    spark: SparkSession, tables: DeltaTables, tmp_path: Path
) -> None:
    uri = str(tmp_path / "travel")
    moments = []
    for batch in range(3):
        tables.write(spark.range(batch * 10, batch * 10 + 10), uri)
        moments.append(datetime.now(UTC))
        time.sleep(0.05)

    assert tables.read(uri, version=1).df.count() == 20
    as_of = tables.read(uri, timestamp=moments[0])
    assert (as_of.version, as_of.df.count()) == (0, 10)
    assert tables.read(uri, timestamp=moments[2]).version == 2
    with pytest.raises(
        InputError, match=r"has no version as of 2000-01-01.*first available commit"
    ):
        tables.read(uri, timestamp=datetime(2000, 1, 1, tzinfo=UTC))
    with pytest.raises(InputError, match=r"has no version 7 \(latest is 2\)"):
        tables.read(uri, version=7)


def test_idempotent_token_makes_a_retry_a_noop(
    spark: SparkSession, tables: DeltaTables, tmp_path: Path
) -> None:
    uri = str(tmp_path / "idem")
    first = tables.write(spark.range(5), uri, token=WriteToken("ingest-flights", 1))
    again = tables.write(spark.range(5), uri, token=WriteToken("ingest-flights", 1))
    older = tables.write(spark.range(5), uri, token=WriteToken("ingest-flights", 0))
    newer = tables.write(spark.range(5), uri, token=WriteToken("ingest-flights", 2))

    assert (first.committed, again.committed, older.committed, newer.committed) == (
        True,
        False,
        False,
        True,
    )
    assert "already committed" in again.message
    assert again.version == 0
    assert tables.read(uri).df.count() == 10
    assert DeltaTable(uri).transaction_version("ingest-flights") == 2


def test_overwrite_and_replace(spark: SparkSession, tables: DeltaTables, tmp_path: Path) -> None:
    uri = str(tmp_path / "modes")
    df = spark.createDataFrame(
        [(1, "2013-01", 1.0), (2, "2013-01", 2.0), (3, "2013-02", 3.0), (4, None, 4.0)],
        "id int, month string, value double",
    )
    tables.write(df, uri, partition_by=["month"])
    replacement = spark.createDataFrame([(9, "2013-01", 9.0)], "id int, month string, value double")
    result = tables.write(replacement, uri, mode="replace", replace_where="month = '2013-01'")
    assert (result.files_removed, result.rows_added) == (1, 1)
    assert sorted(r["id"] for r in tables.read(uri).df.collect()) == [3, 4, 9]
    assert spark_rows(tables.read(uri).df) == oracle_rows(uri)

    overwritten = tables.write(replacement, uri, mode="overwrite")
    assert overwritten.version == 2
    assert [r["id"] for r in tables.read(uri).df.collect()] == [9]
    assert tables.read(uri, version=1).df.count() == 3
    history = tables.history(uri)
    assert history[0]["batchml"]["operation"] == "overwrite"
    assert history[1]["batchml"] == {
        "operation": "replace",
        "predicate": "month = '2013-01'",
        "commit_id": history[1]["batchml"]["commit_id"],  # a fresh id per commit
    }
    assert len({c["batchml"]["commit_id"] for c in history}) == len(history)


def test_replace_refuses_rows_outside_the_predicate_and_non_partition_columns(
    spark: SparkSession, tables: DeltaTables, tmp_path: Path
) -> None:
    uri = str(tmp_path / "strict_replace")
    df = spark.createDataFrame([(1, "2013-01"), (2, "2013-02")], "id int, month string")
    tables.write(df, uri, partition_by=["month"])
    before = files_under(Path(uri))

    with pytest.raises(InputError, match=r"rows outside the replace predicate .*2013-02"):
        tables.write(df, uri, mode="replace", replace_where="month = '2013-01'")
    with pytest.raises(InputError, match=r"partition columns \(month\)"):
        tables.write(df, uri, mode="replace", replace_where="id = 1")
    with pytest.raises(InputError, match=r"must be valid SQL"):
        tables.write(df, uri, mode="replace", replace_where="month = = 1")
    assert DeltaTable(uri).version() == 0
    assert sorted(r["id"] for r in tables.read(uri).df.collect()) == [1, 2]
    if isinstance(tables, EmbeddedDelta):
        assert files_under(Path(uri)) == before
    # the connector checks rows against the predicate as it writes: the files it wrote
    # are in no commit (vacuum removes them); the log and the rows are as they were


def test_schema_mismatches_are_listed_and_nothing_is_committed(
    spark: SparkSession, tables: DeltaTables, tmp_path: Path
) -> None:
    uri = str(tmp_path / "schema")
    tables.write(spark.createDataFrame([(1, "a", 1.0)], "id int, name string, score double"), uri)
    before = files_under(Path(uri))
    bad = spark.createDataFrame([("1", 2.0, 3)], "id string, score double, extra int")

    with pytest.raises(InputError) as caught:
        tables.write(bad, uri)
    message = str(caught.value)
    assert "missing columns name" in message
    assert "mistyped columns id (table int, data string)" in message
    assert "extra columns extra (pass merge_schema" in message
    assert DeltaTable(uri).version() == 0
    assert files_under(Path(uri)) == before


def test_merge_schema_adds_columns_and_old_files_read_null(
    spark: SparkSession, tables: DeltaTables, tmp_path: Path
) -> None:
    uri = str(tmp_path / "evolve")
    tables.write(spark.createDataFrame([(1, "a")], "id int, name string"), uri)
    wider = spark.createDataFrame([(2, "b", 0.5)], "id int, name string, score double")
    result = tables.write(wider, uri, merge_schema=True)

    read = tables.read(uri)
    assert read.version == result.version
    assert read.df.columns == ["id", "name", "score"]
    assert spark_rows(read.df) == [
        {"id": 1, "name": "a", "score": None},
        {"id": 2, "name": "b", "score": 0.5},
    ]
    assert spark_rows(read.df) == oracle_rows(uri)


def test_empty_dataframes_write_no_files(
    spark: SparkSession, tables: DeltaTables, tmp_path: Path
) -> None:
    uri = str(tmp_path / "empty")
    empty = spark.createDataFrame([], "id int, month string")
    created = tables.write(empty, uri, partition_by=["month"])
    assert (created.version, created.files_added) == (0, 0)
    read = tables.read(uri)
    assert read.df.count() == 0
    assert read.df.schema.simpleString() == "struct<id:int,month:string>"
    assert not list(Path(uri).rglob("*.parquet"))

    tables.write(spark.createDataFrame([(1, "x")], "id int, month string"), uri)
    appended = tables.write(empty, uri)
    assert appended.files_added == 0
    assert len(list(Path(uri).rglob("*.parquet"))) == 1


def test_partition_declaration_errors(
    spark: SparkSession, tables: DeltaTables, tmp_path: Path
) -> None:
    df = spark.createDataFrame([(1, 0.5, "x")], "id int, score double, month string")
    with pytest.raises(InputError, match=r"partition columns nope are not in the data"):
        tables.write(df, str(tmp_path / "p1"), partition_by=["nope"])
    with pytest.raises(InputError, match=r"score of type double cannot be a partition column"):
        tables.write(df, str(tmp_path / "p2"), partition_by=["score"])
    assert not (tmp_path / "p1").exists()
    tables.write(df, str(tmp_path / "p3"), partition_by=["month"])
    with pytest.raises(InputError, match=r"is partitioned by \(month\), not \(id\)"):
        tables.write(df, str(tmp_path / "p3"), partition_by=["id"])


def test_missing_table_and_non_delta_folder(tables: DeltaTables, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no Delta table at .*nowhere"):
        tables.read(str(tmp_path / "nowhere"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match=r"no Delta table at"):
        tables.read(str(tmp_path / "plain"))
    assert tables.version(str(tmp_path / "nowhere")) is None
    assert not tables.exists(str(tmp_path / "plain"))
    # a log folder without a commit (a writer killed before its first) is not a table
    (tmp_path / "plain" / "_delta_log").mkdir()
    (tmp_path / "plain" / "_delta_log" / "_commits").mkdir()
    (tmp_path / "plain" / "_delta_log" / ".00000000000000000000.json.tmp").write_text("{}")
    assert not tables.exists(str(tmp_path / "plain"))
    write_deltalake(str(tmp_path / "plain"), pa.table({"x": [1]}))
    assert tables.exists(str(tmp_path / "plain"))


def test_vacuum_dry_run_pinned_versions_and_removal(
    spark: SparkSession, tables: DeltaTables, tmp_path: Path
) -> None:
    uri = tmp_path / "vacuumed"
    tables.write(spark.range(3).coalesce(1), str(uri))
    first = {p.name for p in uri.glob("*.parquet")}
    tables.write(spark.range(4).coalesce(1), str(uri), mode="overwrite")

    dry = tables.vacuum(str(uri), retain_hours=0, dry_run=True)
    assert set(dry.files) == first and dry.dry_run
    kept = tables.vacuum(str(uri), retain_hours=0, keep_versions=[0])
    assert kept.files == [] and tables.read(str(uri), version=0).df.count() == 3
    done = tables.vacuum(str(uri), retain_hours=0)
    assert set(done.files) == first
    assert {p.name for p in uri.glob("*.parquet")}.isdisjoint(first)
    assert tables.read(str(uri)).df.count() == 4
    assert len(oracle_rows(str(uri))) == 4


def write_log(root: Path, protocol: dict, configuration: dict | None = None, metadata=None) -> None:
    """A hand-made first commit, to stand for tables other writers make."""
    log_dir = root / "_delta_log"
    log_dir.mkdir(parents=True)
    schema = {
        "type": "struct",
        "fields": [{"name": "id", "type": "long", "nullable": True, "metadata": metadata or {}}],
    }
    actions = [
        {"protocol": protocol},
        {
            "metaData": {
                "id": "f00d",
                "format": {"provider": "parquet", "options": {}},
                "schemaString": json.dumps(schema),
                "partitionColumns": [],
                "configuration": configuration or {},
                "createdTime": 0,
            }
        },
        {"commitInfo": {"timestamp": int(time.time() * 1000), "operation": "CREATE TABLE"}},
    ]
    (log_dir / "00000000000000000000.json").write_text(
        "\n".join(json.dumps(a) for a in actions) + "\n"
    )


@pytest.mark.parametrize(
    ("protocol", "configuration", "feature"),
    [
        (
            {
                "minReaderVersion": 3,
                "minWriterVersion": 7,
                "readerFeatures": ["deletionVectors"],
                "writerFeatures": ["deletionVectors"],
            },
            {"delta.enableDeletionVectors": "true"},
            "deletion vectors",
        ),
        (
            {"minReaderVersion": 2, "minWriterVersion": 5},
            {"delta.columnMapping.mode": "name", "delta.columnMapping.maxColumnId": "1"},
            "column mapping",
        ),
        (
            {
                "minReaderVersion": 3,
                "minWriterVersion": 7,
                "readerFeatures": ["typeWidening"],
                "writerFeatures": ["typeWidening"],
            },
            {},
            "type widening",
        ),
        (
            {
                "minReaderVersion": 3,
                "minWriterVersion": 7,
                "readerFeatures": ["fancyFutureThing"],
                "writerFeatures": ["fancyFutureThing"],
            },
            {},
            "reader feature fancyFutureThing",
        ),
    ],
)
def test_refuses_reader_features_it_cannot_honour(
    spark: SparkSession, embedded: EmbeddedDelta, tmp_path: Path, protocol, configuration, feature
) -> None:
    root = tmp_path / "featured"
    mapping = {"delta.columnMapping.id": 1, "delta.columnMapping.physicalName": "col-1"}
    write_log(
        root, protocol, configuration, metadata=mapping if "Mapping" in str(configuration) else None
    )
    log_before = sorted(p.name for p in (root / "_delta_log").iterdir())
    for action in (
        lambda: embedded.read(str(root)),
        lambda: embedded.write(spark.range(1), str(root)),
    ):
        with pytest.raises(InputError, match=f"uses {feature}.*embedded Delta backend cannot"):
            action()
    assert sorted(p.name for p in (root / "_delta_log").iterdir()) == log_before


def test_the_connector_names_a_reader_feature_newer_than_it(
    spark: SparkSession, tmp_path: Path
) -> None:
    root = tmp_path / "future"
    write_log(
        root,
        {
            "minReaderVersion": 3,
            "minWriterVersion": 7,
            "readerFeatures": ["fancyFutureThing"],
            "writerFeatures": ["fancyFutureThing"],
        },
    )
    connector = ConnectorDelta(spark)
    for action in (
        lambda: connector.read(str(root)),
        lambda: connector.write(spark.range(1), str(root)),
    ):
        with pytest.raises(InputError, match=r"fancyFutureThing"):
            action()
    assert sorted(p.name for p in (root / "_delta_log").iterdir()) == ["00000000000000000000.json"]


def test_refuses_to_write_generated_columns(
    spark: SparkSession, embedded: EmbeddedDelta, tmp_path: Path
) -> None:
    root = tmp_path / "generated"
    write_log(
        root,
        {"minReaderVersion": 1, "minWriterVersion": 4},
        {},
        metadata={"delta.generationExpression": "1"},
    )
    with pytest.raises(InputError, match="uses generated column id"):
        embedded.write(spark.range(1), str(root))


def test_vacuum_removes_stale_staging_and_unreferenced_files(
    spark: SparkSession, embedded: EmbeddedDelta, tmp_path: Path
) -> None:
    uri = tmp_path / "vac"
    embedded.write(spark.range(3), str(uri))
    first_files = {p.name for p in uri.glob("*.parquet")}
    embedded.write(spark.range(4).coalesce(1), str(uri), mode="overwrite")
    leftover = uri / STAGING_DIR / "deadbeef"
    leftover.mkdir(parents=True)
    (leftover / "part-0.parquet").write_bytes(b"half")

    dry = embedded.vacuum(str(uri), retain_hours=0, dry_run=True)
    assert set(dry.files) == first_files
    assert dry.staging_dirs == [str(leftover)]
    assert leftover.exists()
    done = embedded.vacuum(str(uri), retain_hours=0)
    assert done.files == dry.files
    assert not (uri / STAGING_DIR).exists()
    assert embedded.read(str(uri)).df.count() == 4
    assert len(list(uri.glob("*.parquet"))) == 1


class StaleStart(EmbeddedDelta):
    """Starts its next write from a snapshot taken earlier, as a slow concurrent writer would."""

    def __init__(self, spark: SparkSession, stale) -> None:
        super().__init__(spark)
        self.stale = stale

    def _current(self, root: str):
        stale, self.stale = self.stale, None
        return stale if stale is not None else super()._current(root)


def test_replace_retries_past_disjoint_commits_and_fails_on_overlapping_ones(
    spark: SparkSession, embedded: EmbeddedDelta, tmp_path: Path
) -> None:
    from batchml.lib.delta.delta_log import open_snapshot

    uri = str(tmp_path / "conflicts")
    schema = "id int, month string"
    embedded.write(spark.createDataFrame([(1, "a"), (2, "b")], schema), uri, partition_by=["month"])
    stale = open_snapshot(uri)
    embedded.write(
        spark.createDataFrame([(3, "a")], schema), uri, mode="replace", replace_where="month = 'a'"
    )

    disjoint = StaleStart(spark, stale).write(
        spark.createDataFrame([(4, "b")], schema), uri, mode="replace", replace_where="month = 'b'"
    )
    assert (disjoint.committed, disjoint.version, disjoint.attempts) == (True, 2, 2)
    assert sorted(r["id"] for r in embedded.read(uri).df.collect()) == [3, 4]

    stale = open_snapshot(uri)
    embedded.write(spark.createDataFrame([(5, "a")], schema), uri)
    before = files_under(Path(uri))
    with pytest.raises(InputError, match=r"conflicts with version 3, which changed the files"):
        StaleStart(spark, stale).write(
            spark.createDataFrame([(6, "a")], schema),
            uri,
            mode="replace",
            replace_where="month = 'a'",
        )
    assert DeltaTable(uri).version() == 3
    assert files_under(Path(uri)) == before
    assert sorted(r["id"] for r in embedded.read(uri).df.collect()) == [3, 4, 5]
