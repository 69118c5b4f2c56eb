"""The connector backend: Delta Lake's Spark connector, on the test session's classpath
(fetched from Maven Central once per machine, see conftest.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from batchml.lib.config import load_config
from batchml.lib.delta import WriteToken, delta_tables
from batchml.lib.delta.connector import ConnectorDelta, read_options, write_options
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.errors import EnvironmentProblem, InputError
from batchml.lib.spark import connector_loadable


def test_read_options_for_time_travel() -> None:
    assert read_options(None, None) == {}
    assert read_options(3, None) == {"versionAsOf": "3"}
    plus_two = timezone(timedelta(hours=2))
    assert read_options(None, datetime(2024, 1, 1, 14, 0, tzinfo=plus_two)) == {
        "timestampAsOf": "2024-01-01 12:00:00.000000"
    }
    with pytest.raises(InputError, match="not both"):
        read_options(1, datetime.now(UTC))


def test_write_options_map_the_api_to_delta_options() -> None:
    mode, options = write_options(
        "replace", "month = '2013-01'", WriteToken("ingest", 4), True, {"job": "ingest"}
    )
    assert mode == "overwrite"
    assert options["replaceWhere"] == "month = '2013-01'"
    assert (options["txnAppId"], options["txnVersion"]) == ("ingest", "4")
    assert options["mergeSchema"] == "true"
    assert json.loads(options["userMetadata"]) == {
        "batchml": {"operation": "replace", "job": "ingest", "token": "ingest@4"}
    }
    assert write_options("append", None, None, False, {})[0] == "append"
    assert write_options("overwrite", None, None, False, {})[0] == "overwrite"
    with pytest.raises(InputError, match="needs replace_where"):
        write_options("replace", None, None, False, {})
    with pytest.raises(InputError, match="unknown write mode 'upsert'"):
        write_options("upsert", None, None, False, {})  # type: ignore[arg-type]


def test_factory_follows_delta_backend_setting(spark: SparkSession) -> None:
    auto = load_config(environ={}).settings
    embedded = load_config(environ={}, overrides=["delta.backend=embedded"]).settings
    connector = load_config(environ={}, overrides=["delta.backend=connector"]).settings
    expected = ConnectorDelta if connector_loadable(spark) else EmbeddedDelta
    assert isinstance(delta_tables(spark, auto), expected)
    assert isinstance(delta_tables(spark, embedded), EmbeddedDelta)
    if connector_loadable(spark):
        assert isinstance(delta_tables(spark, connector), ConnectorDelta)
    else:
        with pytest.raises(EnvironmentProblem, match="connector classes are not on the classpath"):
            delta_tables(spark, connector)


@pytest.fixture
def connector(spark: SparkSession) -> ConnectorDelta:
    assert connector_loadable(spark), "the test session is built with the connector jars"
    return ConnectorDelta(spark)


def test_connector_round_trip_replace_token_and_time_travel(
    connector: ConnectorDelta, spark: SparkSession, tmp_path: Path
) -> None:
    uri = str(tmp_path / "via_connector")
    df = spark.createDataFrame([(1, "a"), (2, "b")], "id int, month string")
    assert connector.write(df, uri, partition_by=["month"]).version == 0
    replaced = connector.write(
        spark.createDataFrame([(3, "a")], "id int, month string"),
        uri,
        mode="replace",
        replace_where="month = 'a'",
        token=WriteToken("t", 1),
    )
    again = connector.write(df, uri, token=WriteToken("t", 1))
    assert (replaced.version, replaced.committed, again.committed) == (1, True, False)
    assert sorted(r["id"] for r in connector.read(uri).df.collect()) == [2, 3]
    assert connector.read(uri, version=0).df.count() == 2
    assert connector.history(uri)[0]["version"] == 1
    # the embedded backend reads what the connector wrote
    assert sorted(r["id"] for r in EmbeddedDelta(spark).read(uri).df.collect()) == [2, 3]
